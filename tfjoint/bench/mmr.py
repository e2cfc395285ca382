"""``tfjoint bench mmr``: multi-modal retrieval models on warm and on cold items.

Every registered ``retrieval_model`` of family ``multi_modal`` (VBPR, NOVA, MMMLP, FREEDOM, BM3) is fitted with
the item features next to its id-only *counterpart* (:data:`COUNTERPARTS`: VBPR extends
BPR-MF, NOVA and MMMLP extend SASRec, FREEDOM extends LightGCN; BM3's is itself without modalities,
``bm3_ids``, with LightGCN beside it, :data:`ALSO_COMPARED`) and ItemPop, per seed, on the
cold-start split of :mod:`tfjoint.retrieval.cold_start`: cold items are held out of training
entirely, the warm items are split leave-one-out. The epoch is chosen on the warm
validation items (full ranking among warm items, NDCG@10); that model is scored on the
warm test items (ranked among the warm items), on the cold test items ranked among the cold
items (``cold``) and among all items (``mixed``), HR@10 and NDCG@10, mean ± std over seeds.

On the synthetic data the item features carry a known amount of the preference signal
(:func:`tfjoint.datasets.multimodal.synthetic_multimodal`): at signal 1 the features
determine the preferences, at signal 0 they are noise, so a model's cold-item numbers
should fall to chance (``HR@10 = 10 / #cold items``) at signal 0. The bench runs each
``--signals`` value. BPR-MF and ItemPop never saw a cold item: they give every cold item the
same score (ItemPop: 0) or one learned only from being sampled as a negative (BPR-MF, which
pushes every cold item down; SASRec likewise), so their cold numbers are the floor the
multi-modal models are compared to. The last columns give each multi-modal model's warm and
cold HR@10 gap to its counterpart, and its cold gap to ItemPop, with the standard error
``sqrt(s_m^2 / n_m + s_c^2 / n_c)`` over seeds, marked when above 2 SE.

Sequence models (SASRec, NOVA, MMMLP) read each user's latest training events in time order
(:func:`tfjoint.retrieval.history`: the training log at validation, plus the validation
item at test). The synthetic log's timestamps are uniform at random, so there its order
carries no signal and a sequence model learns from the set of items.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfjoint import catalog
from tfjoint.bench import topk
from tfjoint.bench.mbr import standard_error_gap
from tfjoint.retrieval import builtin, history
from tfjoint.retrieval.cold_start import DATASETS, PARTS, ColdStartSplit, evaluate_cold_start, load_cold_start_split

DEFAULT_SIGNALS = (1.0, 0.0)
METRICS = ("HR@10", "NDCG@10")
# the id-only model each is compared to: the same model without its modalities (BM3's is its id-only self)
COUNTERPARTS = {"vbpr": "bpr_mf", "nova": "sasrec", "mmmlp": "sasrec", "freedom": "lightgcn", "bm3": "bm3_ids", "bm3_infonce": "bm3_ids"}
# other id-only models each is compared to as well (reported beside the counterpart): the one BM3's id views extend
ALSO_COMPARED = {"bm3": ("lightgcn",), "bm3_infonce": ("lightgcn",)}
# bench names of a registered model with other arguments: BM3 with the InfoNCE alignment; id-only BM3 (its
# bootstrap id loss L_rec and regularizer, no modality view: never given the item features; cold items keep
# their untrained rows, as the other id-only models')
VARIANTS = {
    "bm3_infonce": ("bm3", {"alignment": "infonce"}),
    "bm3_ids": ("bm3", {"item_features": None, "cl_weight": 0.0, "cold_start": "none"}),
}
FLOOR = "item_pop"
BASELINES = ("bpr_mf", "sasrec", "lightgcn", "bm3_ids", FLOOR)

# (constructor kwargs, fit kwargs): topk's budget for BPR-MF and ItemPop; VBPR gets BPR-MF's
# optimizer budget and sizes (K = D = 64), Cornac's λ_E = 0, untuned. Measured (3 seeds, HR@10,
# warm / cold / mixed), synthetic signal 1: VBPR .441 / .675 / .360, BPR-MF .250 / .090 / 0;
# signal 0: VBPR .204 / .096 / .006 (noise features cost it warm accuracy), BPR-MF .250 / .090 / 0;
# MovieLens-100K: VBPR .136 / .106 / 0, BPR-MF .131 / .025 / 0 (chance on cold: .100, .030).
_SEQUENCE = {**topk.BUDGET["sasrec"][0], "max_len": 10}
_SEQUENCE_FIT = {**topk.BUDGET["sasrec"][1], "learning_rate": 5e-3}
_BM3 = {"embedding_dim": 64, "num_layers": 1, "dropout": 0.5, "reg_weight": 0.1, "cl_weight": 0.02}
BUDGET: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "vbpr": ({"embedding_dim": 64, "content_dim": 64}, dict(topk.BUDGET["bpr_mf"][1])),
    "bpr_mf": topk.BUDGET["bpr_mf"],
    "lightgcn": topk.BUDGET["lightgcn"],
    # FREEDOM with the authors' config (2 user-item layers, 1 item-graph layer, k = 10, 80 % of the
    # edges pruned per epoch, λ = 1e-4) and LightGCN's optimizer budget, untuned. Measured (3 seeds,
    # HR@10, warm / cold / mixed), synthetic signal 1: FREEDOM .421 / .481 / 0, LightGCN .417 / .112 / 0;
    # signal 0: FREEDOM .348 / .093 / 0 (noise kNN graph); MovieLens-100K: FREEDOM .152 / .105 / 0,
    # LightGCN .143 / .022 / 0.
    "freedom": ({"embedding_dim": 64}, dict(topk.BUDGET["lightgcn"][1])),
    # BM3 with the paper's sizes for Baby (d = 64, 1 layer, dropout .5, λ_reg .1), item features fine-tuned as
    # the authors', and LightGCN's optimizer budget; λ_cl (the authors' 2.0, not in their grid) chosen on warm
    # validation NDCG@10 (seed 0; MovieLens-100K / synthetic signal 1; LightGCN .0762 / .2608):
    #   bootstrap λ_cl 2: .0445 / .2351, .5: .0632 / .2291, .1: .0680 / .2248, .02: .0724 / .2227;
    #   InfoNCE   λ_cl 2: .0342 / .2550, .1: .0464 / .2578, .02: .0563 / .2347;
    # λ_cl = .02 here (MovieLens' choice for both); DATASET_BUDGET holds synthetic's (2 and .1).
    # Also tried on MovieLens (bootstrap, validation): at λ_cl .1 2 layers .037, Adam 1e-3 .052 (best epoch 134
    # of 154), 1e-2 .0685, dropout .3 with λ_reg .01 .0701; at .02 patience 20 .0724 (same epoch), dropout .3
    # .0706, batch 1024 .0577, batch 64 with Adam 1e-3 .0702. Before the fine-tuning (fixed features, λ_cl 2)
    # warm validation peaked at .021 on MovieLens.
    # The authors' budget (MMRec overall.yaml: Adam 1e-3, batch 2048, ≤ 1000 epochs, stopping_step 20), λ_cl .02,
    # seed 0, warm validation NDCG@10: MovieLens .0252 (best epoch 43 of 63, 25 CPU s), .0289 with all 1000
    # epochs (best 404; .0125 at 900), .0044 at their λ_cl 2; synthetic .2049 (best 196); Adam 1e-3 / batch 256 /
    # stopping 20 .0506 (best 44 of 64). None reaches LightGCN (.0762 / .2608): the budget is not what is short.
    # Measured (3 seeds, HR@10, warm / cold): MovieLens-100K BM3 .122 / .049, InfoNCE .100 / .095, LightGCN
    # .143 / .022; synthetic signal 1: BM3 .370 / .690, InfoNCE .412 / .710 (matches), LightGCN .417 / .111;
    # signal 0: BM3 .367 / .102, InfoNCE .328 / .102. Bootstrap BM3's warm stays below LightGCN by > 2 SE on
    # both (docs/multi_modal.md, "BM3 on warm items"). Its id-only self, bm3_ids (3 seeds, HR@10 warm / cold):
    # MovieLens-100K .119 / 0, synthetic .361 / 0 at both signals: BM3 matches it on warm items (within 1 SE),
    # InfoNCE beats it at signal 1, is 1.8 SE below on MovieLens and 4.5 SE below at signal 0.
    "bm3": (_BM3, dict(topk.BUDGET["lightgcn"][1])),
    "bm3_infonce": (_BM3, dict(topk.BUDGET["lightgcn"][1])),
    "bm3_ids": (_BM3, dict(topk.BUDGET["lightgcn"][1])),  # BM3's budget; VARIANTS turns the modalities off
    "item_pop": topk.BUDGET["item_pop"],
    # SASRec with the paper's sizes (d = 50, 2 blocks, dropout 0.5), max_len 10 (a synthetic user has at
    # most 10 events) and lr 5e-3: at topk's 1e-3 validation plateaus for 10 epochs and early stopping
    # ends 3 of 6 runs near epoch 15 (NOVA warm .423/.434/.111). NOVA the same, gating fusion, untuned.
    # Measured (3 seeds, HR@10, warm / cold / mixed), synthetic signal 1: NOVA .437 / .626 / .235,
    # SASRec .384 / .095 / 0; signal 0: NOVA .173 / .109 / 0 (noise side information), SASRec the same.
    "sasrec": (_SEQUENCE, dict(_SEQUENCE_FIT)),
    "nova": ({**_SEQUENCE, "fusion": "gating"}, dict(_SEQUENCE_FIT)),
    # MMMLP: SASRec's d = 50 and budget, 2 mixer layers per modality, expansion 4 (the authors'), dropout 0.2, untuned.
    # Measured (3 seeds, HR@10, warm / cold / mixed), synthetic signal 1: MMMLP .472 / .693 / .499; signal 0:
    # .112 / .100 / .004 (noise features cost it the warm ranking); MovieLens-100K: .153 / .056 / .004, SASRec .125 / .037 / 0.
    "mmmlp": ({**_SEQUENCE, "hidden_dim": 50, "num_blocks": 2, "dropout": 0.2}, dict(_SEQUENCE_FIT)),
}
# constructor arguments of one dataset that replace BUDGET's, each chosen on that dataset's warm validation
# NDCG@10 (seed 0; synthetic: signal 1, used for both signals): BM3's λ_cl, from the grid in the BM3 comment above
DATASET_BUDGET: dict[tuple[str, str], dict[str, Any]] = {
    ("bm3", "synthetic"): {"cl_weight": 2.0},
    ("bm3_infonce", "synthetic"): {"cl_weight": 0.1},
}


def budget(name: str, dataset: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``name``'s (constructor kwargs, fit kwargs): :data:`BUDGET`, with ``dataset``'s :data:`DATASET_BUDGET`."""
    init_kwargs, fit_kwargs = BUDGET.get(name, ({}, {}))
    return {**init_kwargs, **DATASET_BUDGET.get((name, str(dataset)), {})}, dict(fit_kwargs)


