"""``tfjoint bench joint``: the joint model across the four families, and what each one adds.

The full model fills every slot of :func:`tfjoint.joint.build_joint_model`:

    E_merge = U(E, E^B, E^M) -> scenario adapter -> task architecture -> {task: head}

with a behavior-aware sequence encoder as E^B (multi-behavior), a modality encoder over the
title and genre tokens as E^M (multi-modal), a scenario adapter (multi-scenario), a
multi-task architecture and a balancer over the task losses (multi-task); :data:`FULL`
names the defaults, every slot can be changed by name. The ablation trains, with one
identical budget (the ``msr`` bench's: ``epochs`` passes over ``train_rows`` rows, one batch
size, Adam with one learning rate) and the same seeds:

- ``full``: every slot filled;
- ``no_behavior`` / ``no_modality`` / ``no_scenario``: the full model with that slot empty;
- ``single_task``: one model per task (the full model's E^B, E^M and adapter under a
  ``shared_bottom`` network with that task alone), instead of the multi-task architecture;
  a child task (``like`` given ``watch``) is trained on the rows it is defined on;
- ``fixed_weights``: the full model with fixed task weights instead of the balancer;
- ``shared_bottom``: a plain shared-bottom model, no E^B, E^M or adapter, fixed weights.

Reported per configuration, mean and standard deviation over seeds: per task (AUC of binary
tasks, RMSE of regression tasks, each on the rows it is defined on) over every eval row
(``all/``) and per scenario. A cell is marked ``▲``/``▼`` where it is better/worse than
``full`` by more than two standard errors: a ``▼`` on an ablation means that the family it
removes helps. :func:`plot_heatmap` draws the full model's gain over ``shared_bottom`` per
scenario and task.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tqdm

from tfjoint import catalog
from tfjoint.bench.msr import DEFAULTS as MSR_DEFAULTS
from tfjoint.bench.msr import compare_to, lower_is_better, score_by_scenario
from tfjoint.bench.mtl_movielens import mean_and_std, prepare, score
from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.joint import JointModel, build_joint_model, fit_joint_model
from tfjoint.joint.builder import check_combination

DATASETS = ("movielens-100k", "synthetic")
FULL: dict[str, str | None] = {
    "sequence_encoder": "behavior_attention",
    "modality_encoder": "gating_fusion",
    "scenario_adapter": "star",
    "task_architecture": "ple",
    "balancer": "uncertainty",
}
ABLATIONS: dict[str, dict[str, str | None]] = {
    "full": {},
    "no_behavior": {"sequence_encoder": None},
    "no_modality": {"modality_encoder": None},
    "no_scenario": {"scenario_adapter": None},
    "single_task": {"task_architecture": "shared_bottom", "balancer": "fixed"},
    "fixed_weights": {"balancer": "fixed"},
    "shared_bottom": {"sequence_encoder": None, "modality_encoder": None, "scenario_adapter": None,
                      "task_architecture": "shared_bottom", "balancer": "fixed"},
}
SINGLE_TASK = "single_task"
BASE, BASELINE = "full", "shared_bottom"
OVERALL = "all"


def slots_of(config: str, full: dict[str, str | None]) -> dict[str, str | None]:
    """The slot choices of an ablation ``config`` around the ``full`` model."""
    return {**full, **ABLATIONS[config]}


def check_arguments(dataset: str, configs: Sequence[str], full: dict[str, str | None], seeds: int, epochs: int) -> None:
    """Every argument, checked before any data is read: one line naming what is wrong."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}. Received: dataset={dataset!r}")
    unknown = [c for c in configs if c not in ABLATIONS]
    if unknown:
        raise ValueError(f"configs must be among {list(ABLATIONS)}. Received: {unknown}")
    if set(full) != set(FULL):
        raise ValueError(f"full must fill exactly the slots {sorted(FULL)}. Received: {sorted(full)}")
    for slot, name in full.items():
        if name is None and slot in ("task_architecture", "balancer"):
            raise ValueError(f"the full model's {slot} cannot be empty")
        if name is not None:
            catalog.get(name, slot=slot)  # names the slot and lists its components
    if seeds < 1 or epochs < 1:
        raise ValueError(f"seeds and epochs must be >= 1. Received: seeds={seeds}, epochs={epochs}")


