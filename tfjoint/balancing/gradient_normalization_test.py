"""GradNorm: the weight update of Chen et al. on hand-made gradients and losses."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from tfjoint import catalog
from tfjoint.balancing import GradientNormalization
from tfjoint.features import TaskSpec

TASKS = [TaskSpec("a"), TaskSpec("b")]


def _balancer(**kwargs):
    balancer = GradientNormalization(**kwargs)
    balancer.bind(TASKS)
    return balancer


def _step(balancer, gradients, losses):
    combined = balancer.combine_gradients(
        [ops.convert_to_tensor(np.asarray(g, "float32")) for g in gradients],
        {name: ops.convert_to_tensor(np.float32(v)) for name, v in losses.items()},
    )
    return ops.convert_to_numpy(combined), ops.convert_to_numpy(balancer.task_weights)


def test_first_step_records_the_initial_losses_and_keeps_balanced_weights():
    balancer = _balancer(alpha=1.0, learning_rate=0.1)
    # Equal norms and r_k = 1: G_k = target = 1, sign(0) = 0, nothing moves.
    combined, weights = _step(balancer, [[1.0, 0.0], [0.0, 1.0]], {"a": 0.8, "b": 3.0})
    np.testing.assert_allclose(ops.convert_to_numpy(balancer.initial_losses), [0.8, 3.0], rtol=1e-6)
    np.testing.assert_allclose(weights, [1.0, 1.0])
    np.testing.assert_allclose(combined, [1.0, 1.0])


def test_the_task_with_a_smaller_gradient_and_a_larger_relative_loss_gains_weight():
    balancer = _balancer(alpha=1.0, learning_rate=0.1)
    _step(balancer, [[1.0, 0.0], [0.0, 1.0]], {"a": 1.0, "b": 1.0})
    combined, weights = _step(balancer, [[1.0, 0.0], [0.0, 3.0]], {"a": 2.0, "b": 1.0})
    # L~ = [2, 1], r = [4/3, 2/3]; G = [1, 3], G_avg = 2, targets = [8/3, 4/3];
    # dL_grad/dw = sign(G - target) ||grad L|| = [-1, +3]; w = [1.1, 0.7], renormalised to sum 2.
    np.testing.assert_allclose(weights, [2 * 1.1 / 1.8, 2 * 0.7 / 1.8], rtol=1e-6)
    assert weights[0] > 1.0 > weights[1]
    np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-6)
    # This step's update uses the weights from before it (here 1): the plain sum.
    np.testing.assert_allclose(combined, [1.0, 3.0])


def test_alpha_sets_the_strength_of_the_restoring_force():
    balancer = _balancer(alpha=0.0, learning_rate=0.1)
    _step(balancer, [[1.0, 0.0], [0.0, 1.0]], {"a": 1.0, "b": 1.0})
    # alpha = 0: targets = G_avg = 2 whatever the losses; G = [1, 3]: w = [1.1, 0.7] again.
    _, weights = _step(balancer, [[1.0, 0.0], [0.0, 3.0]], {"a": 1.0, "b": 5.0})
    np.testing.assert_allclose(weights, [2 * 1.1 / 1.8, 2 * 0.7 / 1.8], rtol=1e-6)


def test_the_weights_scale_the_loss_terms_and_are_read_back_out_of_them():
    balancer = _balancer(alpha=1.0, learning_rate=0.1)
    balancer.task_weights.assign([1.5, 0.5])
    balancer.initial_losses.assign([1.0, 1.0])
    balancer.initialized.assign(1.0)
    terms = balancer.weight_losses({"a": ops.convert_to_tensor(2.0), "b": ops.convert_to_tensor(4.0)})
    np.testing.assert_allclose([float(terms["a"]), float(terms["b"])], [3.0, 2.0])
    # The model hands over the terms and their gradients w_k grad L_k, here with grad L = [2, 0], [0, 2]:
    # G = [3, 1]; L = [2, 4], r = [2/3, 4/3]; targets = 2 r = [4/3, 8/3]; dL_grad/dw = [+2, -2].
    combined, weights = _step(balancer, [[3.0, 0.0], [0.0, 1.0]], {"a": 3.0, "b": 2.0})
    np.testing.assert_allclose(combined, [3.0, 1.0])
    np.testing.assert_allclose(weights, [2 * 1.3 / 2.0, 2 * 0.7 / 2.0], rtol=1e-6)


def test_weights_stay_positive_and_sum_to_the_number_of_tasks():
    balancer = _balancer(alpha=1.0, learning_rate=10.0)
    _step(balancer, [[1.0, 0.0], [0.0, 1.0]], {"a": 1.0, "b": 1.0})
    _, weights = _step(balancer, [[1.0, 0.0], [0.0, 3.0]], {"a": 2.0, "b": 1.0})
    assert (weights > 0).all()
    np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-6)


def test_norms_are_taken_on_the_last_shared_layer():
    # Entries 0-1: layer "bottom/dense_0" (two tensors); entry 2: layer "bottom/dense_1", the last.
    balancer = _balancer(alpha=1.0, learning_rate=0.1)
    assert balancer.norm_weights == "last_shared_layer"
    balancer.bind_gradient_layout([1, 1, 1], ["bottom/dense_0", "bottom/dense_0", "bottom/dense_1"])
    combined, weights = _step(balancer, [[3.0, 0.0, 1.0], [0.0, 4.0, 2.0]], {"a": 1.0, "b": 1.0})
    # G on W = entry 2: [1, 2], G_avg = 1.5, r = [1, 1]; dL_grad/dw = sign(G - 1.5) G = [-1, +2]:
    # w = [1.1, 0.8], renormalised to sum 2 (the whole vector, G = [sqrt(10), sqrt(20)], would
    # give [1 + 0.1 sqrt(10), 1 - 0.1 sqrt(20)]). The update is the sum over every entry.
    np.testing.assert_allclose(weights, [2 * 1.1 / 1.9, 2 * 0.8 / 1.9], rtol=1e-6)
    np.testing.assert_allclose(combined, [3.0, 4.0, 3.0])


def test_norm_weights_shared_takes_the_whole_shared_vector():
    balancer = _balancer(alpha=1.0, learning_rate=0.1, norm_weights="shared")
    balancer.bind_gradient_layout([1, 1, 1], ["bottom/dense_0", "bottom/dense_0", "bottom/dense_1"])
    _, weights = _step(balancer, [[3.0, 0.0, 1.0], [0.0, 4.0, 2.0]], {"a": 1.0, "b": 1.0})
    w = np.array([1 + 0.1 * np.sqrt(10), 1 - 0.1 * np.sqrt(20)])
    np.testing.assert_allclose(weights, 2 * w / w.sum(), rtol=1e-6)


def test_config_round_trip_and_registration():
    balancer = GradientNormalization(alpha=0.5, learning_rate=0.01, norm_weights="shared", name="balancer")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(balancer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is GradientNormalization
    assert restored.get_config() == balancer.get_config()
    assert (restored.alpha, restored.learning_rate, restored.norm_weights) == (0.5, 0.01, "shared")
    assert keras.saving.get_registered_name(GradientNormalization) == "tfjoint>GradientNormalization"
    assert catalog.get("gradnorm", slot="balancer").cls is GradientNormalization


def test_weights_are_state_not_trained_by_the_model_optimizer():
    balancer = _balancer()
    assert balancer.trainable_weights == []
    assert {w.name for w in balancer.non_trainable_weights} == {
        "task_weights",
        "initial_losses",
        "initialized",
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -1.0}, r"alpha must be >= 0. Received: alpha=-1.0"),
        ({"learning_rate": 0.0}, r"learning_rate must be > 0. Received: learning_rate=0.0"),
        ({"norm_weights": "all"}, r"norm_weights must be 'last_shared_layer' or 'shared'. Received: norm_weights='all'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradientNormalization(**kwargs)


def test_only_the_last_shared_layers_task_gradients_are_read():
    # The update is the plain sum elsewhere: the model takes those from the objective's gradient.
    layers = ["embedding", "bottom/dense_0", "bottom/dense_0", "bottom/dense_1", "bottom/dense_1"]
    assert _balancer().gradients_read(layers) == [3, 4]
    assert _balancer(norm_weights="shared").gradients_read(layers) == [0, 1, 2, 3, 4]