def default_models() -> list[str]:
    """Every registered multi-modal retrieval model, then their counterparts (and :data:`ALSO_COMPARED`), then ItemPop."""
    names = [e.name for e in catalog.entries(slot="retrieval_model") if e.family == "multi_modal"]
    ids = [c for n in names for c in ((COUNTERPARTS[n],) if n in COUNTERPARTS else ()) + ALSO_COMPARED.get(n, ())]
    return list(dict.fromkeys(names + ids + [FLOOR]))


def check_arguments(dataset: str, models: Sequence[str] | None, seeds: int, signals: Sequence[float]) -> list[str]:
    """The model names to run; bad arguments fail before any data is loaded."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}. Received: dataset={dataset!r}")
    names = list(models) if models else default_models()
    for name in names:
        catalog.get(VARIANTS.get(name, (name,))[0], slot="retrieval_model")
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1. Received: seeds={seeds}")
    if not signals or any(not 0.0 <= float(s) <= 1.0 for s in signals):
        raise ValueError(f"signals must be values in [0, 1]. Received: signals={list(signals)}")
    return names


def fit_and_score(name: str, split: ColdStartSplit, seed: int, dataset: str | None = None) -> dict[str, Any]:
    """One model fitted with warm validation selection (``dataset``: whose :func:`budget`);
    its warm and cold test metrics."""
    import keras

    keras.utils.set_random_seed(seed)
    init_kwargs, fit_kwargs = budget(name, dataset)
    registered, variant = VARIANTS.get(name, (name, {}))
    train = split.train
    model = builtin.build_model(
        registered, train.num_users, train.num_items, seed, optional={"item_features": split.item_features}, **{**init_kwargs, **variant}
    )
    valid_history, test_history = history(split.warm, "valid"), history(split.warm, "test")

    def validate(m: Any) -> float:
        result = evaluate_cold_start(lambda u: m.score(u, valid_history), split, stage="valid", parts=("warm",))
        return float(result["warm"][topk.SELECTION_METRIC])

    start = time.perf_counter()
    fit_history = model.fit(train, validate=validate, seed=seed, **fit_kwargs)
    seconds = time.perf_counter() - start
    result = evaluate_cold_start(lambda u: model.score(u, test_history), split, stage="test")
    out: dict[str, Any] = {
        "seconds": seconds,
        "best_epoch": fit_history.get("best_epoch"),
        "epochs_run": fit_history.get("epochs_run"),
    }
    for part in PARTS:
        out[part] = {m: result[part][m] for m in METRICS} | {"users": result[part]["users"]}
        out[part]["protocol"] = result[part]["protocol"]
    return out


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per multi-modal model of :data:`COUNTERPARTS` whose counterpart ran: its warm and cold
    HR@10 gap to the counterpart, (when ItemPop ran) its cold gap to ItemPop and (``"also"``)
    its warm and cold gaps to the models of :data:`ALSO_COMPARED` that ran, each with the
    standard error over seeds and whether it exceeds 2 standard errors."""

    def gap(model_runs: list[dict[str, Any]], other: list[dict[str, Any]], part: str) -> dict[str, Any]:
        value, se = standard_error_gap([r[part]["HR@10"] for r in model_runs], [r[part]["HR@10"] for r in other])
        return {"gap": value, "se": se, "beats": bool(value > 2 * se)}

    out: dict[str, dict[str, Any]] = {}
    for name, counterpart in COUNTERPARTS.items():
        if name in runs and counterpart in runs:
            out[name] = {"counterpart": counterpart} | {p: gap(runs[name], runs[counterpart], p) for p in ("warm", "cold")}
            if FLOOR in runs:
                out[name]["cold_vs_floor"] = gap(runs[name], runs[FLOOR], "cold")
            also = {o: {p: gap(runs[name], runs[o], p) for p in ("warm", "cold")} for o in ALSO_COMPARED.get(name, ()) if o in runs}
            if also:
                out[name]["also"] = also
    return out


