"""The spec types: which rows a task is defined on, on numpy arrays and on tensors."""

import numpy as np
import pytest
import tensorflow as tf

from tfjoint.features import DATASETS, MOVIELENS_100K, DatasetSpec, TaskSpec
from tfjoint.features.specs import SCENARIO_KEY

ROOT = TaskSpec("click")
CHILD = TaskSpec("purchase", parent="click")
GRANDCHILD = TaskSpec("repurchase", parent="purchase")

# Consistent labels along the chain click -> purchase -> repurchase.
CLICK = [1.0, 1.0, 1.0, 0.0, 0.0]
PURCHASE = [1.0, 1.0, 0.0, 0.0, 0.0]
REPURCHASE = [1.0, 0.0, 0.0, 0.0, 0.0]


def _labels(shape, to):
    return {
        name: to(np.reshape(np.asarray(values, "float32"), shape))
        for name, values in (("click", CLICK), ("purchase", PURCHASE), ("repurchase", REPURCHASE))
    }


INPUTS = [
    pytest.param((-1,), np.asarray, id="numpy-(n,)"),
    pytest.param((-1, 1), np.asarray, id="numpy-(n,1)"),
    pytest.param((-1,), tf.constant, id="tensor-(n,)"),
    pytest.param((-1, 1), tf.constant, id="tensor-(n,1)"),
]


def _numpy(value):
    return value if isinstance(value, np.ndarray) else np.asarray(value)


@pytest.mark.parametrize("shape, to", INPUTS)
def test_a_root_task_is_defined_on_every_row(shape, to):
    rows = ROOT.defined_rows(_labels(shape, to))
    assert _numpy(rows).dtype == np.float32
    np.testing.assert_array_equal(_numpy(rows), np.ones(5, "float32"))


@pytest.mark.parametrize("shape, to", INPUTS)
def test_a_child_task_is_defined_where_its_parent_label_is_1(shape, to):
    rows = CHILD.defined_rows(_labels(shape, to))
    assert _numpy(rows).shape == (5,) and _numpy(rows).dtype == np.float32
    np.testing.assert_array_equal(_numpy(rows), CLICK)


@pytest.mark.parametrize("shape, to", INPUTS)
def test_a_grandchild_is_defined_where_its_direct_parent_label_is_1(shape, to):
    rows = GRANDCHILD.defined_rows(_labels(shape, to))
    np.testing.assert_array_equal(_numpy(rows), PURCHASE)
    # Not where the root is 1: rows 2 are clicked but not purchased.
    assert _numpy(rows)[2] == 0.0 and CLICK[2] == 1.0


def test_the_output_follows_the_input_kind():
    assert isinstance(CHILD.defined_rows(_labels((-1, 1), np.asarray)), np.ndarray)
    assert isinstance(ROOT.defined_rows(_labels((-1, 1), np.asarray)), np.ndarray)
    assert tf.is_tensor(CHILD.defined_rows(_labels((-1, 1), tf.constant)))
    assert tf.is_tensor(ROOT.defined_rows(_labels((-1, 1), tf.constant)))


def test_a_child_only_needs_its_parent_label_and_a_root_its_own():
    np.testing.assert_array_equal(CHILD.defined_rows({"click": np.asarray(CLICK)}), CLICK)
    np.testing.assert_array_equal(ROOT.defined_rows({"click": [[0.0], [1.0]]}), [1.0, 1.0])
    with pytest.raises(KeyError):
        CHILD.defined_rows({"purchase": np.asarray(PURCHASE)})


def test_defined_rows_works_in_a_traced_function():
    @tf.function(input_signature=[tf.TensorSpec((None, 1), tf.float32)])
    def weights(click):
        return CHILD.defined_rows({"click": click}), ROOT.defined_rows({"click": click})

    child, root = weights(tf.constant(np.reshape(CLICK, (-1, 1)), tf.float32))
    np.testing.assert_array_equal(child.numpy(), CLICK)
    np.testing.assert_array_equal(root.numpy(), np.ones(5))


def test_the_row_weight_key_is_the_parent_label():
    assert ROOT.row_weight_key is None
    assert CHILD.row_weight_key == "click"
    assert GRANDCHILD.row_weight_key == "purchase"
    assert {t.name: t.row_weight_key for t in MOVIELENS_100K.tasks} == {
        "watch": None, "like": "watch", "rating": "watch"
    }


def test_a_task_spec_round_trips_through_json():
    assert TaskSpec.from_json(CHILD.to_json()) == CHILD
    assert set(CHILD.to_json()) == {"name", "type", "loss", "weight", "parent"}


def test_every_builtin_parent_is_a_binary_task_before_its_child():
    for spec in DATASETS.values():
        names = [t.name for t in spec.tasks]
        for task in spec.tasks:
            if task.parent is not None:
                assert spec.task(task.parent).type == "binary"
                assert names.index(task.parent) < names.index(task.name)


def test_feature_keys_have_the_scenario_and_the_sequence():
    keys = MOVIELENS_100K.feature_keys
    assert SCENARIO_KEY in keys and "seq_items" in keys and "title_tokens" in keys
    spec = DatasetSpec(name="tiny", categorical=("a",), dense=(), tasks=(ROOT,))
    assert spec.feature_keys == ("a", SCENARIO_KEY) and spec.num_scenarios == 1
