import numpy as np
import pytest

from tfjoint.layers.multi_task.dselect_k_mixture_of_experts import DSelectKMixtureOfExperts, smooth_step
from tfjoint.testing import run_layer_test

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
KWARGS = {"task_names": ["a", "b"], "num_experts": 3, "k": 2, "expert_units": [8], "tower_units": [4]}


def test_layer_contract():
    run_layer_test(DSelectKMixtureOfExperts, KWARGS, X, expected_output_shape={"a": (5, 4), "b": (5, 4)})


@pytest.mark.parametrize(
    "gamma, t, expected",
    [
        (1.0, -1.0, 0.0),
        (1.0, -0.5, 0.0),
        (1.0, -0.25, 5 / 32),
        (1.0, 0.0, 0.5),
        (1.0, 0.25, 27 / 32),
        (1.0, 0.5, 1.0),
        (1.0, 3.0, 1.0),
        (2.0, 0.5, 27 / 32),
        (2.0, -1.5, 0.0),
    ],
)
def test_smooth_step_values(gamma, t, expected):
    # -2/g^3 t^3 + 3/(2g) t + 1/2 at t = g/4 is -1/32 + 3/8 + 1/2 = 27/32; at -g/4, 1 - 27/32.
    assert float(smooth_step(np.float32(t), gamma)) == expected


def _manual_gate(layer, name, x):
    n, k, gamma = layer.num_experts, layer.k, layer.gamma
    m = int(np.ceil(np.log2(n)))
    w, b = (v.numpy() for v in layer.selector_logits[name].weights)
    z = (x @ w + b).reshape(len(x), k, m)
    s = np.where(
        z <= -gamma / 2, 0.0, np.where(z >= gamma / 2, 1.0, -2 / gamma**3 * z**3 + 1.5 / gamma * z + 0.5)
    )
    r = np.zeros((len(x), k, n))
    for code in range(2**m):
        bits = np.array([(code >> j) & 1 for j in range(m)])
        r[:, :, code % n] += np.prod(np.where(bits == 1, s, 1 - s), axis=-1)
    alpha = np.ones((len(x), 1))
    if k > 1:
        w, b = (v.numpy() for v in layer.selector_weights[name].weights)
        logits = x @ w + b
        alpha = np.exp(logits - logits.max(1, keepdims=True))
        alpha /= alpha.sum(1, keepdims=True)
    return np.einsum("bi,bil->bl", alpha, r), r


@pytest.mark.parametrize("n, k", [(3, 2), (4, 2), (5, 3), (5, 1)])
def test_output_is_tower_of_dselect_k_mixture(n, k):
    layer = DSelectKMixtureOfExperts(
        ["a", "b"], num_experts=n, k=k, gamma=0.5, expert_units=[8], tower_units=[4]
    )
    layer(X)
    # Spread the selector logits over both the cubic and the saturated regions.
    for name in ("a", "b"):
        kernel = layer.selector_logits[name].kernel
        kernel.assign(np.random.default_rng(1).normal(scale=0.2, size=kernel.shape))
    out = layer(X)
    experts = np.stack([np.asarray(e(X)) for e in layer.experts], axis=1)
    for name in ("a", "b"):
        q, _ = _manual_gate(layer, name, X)
        np.testing.assert_allclose(layer.gate_weights(X)[name], q, rtol=1e-5, atol=1e-6)
        expected = np.asarray(layer.towers[name](np.einsum("be,bed->bd", q, experts)))
        np.testing.assert_allclose(out[name], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_gate_weights_are_a_distribution(n):
    layer = DSelectKMixtureOfExperts(["a"], num_experts=n, k=2)
    layer(X)
    kernel = layer.selector_logits["a"].kernel
    kernel.assign(np.random.default_rng(2).normal(scale=0.5, size=kernel.shape))
    q = np.asarray(layer.gate_weights(X)["a"])
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)


def _saturate(layer, name, codes, margin=0.1):
    """Sets selector i's logits to +-(gamma/2 + margin) so that it selects binary code codes[i]."""
    m = layer.num_binary
    bias = np.array([[1.0 if (c >> j) & 1 else -1.0 for j in range(m)] for c in codes]).reshape(-1)
    layer.selector_logits[name].kernel.assign(np.zeros_like(layer.selector_logits[name].kernel.numpy()))
    layer.selector_logits[name].bias.assign(bias * (layer.gamma / 2 + margin))


def test_saturated_selectors_pick_exactly_their_experts():
    layer = DSelectKMixtureOfExperts(["a", "b"], num_experts=5, k=2, gamma=1.0)
    layer(X)
    _saturate(layer, "a", [3, 1])
    _saturate(layer, "b", [7, 2])  # code 7 folds onto expert 7 mod 5 = 2: both selectors agree.
    g = {name: np.asarray(v) for name, v in layer.gate_weights(X).items()}
    w, b = (v.numpy() for v in layer.selector_weights["a"].weights)
    logits = X @ w + b
    alpha = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected_a = np.zeros((5, 5))
    expected_a[:, 3], expected_a[:, 1] = alpha[:, 0], alpha[:, 1]
    np.testing.assert_allclose(g["a"], expected_a, rtol=1e-6)
    np.testing.assert_array_equal(g["b"] > 0, np.eye(5, dtype=bool)[[2] * 5])


@pytest.mark.parametrize("n, k", [(4, 1), (5, 2), (7, 3)])
def test_saturated_logits_leave_at_most_k_nonzero_weights(n, k):
    layer = DSelectKMixtureOfExperts(["a"], num_experts=n, k=k, gamma=0.7)
    layer(X)
    rng = np.random.default_rng(n)
    z = layer.selector_logits["a"]
    # Input-dependent logits whose magnitude exceeds gamma/2 on every example.
    z.kernel.assign(rng.normal(scale=1e-3, size=z.kernel.shape))
    z.bias.assign(rng.choice([-1.0, 1.0], size=z.bias.shape) * layer.gamma)
    assert np.all(np.abs(X @ z.kernel.numpy() + z.bias.numpy()) > layer.gamma / 2)
    q = np.asarray(layer.gate_weights(X)["a"])
    assert np.all((q > 0).sum(-1) <= k)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)


def test_entropy_penalty_is_added_in_training_only():
    layer = DSelectKMixtureOfExperts(**KWARGS, entropy_regularization=0.3)
    layer(X, training=True)
    assert len(layer.losses) == 1
    expected = 0.0
    for name in ("a", "b"):
        _, r = _manual_gate(layer, name, X)
        expected += np.mean(np.sum(-r * np.log(r + 1e-6), axis=(1, 2)))
    np.testing.assert_allclose(float(layer.losses[0]), 0.3 * expected, rtol=1e-5)
    # Near the initialisation each selector is uniform over the 4 codes; code 3 folds onto expert 0,
    # so r = (1/2, 1/4, 1/4) and H = (3/2) log 2, for 2 tasks x 2 selectors.
    np.testing.assert_allclose(expected, 4 * 1.5 * np.log(2), rtol=1e-2)
    layer(X, training=False)
    assert layer.losses == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_names": []},
        {"task_names": ["a"], "num_experts": 1},
        {"task_names": ["a"], "k": 0},
        {"task_names": ["a"], "num_experts": 3, "k": 4},
        {"task_names": ["a"], "gamma": 0.0},
        {"task_names": ["a"], "entropy_regularization": -1.0},
        {"task_names": ["a"], "expert_units": []},
        {"task_names": ["a"], "tower_units": [0]},
        {"task_names": ["a"], "dropout": -0.1},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        DSelectKMixtureOfExperts(**kwargs)