def build(spec: DatasetSpec, sizes: dict[str, int], slots: dict[str, str | None], tasks: list | None = None) -> JointModel:
    """The joint model of ``slots``; an incompatible combination raises naming the slots."""
    check_combination(spec, tasks=tasks, **slots)
    return build_joint_model(spec, sizes, tasks=tasks, **slots)


def _train(model: JointModel, x: dict, y: dict, epochs: int, batch_size: int, learning_rate: float) -> None:
    optimizer = keras.optimizers.Adam(learning_rate)
    fit_joint_model(model, (x, y), epochs=epochs, optimizer=optimizer, batch_size=batch_size, verbose=0)


def _predict(model: JointModel, x: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model.predict(x, batch_size=4096, verbose=0).items()}


def train_and_predict(
    spec: DatasetSpec, sizes: dict[str, int], config: str, full: dict[str, str | None],
    train: tuple[dict, dict], ex: dict, epochs: int, batch_size: int, learning_rate: float,
) -> tuple[dict[str, np.ndarray], int]:
    """``(predictions on ex, parameters)`` of one ablation; ``single_task`` trains one model a task."""
    x, y = train
    slots = slots_of(config, full)
    if config != SINGLE_TASK:
        model = build(spec, sizes, slots)
        _train(model, x, y, epochs, batch_size, learning_rate)
        return _predict(model, ex), model.count_params()
    predictions: dict[str, np.ndarray] = {}
    parameters = 0
    for task, alone in zip(spec.tasks, single_tasks(spec)):
        # A child task (like given watch) alone learns from the rows it is defined on.
        rows = task.defined_rows(y) == 1
        model = build(spec, sizes, slots, tasks=[alone])
        _train(model, {k: v[rows] for k, v in x.items()}, {k: v[rows] for k, v in y.items()},
               epochs, batch_size, learning_rate)
        predictions[task.name] = _predict(model, ex)[task.name]
        parameters += model.count_params()
    return predictions, parameters


def single_tasks(spec: DatasetSpec) -> list[TaskSpec]:
    """Every task of ``spec`` as a root task, for a model that has it alone."""
    return [dataclasses.replace(task, parent=None) for task in spec.tasks]


def run_joint(
    dataset: str = "movielens-100k",
    configs: Sequence[str] | None = None,
    full: dict[str, str | None] | None = None,
    seeds: int = MSR_DEFAULTS["seeds"],
    epochs: int = MSR_DEFAULTS["epochs"],
    train_rows: int = MSR_DEFAULTS["train_rows"],
    batch_size: int = MSR_DEFAULTS["batch_size"],
    learning_rate: float = MSR_DEFAULTS["learning_rate"],
    verbose: bool = True,
) -> dict[str, Any]:
    """Runs the ablation; returns ``{"config", "results": {config: {metric: {mean, std}}}}``."""
    configs = list(configs or ABLATIONS)
    full = dict(full or FULL)
    check_arguments(dataset, configs, full, seeds, epochs)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tfjoint-bench-joint-") as work:
        spec, sizes, (x, y), (ex, ey) = prepare(dataset, train_rows, work)
        for config in configs:  # an incompatible combination fails before any training
            for tasks in ([[t] for t in single_tasks(spec)] if config == SINGLE_TASK else [None]):
                build(spec, sizes, slots_of(config, full), tasks=tasks)
        with tqdm.tqdm(total=len(configs) * seeds, desc="bench joint", unit="fit", disable=not verbose) as progress:
            for config in configs:
                runs = []
                for seed in range(seeds):
                    keras.utils.set_random_seed(seed)
                    start = time.perf_counter()
                    predictions, parameters = train_and_predict(
                        spec, sizes, config, full, (x, y), ex, epochs, batch_size, learning_rate
                    )
                    row = {f"{OVERALL}/{k}": v for k, v in score(spec, predictions, ey).items()}
                    row.update(score_by_scenario(spec, predictions, ex, ey))
                    row["parameters"] = float(parameters)
                    row["seconds"] = time.perf_counter() - start
                    runs.append(row)
                    progress.update(1)
                results[config] = mean_and_std(runs)
    return {
        "config": {
            "dataset": dataset, "seeds": seeds, "epochs": epochs, "train_rows": len(y[spec.tasks[0].name]),
            "eval_rows": len(ey[spec.tasks[0].name]), "batch_size": batch_size, "learning_rate": learning_rate,
            "full": full, "scenarios": list(spec.scenarios), "tasks": [t.name for t in spec.tasks],
        },
        "results": results,
    }


