"""Experts and gates: the one mixing primitive every mixture of experts uses.

``mix_experts(g, E) = sum_i g_i E_i`` with gate weights ``g`` of shape ``(batch, n)`` and
``n`` expert outputs ``E_i`` of shape ``(batch, d)``, given as a list or stacked as
``(batch, n, d)``. MMoE, OMoE, CGC, PLE, DSelect-k, STEM, HiNet, SAR-Net and AESM2 all mix
their experts with it; their gates differ (softmax, smooth-step selection, KL-selected
top-k), the mix does not.

The softmax gate ``g(x) = softmax(W_g x / temperature)`` of MMoE, OMoE, CGC, PLE, STEM,
HiNet and M3oE is :func:`build_gate` plus :func:`softmax_gate`: a float32 ``Dense`` whose
logits and softmax stay in float32 under mixed precision.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops


def stack_experts(experts: list[Any] | tuple[Any, ...]) -> Any:
    """``(batch, n, d)`` from ``n`` expert outputs of shape ``(batch, d)``."""
    return ops.stack(list(experts), axis=1)


def mix_experts(gate: Any, experts: Any) -> Any:
    """``sum_i gate_i E_i``: ``gate`` is ``(batch, n)``; ``experts`` a list of ``(batch, d)``
    or one ``(batch, n, d)`` tensor. Returns ``(batch, d)`` in the experts' dtype."""
    return mix_experts_by_gates([gate], experts)[0]


def mix_experts_by_gates(
    gates: Sequence[Any], experts: Any, members: Sequence[Sequence[int]] | None = None
) -> list[Any]:
    """``[sum_i g^k_i E_{m_k(i)} for each gate k]``: every gate of a layer mixes its experts in
    one batched matmul over the stacked experts, instead of one stack and matmul per gate.

    ``gates[k]`` is ``(batch, n_k)`` over the experts ``members[k]`` (indices into
    ``experts``, in the gate's column order; all of them, in order, when ``members`` is
    None). Gate ``k``'s row of the ``(batch, K, N)`` weights is ``g^k S_k``, ``S_k`` the
    ``(n_k, N)`` one-hot map of its members, so a non-member's weight is exactly 0 and adds
    nothing to the sum (nor gets a gradient). Returns ``K`` tensors ``(batch, d)``, each
    equal to ``mix_experts(gates[k], [experts[i] for i in members[k]])``.
    """
    if isinstance(experts, (list, tuple)):
        experts = stack_experts(experts)
    count = experts.shape[1]
    weights = []
    for k, gate in enumerate(gates):
        gate = ops.cast(gate, experts.dtype)
        chosen = list(range(count)) if members is None else list(members[k])
        if chosen != list(range(count)):
            one_hot = np.zeros((len(chosen), count), np.float32)
            one_hot[np.arange(len(chosen)), chosen] = 1.0
            gate = ops.matmul(gate, ops.convert_to_tensor(one_hot, experts.dtype))
        weights.append(gate)
    # (batch, K, N) @ (batch, N, d): one batched matmul; on CPU its backward is cheaper than
    # the equal einsum("bkn,bnd->bkd")'s, and than broadcast products (issue 17,
    # docs/training_speed.md).
    mixed = ops.matmul(ops.stack(weights, axis=1), experts)
    return ops.unstack(mixed, num=len(weights), axis=1)


def build_gate(num_experts: int, name: str, input_shape: tuple[int | None, ...]) -> keras.layers.Dense:
    """A built float32 ``Dense(num_experts)``: the logits ``W_g x + b_g`` of one gate."""
    gate = keras.layers.Dense(num_experts, name=name, dtype="float32")
    gate.build(input_shape)
    return gate


def softmax_gate(gate: keras.layers.Layer, x: Any, temperature: float = 1.0) -> Any:
    """``softmax(gate(x) / temperature)`` in float32, ``(batch, num_experts)``."""
    return ops.softmax(gate(ops.cast(x, "float32")) / temperature, axis=-1)
