"""The per-task combiner against TFMA's stock metrics on the same examples (issue 17)."""

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from tfjoint.features import DATASETS, MOVIELENS_100K
from tfjoint.pipeline import task_metrics
from tfjoint.pipeline.evaluation import eval_config


def _inputs(n: int, seed: int = 0) -> list:
    """MovieLens-like examples: `like` and `rating` weighted (here by any weight in [0, 2], not only
    the parent label), predictions in (0, 1) incl. some on the histogram's bucket edges; ratings 1-5."""
    rng = np.random.default_rng(seed)
    edges = np.array([1e-4, 0.25, 0.5, 0.75, 0.9999], np.float32)
    inputs = []
    for i in range(n):
        watch = float(rng.integers(0, 2))
        weight = float(rng.choice([0.0, 1.0, rng.uniform(0, 2)]))
        p_watch, p_like = (edges[i % 5], rng.random()) if i % 7 == 0 else rng.uniform(1e-3, 1 - 1e-3, 2)
        inputs.append(metric_types.StandardMetricInputs(
            labels={"watch": np.array([watch]), "like": np.array([float(rng.integers(0, 2))]),
                    "rating": np.array([float(rng.integers(1, 6))])},
            predictions={"watch": np.array([p_watch], np.float32), "like": np.array([p_like], np.float32),
                         "rating": np.array([rng.uniform(0, 6)], np.float32)},
            example_weights={"watch": np.array([1.0]), "like": np.array([weight]), "rating": np.array([weight])}))
    return inputs


def _evaluate(config: tfma.EvalConfig, inputs: list, parts: int = 1) -> dict:
    """Runs the config's combiners as the Evaluator does (each distinct computation once, the
    examples split over ``parts`` accumulators that are merged), then its derived metrics."""
    computations = metric_specs.to_computations(config.metrics_specs, eval_config=config)
    combined = list(dict.fromkeys(c for c in computations if isinstance(c, metric_types.MetricComputation)))
    derived = list(dict.fromkeys(c for c in computations if isinstance(c, metric_types.DerivedMetricComputation)))
    metrics = {}
    for computation in combined:
        combiner = computation.combiner
        combiner.setup()
        accumulators = []
        for chunk in np.array_split(np.arange(len(inputs)), parts):
            accumulator = combiner.create_accumulator()
            for i in chunk:
                accumulator = combiner.add_input(accumulator, inputs[i])
            accumulators.append(accumulator)
        merged = combiner.merge_accumulators(accumulators) if parts > 1 else accumulators[0]
        metrics.update(combiner.extract_output(merged))
    for computation in derived:
        metrics.update(computation.result(metrics))
    return {k: float(v) for k, v in metrics.items() if not k.name.startswith("_")}


def test_every_metric_equals_tfmas_stock_metric_on_the_same_weighted_examples():
    inputs = _inputs(600)
    stock = _evaluate(eval_config(MOVIELENS_100K, stock_metrics=True), inputs)
    ours = _evaluate(eval_config(MOVIELENS_100K), inputs, parts=3)
    assert sorted(map(str, ours)) == sorted(map(str, stock))  # the same keys (names, outputs, weighting)
    assert {(k.output_name, k.name) for k in ours} >= {("like", "auc"), ("rating", "root_mean_squared_error")}
    for key, value in stock.items():
        # RMSE: TFMA wraps Keras' metric, which sums in float32; the rest is float64 in both.
        assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert ours[metric_types.MetricKey("example_count", output_name="like", example_weighted=True)] == pytest.approx(
        sum(float(x["example_weights"]["like"][0]) for x in inputs))


