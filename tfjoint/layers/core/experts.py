"""Experts and gates: the one mixing primitive every mixture of experts uses.

``mix_experts(g, E) = sum_i g_i E_i`` with gate weights ``g`` of shape ``(batch, n)`` and
``n`` expert outputs ``E_i`` of shape ``(batch, d)``, given as a list or stacked as
``(batch, n, d)``. MMoE, OMoE, CGC, PLE, DSelect-k, STEM, HiNet, SAR-Net and AESM2 all mix
their experts with it; their gates differ (softmax, smooth-step selection, KL-selected
top-k), the mix does not.
"""

from __future__ import annotations

from typing import Any

from keras import ops


def stack_experts(experts: list[Any] | tuple[Any, ...]) -> Any:
    """``(batch, n, d)`` from ``n`` expert outputs of shape ``(batch, d)``."""
    return ops.stack(list(experts), axis=1)


def mix_experts(gate: Any, experts: Any) -> Any:
    """``sum_i gate_i E_i``: ``gate`` is ``(batch, n)``; ``experts`` a list of ``(batch, d)``
    or one ``(batch, n, d)`` tensor. Returns ``(batch, d)`` in the experts' dtype."""
    if isinstance(experts, (list, tuple)):
        experts = stack_experts(experts)
    return ops.einsum("be,bed->bd", ops.cast(gate, experts.dtype), experts)
