"""Dynamic Weight Average: equation 7 of Liu et al. over recorded periods."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfjoint import catalog
from tfjoint.balancing import DynamicWeightAverage
from tfjoint.features import TaskSpec

TASKS = [TaskSpec("a"), TaskSpec("b"), TaskSpec("c")]
# Two periods of two steps: period means L(1) = [2, 2, 2], L(2) = [1, 2, 3].
PERIODS = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 1.0, 4.0]]


def _balancer(**kwargs):
    balancer = DynamicWeightAverage(**kwargs)
    balancer.bind(TASKS)
    return balancer


def _weights(balancer, losses, weight_losses=None):
    tensors = {t.name: ops.convert_to_tensor(np.float32(v)) for t, v in zip(TASKS, losses)}
    terms = (weight_losses or balancer.weight_losses)(tensors)
    return np.array([float(terms[t.name]) / v for t, v in zip(TASKS, losses)])


def _expected(temperature):
    rates = np.array([1.0, 2.0, 3.0]) / np.array([2.0, 2.0, 2.0])  # r_k(t-1) = L_k(t-1) / L_k(t-2)
    e = np.exp(rates / temperature)
    return 3 * e / e.sum()


def test_weights_are_one_for_the_first_two_periods_then_the_softmax_of_loss_ratios():
    balancer = _balancer(temperature=2.0, period_steps=2)
    for losses in PERIODS:
        np.testing.assert_allclose(_weights(balancer, losses), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(ops.convert_to_numpy(balancer.previous_losses), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(ops.convert_to_numpy(balancer.last_losses), [1.0, 2.0, 3.0])
    weights = _weights(balancer, [0.5, 0.5, 0.5])
    # 3 softmax([0.5, 1, 1.5] / 2) = [0.7628, 0.9795, 1.2577]
    np.testing.assert_allclose(weights, _expected(2.0), rtol=1e-5)
    np.testing.assert_allclose(weights, [0.76282, 0.97947, 1.25771], atol=1e-4)
    np.testing.assert_allclose(weights.sum(), 3.0, rtol=1e-6)
    # The running period does not change the weights until it is complete.
    np.testing.assert_allclose(_weights(balancer, [9.0, 1.0, 1.0]), _expected(2.0), rtol=1e-5)
    # Period 3 = [4.75, 0.75, 0.75] now replaces period 1: r = [4.75, 0.375, 0.25].
    e = np.exp(np.array([4.75, 0.375, 0.25]) / 2.0)
    np.testing.assert_allclose(_weights(balancer, [1.0, 1.0, 1.0]), 3 * e / e.sum(), rtol=1e-5)


def test_temperature_flattens_the_weights():
    balancer = _balancer(temperature=100.0, period_steps=2)
    for losses in PERIODS:
        _weights(balancer, losses)
    weights = _weights(balancer, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(weights, _expected(100.0), rtol=1e-5)
    assert np.ptp(weights) < np.ptp(_expected(2.0)) / 10


def test_runs_in_a_graph_with_constant_weights():
    balancer = _balancer(period_steps=1)

    @tf.function
    def step(losses):
        with tf.GradientTape() as tape:
            tape.watch(losses)
            terms = balancer.weight_losses({t.name: losses[k] for k, t in enumerate(TASKS)})
            total = terms["a"] + terms["b"] + terms["c"]
        return total, tape.gradient(total, losses)

    for losses in ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]):
        step(tf.constant(losses))
    total, gradient = step(tf.constant([1.0, 1.0, 1.0]))
    # d(sum_k w_k L_k) / dL = w: no gradient flows through the weights.
    np.testing.assert_allclose(gradient.numpy(), _expected(2.0), rtol=1e-5)
    np.testing.assert_allclose(float(total), 3.0, rtol=1e-5)


def test_config_round_trip_and_registration():
    balancer = DynamicWeightAverage(temperature=1.5, period_steps=10, name="balancer")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(balancer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is DynamicWeightAverage
    assert restored.get_config() == balancer.get_config()
    assert (restored.temperature, restored.period_steps) == (1.5, 10)
    assert keras.saving.get_registered_name(DynamicWeightAverage) == "tfjoint>DynamicWeightAverage"
    assert catalog.get("dwa", slot="balancer").cls is DynamicWeightAverage
    assert not DynamicWeightAverage.uses_task_gradients


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, r"temperature must be > 0. Received: temperature=0.0"),
        ({"period_steps": 0}, r"period_steps must be an integer >= 1. Received: period_steps=0"),
        ({"period_steps": 2.5}, r"period_steps must be an integer >= 1. Received: period_steps=2.5"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DynamicWeightAverage(**kwargs)


def test_evaluation_batches_do_not_advance_the_period():
    from tfjoint.balancing.dynamic_weight_average import DynamicWeightAverage
    from tfjoint.features import TaskSpec

    balancer = DynamicWeightAverage(period_steps=2)
    balancer.bind([TaskSpec("a"), TaskSpec("b")])
    for _ in range(3):
        balancer.weight_losses({"a": 1.0, "b": 2.0}, training=False)
    assert float(balancer.period_step) == 0.0 and float(balancer.completed_periods) == 0.0
    balancer.weight_losses({"a": 1.0, "b": 2.0}, training=True)
    assert float(balancer.period_step) == 1.0
