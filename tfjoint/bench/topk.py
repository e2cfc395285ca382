"""``tfjoint bench topk``: every retrieval baseline under both ranking protocols.

For each dataset the leave-one-out split of :mod:`tfjoint.retrieval.protocols` is built
once (the test item is the user's last target event, or Retailrocket's held-out buy; the
validation item is the last target event before it). Every registered ``retrieval_model``
is then fitted per seed on the training log with the same budget (:data:`BUDGET`); after
every epoch it is scored on the *validation* items (full ranking, NDCG@10) and the best
epoch's weights are kept. Only that validation-selected model is scored on the *test*
items, under both protocols:

- full ranking: against every item, the user's training items of the target behavior masked;
- sampled: against 99 negatives drawn uniformly (seeded) from the items the user never
  interacted with.

Each cell is the mean ± standard deviation over seeds; ``seconds`` is the wall time of
``fit`` (validation included) on this machine, comparable only within one run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfjoint import catalog
from tfjoint.retrieval import LeaveOneOut, builtin, evaluate, history
from tfjoint.retrieval.builtin import DATASETS, load_split

SELECTION_METRIC = "NDCG@10"
REPORTED = ("HR@10", "NDCG@10", "MRR")
PROTOCOLS = ("full", "sampled")
_SEED = re.compile(r", seed (\d+)")

# One budget per model, the same on every dataset: (constructor kwargs, fit kwargs). The
# trainable models' learning rate and batch were chosen on Retailrocket's *validation*
# NDCG@10 (BPR-MF: batch 256 and Adam 5e-3, 0.0048, over batch 256 and 1e-2, 0.0043, and
# batch 1024 and 5e-3, 0.0000 after 9 epochs); EASE keeps the 10,000 most popular items
# (Retailrocket's whole catalog: 369 s and 7.6 GiB; 10,000 items: 16 s and 1.5 GiB).
_TRAINED = {"epochs": 100, "batch_size": 256, "learning_rate": 5e-3, "patience": 10}
BUDGET: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "item_pop": ({}, {}),
    "ease": ({"l2_reg": 500.0, "max_items": 10000}, {}),
    "bpr_mf": ({"embedding_dim": 64}, dict(_TRAINED)),
    "lightgcn": ({"embedding_dim": 64, "num_layers": 3}, dict(_TRAINED)),
    # NMTR trains on every behavior with BPR-MF's budget (not tuned for it on validation)
    "nmtr": ({"embedding_dim": 64}, dict(_TRAINED)),
    # MBGCN's item-item links weighted by co-occurrence counts, computed as R^T (R E): the
    # paper's binary view graph of Retailrocket has 48 million links (15 s to build, 4.4 GB);
    # "counts" builds in 0.5 s and trains an epoch (batch 256) in 17 s on 2 cores.
    "mbgcn": ({"embedding_dim": 64, "item_graph": "counts"}, dict(_TRAINED)),
    # CML with τ = 0.2, β = 0.1 (untuned), LightGCN's budget; synthetic (bench mbr, 3 seeds, full
    # ranking): HR@10 .492 ± .006 vs LightGCN .254 ± .005 at signal 1, .138 ± .003 vs .254 at signal 0
    "cml": ({"embedding_dim": 64, "num_layers": 2, "temperature": 0.2, "contrast_weight": 0.1}, dict(_TRAINED)),
    "sasrec": ({"max_len": 50}, {"epochs": 100, "batch_size": 128, "learning_rate": 1e-3, "patience": 10}),
    # MB-STR: the authors' architecture (2 blocks, 2 heads, dropout 0.2, cloze 0.2) with d = 64 and batch 32,
    # chosen on synthetic validation NDCG@10 (.303 at d 64 / batch 32; d 16 / batch 128 barely trains in 100 epochs)
    "mbstr": ({"max_len": 50, "hidden_dim": 64}, {"epochs": 100, "batch_size": 32, "learning_rate": 1e-3, "patience": 10}),
}


def fit_budget(name: str, epochs: int | None = None, patience: int | None = None) -> dict[str, Any]:
    """``name``'s fit arguments of :data:`BUDGET`; ``epochs`` / ``patience`` replace those of a
    model that trains by epochs (a smaller budget for a slow model on a large dataset)."""
    fit = dict(BUDGET.get(name, ({}, {}))[1])
    for key, value in (("epochs", epochs), ("patience", patience)):
        if value is not None and int(value) < 1:
            raise ValueError(f"{key} must be >= 1. Received: {key}={value}")
        if value is not None and "epochs" in fit:
            fit[key] = int(value)
    return fit


def build_model(name: str, split: LeaveOneOut, seed: int, **overrides: Any) -> Any:
    """A registered retrieval model sized for ``split``, with the bench budget's arguments."""
    kwargs = {**BUDGET.get(name, ({}, {}))[0], **overrides}
    return builtin.build_model(name, split.train.num_users, split.train.num_items, seed, **kwargs)


