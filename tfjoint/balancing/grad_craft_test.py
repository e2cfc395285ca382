"""GradCraft: magnitude adjustment and global direction deconfliction on hand-made gradients."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfjoint import catalog
from tfjoint.balancing import GradCraft, ProjectingConflictingGradients
from tfjoint.features import MOVIELENS_100K, TaskSpec
from tfjoint.joint import build_joint_model
from tfjoint.testing import fake_batch, fake_vocab_sizes

TASKS = [TaskSpec("a"), TaskSpec("b"), TaskSpec("c")]
# Pairwise inner products -9, -4, -1: every task conflicts with both others.
MUTUAL = np.array([[1.0, 1.0, 3.0], [0.0, -3.0, -2.0], [-2.0, 1.0, -1.0]])


def _balancer(num_tasks=3, **kwargs):
    balancer = GradCraft(**kwargs)
    balancer.bind(TASKS[:num_tasks])
    return balancer


def _stack(vectors):
    return ops.convert_to_tensor(np.asarray(vectors, "float32"))


def _deconflicted_by_hand(g, epsilon=0.0):
    """g_i' = g_i + G^T w, (G G^T) w = -G g_i + epsilon ||g_i|| [||g_j||], G the conflicting g_j."""
    out = []
    for i, gi in enumerate(g):
        conflicting = [j for j in range(len(g)) if gi @ g[j] < 0]
        if not conflicting:
            out.append(gi)
            continue
        G = g[conflicting]
        rhs = -G @ gi + epsilon * np.linalg.norm(gi) * np.linalg.norm(G, axis=1)
        out.append(gi + G.T @ np.linalg.solve(G @ G.T, rhs))
    return np.stack(out)


def test_magnitude_step_is_the_formula():
    # ||g|| = [5, 1, 2], max 5; g_k <- tau g_k 5 / ||g_k|| + (1 - tau) g_k with tau = 0.5.
    g = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    adjusted = ops.convert_to_numpy(_balancer(relax_factor=0.5).adjust_magnitudes(_stack(g)))
    np.testing.assert_allclose(adjusted, [[3.0, 4.0], [3.0, 0.0], [0.0, 3.5]], rtol=1e-6)


def test_magnitude_step_with_relax_factor_one_aligns_every_norm_to_the_largest():
    adjusted = _balancer(relax_factor=1.0).adjust_magnitudes(_stack(MUTUAL))
    largest = np.linalg.norm(MUTUAL, axis=1).max()
    np.testing.assert_allclose(
        np.linalg.norm(ops.convert_to_numpy(adjusted), axis=1), [largest] * 3, rtol=1e-6
    )


def test_magnitude_step_uses_moving_averages_of_the_norms():
    balancer = _balancer(num_tasks=2, relax_factor=1.0, beta=0.5)
    balancer.adjust_magnitudes(_stack([[3.0, 4.0], [1.0, 0.0]]))
    # m = 0.5 * 0 + 0.5 [5, 1] = [2.5, 0.5], then 0.5 [2.5, 0.5] + 0.5 [5, 2] = [3.75, 1.25].
    adjusted = balancer.adjust_magnitudes(_stack([[3.0, 4.0], [2.0, 0.0]]))
    np.testing.assert_allclose(ops.convert_to_numpy(balancer.norm_averages), [3.75, 1.25], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(adjusted), [[3.0, 4.0], [6.0, 0.0]], rtol=1e-6)


def test_two_conflicting_tasks_are_projected_like_pcgrad():
    # g1 . g2 = -4: g1' = g1 + 4/8 g2 = [2, 2], g2' = g2 + 4/10 g1 = [-0.8, 2.4].
    g = np.array([[3.0, 1.0], [-2.0, 2.0]])
    crafted = ops.convert_to_numpy(_balancer(num_tasks=2, relax_factor=0.0).deconflict(_stack(g)))
    np.testing.assert_allclose(crafted, [[2.0, 2.0], [-0.8, 2.4]], rtol=1e-5, atol=1e-6)


def test_three_mutually_conflicting_tasks_are_deconflicted_globally():
    crafted = ops.convert_to_numpy(_balancer(relax_factor=0.0).deconflict(_stack(MUTUAL)))
    np.testing.assert_allclose(crafted, _deconflicted_by_hand(MUTUAL), rtol=1e-4, atol=1e-5)
    # Every g_i' is orthogonal to every gradient it conflicted with ...
    inner = crafted @ MUTUAL.T
    off_diagonal = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(inner[off_diagonal], 0.0, atol=1e-4)
    # ... where sequential PCGrad leaves a negative inner product on the same gradients.
    pcgrad = ProjectingConflictingGradients(shuffle=False)
    pcgrad.bind(TASKS)
    sequential = ops.convert_to_numpy(pcgrad.project_conflicting(_stack(MUTUAL)))
    assert (sequential @ MUTUAL.T)[off_diagonal].min() < -1.0


