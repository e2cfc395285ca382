"""``tfjoint bench mbr``: multi-behavior models against their single-behavior counterparts.

Every registered ``retrieval_model`` of family ``multi_behavior`` learns from every behavior
of the log (views, carts, buys); its *counterpart* is the single-behavior model it extends,
which learns from the target behavior alone (:data:`COUNTERPARTS`: NMTR extends BPR-MF,
MBGCN and CML extend LightGCN, MB-STR extends SASRec). Both are fitted with the budget of
:mod:`tfjoint.bench.topk` on the same leave-one-out split, their epoch chosen on the
validation items (full ranking, NDCG@10), and scored on the test items under full ranking
and against 99 sampled negatives.

On the synthetic data the auxiliary behaviors carry a known signal about the target
(:func:`tfjoint.datasets.interactions.synthetic_behaviors`, ``corr(a, z) = signal``): the
bench runs each ``--signals`` value, so the advantage a model draws from the auxiliary
behaviors can be seen to vanish at signal 0. For each multi-behavior model the report gives
the difference of mean test HR@10 (full ranking) to its counterpart, its standard error
``sqrt(s_m^2 / n_m + s_c^2 / n_c)`` (sample standard deviations over seeds) and whether the
difference exceeds 2 standard errors.

``events/s`` is ``|training log| x epochs run / fit seconds``: the rate at which a model
goes through the log of every behavior, validation included (a target-only model reads a
subset of each epoch's log, so this is a rate of epochs scaled by one common size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfjoint import catalog
from tfjoint.bench import topk

COUNTERPARTS = {"nmtr": "bpr_mf", "mbgcn": "lightgcn", "cml": "lightgcn", "mbstr": "sasrec"}
DEFAULT_SIGNALS = (1.0, 0.0)
COMPARED = "HR@10"


def default_models() -> list[str]:
    """Every registered multi-behavior retrieval model, each followed by its counterpart."""
    names: list[str] = []
    for entry in catalog.entries(slot="retrieval_model"):
        if entry.family == "multi_behavior":
            names += [entry.name, COUNTERPARTS.get(entry.name, "")]
    return list(dict.fromkeys(n for n in names if n))


def standard_error_gap(model: Sequence[float], counterpart: Sequence[float]) -> tuple[float, float]:
    """``(mean(model) - mean(counterpart), sqrt(s_m^2/n_m + s_c^2/n_c))``; nan SE below 2 seeds."""
    gap = float(np.mean(model) - np.mean(counterpart))
    if len(model) < 2 or len(counterpart) < 2:
        return gap, math.nan
    se = math.sqrt(np.var(model, ddof=1) / len(model) + np.var(counterpart, ddof=1) / len(counterpart))
    return gap, se


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per multi-behavior model with its counterpart in ``runs``: the full-ranking HR@10 gap."""
    out = {}
    for name, counterpart in COUNTERPARTS.items():
        if name in runs and counterpart in runs:
            gap, se = standard_error_gap(
                [r["full"][COMPARED] for r in runs[name]], [r["full"][COMPARED] for r in runs[counterpart]]
            )
            out[name] = {"counterpart": counterpart, "gap": gap, "se": se, "beats": bool(gap > 2 * se)}
    return out


def run_mbr(
    dataset: str = "synthetic",
    models: Sequence[str] | None = None,
    seeds: int = 3,
    signals: Sequence[float] = DEFAULT_SIGNALS,
    verbose: bool = True,
    epochs: int | None = None,
    patience: int | None = None,
) -> dict[str, Any]:
    """Every model x seed, per signal on synthetic data (one run elsewhere); see the module doc.

    ``epochs`` / ``patience`` replace the budget's for every model trained by epochs (e.g. MB-STR
    and SASRec on Retailrocket, where MB-STR's 100 epochs do not fit in an hour on 2 cores);
    the epoch is still chosen on validation within them."""
    names = topk.check_arguments(dataset, models or default_models(), seeds)
    fits = {n: topk.fit_budget(n, epochs, patience) for n in names}
    for s in signals:
        if not 0.0 <= float(s) <= 1.0:
            raise ValueError(f"signals must lie in [0, 1]. Received: signals={list(signals)}")
    results = []
    for signal in signals if dataset == "synthetic" else [None]:
        split = topk.load_split(dataset) if signal is None else topk.load_split(dataset, signal=float(signal))
        tag = f"bench mbr {dataset}" + ("" if signal is None else f" signal {signal:g}")
        runs = topk.run_models(split, names, seeds, verbose, tag=tag, fits=fits)
        events = len(split.train.users)
        for model_runs in runs.values():
            for r in model_runs:
                r["events_per_second"] = events * r["epochs_run"] / max(r["seconds"], 1e-9)
        results.append(
            {
                "signal": signal,
                "users": int((split.test_items >= 0).sum()),
                "num_items": split.train.num_items,
                "train_events": events,
                "protocols": topk.protocol_labels(runs),
                "runs": runs,
                "comparison": compare(runs),
            }
        )
    return {
        "dataset": dataset,
        "seeds": int(seeds),
        "selection": f"epoch with the best validation {topk.SELECTION_METRIC} (full ranking)",
        "budget": {n: (topk.BUDGET.get(n, ({}, {}))[0], fits[n]) for n in names},
        "epochs": epochs,
        "patience": patience,
        "results": results,
    }


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def format_report(report: dict[str, Any]) -> str:
    """One markdown table per signal; the last columns compare each model to its counterpart."""
    metrics = [(p, m) for p in topk.PROTOCOLS for m in ("HR@10", "NDCG@10")]
    header = ["model"] + [f"{p}/{m}" for p, m in metrics] + ["events/s", "vs counterpart: HR@10 gap (SE)", "> 2 SE"]
    lines: list[str] = []
    cut = {k: report[k] for k in ("epochs", "patience") if report.get(k) is not None}
    budget_note = [f"- budget: {', '.join(f'{k} {v}' for k, v in cut.items())} for every model trained by epochs"] if cut else []
    for result in report["results"]:
        title = report["dataset"] + ("" if result["signal"] is None else f", signal {result['signal']:g}")
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, runs in result["runs"].items():
            cells = [name] + [_cell([r[p][m] for r in runs]) for p, m in metrics]
            cells.append(f"{np.mean([r['events_per_second'] for r in runs]):,.0f}")
            c = result["comparison"].get(name)
            if c is None:
                cells += ["", ""]
            else:
                cells += [f"{c['gap']:+.4f} ({c['se']:.4f}) vs {c['counterpart']}", "yes" if c["beats"] else "no"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            f"{result['users']} test users, {result['num_items']} items, {result['train_events']} training "
            f"events, {report['seeds']} seeds; test numbers of the model selected by {report['selection']}.",
            *(f"- {p}: {label}" for p, label in result["protocols"].items()),
            *budget_note,
            "",
        ]
    return "\n".join(lines).rstrip()
