"""One TFMA combiner per task: every metric of a task from the same per-example sums (issue 17).

TFMA's stock metrics each own a combiner that converts every example with
``metric_util.to_label_prediction_example_weight`` before its few additions, so the Evaluator
spent ~40 µs per example and metric on that conversion (``tools/combiner_costs.py``). Here each
task (output) has ONE combiner, :class:`_TaskSumsCombiner`, that reads the label, prediction and
example weight of an example once, buffers them, and adds them up with numpy in batches:

* count ``n`` and weighted count ``W = Σ w`` (``example_count``: ``W`` if the task is weighted),
* ``Σ w·y`` and ``Σ w·p``: mean label, mean prediction and calibration ``Σ w·p / Σ w·y``,
* ``Σ w·(−y ln p − (1 − y) ln(1 − p))``: binary cross-entropy (log loss) ``/ W``,
* ``Σ w·(y − p)²`` and ``Σ w·|y − p|``: RMSE ``= sqrt(Σ w·(y − p)² / W)`` and MAE ``/ W``,
* the calibration histogram of TFMA's AUC (10,000 equal buckets over [0, 1] plus two edge
  buckets, the same bucket index as ``calibration_histogram``), from which TFMA's own
  confusion-matrix and AUC code (Keras' interpolated ROC AUC) computes ``auc``.

Each metric class below (``TaskAUC``, ``TaskBinaryCrossEntropy``, ...) is a ``tfma.metrics.Metric``
with the stock metric's name, so it emits the stock metric's key and carries its thresholds;
all of them ask for the same sums computation, which TFMA runs once per task (it de-duplicates
computations by combiner and keys). Only a label and prediction of one value per example are
supported (binary and regression tasks), which is what tfjoint's models serve.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import calibration_histogram, metric_types

SUMS_NAME = "_tfjoint_task_sums"
NUM_BUCKETS = calibration_histogram.DEFAULT_NUM_BUCKETS  # the histogram behind TFMA's AUC
_BUFFER = 2048  # examples buffered before one numpy update of the sums

_SUM_FIELDS = ("weighted_labels", "weighted_predictions", "log_loss", "squared_error", "absolute_error")


@dataclasses.dataclass
class TaskSums:
    """The sums one task's metrics are computed from (weights ``w``, labels ``y``, predictions ``p``)."""

    count: float = 0.0
    weighted_count: float = 0.0
    weighted_labels: float = 0.0
    weighted_predictions: float = 0.0
    log_loss: float = 0.0
    squared_error: float = 0.0
    absolute_error: float = 0.0
    # Per histogram bucket: Σ w·y, Σ w·p, Σ w (TFMA's calibration histogram Bucket fields).
    histogram: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, NUM_BUCKETS + 2)))
    pending: list = dataclasses.field(default_factory=list)

    def add(self, labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> None:
        """Adds a batch (1-D float64 arrays of the same length)."""
        self.count += labels.size
        self.weighted_count += weights.sum()
        weighted_labels, weighted_predictions = weights * labels, weights * predictions
        self.weighted_labels += weighted_labels.sum()
        self.weighted_predictions += weighted_predictions.sum()
        error = labels - predictions
        self.squared_error += (weights * error * error).sum()
        self.absolute_error += (weights * np.abs(error)).sum()
        with np.errstate(divide="ignore", invalid="ignore"):  # a regression task's p is no probability
            self.log_loss += (weights * (-labels * np.log(predictions) - (1 - labels) * np.log(1 - predictions))).sum()
        # calibration_histogram._bucket_index: int((p - 0) / 1 * NUM_BUCKETS + 1), clipped to the edges.
        index = predictions * NUM_BUCKETS + 1
        index = np.where(index < 0, 0, np.where(index >= NUM_BUCKETS + 1, NUM_BUCKETS + 1, index)).astype(np.int64)
        for row, values in enumerate((weighted_labels, weighted_predictions, weights)):
            self.histogram[row] += np.bincount(index, weights=values, minlength=NUM_BUCKETS + 2)

    def flush(self, weighted: bool) -> "TaskSums":
        if self.pending:
            labels, predictions, weights = zip(*self.pending)
            self.pending = []
            labels = _column(labels, "label")
            predictions = _column(predictions, "prediction")
            if len(labels) != len(predictions):
                raise ValueError(
                    f"task metrics: labels and predictions must have one value per example, received "
                    f"{len(labels)} labels and {len(predictions)} predictions for {len(weights)} examples")
            weights = _column(weights, "example weight") if weighted else np.ones_like(labels)
            self.add(labels, predictions, np.broadcast_to(weights, labels.shape))
        return self

    def merge(self, other: "TaskSums") -> None:
        self.count += other.count
        self.weighted_count += other.weighted_count
        for name in _SUM_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.histogram += other.histogram

    def buckets(self) -> list[calibration_histogram.Bucket]:
        """The histogram as TFMA's ``calibration_histogram`` emits it (non-empty buckets, in order)."""
        (used,) = np.nonzero(self.histogram.any(axis=0))
        labels, predictions, weights = self.histogram
        return [calibration_histogram.Bucket(int(i), float(labels[i]), float(predictions[i]), float(weights[i]))
                for i in used]


def _column(values: tuple, what: str) -> np.ndarray:
    column = np.asarray(values, dtype=np.float64)
    if column.ndim > 1 and column.shape[1:] != (1,) * (column.ndim - 1):
        raise ValueError(f"task metrics: one {what} per example expected, received shape {column.shape[1:]}")
    return column.reshape(-1)


def _lookup(values: Any, model_name: str, output_name: str) -> Any:
    if isinstance(values, dict) and model_name:
        values = values.get(model_name, values)
    if isinstance(values, dict) and output_name:
        values = values.get(output_name)
    return values


class _TaskSumsCombiner(beam.CombineFn):
    """Accumulates :class:`TaskSums` for one output: each example's values read once, added in batches."""

    def __init__(self, key: metric_types.MetricKey):
        self._key = key
        self._weighted = bool(key.example_weighted)

    def create_accumulator(self) -> TaskSums:
        return TaskSums()

    def add_input(self, accumulator: TaskSums, element: metric_types.StandardMetricInputs) -> TaskSums:
        model_name, output_name = self._key.model_name, self._key.output_name
        extracts = getattr(element, "extracts", element)  # StandardMetricInputs' dict: no Mapping.get per key
        label = _lookup(extracts.get("labels"), model_name, output_name)
        prediction = _lookup(extracts.get("predictions"), model_name, output_name)
        if label is None or prediction is None:
            raise ValueError(f"task metrics: output {output_name!r} has no label or prediction in {sorted(extracts)}")
        weight = _lookup(extracts.get("example_weights"), model_name, output_name) if self._weighted else None
        accumulator.pending.append((label, prediction, 1.0 if weight is None else weight))
        if len(accumulator.pending) >= _BUFFER:
            accumulator.flush(self._weighted)
        return accumulator

    def merge_accumulators(self, accumulators) -> TaskSums:
        result = TaskSums()
        for accumulator in accumulators:
            result.merge(accumulator.flush(self._weighted))
        return result

    def compact(self, accumulator: TaskSums) -> TaskSums:
        return accumulator.flush(self._weighted)

    def extract_output(self, accumulator: TaskSums) -> dict[metric_types.MetricKey, TaskSums]:
        return {self._key: accumulator.flush(self._weighted)}


def _ratio(numerator: float, denominator: float) -> float:
    """TFMA's calibration metrics: NaN when the denominator is (close to) zero."""
    return float("nan") if np.isclose(denominator, 0.0) else numerator / denominator


def _mean(total: float, weights: float) -> float:
    """TFMA's mean regression errors and log loss: NaN over no weight."""
    return total / weights if weights != 0.0 else float("nan")


# metric name -> value from one task's sums and whether the task is weighted (AUC: below)
_VALUES: dict[str, Callable[[TaskSums, bool], float]] = {
    "example_count": lambda s, weighted: s.weighted_count if weighted else s.count,
    "mean_label": lambda s, _: _ratio(s.weighted_labels, s.weighted_count),
    "mean_prediction": lambda s, _: _ratio(s.weighted_predictions, s.weighted_count),
    "calibration": lambda s, _: _ratio(s.weighted_predictions, s.weighted_labels),
    "binary_crossentropy": lambda s, _: _mean(s.log_loss, s.weighted_count),
    "mean_absolute_error": lambda s, _: _mean(s.absolute_error, s.weighted_count),
    # TFMA wraps Keras' RMSE, whose mean over no weight is 0 (divide_no_nan), not NaN.
    "root_mean_squared_error": lambda s, _: math.sqrt(s.squared_error / s.weighted_count) if s.weighted_count else 0.0,
}


def _auc_from_histogram(key: metric_types.MetricKey, eval_config) -> Callable[[TaskSums], float]:
    """TFMA's own AUC (confusion matrices at its 10,000 thresholds, interpolated) from our histogram."""
    stock = tfma.metrics.AUC(name=key.name).computations(
        eval_config=eval_config, model_names=[key.model_name], output_names=[key.output_name],
        example_weighted=bool(key.example_weighted))
    (histogram,) = [c for c in stock if isinstance(c, metric_types.MetricComputation)]
    (histogram_key,) = histogram.keys
    derived = [c for c in stock if isinstance(c, metric_types.DerivedMetricComputation)]

    def value(sums: TaskSums) -> float:
        metrics = {histogram_key: sums.buckets()}
        for computation in derived:
            metrics.update(computation.result(metrics))
        return metrics[key]

    return value


def _task_computations(name: str, kind: str, eval_config=None, model_names=None, output_names=None, sub_keys=None,
                       example_weighted: bool = False) -> metric_types.MetricComputations:
    if sub_keys and any(sub_key is not None for sub_key in sub_keys):
        raise ValueError(f"task metrics: sub_keys are not supported (one value per example), received {sub_keys}")
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            sums_key = metric_types.MetricKey(SUMS_NAME, model_name=model_name, output_name=output_name,
                                              example_weighted=example_weighted)
            key = metric_types.MetricKey(name, model_name=model_name, output_name=output_name,
                                         example_weighted=example_weighted)
            if kind == "auc":
                of_sums = _auc_from_histogram(key, eval_config)
            else:
                of_sums = (lambda fn: lambda sums: fn(sums, example_weighted))(_VALUES[kind])

            def result(metrics, key=key, sums_key=sums_key, of_sums=of_sums):
                return {key: of_sums(metrics[sums_key])}

            computations += [
                metric_types.MetricComputation(keys=[sums_key], preprocessors=None,
                                               combiner=_TaskSumsCombiner(sums_key)),
                metric_types.DerivedMetricComputation(keys=[key], result=result),
            ]
    return computations


def _task_metric(stock: str, metric_name: str) -> type:
    """``Task<stock>``: the metric ``metric_name`` of TFMA's class ``stock``, from the task's sums."""

    def __init__(self, name: str = metric_name, kind: str = metric_name):
        if kind != metric_name:  # ``kind`` is in get_config() only so that from_config() round-trips
            raise ValueError(f"kind must be {metric_name!r} for Task{stock}. Received: kind={kind!r}")
        tfma.metrics.Metric.__init__(self, _task_computations, name=name, kind=kind)

    doc = f"TFMA's ``{stock}`` (key ``{metric_name}``) from the task's shared sums (:class:`TaskSums`)."
    return type(f"Task{stock}", (tfma.metrics.Metric,),
                {"__init__": __init__, "__doc__": doc, "__module__": __name__, "stock": stock})


TaskExampleCount = _task_metric("ExampleCount", "example_count")
TaskAUC = _task_metric("AUC", "auc")
TaskBinaryCrossEntropy = _task_metric("BinaryCrossEntropy", "binary_crossentropy")
TaskCalibration = _task_metric("Calibration", "calibration")
TaskMeanPrediction = _task_metric("MeanPrediction", "mean_prediction")
TaskMeanLabel = _task_metric("MeanLabel", "mean_label")
TaskRootMeanSquaredError = _task_metric("RootMeanSquaredError", "root_mean_squared_error")
TaskMeanAbsoluteError = _task_metric("MeanAbsoluteError", "mean_absolute_error")
# TFMA's class name -> the class here that emits the same key from the shared sums.
FOR_STOCK = {cls.stock: cls for cls in (
    TaskExampleCount, TaskAUC, TaskBinaryCrossEntropy, TaskCalibration, TaskMeanPrediction, TaskMeanLabel,
    TaskRootMeanSquaredError, TaskMeanAbsoluteError)}
