"""``tfjoint bench msr``: every multi-scenario model against two baselines, per scenario and task.

Each configuration trains on the same transformed rows (the pipeline's ``preprocessing_fn``,
analysed once in-process) with one identical budget: ``epochs`` passes over the first
``train_rows`` training rows, one batch size, Adam with one learning rate, several seeds.
Configurations:

- ``shared``: one model (``base_architecture``, no scenario adapter) for every scenario;
  the scenario id is one of its embedded fields, as in practice.
- ``separate``: one such model per scenario, trained on that scenario's rows only (the same
  number of epochs, so fewer steps) and evaluated on that scenario's rows.
- every registered ``scenario_adapter`` under ``base_architecture``, and every registered
  ``task_architecture`` that is scenario-aware (a ``ScenarioAware`` contract) on its own. A two-stage
  component (M-LoRA) spends half its epochs pre-training the backbone on every scenario and
  half fine-tuning each scenario's low-rank pair on that scenario's rows: the same number of
  passes over the data as everyone else.

Reported per configuration, scenario and task, mean and standard deviation over seeds: AUC
for binary tasks and RMSE for regression tasks, each on the rows the task is defined on
(:meth:`tfjoint.features.TaskSpec.defined_rows`: child tasks on rows whose parent label is
1). A cell is marked ``▲`` (better) or ``▼`` (worse) where it differs from ``shared`` by
more than two standard errors; a configuration that is better on one scenario and worse on
another for the same task shows the *seesaw*.

On ``--dataset synthetic`` the data have a known shift in one scenario
(:data:`tfjoint.datasets.synthetic.SHIFTED_SCENARIO`); the bench also reports, per scenario,
the RMSE of the predicted click probability against the true ``P(click)`` of every eval
impression, which tells directly which model learned the shifted scenario's click function,
and adds a third baseline, ``pooled``: the shared model with the scenario id hidden (every
row given scenario 0, in training and at prediction), i.e. what ignoring the scenarios costs.

Every configuration is also scored with the scenario hidden: each eval row's scenario id
replaced by the unknown id (:func:`tfjoint.layers.core.scenarios.unknown_scenario`), as a
request from a scenario the model never saw would be served. These ``fallback/<task>_auc``
(and ``_rmse``) columns sit beside the shared model's on the same rows and are marked
against it like the others; ``separate`` has no model for an unknown scenario (``n/a``) and
``pooled`` never sees a scenario, so its fallback is its prediction.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tqdm

from tfjoint import catalog, features
from tfjoint.bench.mtl_movielens import mean_and_std, prepare, score
from tfjoint.datasets import load_frames, synthetic
from tfjoint.features import DatasetSpec
from tfjoint.joint import JointModel, build_joint_model, fit_joint_model
from tfjoint.layers.core.contracts import ScenarioAware
from tfjoint.layers.core.scenarios import unknown_scenario

DEFAULTS: dict[str, Any] = {
    "seeds": 3,
    "epochs": 2,
    "train_rows": 30000,
    "batch_size": 512,
    "learning_rate": 3e-3,
    "base_architecture": "mmoe",
}
SHARED, SEPARATE, POOLED = "shared", "separate", "pooled"
FALLBACK = "fallback"  # the column prefix of the scores with the scenario hidden
TRUTH_METRIC = "click_truth_rmse"
# The shift of --dataset synthetic: detail clicks follow the reversed context function
# (``x @ -w`` instead of ``x @ w``, the same mean CTR), with the context part tripled so that
# it counts against the user/item part; no additive shift. See tfjoint.datasets.synthetic.
SYNTHETIC_KWARGS: dict[str, Any] = {
    "n": 60000,
    "scenario_shift": 0.0,
    "shifted_context_weights": synthetic.REVERSED_CONTEXT_WEIGHTS,
    "context_scale": 3.0,
}


def scenario_aware_models() -> list[str]:
    """Every scenario adapter, then every scenario-aware task architecture, by name."""
    adapters = [e.name for e in catalog.entries("scenario_adapter")]
    archs = [e.name for e in catalog.entries("task_architecture") if issubclass(e.cls, ScenarioAware)]
    return adapters + archs


def _rows(x: dict[str, np.ndarray], scenario: int) -> np.ndarray:
    return x[features.SCENARIO_KEY].reshape(-1) == scenario


def _take(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in arrays.items()}


def score_by_scenario(
    spec: DatasetSpec, predictions: dict[str, np.ndarray], x: dict[str, np.ndarray], y: dict[str, np.ndarray]
) -> dict[str, float]:
    """``{"<scenario>/<task>_<auc|rmse>": value}``; NaN where a slice cannot be scored (one class)."""
    out: dict[str, float] = {}
    for p, name in enumerate(spec.scenarios):
        rows = _rows(x, p)
        out.update({f"{name}/{k}": v for k, v in score(spec, _take(predictions, rows), _take(y, rows)).items()})
    return out


def hide_scenario(spec: DatasetSpec, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``x`` with every row's scenario replaced by the unknown id ``spec.num_scenarios``."""
    unknown = np.full_like(x[features.SCENARIO_KEY], unknown_scenario(spec.num_scenarios))
    return {**x, features.SCENARIO_KEY: unknown}


