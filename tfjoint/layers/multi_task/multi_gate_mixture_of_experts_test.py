import numpy as np
import pytest
from keras import ops

from tfjoint.layers.multi_task.multi_gate_mixture_of_experts import MultiGateMixtureOfExperts, OneGateMixtureOfExperts
from tfjoint.layers.multi_task.shared_bottom import SharedBottom
from tfjoint.testing import run_layer_test

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")


@pytest.mark.parametrize("cls", [MultiGateMixtureOfExperts, OneGateMixtureOfExperts])
def test_layer_contract(cls):
    run_layer_test(cls, {"task_names": ["a", "b"], "num_experts": 3, "expert_units": [8], "tower_units": [4]}, X,
                   expected_output_shape={"a": (5, 4), "b": (5, 4)})


def test_shared_bottom_contract():
    run_layer_test(SharedBottom, {"task_names": ["a", "b"], "bottom_units": [8], "tower_units": [4]}, X,
                   expected_output_shape={"a": (5, 4), "b": (5, 4)})


def _manual_mmoe(layer, x):
    experts = np.stack([np.asarray(e(x)) for e in layer.experts], axis=1)
    out = {}
    for name in layer.task_names:
        gate_name = "shared" if layer.shared_gate else name
        w, b = (v.numpy() for v in layer.gates[gate_name].weights)
        logits = (x @ w + b) / layer.gate_temperature
        g = np.exp(logits - logits.max(1, keepdims=True))
        g /= g.sum(1, keepdims=True)
        out[name] = np.asarray(layer.towers[name](np.einsum("be,bed->bd", g, experts)))
    return out


@pytest.mark.parametrize("cls", [MultiGateMixtureOfExperts, OneGateMixtureOfExperts])
def test_output_is_tower_of_gated_expert_mixture(cls):
    layer = cls(["a", "b"], num_experts=3, expert_units=[8], tower_units=[4], gate_temperature=2.0)
    out = layer(X)
    expected = _manual_mmoe(layer, X)
    for name in ("a", "b"):
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-5, atol=1e-6)


def test_gates_are_per_task_for_mmoe_and_shared_for_omoe():
    mmoe = MultiGateMixtureOfExperts(["a", "b"], num_experts=3)
    mmoe(X)
    g = mmoe.gate_weights(X)
    np.testing.assert_allclose(ops.sum(g["a"], axis=-1), 1.0, rtol=1e-6)
    assert not np.allclose(g["a"], g["b"])
    omoe = OneGateMixtureOfExperts(["a", "b"], num_experts=3)
    omoe(X)
    g = omoe.gate_weights(X)
    np.testing.assert_array_equal(g["a"], g["b"])
    assert len(omoe.gates) == 1


def test_shared_bottom_feeds_every_tower_the_same_bottom():
    layer = SharedBottom(["a", "b"], bottom_units=[8], tower_units=[4])
    out = layer(X)
    bottom = layer.bottom(X)
    for name in ("a", "b"):
        np.testing.assert_allclose(out[name], layer.towers[name](bottom), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{"task_names": []}, {"task_names": ["a", "a"]}, {"task_names": ["a"], "num_experts": 0},
     {"task_names": ["a"], "gate_temperature": 0.0}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        MultiGateMixtureOfExperts(**kwargs)
