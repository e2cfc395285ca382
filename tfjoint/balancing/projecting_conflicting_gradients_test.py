"""PCGrad: Algorithm 1 of Yu et al. on hand-made gradients."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfjoint import catalog
from tfjoint.balancing import ProjectingConflictingGradients
from tfjoint.features import TaskSpec

TASKS = [TaskSpec("a"), TaskSpec("b"), TaskSpec("c")]


def _balancer(num_tasks, **kwargs):
    balancer = ProjectingConflictingGradients(**kwargs)
    balancer.bind(TASKS[:num_tasks])
    return balancer


def _tensors(vectors):
    return [ops.convert_to_tensor(np.asarray(v, "float32")) for v in vectors]


def test_two_conflicting_gradients_are_projected_onto_each_others_normal_plane():
    g1, g2 = np.array([3.0, 1.0]), np.array([-2.0, 2.0])
    # g1 . g2 = -4, ||g2||^2 = 8, ||g1||^2 = 10:
    # g1' = g1 + 4/8 g2 = [2, 2]; g2' = g2 + 4/10 g1 = [-0.8, 2.4].
    balancer = _balancer(2, seed=3)
    projected = ops.convert_to_numpy(balancer.project_conflicting(ops.stack(_tensors([g1, g2]))))
    np.testing.assert_allclose(projected, [[2.0, 2.0], [-0.8, 2.4]], rtol=1e-6)
    assert projected[0] @ g2 >= -1e-6 and projected[1] @ g1 >= -1e-6
    combined = balancer.combine_gradients(_tensors([g1, g2]), {})
    np.testing.assert_allclose(ops.convert_to_numpy(combined), [1.2, 4.4], rtol=1e-6)


def test_non_conflicting_gradients_pass_through_unchanged():
    vectors = [[1.0, 2.0, 0.0], [3.0, 1.0, 1.0], [0.0, 1.0, 5.0]]
    balancer = _balancer(3, seed=0)
    projected = balancer.project_conflicting(ops.stack(_tensors(vectors)))
    np.testing.assert_array_equal(ops.convert_to_numpy(projected), vectors)
    combined = balancer.combine_gradients(_tensors(vectors), {})
    np.testing.assert_allclose(ops.convert_to_numpy(combined), [4.0, 4.0, 6.0])


def test_fixed_order_projects_sequentially_against_the_original_gradients():
    g = np.array([[1.0, 1.0, 3.0], [0.0, -3.0, -2.0], [-2.0, 1.0, -1.0]])

    def by_hand(i):
        projected = g[i].copy()
        for j in range(3):
            inner = projected @ g[j]
            if j != i and inner < 0:
                projected = projected - inner / (g[j] @ g[j]) * g[j]
        return projected

    expected = np.stack([by_hand(i) for i in range(3)])
    # The first one by hand: g1 . g2 = -9, so g1 <- g1 + 9/13 g2 = [1, -14/13, 21/13];
    # then . g3 = -2 - 14/13 - 21/13 = -61/13 < 0, so g1 <- g1 + 61/78 g3.
    np.testing.assert_allclose(expected[0], [1 - 122 / 78, -14 / 13 + 61 / 78, 21 / 13 - 61 / 78])
    balancer = _balancer(3, shuffle=False)
    projected = ops.convert_to_numpy(balancer.project_conflicting(ops.stack(_tensors(g))))
    np.testing.assert_allclose(projected, expected, rtol=1e-5, atol=1e-6)
    combined = balancer.combine_gradients(_tensors(g), {})
    np.testing.assert_allclose(ops.convert_to_numpy(combined), expected.sum(0), rtol=1e-5, atol=1e-6)


def test_random_order_is_one_of_the_sequential_orders_and_runs_in_a_graph():
    g = np.array([[1.0, 1.0, 3.0], [0.0, -3.0, -2.0], [-2.0, 1.0, -1.0]])

    def by_hand(i, order):
        projected = g[i].copy()
        for j in order:
            inner = projected @ g[j]
            if j != i and inner < 0:
                projected = projected - inner / (g[j] @ g[j]) * g[j]
        return projected

    candidates = [np.stack([by_hand(i, order) for i in range(3)]) for order in ([0, 1, 2], [2, 1, 0])]
    # The two orders differ for task 0, so the test sees which one was drawn.
    assert not np.allclose(candidates[0][0], candidates[1][0])
    balancer = _balancer(3, seed=7)
    project = tf.function(balancer.project_conflicting)
    drawn = set()
    for _ in range(20):
        projected = ops.convert_to_numpy(project(ops.stack(_tensors(g))))
        matches = [k for k, c in enumerate(candidates) if np.allclose(projected[0], c[0], atol=1e-5)]
        assert len(matches) == 1, projected
        drawn.add(matches[0])
    assert drawn == {0, 1}


def test_zero_gradient_is_finite():
    combined = _balancer(2).combine_gradients(_tensors([[0.0, 0.0], [1.0, -1.0]]), {})
    np.testing.assert_allclose(ops.convert_to_numpy(combined), [1.0, -1.0])


def test_config_round_trip_and_registration():
    balancer = ProjectingConflictingGradients(shuffle=False, seed=5, target_task="b", name="balancer")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(balancer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is ProjectingConflictingGradients
    assert restored.get_config() == balancer.get_config()
    assert (restored.shuffle, restored.seed, restored.target_task) == (False, 5, "b")
    assert (
        keras.saving.get_registered_name(ProjectingConflictingGradients)
        == "tfjoint>ProjectingConflictingGradients"
    )
    assert catalog.get("pcgrad", slot="balancer").cls is ProjectingConflictingGradients
    assert ProjectingConflictingGradients.uses_task_gradients


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="seed must be an integer or None. Received: seed=1.5"):
        ProjectingConflictingGradients(seed=1.5)
