"""NOVA: SASRec whose attention reads side information in its queries and keys only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from tfjoint.layers.multi_modal.gating_fusion import gated_sum
from tfjoint.layers.multi_modal.item_content import ContentSequenceModel, check_content_arguments
from tfjoint.layers.retrieval.self_attentive_sequential_recommendation import SelfAttentiveSequentialRecommendation
from tfjoint.registry import register

FUSIONS = ("sum", "concat", "gating")


def check_fusion(fusion: str) -> str:
    """``fusion`` if it is one of :data:`FUSIONS`; a one-line ValueError otherwise."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}. Received: fusion={fusion!r}")
    return fusion


def fusion_layers(fusion: str, num_blocks: int, width: int, num_inputs: int, initializer: Any) -> list[keras.layers.Dense]:
    """One fusion layer ``W^F`` per block over ``num_inputs`` inputs of ``width`` each (none
    for ``"sum"``): ``"concat"`` maps ``[R; S_1; ...]`` to ``width``, ``"gating"`` to one
    sigmoid gate per input (``num_inputs * width``)."""
    layers: list[keras.layers.Dense] = []
    if check_fusion(fusion) != "sum":
        activation = "sigmoid" if fusion == "gating" else None
        out = num_inputs * width if fusion == "gating" else width
        for b in range(num_blocks):
            layer = keras.layers.Dense(out, activation=activation, kernel_initializer=initializer, name=f"fusion_{b}")
            layer.build((None, num_inputs * width))
            layers.append(layer)
    return layers


def noninvasive_context(fusion: str, layers: list[keras.layers.Dense], side: list[Any]) -> Callable[[int, Any], Any]:
    """NOVA's ``C = F(R, S)`` as the ``context(block, R)`` of
    :meth:`~tfjoint.layers.retrieval.self_attention_blocks.CausalSelfAttentionBlocks.encode`:
    the query and key input of each block, fused from the block's id stream ``R`` and the
    side information ``S`` (``"sum"``: ``R + sum_j S_j``; ``"concat"``: ``W^F [R; S] + b``;
    ``"gating"``: ``sum_j G^(j) c_j``, ``c = (R, S_1, ...)``). The values never read it."""

    def context(block: int, ids: Any) -> Any:
        if fusion == "sum":
            return ids + sum(side)
        if fusion == "concat":
            return layers[block](ops.concatenate([ids, *side], axis=-1))
        return gated_sum(layers[block], [ids, *side])

    return context