def run_mmr(
    dataset: str = "synthetic",
    models: Sequence[str] | None = None,
    seeds: int = 3,
    signals: Sequence[float] = DEFAULT_SIGNALS,
    verbose: bool = True,
) -> dict[str, Any]:
    """Every model x seed, per signal on synthetic data (one run elsewhere); see the module doc."""
    names = check_arguments(dataset, models, seeds, signals)
    results = []
    for signal in signals if dataset == "synthetic" else [None]:
        split = load_cold_start_split(dataset) if signal is None else load_cold_start_split(dataset, signal=float(signal))
        tag = f"bench mmr {dataset}" + ("" if signal is None else f" signal {signal:g}")
        runs: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            for seed in range(int(seeds)):
                runs.setdefault(name, []).append(fit_and_score(name, split, seed, dataset))
                if verbose:
                    r = runs[name][-1]
                    print(
                        f"[{tag}] {name} seed {seed}: warm HR@10 {r['warm']['HR@10']:.4f}, cold HR@10 "
                        f"{r['cold']['HR@10']:.4f}, best epoch {r['best_epoch']}, {r['seconds']:.0f} s",
                        flush=True,
                    )
        results.append(
            {
                "signal": signal,
                "num_items": split.train.num_items,
                "cold_items": len(split.cold_items),
                "train_events": len(split.train.users),
                "users": {p: runs[names[0]][0][p]["users"] for p in PARTS},
                "protocols": {p: runs[names[0]][0][p]["protocol"] for p in PARTS},
                "runs": runs,
                "comparison": compare(runs),
            }
        )
    return {
        "dataset": dataset,
        "seeds": int(seeds),
        "selection": f"epoch with the best warm validation {topk.SELECTION_METRIC} (full ranking among warm items)",
        "budget": {n: budget(n, dataset) for n in names},
        "results": results,
    }


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def _gap_cell(g: dict[str, Any]) -> str:
    return f"{g['gap']:+.4f} ({g['se']:.4f}){' > 2 SE' if g['beats'] else ''}"