def score_fallback(
    spec: DatasetSpec, predictions: dict[str, np.ndarray] | None, y: dict[str, np.ndarray]
) -> dict[str, float]:
    """``{"fallback/<task>_<auc|rmse>": value}`` of predictions made with the scenario hidden.

    ``predictions`` is ``None`` for a configuration with no unknown-scenario path: NaN.
    """
    if predictions is None:
        names = [f"{t.name}_{'auc' if t.type == 'binary' else 'rmse'}" for t in spec.tasks]
        return {f"{FALLBACK}/{name}": float("nan") for name in names}
    return {f"{FALLBACK}/{k}": v for k, v in score(spec, predictions, y).items()}


def _build(spec: DatasetSpec, sizes: dict[str, int], config: str, base: str) -> JointModel:
    if config in (SHARED, SEPARATE, POOLED):
        return build_joint_model(spec, sizes, task_architecture=base)
    entry = catalog.get(config)
    if entry.slot == "scenario_adapter":
        return build_joint_model(spec, sizes, task_architecture=base, scenario_adapter=config)
    return build_joint_model(spec, sizes, task_architecture=config)


def _fit(model: JointModel, x: dict, y: dict, epochs: int, batch_size: int, learning_rate: float) -> None:
    # M-LoRA spends the epochs pre-training, then fine-tuning each scenario; others fit once.
    optimizer = keras.optimizers.Adam(learning_rate)
    fit_joint_model(model, (x, y), epochs=epochs, optimizer=optimizer, batch_size=batch_size, verbose=0)


def _predict(model: JointModel, x: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model.predict(x, batch_size=4096, verbose=0).items()}


def _truth(spec: DatasetSpec, dataset_kwargs: dict[str, Any], ey: dict[str, np.ndarray]) -> np.ndarray | None:
    """The true click probability of every eval row, for the synthetic dataset only."""
    if spec.name != features.SYNTHETIC.name:
        return None
    frame = load_frames(spec.name, **dataset_kwargs)["eval"]
    click = frame[synthetic.CLICK_KEY].to_numpy()
    if len(click) != len(ey[synthetic.CLICK_KEY]) or not np.array_equal(click, ey[synthetic.CLICK_KEY][:, 0]):
        raise RuntimeError("eval rows are not in the order of the generated frame; cannot align the ground truth")
    return frame[synthetic.TRUE_CTR_KEY].to_numpy()