def test_epsilon_leaves_a_positive_margin_with_every_conflicting_gradient():
    crafted = ops.convert_to_numpy(_balancer(relax_factor=0.0, epsilon=0.1).deconflict(_stack(MUTUAL)))
    np.testing.assert_allclose(crafted, _deconflicted_by_hand(MUTUAL, epsilon=0.1), rtol=1e-4, atol=1e-5)
    norms = np.linalg.norm(MUTUAL, axis=1)
    inner = crafted @ MUTUAL.T
    for i in range(3):
        for j in range(3):
            if i != j:
                np.testing.assert_allclose(inner[i, j], 0.1 * norms[i] * norms[j], rtol=1e-4)


def test_linearly_dependent_conflicting_gradients_use_the_pseudo_inverse():
    # g2 and g3 = 2 g2 both conflict with g1 and span one line:
    # g1' = g1 - 0.75 [1, 1] = [0.25, -0.25]; g2' = g2 + 1.5/1.25 g1 = [0.2, -0.4]; g3' = 2 g2'.
    g = np.array([[1.0, 0.5], [-1.0, -1.0], [-2.0, -2.0]])
    crafted = ops.convert_to_numpy(_balancer(relax_factor=0.0).deconflict(_stack(g)))
    np.testing.assert_allclose(crafted, [[0.25, -0.25], [0.2, -0.4], [0.4, -0.8]], rtol=1e-4, atol=1e-5)


def test_non_conflicting_gradients_pass_through_and_the_update_is_their_sum():
    g = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0]])
    balancer = _balancer(relax_factor=0.0, reduction="sum")
    np.testing.assert_allclose(ops.convert_to_numpy(balancer.deconflict(_stack(g))), g, atol=1e-6)
    combined = balancer.combine_gradients([_stack(v) for v in g], {})
    np.testing.assert_allclose(ops.convert_to_numpy(combined), [4.0, 4.0], rtol=1e-6)


def test_full_step_in_a_graph_is_magnitude_then_direction():
    balancer = _balancer(relax_factor=0.5, reduction="sum")
    combined = tf.function(balancer.combine_gradients)([_stack(v) for v in MUTUAL], {})
    norms = np.linalg.norm(MUTUAL, axis=1)
    adjusted = MUTUAL * (0.5 * norms.max() / norms + 0.5)[:, None]
    np.testing.assert_allclose(
        ops.convert_to_numpy(combined), _deconflicted_by_hand(adjusted).sum(0), rtol=1e-4, atol=1e-4
    )


def test_default_reduction_averages_the_tensors_every_task_reaches_and_sums_the_others():
    # Tensors: "shared" (entries 0-1, every task reaches it), "b_head" (entry 2, task b only).
    g = np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 4.0], [0.0, 1.0, 0.0]])
    balancer = _balancer(relax_factor=0.0)
    assert balancer.reduction == "mean"
    balancer.bind_gradient_layout([2, 1], ["bottom/shared", "b_head"])
    combined = ops.convert_to_numpy(balancer.combine_gradients([_stack(v) for v in g], {}))
    # No conflicts: the authors' merge is mean_i g_i on "shared", sum_i g_i on "b_head".
    np.testing.assert_allclose(combined, [4.0 / 3, 4.0 / 3, 4.0], rtol=1e-6)


@keras.saving.register_keras_serializable(package="tfjoint_test")
class _SpyGradCraft(GradCraft):
    def combine_gradients(self, gradients, losses):
        self.seen = int(gradients[0].shape[0])
        return super().combine_gradients(gradients, losses)


def test_the_joint_model_hands_gradcraft_the_full_parameter_vector():
    model = build_joint_model(
        MOVIELENS_100K, fake_vocab_sizes(MOVIELENS_100K), task_architecture="shared_bottom", balancer=_SpyGradCraft()
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.run_eagerly = True
    x, y = fake_batch(MOVIELENS_100K)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    # Every parameter some task reaches (here all of them), towers and heads included, as
    # the authors' solver packs every parameter of the model.
    assert model.balancer.seen == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert {"watch", "task_architecture/tower_like/dense_0"} <= set(model.balancer.gradient_layers)


def test_zero_gradient_is_finite():
    combined = _balancer(num_tasks=2, relax_factor=1.0).combine_gradients(
        [_stack([0.0, 0.0]), _stack([1.0, -1.0])], {}
    )
    np.testing.assert_allclose(ops.convert_to_numpy(combined), [1.0, -1.0])


def test_config_round_trip_and_registration():
    balancer = GradCraft(relax_factor=0.4, beta=0.2, epsilon=0.01, reduction="sum", name="balancer")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(balancer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is GradCraft
    assert restored.get_config() == balancer.get_config()
    assert (restored.relax_factor, restored.beta, restored.epsilon, restored.reduction) == (0.4, 0.2, 0.01, "sum")
    assert keras.saving.get_registered_name(GradCraft) == "tfjoint>GradCraft"
    assert catalog.get("gradcraft", slot="balancer").cls is GradCraft


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta": 2.0}, r"beta must be in \[0, 1\). Received: beta=2.0"),
        ({"relax_factor": -0.5}, r"relax_factor must be in \[0, 1\]. Received: relax_factor=-0.5"),
        ({"epsilon": -1.0}, r"epsilon must be >= 0. Received: epsilon=-1.0"),
        ({"reduction": "max"}, r"reduction must be 'mean' or 'sum'. Received: reduction='max'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradCraft(**kwargs)
