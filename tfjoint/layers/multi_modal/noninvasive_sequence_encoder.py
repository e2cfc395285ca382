"""NOVA as the joint model's behavior-sequence encoder ``E^B`` (issue 14).

NOVA (Liu et al., AAAI 2021) is a sequence model: its defining piece, the non-invasive
self-attention, reads the side information of every *history* position in its queries and
keys and the item ids alone in its values. In the joint model (``E_merge = U(E, E^B, E^M)``)
that is the ``sequence_encoder`` slot, once the embedding slot hands it each history item's
content: the encoder declares
:class:`~tfjoint.layers.core.contracts.NeedsSequenceContent`, so the builder builds the
embedding with ``sequence_content=True`` and the encoder reads, beside ``sequence``,
``behaviors`` and ``sequence_mask``:

- ``sequence_items`` and ``sequence_behavior_embeddings`` ``(batch, L, d)``: the history's
  item id embeddings and behavior embeddings apart (``sequence`` is their sum);
- ``sequence_tokens_<name>`` ``(batch, L, 1, d)`` and its mask, per item vector table
  (``item_vectors``, e.g. MiniLM title vectors): the projected vector the modality encoder
  gets for the candidate, looked up by each history item's id.

The attention is the retrieval model's, not a copy: the blocks of
:class:`~tfjoint.layers.retrieval.self_attention_blocks.CausalSelfAttentionBlocks` and NOVA's
fusion (:func:`~tfjoint.layers.multi_modal.noninvasive_self_attention.noninvasive_context`).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, positive_int
from tfjoint.layers.core.contracts import SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY, SEQUENCE_ITEMS_KEY, NeedsSequenceContent, sequence_tokens_key
from tfjoint.layers.multi_modal.noninvasive_self_attention import check_fusion, fusion_layers, noninvasive_context
from tfjoint.layers.multi_modal.sequence_content import LastPositionOutput, check_history_inputs, float32_layers, history_content
from tfjoint.layers.retrieval.self_attention_blocks import CausalSelfAttentionBlocks
from tfjoint.registry import register

@register(
    "nova_encoder",
    slot="sequence_encoder",
    family="multi_modal",
    reference="Liu et al., Noninvasive Self-attention for Side Information Fusion in Sequential Recommendation, AAAI 2021",
)
class NoninvasiveSequenceEncoder(NeedsSequenceContent, LastPositionOutput, CausalSelfAttentionBlocks, keras.layers.Layer):
    """NOVA over the user's history as ``E^B``: ``NOVA(R, S) = σ(Q Kᵀ / sqrt(d_k)) V`` with
    ``Q, K`` from ``F(R, S)`` and ``V`` from ``R`` alone.

    - ``R^(0) = E_items * sqrt(d)`` (dropout, padding zeroed): the history's item id
      embeddings ``sequence_items``, without position or behavior; the only input of the
      values ``R W^V``, of the residual ``LN(R)`` and of the FFN (*non-invasive*);
    - side information per position ``t``: ``S_t = [P_t, B_{b_t}, E_s c_t]``: the learned
      position embedding, the behavior type's embedding (NOVA's behavior side information;
      the embedding slot's behavior table) and the projected item content ``c_t``
      (``side_projection``), the
      concatenated masked means of the history item's vectors ``sequence_tokens_<name>``, 0
      at padding;
    - per block ``C = F(R, S)`` (``fusion``: ``"sum"``, ``"concat"`` or ``"gating"``, as
      :class:`~tfjoint.layers.multi_modal.noninvasive_self_attention.NoninvasiveSelfAttention`),
      ``Q = LN(C) W^Q``, ``K = C W^K``, ``V = R W^V``, causal and padding masks, SASRec's
      residual and FFN on the id stream, a final LN;
    - the user is ``F_last``, the hidden state of the last history position (as NOVA-SASRec
      predicts the next item from it), and ``E^B = act(W F_last + c)``.

    The attention width is the embedding width ``d`` (it must be divisible by
    ``num_heads``); the blocks run in float32 under a mixed policy (the padding logit
    ``-2^32`` overflows float16).

    Args:
        num_behaviors: number of behavior types (the slot's argument, which the builder
            passes; the behavior embeddings themselves come from the embedding slot).
        output_dim: size of ``E^B``.
        num_blocks: attention blocks (NOVA: 2).
        num_heads: attention heads.
        dropout: dropout of the stream and the attention weights.
        fusion: ``"sum"``, ``"concat"`` or ``"gating"``.
        activation: activation of the output layer.
        seed: seed of the initializers and the dropout.

    Call arguments:
        inputs: the embedding slot's dict with ``sequence_items`` and
            ``sequence_behavior_embeddings`` ``(batch, L, d)``, ``sequence_mask``
            ``(batch, L)`` and, per item
            vector, ``sequence_tokens_<name>`` ``(batch, L, T, d_name)`` and
            ``sequence_tokens_<name>_mask`` ``(batch, L, T)``.

    Returns:
        ``E^B`` of shape ``(batch, output_dim)``.
    """

    def __init__(
        self,
        num_behaviors: int,
        output_dim: int = 32,
        num_blocks: int = 1,
        num_heads: int = 1,
        dropout: float = 0.2,
        fusion: str = "gating",
        activation: str = "relu",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.output_dim = positive_int("output_dim", output_dim)
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.num_heads = positive_int("num_heads", num_heads)
        self.dropout = dropout_rate(dropout)
        self.fusion = check_fusion(fusion)
        self.activation = activation
        self.seed = seed

    def build(self, input_shape: dict[str, Any]) -> None:
        self.modalities = check_history_inputs("nova_encoder", input_shape)
        self.max_len, self.hidden_dim = (int(n) for n in input_shape[SEQUENCE_ITEMS_KEY][1:])
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"the embedding width {self.hidden_dim} must be divisible by num_heads={self.num_heads}")
        d, init = self.hidden_dim, keras.initializers.GlorotUniform(self.seed)
        width = sum(int(input_shape[sequence_tokens_key(name)][-1]) for name in self.modalities)
        with float32_layers():  # the blocks, the side information and the fusion
            self.build_blocks()
            self.final_norm = keras.layers.LayerNormalization(epsilon=1e-8, name="final_norm")
            self.final_norm.build((None, d))
            self.dropout_layer = keras.layers.Dropout(self.dropout, seed=self.seed, name="dropout")
            self.side_projection = keras.layers.Dense(d, kernel_initializer=init, name="side_projection")
            self.side_projection.build((None, width))
            self.fusions = fusion_layers(self.fusion, self.num_blocks, d, 4, init)
        self.build_output(d)

    def content(self, inputs: dict[str, Any]) -> Any:
        """``c_t = [mean_1; ...; mean_m]`` per history position ``(batch, L, sum_i d_i)``,
        float32 (:func:`~tfjoint.layers.multi_modal.sequence_content.history_content`)."""
        return ops.concatenate(history_content(inputs, self.modalities), axis=-1)

    def side_information(self, inputs: dict[str, Any], pad: Any) -> list[Any]:
        """``S = [P, B, E_s c]``, each ``(batch, L, d)`` float32; ``E_s c`` is 0 at padding."""
        content = self.side_projection(self.content(inputs)) * pad[..., None]
        behaviors = ops.cast(inputs[SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY], "float32") * pad[..., None]
        positions = self.position_embedding(ops.arange(ops.shape(pad)[1]))[None] + ops.zeros_like(content)
        return [positions, behaviors, content]

    def hidden_states(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        """The blocks' output ``F`` ``(batch, L, d)`` float32 over the history."""
        pad = ops.cast(inputs["sequence_mask"], "float32")
        ids = ops.cast(inputs[SEQUENCE_ITEMS_KEY], "float32") * math.sqrt(self.hidden_dim)
        ids = self.dropout_layer(ids, training=training) * pad[..., None]
        side = self.side_information(inputs, pad)
        return self.encode(ids, pad, training, context=noninvasive_context(self.fusion, self.fusions, side))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_behaviors": self.num_behaviors, "output_dim": self.output_dim,
                "num_blocks": self.num_blocks, "num_heads": self.num_heads, "dropout": self.dropout,
                "fusion": self.fusion, "activation": self.activation, "seed": self.seed}


__all__ = ["NoninvasiveSequenceEncoder"]