@register(
    "nova",
    slot="retrieval_model",
    family="multi_modal",
    reference="Liu et al., Noninvasive Self-attention for Side Information Fusion in Sequential Recommendation, AAAI 2021",
)
class NoninvasiveSelfAttention(ContentSequenceModel, SelfAttentiveSequentialRecommendation):
    """NOVA-SASRec: ``NOVA(R, S) = σ(Q Kᵀ / sqrt(d_k)) V`` with ``Q, K`` from ``F(R, S)`` and
    ``V`` from ``R`` alone (Liu et al., AAAI 2021, Sec. "Non-invasive Self-attention").

    The blocks, masks, loss and training of :class:`SelfAttentiveSequentialRecommendation`
    (reused, not copied), with the side information fused into the attention's queries and
    keys of every block instead of into the input:

    - ``R^(0) = E_seq * sqrt(d)``: the item-id stream, no position (the paper treats the
      position as side information); it is the only input of the values ``R W^V``, of the
      residual ``LN(R)`` and of the FFN, so the id representation is never mixed with side
      information (*non-invasive*);
    - side information per position ``t``: ``S_t = [P_t, E_s f_{i_t}]``, the learned position
      embedding and the projected item modality vector ``f_i`` (``side_projection``);
    - fusion ``C = F(R^(b), S)`` per block ``b`` (``fusion``): ``"sum"`` ``R + P + E_s f``
      (the paper's additive fusion); ``"concat"`` ``W^F [R; P; E_s f] + b``; ``"gating"``
      ``sum_j G^(j) c_j`` over ``c = (R, P, E_s f)`` with ``G = σ([R; P; E_s f] W^F)``
      (the paper's gating fusion, :func:`~tfjoint.layers.multi_modal.gating_fusion.gated_sum`);
    - attention: ``Q = LN(C) W^Q``, ``K = C W^K``, ``V = R W^V`` (causal, padding-masked,
      :meth:`attention_weights`), then SASRec's residual and FFN on the id stream.

    Scoring and cold items (beyond the paper, which scores with the id table only): the
    candidate table is ``M_i + E_c f_i`` (``content_projection``, no bias), so an item is also
    known by its features; ``r_{i,t} = F_t · (M_i + E_c f_i)``. Negatives are drawn among the
    *warm* items (training rows of the trained behaviors, set by :meth:`fit` and saved as
    ``warm_items``), as VBPR does, so a cold item's id row never receives a gradient.
    ``cold_start`` says what replaces it at scoring (shared with VBPR,
    :mod:`tfjoint.layers.multi_modal.item_content`): ``"features"`` (default) ``M_i = 0``, the
    score is ``F_t · E_c f_i``; ``"mean"`` the mean warm row; ``"none"`` the untrained row.

    Args:
        num_items: size of the item index space.
        item_features: ``(num_items, F)`` float modality vectors ``f_i`` (MiniLM or hashed
            text, image vectors, the synthetic features); or None and ``feature_dim`` (then
            pass them to :meth:`fit`; a ``.keras`` file restores them as a weight).
        feature_dim: ``F``; inferred from ``item_features`` when it is given.
        fusion: ``"sum"``, ``"concat"`` or ``"gating"`` (see above).
        cold_start: ``"features"``, ``"mean"`` or ``"none"`` (see above).
        max_len, hidden_dim, num_blocks, num_heads, dropout, l2_emb, behaviors, seed: as
            :class:`SelfAttentiveSequentialRecommendation`.

    Call arguments:
        sequences: int ``(batch, max_len)`` of item index + 1, 0 for padding.

    Returns:
        The hidden states ``F`` ``(batch, max_len, hidden_dim)``.

    Example:
    >>> import numpy as np
    >>> features = np.eye(9, 4, dtype="float32")
    >>> model = NoninvasiveSelfAttention(num_items=9, item_features=features, max_len=4, hidden_dim=8, seed=0)
    >>> tuple(model(np.array([[0, 0, 3, 5]])).shape)
    (1, 4, 8)

    Reference:
        Liu, Li, Wang, Wang, Xu, Zeng, Zhang. Noninvasive Self-attention for Side Information
        Fusion in Sequential Recommendation. AAAI 2021.
    """

    def __init__(
        self,
        num_items: int,
        item_features: Any = None,
        feature_dim: int | None = None,
        fusion: str = "gating",
        cold_start: str = "features",
        max_len: int = 50,
        hidden_dim: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.5,
        l2_emb: float = 0.0,
        behaviors: list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        item_features, feature_dim = check_content_arguments("NOVA", num_items, item_features, feature_dim, cold_start)
        check_fusion(fusion)
        super().__init__(
            num_items, max_len=max_len, hidden_dim=hidden_dim, num_blocks=num_blocks, num_heads=num_heads,
            dropout=dropout, l2_emb=l2_emb, behaviors=behaviors, seed=seed, **kwargs,
        )
        self.build_content(item_features, feature_dim, cold_start)
        self.fusion = fusion
        d, init = self.hidden_dim, keras.initializers.GlorotUniform(seed)
        self.side_projection = keras.layers.Dense(d, kernel_initializer=init, name="side_projection")
        self.side_projection.build((None, feature_dim))
        self.fusions = fusion_layers(fusion, self.num_blocks, d, 3, init)
        self.built = True

    # -- the non-invasive attention ---------------------------------------------------
    def side_information(self, sequences: Any) -> list[Any]:
        """``S = [P, E_s f]``, each ``(batch, L, d)``; ``E_s f`` is 0 at padding."""
        sequences = ops.cast(sequences, "int32")
        pad = ops.cast(ops.not_equal(sequences, 0), "float32")[..., None]
        content = self.side_projection(self.sequence_features(sequences)) * pad
        positions = self.position_embedding(ops.arange(ops.shape(sequences)[1]))[None] + ops.zeros_like(content)
        return [positions, content]

    def fuse(self, block: int, ids: Any, side: list[Any]) -> Any:
        """``C = F(R, S)``, the query and key input of ``block`` (:func:`noninvasive_context`)."""
        return noninvasive_context(self.fusion, self.fusions, side)(block, ids)

    def call(self, sequences: Any, training: bool | None = None) -> Any:
        ids, pad = self.embed(sequences, training, positions=False)
        side = self.side_information(sequences)
        return self.encode(ids, pad, training, context=lambda block, seq: self.fuse(block, seq, side))

    def get_config(self) -> dict[str, Any]:
        """SASRec's arguments and ``feature_dim``, ``fusion``, ``cold_start`` (the features
        are saved as a weight)."""
        return {**super().get_config(), **self.content_config(), "fusion": self.fusion}