def format_report(report: dict[str, Any]) -> str:
    """One markdown table per signal: warm and cold HR@10 / NDCG@10 per model, fit time."""
    header = ["model"] + [f"{p}/{m}" for p in PARTS for m in METRICS] + ["fit seconds", "best epoch"]
    header += [f"vs counterpart: {p} HR@10 gap (SE)" for p in ("warm", "cold")] + [f"vs {FLOOR}: cold HR@10 gap (SE)"]
    header += ["vs other id-only: warm HR@10 gap (SE)"]
    lines: list[str] = []
    for result in report["results"]:
        title = report["dataset"] + ("" if result["signal"] is None else f", signal {result['signal']:g}")
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, runs in result["runs"].items():
            cells = [name] + [_cell([r[p][m] for r in runs]) for p in PARTS for m in METRICS]
            cells.append(f"{np.mean([r['seconds'] for r in runs]):.0f}")
            cells.append(",".join(str(r["best_epoch"]) for r in runs))
            c = result.get("comparison", {}).get(name)
            for key in ("warm", "cold", "cold_vs_floor"):
                g = None if c is None else c.get(key)
                cells.append("" if g is None else _gap_cell(g))
            if c is not None:
                cells[-3] += f" vs {c['counterpart']}"
            cells.append("; ".join(f"{_gap_cell(g['warm'])} vs {o}" for o, g in (c or {}).get("also", {}).items()))
            lines.append("| " + " | ".join(cells) + " |")
        users = result["users"]
        lines += [
            "",
            f"{users['warm']} warm and {users['cold']} cold test users, {result['num_items']} items of which "
            f"{result['cold_items']} cold, {result['train_events']} training events, {report['seeds']} seeds; "
            f"test numbers of the model selected by {report['selection']}. Chance on cold items: "
            f"HR@10 = {min(10, result['cold_items']) / max(result['cold_items'], 1):.4f}.",
            *(f"- {p}: {label}" for p, label in result["protocols"].items()),
            "",
        ]
    return "\n".join(lines).rstrip()
