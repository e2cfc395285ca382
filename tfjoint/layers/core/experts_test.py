import numpy as np
import tensorflow as tf

from tfjoint.layers.core.experts import build_gate, mix_experts, mix_experts_by_gates, softmax_gate
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


def test_every_gate_mixes_its_own_members_in_one_batched_mix():
    """PLE's layout: gate 0 over experts (0, 1, 4), gate 1 over (2, 3, 4), a shared gate over
    all five; each output is its gate's sum over its members, and a non-member gets no
    gradient from that gate."""
    rng = np.random.default_rng(3)
    experts = [tf.constant(rng.normal(size=(4, 5)).astype("float32")) for _ in range(5)]
    members = [[0, 1, 4], [2, 3, 4], [0, 1, 2, 3, 4]]
    gates = [tf.constant(softmax(rng.normal(size=(4, len(m)))).astype("float32")) for m in members]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(experts)
        mixed = mix_experts_by_gates(gates, experts, members)
        first = tf.reduce_sum(mixed[0])
    for gate, chosen, out in zip(gates, members, mixed):
        expected = sum(np.asarray(gate)[:, [j]] * np.asarray(experts[i]) for j, i in enumerate(chosen))
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)
    grads = tape.gradient(first, experts)
    for i in (2, 3):
        assert grads[i] is None or not np.any(np.asarray(grads[i]))
    np.testing.assert_allclose(np.asarray(grads[4]), np.repeat(np.asarray(gates[0])[:, 2:3], 5, 1), rtol=1e-6)
    # Without members every gate weighs all experts, in order: mix_experts's sum.
    together = mix_experts_by_gates(gates[2:], tf.stack(experts, 1))
    np.testing.assert_allclose(np.asarray(together[0]), np.asarray(mix_experts(gates[2], experts)), rtol=1e-6)


def test_softmax_gate_is_float32_softmax_of_scaled_logits():
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float16")
    gate = build_gate(3, "g", (None, 6))
    assert gate.dtype_policy.name == "float32" and gate.built
    logits = x.astype("float32") @ gate.kernel.numpy() + gate.bias.numpy()
    out = np.asarray(softmax_gate(gate, x, temperature=2.0))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, softmax(logits / 2.0), rtol=1e-5)