def fit_and_score(
    name: str, split: LeaveOneOut, seed: int, ks: Sequence[int] = (10,), fit: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fits one model with validation selection (``fit``: its fit arguments, default
    :func:`fit_budget`); its test metrics under both protocols."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model(name, split, seed)
    valid_history, test_history = history(split, "valid"), history(split, "test")

    def validate(m: Any) -> float:
        result = evaluate(lambda u: m.score(u, valid_history), split, stage="valid", protocol="full", ks=ks)
        return float(result[SELECTION_METRIC])

    start = time.perf_counter()
    fit_history = model.fit(split.train, validate=validate, seed=seed, **(fit_budget(name) if fit is None else fit))
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"seconds": seconds, "best_epoch": fit_history.get("best_epoch")}
    out["epochs_run"] = fit_history.get("epochs_run", len(fit_history["validation"]))
    out["valid_curve"] = list(fit_history["validation"])
    out["valid"] = {SELECTION_METRIC: max(out["valid_curve"]) if out["valid_curve"] else None}
    for protocol in PROTOCOLS:
        result = evaluate(
            lambda u: model.score(u, test_history), split, stage="test", protocol=protocol, ks=ks, seed=seed
        )
        out[protocol] = {k: result[k] for k in REPORTED} | {"label": result["protocol"], "users": result["users"]}
    return out


def check_arguments(dataset: str, models: Sequence[str] | None, seeds: int) -> list[str]:
    """The model names to run; a bad dataset, model name or seed count fails before any work."""
    builtin.check_dataset(dataset)
    # Multi-modal models need item features, which only ``bench mmr``'s datasets provide.
    default = [e.name for e in catalog.entries(slot="retrieval_model") if e.family != "multi_modal"]
    names = list(models) if models else default
    for name in names:
        catalog.get(name, slot="retrieval_model")
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1. Received: seeds={seeds}")
    return names


def run_models(
    split: LeaveOneOut,
    names: Sequence[str],
    seeds: int,
    verbose: bool = True,
    tag: str = "bench topk",
    fits: dict[str, dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``fit_and_score`` for every model and seed (``fits``: fit arguments per model, default
    :func:`fit_budget`), printing one progress line per fit."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        for seed in range(int(seeds)):
            if verbose:
                print(f"[{tag}] {name} seed {seed} ...", flush=True)
            fit = (fits or {}).get(name)
            runs.setdefault(name, []).append(fit_and_score(name, split, seed, fit=fit))
            if verbose:
                r = runs[name][-1]
                print(
                    f"[{tag}]   full HR@10 {r['full']['HR@10']:.4f} NDCG@10 {r['full']['NDCG@10']:.4f}, sampled HR@10 "
                    f"{r['sampled']['HR@10']:.4f} NDCG@10 {r['sampled']['NDCG@10']:.4f}, best epoch {r['best_epoch']} "
                    f"of {r['epochs_run']}, {r['seconds']:.0f} s",
                    flush=True,
                )
    return runs


def protocol_labels(runs: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """The protocol label of the runs; the sampled protocol's seeds are listed once."""
    labels = {}
    for p in PROTOCOLS:
        seeds = sorted({m.group(1) for rs in runs.values() for r in rs if (m := _SEED.search(r[p]["label"]))}, key=int)
        texts = sorted({_SEED.sub("", r[p]["label"]) for rs in runs.values() for r in rs})
        labels[p] = "; ".join(texts) + (f" (negatives seeded per run: seeds {', '.join(seeds)})" if seeds else "")
    return labels


def run_topk(
    dataset: str = "retailrocket", models: Sequence[str] | None = None, seeds: int = 3, verbose: bool = True
) -> dict[str, Any]:
    """Every model (default: every registered ``retrieval_model`` but the multi-modal ones) x
    ``seeds``; see the module doc."""
    names = check_arguments(dataset, models, seeds)
    split = load_split(dataset)
    runs = run_models(split, names, seeds, verbose, tag=f"bench topk {dataset}")
    return {
        "dataset": dataset,
        "seeds": int(seeds),
        "users": int((split.test_items >= 0).sum()),
        "num_items": split.train.num_items,
        "protocols": protocol_labels(runs),
        "selection": f"epoch with the best validation {SELECTION_METRIC} (full ranking)",
        "budget": {n: BUDGET.get(n, ({}, {})) for n in names},
        "runs": runs,
    }


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def format_report(report: dict[str, Any]) -> str:
    """A markdown table: per model, HR@10 / NDCG@10 / MRR under both protocols, and time."""
    header = ["model"] + [f"{p}/{m}" for p in PROTOCOLS for m in REPORTED] + ["fit seconds", "best epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in report["runs"].items():
        cells = [name] + [_cell([r[p][m] for r in runs]) for p in PROTOCOLS for m in REPORTED]
        cells.append(f"{np.mean([r['seconds'] for r in runs]):.0f}")
        cells.append(",".join(str(r["best_epoch"]) for r in runs))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{report['dataset']}: {report['users']} test users, {report['num_items']} items, {report['seeds']} seeds; "
        f"test numbers of the model selected by {report['selection']}.",
        *(f"- {p}: {label}" for p, label in report["protocols"].items()),
    ]
    return "\n".join(lines)
