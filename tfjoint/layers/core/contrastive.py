"""InfoNCE, the in-batch contrastive loss that CML and BM3's InfoNCE alignment share.

van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018, in
its in-batch form (SimCLR, CLIP): for row-aligned views ``a`` (anchors) and ``p``
(positives) of the same nodes,

    L_u = -log( exp(s(a_u, p_u) / τ) / Σ_v exp(s(a_u, p_v) / τ) ),   s = cosine similarity,

so the other rows of the batch are the negatives and the rows must be distinct nodes.
"""

from __future__ import annotations

from typing import Any

from keras import ops


def info_nce(anchors: Any, positives: Any, temperature: float) -> Any:
    """Per row ``u``: ``-log(exp(s(a_u, p_u)/τ) / Σ_v exp(s(a_u, p_v)/τ))`` with ``s`` the cosine
    similarity and ``v`` over the rows (the other rows of the batch are the negatives)."""
    a = anchors / (ops.norm(anchors, axis=-1, keepdims=True) + 1e-12)
    p = positives / (ops.norm(positives, axis=-1, keepdims=True) + 1e-12)
    logits = ops.matmul(a, ops.transpose(p)) / temperature
    return ops.logsumexp(logits, axis=-1) - ops.diagonal(logits)


__all__ = ["info_nce"]
