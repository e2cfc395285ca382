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
    for code in range(n):  # the codes n .. 2^m - 1 reach no expert: dropped
        bits = np.array([(code >> j) & 1 for j in range(m)])
        r[:, :, code] = np.prod(np.where(bits == 1, s, 1 - s), axis=-1)
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
def test_gate_weights_sum_to_one_for_a_power_of_two_and_at_most_one_otherwise(n):
    layer = DSelectKMixtureOfExperts(["a"], num_experts=n, k=2)
    layer(X)
    kernel = layer.selector_logits["a"].kernel
    kernel.assign(np.random.default_rng(2).normal(scale=0.5, size=kernel.shape))
    q = np.asarray(layer.gate_weights(X)["a"])
    assert np.all(q >= 0)
    if n in (2, 8):
        np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)
    else:  # the codes n .. 2^m - 1 take some mass on unsaturated rows
        assert np.all(q.sum(-1) <= 1.0 + 1e-6) and np.any(q.sum(-1) < 0.9)


def test_surplus_codes_are_dropped_not_folded_onto_the_first_experts():
    # Near the initialisation every smooth-step is 1/2: each of the 4 codes of 3 experts gets
    # 1/4 and code 3 reaches no expert, so each expert gets 1/4 (folding gave 1/2, 1/4, 1/4).
    layer = DSelectKMixtureOfExperts(["a"], num_experts=3, k=2)
    layer(X)
    np.testing.assert_allclose(layer.gate_weights(X)["a"], np.full((5, 3), 0.25), atol=2e-2)
    z = layer.selector_logits["a"]
    z.kernel.assign(np.zeros_like(z.kernel.numpy()))
    z.bias.assign(np.zeros_like(z.bias.numpy()))
    np.testing.assert_allclose(layer.gate_weights(X)["a"], np.full((5, 3), 0.25), rtol=1e-6)


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
    _saturate(layer, "b", [7, 2])  # code 7 reaches no expert: its selector's weight is lost.
    g = {name: np.asarray(v) for name, v in layer.gate_weights(X).items()}
    w, b = (v.numpy() for v in layer.selector_weights["a"].weights)
    logits = X @ w + b
    alpha = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected_a = np.zeros((5, 5))
    expected_a[:, 3], expected_a[:, 1] = alpha[:, 0], alpha[:, 1]
    np.testing.assert_allclose(g["a"], expected_a, rtol=1e-6)
    w, b = (v.numpy() for v in layer.selector_weights["b"].weights)
    logits = X @ w + b
    alpha = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected_b = np.zeros((5, 5))
    expected_b[:, 2] = alpha[:, 1]
    np.testing.assert_allclose(g["b"], expected_b, rtol=1e-6)


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
    assert np.all(q.sum(-1) <= 1.0 + 1e-6)


def _losses(layer):
    return sorted(float(v) for v in layer.losses)


def test_entropy_penalty_is_summed_over_the_batch_and_added_in_training_only():
    # A power of two: no unreachable codes, so the entropy is the only added loss.
    layer = DSelectKMixtureOfExperts(["a", "b"], num_experts=4, k=2, expert_units=[8], tower_units=[4],
                                     entropy_regularization=0.3)
    layer(X)
    for name in ("a", "b"):
        z = layer.selector_logits[name]
        z.kernel.assign(np.random.default_rng(3).normal(scale=0.3, size=z.kernel.shape))
    layer(X, training=True)
    expected = []
    for name in ("a", "b"):
        _, r = _manual_gate(layer, name, X)
        expected.append(0.3 * np.sum(-r * np.log(r + 1e-6)))  # the official sum, not a batch mean
    np.testing.assert_allclose(_losses(layer), sorted(expected), rtol=1e-5)
    layer(X, training=False)
    assert layer.losses == []


def test_entropy_penalty_on_a_hand_computed_batch():
    # One selector over 2 experts (m = 1); rows with S(z) = 1/2 and S(z) = 27/32 (z = 0, 1/4).
    layer = DSelectKMixtureOfExperts(["a"], num_experts=2, k=1, gamma=1.0, entropy_regularization=1.0)
    x = np.array([[0.0], [1.0]], "float32")
    layer(x)
    z = layer.selector_logits["a"]
    z.kernel.assign(np.array([[0.25]], "float32"))
    z.bias.assign(np.zeros(1, "float32"))
    layer(x, training=True)
    h = lambda p: -p * np.log(p + 1e-6)  # noqa: E731
    expected = h(0.5) + h(0.5) + h(27 / 32) + h(5 / 32)  # summed over both rows
    np.testing.assert_allclose(_losses(layer), [expected], rtol=1e-5)


def test_unreachable_code_penalty_for_three_experts():
    layer = DSelectKMixtureOfExperts(["a"], num_experts=3, k=2, entropy_regularization=0.0)
    layer(X)
    z = layer.selector_logits["a"]
    z.kernel.assign(np.zeros_like(z.kernel.numpy()))
    z.bias.assign(np.zeros_like(z.bias.numpy()))
    layer(X, training=True)
    # Each selector keeps 3/4 of its mass: 1 / (3/4) per selector, 2 selectors, 5 rows.
    np.testing.assert_allclose(_losses(layer), [5 * 2 * 4 / 3], rtol=1e-6)
    # Saturated on reachable codes (expert 2 = 0b10, expert 1 = 0b01): 1 per selector and row.
    _saturate(layer, "a", [2, 1])
    layer(X, training=True)
    np.testing.assert_allclose(_losses(layer), [5 * 2], rtol=1e-6)
    layer(X, training=False)
    assert layer.losses == []


def test_unreachable_code_penalty_pulls_the_mass_back_to_the_experts():
    import tensorflow as tf

    layer = DSelectKMixtureOfExperts(["a"], num_experts=3, k=1, entropy_regularization=0.0)
    layer(X)
    z = layer.selector_logits["a"]
    z.kernel.assign(np.zeros_like(z.kernel.numpy()))
    z.bias.assign(np.full(z.bias.shape, 0.2, "float32"))  # leaning towards code 3 = 0b11
    mass = lambda: float(np.mean(np.sum(layer.gate_weights(X)["a"], -1)))  # noqa: E731
    before = mass()
    for _ in range(5):
        with tf.GradientTape() as tape:
            layer(X, training=True)
            loss = sum(layer.losses)
        for var, grad in zip(z.trainable_variables, tape.gradient(loss, z.trainable_variables)):
            var.assign_sub(0.01 * grad)
    assert before < 0.75 and mass() > before + 0.05


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
