import keras
import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_behavior.behavior_aware_attention import BehaviorAwareAttention
from tfjoint.layers.multi_behavior.behavior_pooling_test import make_inputs
from tfjoint.testing import check_joint_model, fake_vocab_sizes, run_layer_test


def inputs(seed=0):
    x = make_inputs(seed=seed)
    x["target"] = np.random.default_rng(seed + 1).normal(size=(3, 4)).astype("float32")
    return x


def reference(layer, x):
    """DIN's activation unit and per-behavior pools, in numpy from the layer's weights."""
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    seq, t = x["sequence"], np.broadcast_to(x["target"][:, None, :], x["sequence"].shape)
    h = np.concatenate([t, seq, t - seq, t * seq], axis=-1)
    for i, dense in enumerate(layer.attention_layers):
        w, c = (v.numpy() for v in dense.weights)
        h = h @ w + c
        h = sigmoid(h) if i < len(layer.attention_layers) - 1 else h
    a = h[..., 0]
    if layer.normalization == "softmax":
        a = np.where(x["sequence_mask"] > 0, a / 2.0, -1e9)  # sqrt(d) = 2
        a = np.exp(a - a.max(-1, keepdims=True))
        a = a / a.sum(-1, keepdims=True)
    a = a * x["sequence_mask"]
    pools = np.zeros((3, 3, 4))
    for row in range(3):
        for j, b in enumerate(x["behaviors"][row]):
            if b:
                pools[row, b - 1] += a[row, j] * seq[row, j]
    w, c = (v.numpy() for v in layer.fusion.weights)
    return a, pools, np.maximum(pools.reshape(3, -1) @ w + c, 0)


def test_layer_contract():
    run_layer_test(BehaviorAwareAttention, {"num_behaviors": 3, "output_dim": 5, "attention_units": [6]}, inputs(),
                   expected_output_shape=(3, 5))


@pytest.mark.parametrize("normalization", ["none", "softmax"])
def test_matches_the_activation_unit_and_per_behavior_pools(normalization):
    x = inputs()
    layer = BehaviorAwareAttention(num_behaviors=3, output_dim=5, attention_units=[6, 3], normalization=normalization)
    out = np.asarray(layer(x))
    a, pools, expected = reference(layer, x)
    np.testing.assert_allclose(np.asarray(layer.attention_weights(x)), a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.pools(x)), pools, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    if normalization == "softmax":
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)


def test_the_weights_depend_on_the_target_and_the_pools_on_the_behavior_type():
    x = inputs()
    layer = BehaviorAwareAttention(num_behaviors=3, attention_units=[6])
    layer(x)
    a = np.asarray(layer.attention_weights(x))
    y = dict(x, target=x["target"][::-1].copy())
    assert not np.allclose(np.asarray(layer.attention_weights(y)), a)
    # the same items and weights under other behavior ids land in other pools
    z = dict(x, behaviors=np.where(x["behaviors"] == 1, 2, np.where(x["behaviors"] == 2, 1, x["behaviors"])))
    np.testing.assert_allclose(np.asarray(layer.pools(z))[:, [1, 0, 2]], np.asarray(layer.pools(x)), atol=1e-6)
    assert not np.allclose(np.asarray(layer.pools(z)), np.asarray(layer.pools(x)))


def test_padding_is_ignored():
    x = inputs()
    layer = BehaviorAwareAttention(num_behaviors=3, normalization="softmax")
    before = np.asarray(layer(x))
    x["sequence"][:, -1] += 100.0  # the padded position
    np.testing.assert_allclose(layer(x), before, rtol=1e-6)


def test_in_the_joint_model(tmp_path):
    run = check_joint_model(MOVIELENS_100K, fake_vocab_sizes(MOVIELENS_100K), tmp_path, sequence_encoder="behavior_attention",
                            component_kwargs={"sequence_encoder": {"attention_units": [8]}})
    assert isinstance(run.model.sequence_encoder, BehaviorAwareAttention)
    assert keras.ops.all(keras.ops.isfinite(run.history["loss"][-1]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        BehaviorAwareAttention(num_behaviors=3, normalization="sum")
    with pytest.raises(ValueError, match="attention_units"):
        BehaviorAwareAttention(num_behaviors=3, attention_units=[0])
