import numpy as np
import tensorflow as tf

from tfjoint.layers.core.experts import build_gate, mix_experts, softmax_gate
from tfjoint.testing import softmax


def test_mix_is_the_gate_weighted_sum_of_experts():
    rng = np.random.default_rng(0)
    gate = softmax(rng.normal(size=(4, 3))).astype("float32")
    experts = [rng.normal(size=(4, 5)).astype("float32") for _ in range(3)]
    expected = sum(gate[:, [i]] * experts[i] for i in range(3))
    np.testing.assert_allclose(np.asarray(mix_experts(gate, experts)), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mix_experts(gate, np.stack(experts, axis=1))), expected, rtol=1e-5)


def test_mix_gradients_are_the_expert_projections_and_the_gate_weights():
    rng = np.random.default_rng(2)
    gate = tf.constant(softmax(rng.normal(size=(4, 3))).astype("float32"))
    experts = tf.constant(rng.normal(size=(4, 3, 5)).astype("float32"))
    upstream = rng.normal(size=(4, 5)).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch([gate, experts])
        loss = tf.reduce_sum(mix_experts(gate, experts) * upstream)
    d_gate, d_experts = tape.gradient(loss, [gate, experts])
    # d/dg_i = <u, E_i>, d/dE_i = g_i u
    np.testing.assert_allclose(d_gate, np.einsum("bd,bed->be", upstream, experts), rtol=1e-5)
    np.testing.assert_allclose(d_experts, np.asarray(gate)[:, :, None] * upstream[:, None, :], rtol=1e-5)


def test_softmax_gate_is_float32_softmax_of_scaled_logits():
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float16")
    gate = build_gate(3, "g", (None, 6))
    assert gate.dtype_policy.name == "float32" and gate.built
    logits = x.astype("float32") @ gate.kernel.numpy() + gate.bias.numpy()
    out = np.asarray(softmax_gate(gate, x, temperature=2.0))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, softmax(logits / 2.0), rtol=1e-5)
