"""``tfjoint bench mtl --dataset movielens-100k``: every task architecture and every
balancing strategy on the joint MovieLens-100K dataset, with one identical budget.

Each configuration trains ``epochs`` epochs over the first ``train_rows`` training rows
(batch size, optimizer and learning rate fixed) from the same transformed features (the
pipeline's ``preprocessing_fn``, analysed once in-process), for several seeds. Reported per
configuration, mean and standard deviation over seeds: AUC of ``watch`` (all eval rows), AUC of
``like`` and RMSE of ``rating`` (both on watched eval rows: the cascade), and training examples
per second (wall clock of ``fit``, measured on this machine). Architectures are compared with
fixed task weights; balancers and sequence encoders (E^B) are compared on one architecture
(``balancer_architecture``), the other slots at their defaults.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Sequence

import keras
import numpy as np
import tqdm
from sklearn.metrics import roc_auc_score

from tfjoint import catalog
from tfjoint.features import DatasetSpec
from tfjoint.joint import build_joint_model
from tfjoint.pipeline.transform import transformed_arrays

DEFAULTS: dict[str, Any] = {
    "seeds": 3,
    "epochs": 1,
    "train_rows": 40000,
    "batch_size": 512,
    "learning_rate": 3e-3,
    "balancer_architecture": "mmoe",
}
DEFAULT_ENCODER = "behavior_pooling"


def prepare(
    dataset: str, train_rows: int, work_dir: str, dataset_kwargs: dict[str, Any] | None = None
) -> tuple[DatasetSpec, dict[str, int], tuple, tuple]:
    """:func:`~tfjoint.pipeline.transform.transformed_arrays`, with ``train_rows`` training rows
    sampled with a fixed seed (the first rows in time order would all be old ratings)."""
    spec, sizes, (x, y), evaluation = transformed_arrays(dataset, work_dir, dataset_kwargs)
    keep = np.sort(np.random.default_rng(0).permutation(len(y[spec.tasks[0].name]))[:train_rows])
    return spec, sizes, ({k: v[keep] for k, v in x.items()}, {k: v[keep] for k, v in y.items()}), evaluation


def mean_and_std(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean", "std"}}`` over the runs (seeds) of one configuration."""
    return {key: {"mean": float(np.mean([r[key] for r in runs])), "std": float(np.std([r[key] for r in runs]))}
            for key in runs[0]}


def score(spec: DatasetSpec, predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """AUC for binary tasks and RMSE for regression tasks, each on the rows it is defined on;
    NaN where a slice cannot be scored."""
    out = {}
    for task in spec.tasks:
        rows = task.defined_rows(labels) == 1
        y, p = labels[task.name][rows, 0], predictions[task.name][rows, 0]
        if task.type == "binary":
            # AUC is undefined on a slice with one class (tiny samples, rare child tasks).
            out[f"{task.name}_auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
        else:
            out[f"{task.name}_rmse"] = float(np.sqrt(np.mean((y - p) ** 2))) if len(y) else float("nan")
    return out


def run_mtl(
    dataset: str = "movielens-100k",
    architectures: Sequence[str] | None = None,
    balancers: Sequence[str] | None = None,
    seeds: int = DEFAULTS["seeds"],
    epochs: int = DEFAULTS["epochs"],
    train_rows: int = DEFAULTS["train_rows"],
    batch_size: int = DEFAULTS["batch_size"],
    learning_rate: float = DEFAULTS["learning_rate"],
    balancer_architecture: str = DEFAULTS["balancer_architecture"],
    sequence_encoders: Sequence[str] = (),
    verbose: bool = True,
) -> dict[str, Any]:
    """Runs the bench; returns ``{"config": ..., "results": {config: {metric: {mean, std}}}}``.

    A configuration is named ``architecture+balancer``, with ``+encoder`` when its sequence
    encoder is not the default (``behavior_pooling``). ``sequence_encoders`` adds one
    configuration per encoder on ``balancer_architecture`` with fixed weights.
    """
    architectures = list(architectures or [e.name for e in catalog.entries("task_architecture")])
    balancers = list(balancers or [e.name for e in catalog.entries("balancer")])
    for encoder in sequence_encoders:
        catalog.get(encoder, slot="sequence_encoder")  # an unknown name fails before any work
    configs = [(a, "fixed", DEFAULT_ENCODER) for a in architectures] + [
        (balancer_architecture, b, DEFAULT_ENCODER)
        for b in balancers if b != "fixed" or balancer_architecture not in architectures
    ] + [(balancer_architecture, "fixed", e) for e in sequence_encoders if e != DEFAULT_ENCODER]
    with tempfile.TemporaryDirectory(prefix="tfjoint-bench-") as work:
        spec, sizes, (x, y), (ex, ey) = prepare(dataset, train_rows, work)
        results: dict[str, Any] = {}
        with tqdm.tqdm(total=len(configs) * seeds, desc="bench mtl", unit="fit", disable=not verbose) as progress:
            for architecture, balancer, encoder in configs:
                runs = []
                for seed in range(seeds):
                    keras.utils.set_random_seed(seed)
                    model = build_joint_model(spec, sizes, task_architecture=architecture, balancer=balancer,
                                              sequence_encoder=encoder)
                    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
                    start = time.perf_counter()
                    model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
                    seconds = time.perf_counter() - start
                    row = score(spec, model.predict(ex, batch_size=4096, verbose=0), ey)
                    row["examples_per_second"] = epochs * len(y[spec.tasks[0].name]) / seconds
                    row["parameters"] = float(model.count_params())
                    runs.append(row)
                    progress.update(1)
                name = f"{architecture}+{balancer}" + ("" if encoder == DEFAULT_ENCODER else f"+{encoder}")
                results[name] = mean_and_std(runs)
    return {
        "config": {"dataset": dataset, "seeds": seeds, "epochs": epochs, "train_rows": len(y[spec.tasks[0].name]),
                   "eval_rows": len(ey[spec.tasks[0].name]), "batch_size": batch_size, "learning_rate": learning_rate},
        "results": results,
    }


def format_report(report: dict[str, Any]) -> str:
    """A Markdown table: one row per configuration, mean +- std over seeds."""
    results = report["results"]
    metrics = [k for k in next(iter(results.values())) if k != "parameters"]
    header = ["architecture + balancer", *metrics, "parameters"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, stats in results.items():
        cells = [name.replace("+", " + ")]
        for metric in metrics:
            digits = 0 if metric == "examples_per_second" else 4
            cells.append(f"{stats[metric]['mean']:.{digits}f} ± {stats[metric]['std']:.{digits}f}")
        cells.append(f"{stats['parameters']['mean']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    config = report["config"]
    lines.append(
        f"\n{config['dataset']}: {config['train_rows']:,} training rows, {config['eval_rows']:,} eval rows, "
        f"{config['epochs']} epoch(s), batch {config['batch_size']}, Adam {config['learning_rate']}, "
        f"{config['seeds']} seeds"
    )
    return "\n".join(lines)
