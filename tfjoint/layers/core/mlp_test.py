import numpy as np
import pytest

from tfjoint.layers.core.mlp import MLP
from tfjoint.testing import run_layer_test


def test_layer_contract():
    run_layer_test(MLP, {"units": [8, 4], "dropout": 0.1, "seed": 1}, np.random.rand(6, 5).astype("float32"),
                   expected_output_shape=(6, 4))


def test_equals_relu_affine_stack():
    layer = MLP([3, 2])
    x = np.random.rand(4, 5).astype("float32")
    out = layer(x)
    h = x
    for dense in layer.dense_layers:
        w, b = (v.numpy() for v in dense.weights)
        h = np.maximum(h @ w + b, 0.0)
    np.testing.assert_allclose(out, h, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"units": []}, {"units": [0]}, {"units": [4], "dropout": 1.0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        MLP(**kwargs)


def test_batch_norm_normalizes_every_pre_activation_over_the_batch():
    layer = MLP([3, 2], batch_norm=True)
    x = np.random.RandomState(0).rand(16, 5).astype("float32")
    out = np.asarray(layer(x, training=True))
    h = x
    for dense, norm in zip(layer.dense_layers, layer.norm_layers):
        assert len(dense.weights) == 1  # no bias: the normalization's beta replaces it
        z = h @ dense.weights[0].numpy()
        z = (z - z.mean(0)) / np.sqrt(z.var(0) + norm.epsilon)
        h = np.maximum(z, 0.0)
    np.testing.assert_allclose(out, h, rtol=1e-4, atol=1e-5)
    assert MLP.from_config(layer.get_config()).batch_norm is True
    assert not MLP([3]).batch_norm