def test_a_single_task_model_with_bare_labels_and_predictions_matches_too():
    spec = DATASETS["douban-sample"]  # one task: TFMA's single-output model, no output names
    (task,) = spec.tasks
    inputs = [metric_types.StandardMetricInputs(labels=np.array([x["labels"]["like"][0]]),
                                                predictions=np.array([x["predictions"]["like"][0]]), example_weights=None)
              for x in _inputs(300, seed=1)]
    stock = _evaluate(eval_config(spec, stock_metrics=True), inputs)
    ours = _evaluate(eval_config(spec), inputs, parts=2)
    assert sorted(map(str, ours)) == sorted(map(str, stock)) and len(ours) == 6
    for key, value in stock.items():
        assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def test_a_slice_without_weight_gives_what_tfma_gives():
    inputs = _inputs(50, seed=2)
    for x in inputs:
        x["example_weights"]["like"] = x["example_weights"]["rating"] = np.array([0.0])
    stock = _evaluate(eval_config(MOVIELENS_100K, stock_metrics=True), inputs)
    ours = _evaluate(eval_config(MOVIELENS_100K), inputs)
    for key, value in stock.items():
        assert ours[key] == pytest.approx(value, nan_ok=True), key


def test_a_tasks_metrics_share_one_combiner_and_keep_their_thresholds():
    config, stock = eval_config(MOVIELENS_100K), eval_config(MOVIELENS_100K, stock_metrics=True)
    computations = metric_specs.to_computations(config.metrics_specs, eval_config=config)
    combined = set(c for c in computations if isinstance(c, metric_types.MetricComputation))
    assert sorted(c.keys[0].output_name for c in combined) == ["like", "rating", "watch"]
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(config.metrics_specs, config)
    stock_thresholds = metric_specs.metric_thresholds_from_metrics_specs(stock.metrics_specs, stock)
    assert {(str(k), repr(v)) for k, v in thresholds.items()} == {(str(k), repr(v)) for k, v in stock_thresholds.items()}
    assert any(k.name == "auc" for k in thresholds) and any(k.name == "root_mean_squared_error" for k in thresholds)


def test_the_auc_comes_from_tfmas_histogram_buckets():
    sums = task_metrics.TaskSums()
    sums.add(np.array([0.0, 1.0, 1.0, 0.0]), np.array([-0.5, 0.00005, 0.5, 2.0]), np.array([1.0, 2.0, 1.0, 0.5]))
    buckets = {b.bucket_id: (b.weighted_labels, b.weighted_predictions, b.weighted_examples) for b in sums.buckets()}
    assert buckets == {0: (0.0, -0.5, 1.0), 1: (2.0, 0.0001, 2.0), 5001: (1.0, 0.5, 1.0), 10001: (0.0, 1.0, 0.5)}


def test_a_renamed_metric_keeps_its_kind_and_round_trips_its_config():
    metric = task_metrics.TaskAUC(name="watch_auc")
    config = tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_keys={"watch": "watch"})], metrics_specs=[
        tfma.MetricsSpec(output_names=["watch"], metrics=[tfma.MetricConfig(
            class_name="TaskAUC", module=task_metrics.__name__, config='{"name": "watch_auc"}')])])
    stock = _evaluate(eval_config(MOVIELENS_100K, stock_metrics=True), _inputs(100))
    (key, value), = _evaluate(config, _inputs(100)).items()
    assert key.name == "watch_auc" and value == stock[metric_types.MetricKey("auc", output_name="watch")]
    assert type(task_metrics.TaskAUC.from_config(metric.get_config())).__name__ == "TaskAUC"
    with pytest.raises(ValueError, match="kind must be 'auc'"):
        task_metrics.TaskAUC(kind="calibration")


def test_a_prediction_of_several_values_per_example_is_refused():
    combiner = task_metrics._TaskSumsCombiner(metric_types.MetricKey("_sums", output_name="like"))
    accumulator = combiner.add_input(combiner.create_accumulator(), metric_types.StandardMetricInputs(
        labels={"like": np.array([1.0])}, predictions={"like": np.array([0.2, 0.8])}, example_weights={}))
    with pytest.raises(ValueError, match="one prediction per example"):
        combiner.extract_output(accumulator)
