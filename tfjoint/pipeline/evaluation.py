"""The Evaluator's TFMA config, derived from the dataset spec, and readers of its output.

TFMA loads our SavedModels as generic TF models, so every metric is named here: AUC, log
loss (binary cross-entropy) and calibration for binary tasks; RMSE and MAE for regression
tasks; example counts for all. Metrics are computed overall and per scenario. A task is
judged on the rows it is defined on (:meth:`tfjoint.features.TaskSpec.defined_rows`): its
examples are weighted by the label ``task.row_weight_key`` (the parent's), so ``like`` is
judged only where ``watch`` = 1, and its ``example_count`` is that weighted count (TFMA
weights every metric of an output that has an example weight key, so a separate
``WeightedExampleCount`` would only repeat it: one more per-example combiner, issue 17).

Each metric is configured as its :mod:`tfjoint.pipeline.task_metrics` counterpart (same name,
key and thresholds), so all of a task's metrics share one combiner that reads each example once
(``stock_metrics=True`` configures TFMA's own classes instead, to compare).
"""

from __future__ import annotations

from typing import Any

import tensorflow_model_analysis as tfma

from tfjoint import features
from tfjoint.features import DatasetSpec
from tfjoint.pipeline import task_metrics

BINARY_METRICS = ("AUC", "BinaryCrossEntropy", "Calibration", "MeanPrediction", "MeanLabel")
REGRESSION_METRICS = ("RootMeanSquaredError", "MeanAbsoluteError")
COMMON_METRICS = ("ExampleCount",)

# TFMA's metric names for the classes above, as they appear in its output.
METRIC_NAMES = {
    "AUC": "auc",
    "BinaryCrossEntropy": "binary_crossentropy",
    "Calibration": "calibration",
    "MeanPrediction": "mean_prediction",
    "MeanLabel": "mean_label",
    "RootMeanSquaredError": "root_mean_squared_error",
    "MeanAbsoluteError": "mean_absolute_error",
    "ExampleCount": "example_count",
}


def _bound(lower: float | None = None, upper: float | None = None) -> tfma.MetricThreshold:
    value = tfma.GenericValueThreshold()
    if lower is not None:
        value.lower_bound.value = lower
    if upper is not None:
        value.upper_bound.value = upper
    return tfma.MetricThreshold(value_threshold=value)


def _metric_config(class_name: str, threshold: tfma.MetricThreshold | None, stock: bool) -> tfma.MetricConfig:
    """TFMA's metric ``class_name`` (its task_metrics counterpart unless ``stock``); its threshold
    (if any) judges the overall slice only, not each scenario."""
    if stock:
        config = tfma.MetricConfig(class_name=class_name)
    else:
        config = tfma.MetricConfig(class_name=task_metrics.FOR_STOCK[class_name].__name__,
                                   module=task_metrics.__name__)
    if threshold is not None:
        config.per_slice_thresholds.append(
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold))
    return config


