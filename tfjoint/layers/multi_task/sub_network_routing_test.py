import keras
import numpy as np
import pytest

from tfjoint.layers.multi_task.sub_network_routing import SubNetworkRouting, hard_concrete
from tfjoint.testing import run_layer_test

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
KWARGS = {
    "task_names": ["a", "b"],
    "num_sub_networks": 3,
    "sub_network_units": [8],
    "tower_units": [4],
    "seed": 3,
}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _z(log_alpha, beta=2 / 3, gamma=-0.1, zeta=1.1, u=None):
    s = _sigmoid(log_alpha) if u is None else _sigmoid((np.log(u) - np.log(1 - u) + log_alpha) / beta)
    return np.clip(s * (zeta - gamma) + gamma, 0, 1)


@pytest.mark.parametrize("num_layers", [2, 3])
def test_layer_contract(num_layers):
    run_layer_test(
        SubNetworkRouting,
        {**KWARGS, "num_layers": num_layers},
        X,
        expected_output_shape={"a": (5, 4), "b": (5, 4)},
    )


@pytest.mark.parametrize(
    "log_alpha, u, expected",
    [
        (0.0, None, 0.5),  # sigmoid(0) * 1.2 - 0.1
        (np.log(3.0), None, 0.8),  # 0.75 * 1.2 - 0.1
        (0.0, 0.5, 0.5),  # logit(1/2) = 0
        (-100.0, None, 0.0),
        (100.0, None, 1.0),
        (-100.0, 1 - 1e-6, 0.0),
        (100.0, 1e-6, 1.0),
    ],
)
def test_hard_concrete_values(log_alpha, u, expected):
    z = hard_concrete(np.float32(log_alpha), 2 / 3, -0.1, 1.1, None if u is None else np.float32(u))
    np.testing.assert_allclose(float(z), expected, rtol=1e-6, atol=1e-7)


def test_hard_concrete_sample_matches_formula():
    log_alpha = np.linspace(-3, 3, 12).astype("float32")
    u = np.random.default_rng(1).uniform(0.01, 0.99, 12).astype("float32")
    np.testing.assert_allclose(
        hard_concrete(log_alpha, 0.5, -0.2, 1.3, u), _z(log_alpha, 0.5, -0.2, 1.3, u), rtol=1e-5, atol=1e-6
    )


def test_inference_gates_are_deterministic_and_equal_formula():
    layer = SubNetworkRouting(**KWARGS, num_layers=3)
    layer(X)
    for level, (upper, lower) in enumerate([(3, 3), (2, 3)]):
        layer.log_alphas[level].assign(np.random.default_rng(level).normal(scale=2.0, size=(upper, lower)))
    gates = layer.routing_gates()
    assert [tuple(z.shape) for z in gates] == [(3, 3), (2, 3)]
    for z, log_alpha in zip(gates, layer.log_alphas):
        np.testing.assert_allclose(z, _z(log_alpha.numpy()), rtol=1e-6, atol=1e-7)
    first = layer(X, training=False)
    second = layer(X, training=False)
    for task in ("a", "b"):
        np.testing.assert_array_equal(first[task], second[task])


def test_training_gates_use_seeded_uniform_noise():
    layer = SubNetworkRouting(**KWARGS)
    layer(X)
    layer.log_alphas[0].assign(np.random.default_rng(0).normal(scale=1.0, size=(2, 3)))
    reference = keras.random.SeedGenerator(KWARGS["seed"])
    samples = []
    for _ in range(2):
        z = np.asarray(layer._gates(0, training=True))
        u = np.asarray(keras.random.uniform((2, 3), minval=1e-6, maxval=1 - 1e-6, seed=reference))
        np.testing.assert_allclose(z, _z(layer.log_alphas[0].numpy(), u=u), rtol=1e-5, atol=1e-6)
        samples.append(z)
    assert not np.array_equal(samples[0], samples[1])


def _manual_output(layer, x):
    def mlp(sub, h):
        for dense in sub.dense_layers:
            w, b = (v.numpy() for v in dense.weights)
            h = np.maximum(h @ w + b, 0.0)
        return h

    v = np.stack([mlp(layer.sub_networks[f"sub_network_0_{j}"], x) for j in range(3)], axis=1)
    z = _z(layer.log_alphas[0].numpy())
    w = layer.transforms[0].numpy()
    out = {}
    for i, task in enumerate(["a", "b"]):
        u = sum(z[i, j] * v[:, j] @ w[i, j] for j in range(3))
        out[task] = mlp(layer.towers[task], mlp(layer.sub_networks[f"sub_network_1_{i}"], u))
    return out


def test_inference_output_equals_numpy_recomputation():
    layer = SubNetworkRouting(**KWARGS)
    layer(X)
    layer.log_alphas[0].assign(np.array([[2.0, -1.0, 0.3], [-0.5, 1.5, 4.0]]))
    out = layer(X, training=False)
    expected = _manual_output(layer, X)
    for task in ("a", "b"):
        np.testing.assert_allclose(out[task], expected[task], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("closed", [True, False])
def test_closed_connection_contributes_exactly_zero_at_inference(closed):
    layer = SubNetworkRouting(**KWARGS)
    layer(X)
    log_alpha = layer.log_alphas[0].numpy()
    log_alpha[0, 1] = -30.0 if closed else 1.0  # connection lower 1 -> upper 0 (task a)
    layer.log_alphas[0].assign(log_alpha)
    assert float(layer.routing_gates()[0][0, 1]) == (0.0 if closed else pytest.approx(_z(1.0)))
    before = {t: np.asarray(v) for t, v in layer(X, training=False).items()}
    w = layer.transforms[0].numpy()
    w[0, 1] = np.random.default_rng(5).normal(size=w[0, 1].shape)
    layer.transforms[0].assign(w)
    after = layer(X, training=False)
    np.testing.assert_array_equal(after["b"], before["b"])
    if closed:
        np.testing.assert_array_equal(after["a"], before["a"])
    else:
        assert not np.allclose(after["a"], before["a"])


def test_l0_penalty_is_added_in_training_only():
    layer = SubNetworkRouting(**KWARGS, num_layers=3, l0_regularization=0.05, beta=0.5, gamma=-0.2, zeta=1.3)
    layer(X)
    for level, shape in enumerate([(3, 3), (2, 3)]):
        layer.log_alphas[level].assign(np.random.default_rng(level).normal(scale=2.0, size=shape))
    layer(X, training=True)
    assert len(layer.losses) == 1
    shift = 0.5 * np.log(0.2 / 1.3)
    expected = 0.05 * sum(_sigmoid(a.numpy() - shift).sum() for a in layer.log_alphas)
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-5)
    layer(X, training=False)
    assert layer.losses == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_names": []},
        {"task_names": ["a"], "num_sub_networks": 0},
        {"task_names": ["a"], "num_layers": 1},
        {"task_names": ["a"], "sub_network_units": []},
        {"task_names": ["a"], "tower_units": [-1]},
        {"task_names": ["a"], "dropout": 1.0},
        {"task_names": ["a"], "l0_regularization": -1.0},
        {"task_names": ["a"], "beta": 0.0},
        {"task_names": ["a"], "gamma": 0.0},
        {"task_names": ["a"], "zeta": 1.0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        SubNetworkRouting(**kwargs)
