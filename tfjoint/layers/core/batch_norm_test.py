import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.layers.core.batch_norm import BatchNormalization
from tfjoint.layers.core.mlp import MLP
from tfjoint.testing import run_layer_test


def _pair(units, momentum=0.9, seed=0, rank=2, **kwargs):
    """Keras's layer and tfjoint's, built alike with the same non-trivial weights."""
    rng = np.random.RandomState(seed)
    gamma, beta = rng.randn(units).astype("float32"), rng.randn(units).astype("float32")
    mean, var = rng.randn(units).astype("float32"), rng.rand(units).astype("float32") + 0.5
    layers = [cls(momentum=momentum, **kwargs) for cls in (keras.layers.BatchNormalization, BatchNormalization)]
    for layer in layers:
        layer.build((None,) * (rank - 1) + (units,))
        for w in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance):
            w.assign({"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": var}[w.name])
    return layers


def _train_call(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * tf.cos(y))  # a gradient that is not constant in y
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [np.asarray(t) for t in (y, *grads, layer.moving_mean, layer.moving_variance)]


def test_layer_contract():
    run_layer_test(BatchNormalization, {}, np.random.RandomState(0).rand(6, 5).astype("float32"),
                   expected_output_shape=(6, 5))


@pytest.mark.parametrize("rows", [2, 64, 2048])
def test_training_call_equals_keras_layer_outputs_gradients_and_moving_statistics(rows):
    x = (np.random.RandomState(rows).randn(rows, 7) * 3 + 1).astype("float32")
    keras_layer, fused = _pair(7)
    expected, got = _train_call(keras_layer, x), _train_call(fused, x)
    names = ("output", "d/dx", "d/dgamma", "d/dbeta", "moving_mean", "moving_variance")
    for name, a, b in zip(names, expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(a).max()), err_msg=name)


def test_the_equations_of_a_training_step():
    x = (np.random.RandomState(1).randn(32, 4) * 2 - 1).astype("float32")
    _, layer = _pair(4, momentum=0.8)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    mean0, var0 = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    y = np.asarray(layer(x, training=True))
    mu, var = x.mean(0), x.var(0)  # biased, as Keras keeps it
    np.testing.assert_allclose(y, gamma * (x - mu) / np.sqrt(var + layer.epsilon) + beta, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.8 * mean0 + 0.2 * mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.8 * var0 + 0.2 * var, rtol=1e-5, atol=1e-6)
    # Inference reads the moving statistics, not the batch's.
    mm, mv = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    np.testing.assert_allclose(np.asarray(layer(x, training=False)),
                               gamma * (x - mm) / np.sqrt(mv + layer.epsilon) + beta, rtol=1e-4, atol=1e-4)


def test_rank_three_normalizes_over_every_axis_but_the_last():
    x = np.random.RandomState(2).randn(8, 3, 5).astype("float32")
    keras_layer, fused = _pair(5, rank=3)
    for a, b in zip(_train_call(keras_layer, x), _train_call(fused, x)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_mixed_bfloat16_computes_in_float32_and_returns_bfloat16():
    x = np.random.RandomState(3).randn(64, 6).astype("float32")
    keras_layer, fused = _pair(6, dtype="mixed_bfloat16")
    a, b = keras_layer(x, training=True), fused(x, training=True)
    assert b.dtype == a.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(b, "float32"), np.asarray(a, "float32"), atol=3e-2)
    np.testing.assert_allclose(fused.moving_variance.numpy(), keras_layer.moving_variance.numpy(), rtol=1e-5)


def test_mlp_uses_it_and_a_trained_model_reloads(tmp_path):
    inputs = keras.Input((5,))
    model = keras.Model(inputs, MLP([4, 3], batch_norm=True)(inputs))
    assert all(type(n) is BatchNormalization for n in model.layers[1].norm_layers)
    x = np.random.RandomState(4).rand(32, 5).astype("float32")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, np.zeros((32, 3), "float32"), epochs=2, batch_size=16, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