def eval_config(spec: DatasetSpec, *, stock_metrics: bool = False) -> tfma.EvalConfig:
    """Per-task metrics, overall and per scenario, with the thresholds that bless a model.

    Every binary task must have finite log loss below ``spec.max_log_loss`` and a
    calibration (mean prediction / mean label) within ``spec.calibration_bounds``; tasks listed in
    ``spec.min_auc`` must reach that AUC, and regression tasks in ``spec.max_rmse`` must stay
    below that RMSE. Thresholds apply to the overall slice. ``stock_metrics`` configures TFMA's
    own metric classes (one combiner per metric) instead of :mod:`~tfjoint.pipeline.task_metrics`.
    """
    metrics_specs = []

    def _metric(class_name: str, threshold: tfma.MetricThreshold | None = None) -> tfma.MetricConfig:
        return _metric_config(class_name, threshold, stock_metrics)

    for task in spec.tasks:
        configs = [_metric(name) for name in COMMON_METRICS]
        if task.type == "binary":
            configs += [
                _metric("AUC", _bound(lower=spec.min_auc[task.name]) if task.name in spec.min_auc else None),
                _metric("BinaryCrossEntropy", _bound(upper=spec.max_log_loss)),
                _metric("Calibration", _bound(*spec.calibration_bounds) if spec.calibration_bounds else None),
                _metric("MeanPrediction"),
                _metric("MeanLabel"),
            ]
        else:
            configs += [
                _metric(
                    "RootMeanSquaredError",
                    _bound(upper=spec.max_rmse[task.name]) if task.name in spec.max_rmse else None,
                ),
                _metric("MeanAbsoluteError"),
            ]
        metrics_specs.append(tfma.MetricsSpec(output_names=[task.name], metrics=configs))
    if len(spec.tasks) == 1:
        # TFMA unwraps a one-output signature into a bare tensor, so a single task is
        # configured as TFMA's single-output model (no output name); metric_table names it.
        (task,) = spec.tasks
        for metrics_spec in metrics_specs:
            metrics_spec.ClearField("output_names")
        model_spec = tfma.ModelSpec(signature_name="serving_default", label_key=task.name)
        if task.row_weight_key:
            model_spec.example_weight_key = task.row_weight_key
    else:
        model_spec = tfma.ModelSpec(
            signature_name="serving_default",
            label_keys={task.name: task.name for task in spec.tasks},
            example_weight_keys={task.name: task.row_weight_key for task in spec.tasks if task.row_weight_key},
        )
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.SCENARIO_KEY])],
        metrics_specs=metrics_specs,
    )


def metric_table(eval_result_dir: str, spec: DatasetSpec) -> dict[str, dict[str, dict[str, float]]]:
    """``{slice: {task: {metric: value}}}`` from an Evaluator output directory.

    The slice is ``"overall"`` or the scenario's name from ``spec.scenarios``.
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    result = tfma.load_eval_result(eval_result_dir)
    for slice_key, metrics in result.slicing_metrics:
        if not slice_key:
            name = "overall"
        else:
            index = int(dict(slice_key)[features.SCENARIO_KEY])
            name = spec.scenarios[index] if 0 <= index < spec.num_scenarios else f"scenario={index}"
        row = table.setdefault(name, {})
        for output_name, by_subkey in metrics.items():
            values = by_subkey.get("", {})
            row[output_name or spec.tasks[0].name] = {
                metric: float(value["doubleValue"])
                for metric, value in values.items()
                if isinstance(value, dict) and "doubleValue" in value
            }
    return table


def is_blessed(eval_result_dir: str) -> bool:
    return bool(tfma.load_validation_result(eval_result_dir).validation_ok)


def format_table(table: dict[str, dict[str, dict[str, float]]], spec: DatasetSpec) -> str:
    """A per-scenario by per-task text table of the main metrics."""
    columns: list[tuple[str, str]] = []
    for task in spec.tasks:
        names = ("auc", "binary_crossentropy", "calibration") if task.type == "binary" else (
            "root_mean_squared_error", "mean_absolute_error")
        columns += [(task.name, n) for n in names]
    short = {"auc": "AUC", "binary_crossentropy": "logloss", "calibration": "calib",
             "root_mean_squared_error": "RMSE", "mean_absolute_error": "MAE"}
    header = ["slice", "n"] + [f"{t}/{short[m]}" for t, m in columns]
    rows = []
    order = ["overall"] + [s for s in spec.scenarios if s in table] + sorted(
        k for k in table if k != "overall" and k not in spec.scenarios)
    for name in order:
        if name not in table:
            continue
        first = spec.tasks[0].name
        count = table[name].get(first, {}).get("example_count", float("nan"))
        cells = [name, f"{count:.0f}"]
        for task, metric in columns:
            value = table[name].get(task, {}).get(metric)
            cells.append("-" if value is None else f"{value:.4f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    return "\n".join(lines)


def summary(eval_result_dir: str, spec: DatasetSpec) -> dict[str, Any]:
    return {"blessed": is_blessed(eval_result_dir), "metrics": metric_table(eval_result_dir, spec)}
