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