def _table(report: dict[str, Any], prefixes: Sequence[str]) -> list[str]:
    results = report["results"]
    marks = compare_to(results, BASE, report["config"]["seeds"])
    columns = [c for c in next(iter(results.values())) if c.split("/", 1)[0] in prefixes]
    lines = ["| config | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for config, stats in results.items():
        cells = [config] + [
            "n/a" if np.isnan(stats[c]["mean"]) else f"{stats[c]['mean']:.4f} ± {stats[c]['std']:.4f}{marks[config].get(c, '')}"
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_report(report: dict[str, Any]) -> str:
    """Two Markdown tables (every eval row; per scenario), marks against ``full``."""
    config = report["config"]
    full = ", ".join(f"{k}={v}" for k, v in config["full"].items())
    lines = [f"full model: {full}", "", *_table(report, [OVERALL]), "", *_table(report, config["scenarios"])]
    seconds = {c: s["seconds"]["mean"] for c, s in report["results"].items()}
    lines += [
        "",
        f"{config['dataset']}: {config['train_rows']:,} training rows, {config['eval_rows']:,} eval rows, "
        f"{config['epochs']} epoch(s), batch {config['batch_size']}, Adam {config['learning_rate']}, "
        f"{config['seeds']} seed(s). ▲/▼: better/worse than `full` by more than two standard errors"
        + (" (one seed: nothing is marked)." if config["seeds"] < 2 else "."),
        "seconds per fit: " + ", ".join(f"{c} {s:.0f}" for c, s in seconds.items()),
    ]
    return "\n".join(lines)


def heatmap_values(report: dict[str, Any], config: str = BASE, against: str = BASELINE) -> tuple[np.ndarray, list[str], list[str]]:
    """``(gain[scenario, task], scenarios, metrics)``: ``config``'s gain over ``against``.

    The gain is the AUC difference for binary tasks and the RMSE reduction for regression
    tasks, so a positive cell is always better.
    """
    scenarios = report["config"]["scenarios"]
    results = report["results"]
    metrics = [c.split("/", 1)[1] for c in results[config] if c.startswith(f"{OVERALL}/")]
    gain = np.zeros((len(scenarios), len(metrics)))
    for i, s in enumerate(scenarios):
        for j, m in enumerate(metrics):
            delta = results[config][f"{s}/{m}"]["mean"] - results[against][f"{s}/{m}"]["mean"]
            gain[i, j] = -delta if lower_is_better(m) else delta
    return gain, scenarios, metrics


def plot_heatmap(report: dict[str, Any], path: str, config: str = BASE, against: str = BASELINE) -> str:
    """Writes the per-scenario x per-task heatmap of ``config``'s gain over ``against`` to ``path``."""
    import pathlib

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gain, scenarios, metrics = heatmap_values(report, config, against)
    marks = compare_to(report["results"], against, report["config"]["seeds"])[config]
    bound = float(np.nanmax(np.abs(gain))) or 1.0
    fig, ax = plt.subplots(figsize=(2.4 + 1.5 * len(metrics), 1.4 + 0.7 * len(scenarios)))
    image = ax.imshow(gain, cmap="RdBu", vmin=-bound, vmax=bound)
    for i, s in enumerate(scenarios):
        for j, m in enumerate(metrics):
            color = "white" if abs(gain[i, j]) > 0.6 * bound else "black"
            ax.text(j, i, f"{gain[i, j]:+.4f}{marks.get(f'{s}/{m}', '')}", ha="center", va="center", fontsize=9,
                    color=color)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_yticks(range(len(scenarios)), scenarios)
    ax.set_title(f"{config} minus {against} ({report['config']['dataset']}; RMSE: reduction)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="gain (positive = better)")
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
