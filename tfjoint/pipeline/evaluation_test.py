"""The Evaluator config derived from the dataset spec."""

from tfjoint.features import DATASETS, MOVIELENS_100K, SYNTHETIC
from tfjoint.pipeline.evaluation import eval_config


def test_each_task_is_weighted_by_the_label_of_the_rows_it_is_defined_on():
    (model_spec,) = eval_config(MOVIELENS_100K).model_specs
    assert dict(model_spec.example_weight_keys) == {"like": "watch", "rating": "watch"}
    assert dict(model_spec.label_keys) == {"watch": "watch", "like": "like", "rating": "rating"}
    (model_spec,) = eval_config(SYNTHETIC).model_specs
    assert dict(model_spec.example_weight_keys) == {"conversion": "click"}
    for spec in DATASETS.values():
        (model_spec,) = eval_config(spec).model_specs
        assert dict(model_spec.example_weight_keys) == {
            t.name: t.row_weight_key for t in spec.tasks if t.row_weight_key is not None
        }


def test_each_metric_is_computed_once_and_a_child_tasks_count_is_its_weighted_count():
    from tensorflow_model_analysis.metrics import metric_specs

    from tfjoint.pipeline import task_metrics

    config = eval_config(MOVIELENS_100K)
    found = list(metric_specs.keys_and_metrics_from_specs(config, config.metrics_specs))
    keys = [key for key, _, _ in found]
    names = [(key.output_name, key.name) for key in keys]
    assert len(names) == len(set(names))
    # One example count per task: TFMA's WeightedExampleCount is an ExampleCount by another name.
    counters = [key.output_name for key, _, metric in found if isinstance(metric, task_metrics.TaskExampleCount)]
    assert sorted(counters) == ["like", "rating", "watch"]
    counts = {key.output_name: key for key in keys if key.name == "example_count"}
    assert set(counts) == {"watch", "like", "rating"}
    # TFMA weights every metric of an output with an example weight key: the count of `like`
    # and `rating` is the number of rows where watch = 1 (no separate weighted count needed).
    assert counts["like"].example_weighted and counts["rating"].example_weighted
    assert not counts["watch"].example_weighted
