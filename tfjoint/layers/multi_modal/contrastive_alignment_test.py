import numpy as np
import pytest
import tensorflow as tf

from tfjoint.layers.multi_modal.contrastive_alignment import ContrastiveAlignment, bootstrap_loss, info_nce
from tfjoint.testing import run_layer_test

RNG = np.random.default_rng(0)
A = RNG.normal(size=(5, 4)).astype(np.float32)
B = RNG.normal(size=(5, 4)).astype(np.float32)


def numpy_cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def numpy_info_nce(a, b, tau):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    logits = a @ b.T / tau
    m = logits.max(-1, keepdims=True)
    logsumexp = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
    return logsumexp - np.diag(logits)


def test_bootstrap_loss_is_one_minus_cosine_and_no_gradient_reaches_the_target():
    np.testing.assert_allclose(bootstrap_loss(A, B), 1.0 - numpy_cos(A, B), rtol=1e-5, atol=1e-6)
    a, b = tf.Variable(A), tf.Variable(B)
    with tf.GradientTape(persistent=True) as tape:
        loss = tf.reduce_sum(bootstrap_loss(a, b))
    grad_b = tape.gradient(loss, b)
    assert grad_b is None or not np.any(grad_b.numpy())
    assert np.abs(tape.gradient(loss, a).numpy()).max() > 1e-3


def test_layer_bootstrap_is_predictor_then_stop_gradient_dropout_target():
    layer = ContrastiveAlignment(4, dropout=0.5, seed=0)
    q = lambda x: x @ layer.predictor.kernel.numpy() + layer.predictor.bias.numpy()  # noqa: E731
    out = layer({"online": A, "target": B}, training=False)  # no dropout at inference
    np.testing.assert_allclose(out, 1.0 - numpy_cos(q(A), B), rtol=1e-5, atol=1e-6)
    # training: the target is a dropout of b (entries zeroed or scaled by 1 / (1 - p))
    target = np.asarray(layer.target_view(B, training=True))
    kept = target != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(target[kept], B[kept] / 0.5, rtol=1e-6)
    b = tf.Variable(B)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer({"online": A, "target": b}, training=True))
    grad = tape.gradient(loss, [b, *layer.trainable_variables])
    assert grad[0] is None or not np.any(grad[0].numpy())
    assert all(g is not None and np.any(g.numpy()) for g in grad[1:])


def test_info_nce_matches_numpy_logsumexp_and_reaches_both_views():
    np.testing.assert_allclose(info_nce(A, B, 0.2), numpy_info_nce(A, B, 0.2), rtol=1e-5, atol=1e-5)
    # aligned views (b = 3 a) score lower than shuffled ones
    assert float(np.mean(info_nce(A, 3 * A, 0.2))) < float(np.mean(info_nce(A, A[::-1], 0.2)))
    a, b = tf.Variable(A), tf.Variable(B)
    with tf.GradientTape(persistent=True) as tape:
        loss = tf.reduce_sum(info_nce(a, b, 0.5))
    assert np.abs(tape.gradient(loss, a).numpy()).max() > 1e-3
    assert np.abs(tape.gradient(loss, b).numpy()).max() > 1e-3
    layer = ContrastiveAlignment(4, alignment="infonce", temperature=0.5, seed=0)
    q = A @ layer.predictor.kernel.numpy() + layer.predictor.bias.numpy()
    out = layer({"online": A, "target": B}, training=True)
    np.testing.assert_allclose(out, numpy_info_nce(q, B, 0.5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alignment", ["bootstrap", "infonce"])
def test_layer_contract(alignment):
    run_layer_test(
        ContrastiveAlignment, {"units": 4, "alignment": alignment, "dropout": 0.3, "seed": 0},
        {"online": A, "target": B}, expected_output_shape=(5,),
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alignment": "cosine"}, "alignment must be one of"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"units": 0}, "units must be >= 1"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        ContrastiveAlignment(**{"units": 4, **kwargs})
    assert "\n" not in str(info.value)