def run_msr(
    dataset: str = "movielens-100k",
    models: Sequence[str] | None = None,
    seeds: int = DEFAULTS["seeds"],
    epochs: int = DEFAULTS["epochs"],
    train_rows: int | None = None,
    batch_size: int = DEFAULTS["batch_size"],
    learning_rate: float = DEFAULTS["learning_rate"],
    base_architecture: str = DEFAULTS["base_architecture"],
    dataset_kwargs: dict[str, Any] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Runs the bench; returns ``{"config", "results": {model: {metric: {mean, std}}}, "skipped"}``.

    ``models`` defaults to :func:`scenario_aware_models`; the two baselines always run.
    ``train_rows`` defaults to ``DEFAULTS["train_rows"]`` on the real datasets and to every
    training row on ``synthetic`` (whose size ``dataset_kwargs["n"]`` sets).
    A model that the dataset cannot feed (SAR-Net needs a behavior sequence) is listed in
    ``skipped`` with the reason.
    """
    if seeds < 1 or epochs < 1:
        raise ValueError(f"seeds and epochs must be >= 1. Received: seeds={seeds}, epochs={epochs}")
    models = list(models) if models is not None else scenario_aware_models()
    for name in models:
        catalog.get(name)  # unknown names fail before any training
    if dataset_kwargs is None:
        dataset_kwargs = dict(SYNTHETIC_KWARGS) if dataset == features.SYNTHETIC.name else {}
    if train_rows is None and dataset != features.SYNTHETIC.name:
        train_rows = DEFAULTS["train_rows"]
    configs = [SHARED, SEPARATE, *([POOLED] if dataset == features.SYNTHETIC.name else []), *models]
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tfjoint-bench-msr-") as work:
        spec, sizes, (x, y), (ex, ey) = prepare(dataset, train_rows, work, dataset_kwargs)
        truth = _truth(spec, dataset_kwargs, ey)
        with tqdm.tqdm(total=len(configs) * seeds, desc="bench msr", unit="fit", disable=not verbose) as progress:
            for config in configs:
                runs = []
                for seed in range(seeds):
                    keras.utils.set_random_seed(seed)
                    start = time.perf_counter()
                    try:
                        predictions, fallback, parameters = _train_and_predict(
                            spec, sizes, config, base_architecture, (x, y), ex, epochs, batch_size, learning_rate
                        )
                    except ValueError as e:
                        skipped[config] = str(e)
                        progress.update(seeds - seed)
                        break
                    row = score_by_scenario(spec, predictions, ex, ey)
                    row.update(score_fallback(spec, fallback, ey))
                    if truth is not None:
                        for p, name in enumerate(spec.scenarios):
                            rows = _rows(ex, p)
                            err = predictions[synthetic.CLICK_KEY][rows, 0] - truth[rows]
                            row[f"{name}/{TRUTH_METRIC}"] = float(np.sqrt(np.mean(err**2)))
                    row["parameters"] = float(parameters)
                    row["seconds"] = time.perf_counter() - start
                    runs.append(row)
                    progress.update(1)
                if runs:
                    results[config] = mean_and_std(runs)
    return {
        "config": {
            "dataset": dataset, "seeds": seeds, "epochs": epochs, "train_rows": len(y[spec.tasks[0].name]),
            "eval_rows": len(ey[spec.tasks[0].name]), "batch_size": batch_size, "learning_rate": learning_rate,
            "base_architecture": base_architecture, "scenarios": list(spec.scenarios),
            "tasks": [t.name for t in spec.tasks], "dataset_kwargs": dataset_kwargs,
            "shifted_scenario": spec.scenarios[synthetic.SHIFTED_SCENARIO] if truth is not None else None,
        },
        "results": results,
        "skipped": skipped,
    }


def _train_and_predict(
    spec: DatasetSpec,
    sizes: dict[str, int],
    config: str,
    base: str,
    train: tuple[dict, dict],
    ex: dict[str, np.ndarray],
    epochs: int,
    batch_size: int,
    learning_rate: float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, int]:
    """``(predictions, predictions with the scenario hidden or None, parameters)`` on ``ex``."""
    x, y = train
    if config == POOLED:  # the scenario id hidden: every row looks like scenario 0
        x, ex = ({**d, features.SCENARIO_KEY: np.zeros_like(d[features.SCENARIO_KEY])} for d in (x, ex))
    if config != SEPARATE:
        model = _build(spec, sizes, config, base)
        _fit(model, x, y, epochs, batch_size, learning_rate)
        predictions = _predict(model, ex)
        fallback = predictions if config == POOLED else _predict(model, hide_scenario(spec, ex))
        return predictions, fallback, model.count_params()
    # One model per scenario; each eval row is scored by its own scenario's model.
    predictions: dict[str, np.ndarray] = {}
    parameters = 0
    for p in range(spec.num_scenarios):
        rows, eval_rows = _rows(x, p), _rows(ex, p)
        model = _build(spec, sizes, config, base)
        _fit(model, _take(x, rows), _take(y, rows), epochs, batch_size, learning_rate)
        parameters += model.count_params()
        for key, value in _predict(model, _take(ex, eval_rows)).items():
            predictions.setdefault(key, np.zeros((len(eval_rows), *value.shape[1:]), value.dtype))[eval_rows] = value
    return predictions, None, parameters


def lower_is_better(metric: str) -> bool:
    return metric.endswith("rmse")


def compare_to(results: dict[str, Any], base: str, seeds: int) -> dict[str, dict[str, str]]:
    """``{config: {column: "▲" | "▼" | ""}}``: better or worse than ``base`` by > 2 standard errors.

    Columns with a ``/`` (``<scenario>/<metric>``) are compared; RMSE columns are better when
    lower. The standard error of the difference is ``sqrt((s_a^2 + s_b^2) / n)`` over the
    ``seeds`` runs of each. With one seed there is no estimate of the noise: nothing is marked.
    """
    reference = results.get(base, {})
    marks: dict[str, dict[str, str]] = {}
    for model, stats in results.items():
        marks[model] = {}
        for column, value in stats.items():
            if model == base or "/" not in column or column not in reference or seeds < 2:
                continue
            delta = value["mean"] - reference[column]["mean"]
            if lower_is_better(column):
                delta = -delta
            error = math.sqrt((value["std"] ** 2 + reference[column]["std"] ** 2) / max(seeds, 1))
            if math.isnan(delta):
                marks[model][column] = ""
            elif abs(delta) > 2 * error and abs(delta) > 1e-4:
                marks[model][column] = "▲" if delta > 0 else "▼"
            else:
                marks[model][column] = ""
    return marks


def compare_to_shared(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """:func:`compare_to` against the ``shared`` baseline."""
    return compare_to(report["results"], SHARED, report["config"]["seeds"])


def seesaw(report: dict[str, Any]) -> dict[str, list[str]]:
    """``{model: [task metrics that are ▲ in one scenario and ▼ in another]}``."""
    out: dict[str, list[str]] = {}
    for model, by_column in compare_to_shared(report).items():
        by_metric: dict[str, set[str]] = {}
        for column, mark in by_column.items():
            if mark and not column.startswith(f"{FALLBACK}/"):  # not a scenario
                by_metric.setdefault(column.split("/", 1)[1], set()).add(mark)
        out[model] = sorted(m for m, seen in by_metric.items() if seen == {"▲", "▼"})
    return out


def format_report(report: dict[str, Any]) -> str:
    """A Markdown table: one row per configuration, one column per scenario and task metric."""
    config, results = report["config"], report["results"]
    marks, seesaws = compare_to_shared(report), seesaw(report)
    columns = [c for c in next(iter(results.values())) if "/" in c]
    header = ["model", *columns, "seesaw", "parameters"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, stats in results.items():
        cells = [model]
        for column in columns:
            value = stats.get(column)
            if value is None or math.isnan(value["mean"]):
                cells.append("n/a")
            else:
                cells.append(f"{value['mean']:.4f} ± {value['std']:.4f}{marks[model].get(column, '')}")
        cells.append(", ".join(seesaws.get(model, [])) or "")
        cells.append(f"{stats['parameters']['mean']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    for model, reason in report.get("skipped", {}).items():
        lines.append(f"\nskipped {model}: {reason}")
    lines.append(
        f"\n{config['dataset']}: {config['train_rows']:,} training rows, {config['eval_rows']:,} eval rows, "
        f"{config['epochs']} epoch(s), batch {config['batch_size']}, Adam {config['learning_rate']}, "
        f"{config['seeds']} seed(s); adapters run under {config['base_architecture']}. ▲/▼: better/worse than "
        "`shared` by more than two standard errors; seesaw: ▲ in one scenario and ▼ in another. "
        f"`{FALLBACK}/`: every eval row with its scenario hidden (the unknown id), against shared's fallback."
        + (" One seed gives no noise estimate: nothing is marked." if config["seeds"] < 2 else "")
    )
    shifted = config.get("shifted_scenario")
    if shifted:
        lines.append(_shift_summary(report, shifted))
    return "\n".join(lines)


BEATS, LOSES = "beats shared by > 2 standard errors", "worse than shared by > 2 standard errors"


def _shift_summary(report: dict[str, Any], shifted: str) -> str:
    """Which models beat ``shared`` on the scenario with the known shift (truth RMSE).

    The verdict is :func:`compare_to_shared`'s test (more than two standard errors over the
    seeds), so one seed or seed noise cannot produce a "beats shared".
    """
    results = report["results"]
    column = f"{shifted}/{TRUTH_METRIC}"
    base = results[SHARED][column]["mean"]
    marks = compare_to_shared(report)
    lines = [f"\nknown shift in scenario {shifted!r}: RMSE of pCTR against the true P(click) there "
             f"(shared: {base:.4f}; lower is better)"]
    for model, stats in sorted(results.items(), key=lambda kv: kv[1][column]["mean"]):
        value = stats[column]
        verdict = {"▲": BEATS, "▼": LOSES}.get(marks[model].get(column, ""), "")
        lines.append(f"  {model:18s} {value['mean']:.4f} ± {value['std']:.4f}  {verdict}".rstrip())
    winners = [m for m in results if marks[m].get(column) == "▲"]
    if report["config"]["seeds"] < 2:
        lines.append("  one seed: no noise estimate, so no model is said to beat shared")
    else:
        lines.append(f"  {BEATS} in {shifted!r}: {', '.join(winners) if winners else 'none'}")
    return "\n".join(lines)
