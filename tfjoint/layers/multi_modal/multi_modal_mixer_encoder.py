"""MMMLP as the joint model's behavior-sequence encoder ``E^B`` (issue 14).

MMMLP (Liang et al., WWW 2023) mixes one sequence per modality of the user's history (the
item ids, each item's text or image vectors) with its own Feature Mixer stack, then fuses
them per position. In the joint model it is a ``sequence_encoder`` that declares
:class:`~tfjoint.layers.core.contracts.NeedsSequenceContent`: the embedding slot gives it
every history item's vectors (``sequence_tokens_<name>``, the projected ``item_vectors``
looked up by the item's id). The mixers and the fusion are the retrieval model's
(:class:`~tfjoint.layers.multi_modal.multi_modal_multilayer_perceptron.MixerFusionBlocks`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, positive_int
from tfjoint.layers.core.contracts import NeedsSequenceContent, sequence_tokens_key
from tfjoint.layers.multi_modal.multi_modal_multilayer_perceptron import NORM_EPSILON, MixerFusionBlocks
from tfjoint.layers.multi_modal.sequence_content import LastPositionOutput, check_history_inputs, float32_layers, history_content
from tfjoint.registry import register


@register(
    "mmmlp_encoder",
    slot="sequence_encoder",
    family="multi_modal",
    reference="Liang et al., MMMLP: Multi-modal Multilayer Perceptron for Sequential Recommendations, WWW 2023",
)
class MultiModalMixerEncoder(NeedsSequenceContent, LastPositionOutput, MixerFusionBlocks, keras.layers.Layer):
    """MMMLP over the user's history as ``E^B``: Feature Mixers per modality sequence, the
    Fusion Mixer, and the last position's fused state.

    - branches: ``X^(0)_t = LN(e_t)``, ``e_t`` the embedding slot's ``sequence`` (the item's
      id embedding plus its behavior type's, as every ``E^B`` reads it), and per item vector
      ``m`` ``X^(m)_t = LN(E_m c^(m)_t + b_m)``, ``c^(m)_t`` the history item's vector as the
      embedding slot gives it (``item_vectors`` projected to its width); padding 0;
    - Feature Mixer (``num_blocks`` layers per branch, own weights): causal token mixing
      across the ``L`` positions per channel, then channel mixing per position, each
      ``x + MLP(LN(x))`` with GELU and expansion ``e``;
    - Fusion Mixer: ``F_t = LN(W^F LN([X^(0)_t; X^(1)_t; ...]) + b^F)``;
    - the user is ``F_last``, the last unpadded position (the causal token mixing lets it
      read every earlier one), and ``E^B = act(W F_last + c)``.

    The mixers run at the embedding width ``d`` and, under a mixed policy, in float32.

    Args:
        num_behaviors: number of behavior types (the slot's argument; unused: the behavior
            embeddings are in ``sequence``).
        output_dim: size of ``E^B``.
        num_blocks: Feature Mixer layers per branch.
        expansion: ``e``, the MLPs' hidden width factor (the authors: 4).
        dropout: dropout inside the mixers.
        activation: activation of the output layer.
        seed: seed of the initializers and the dropout.

    Call arguments:
        inputs: the embedding slot's dict with ``sequence`` ``(batch, L, d)``,
            ``sequence_mask`` ``(batch, L)`` and, per item vector,
            ``sequence_tokens_<name>`` ``(batch, L, T, d)`` and its ``_mask``.

    Returns:
        ``E^B`` of shape ``(batch, output_dim)``.
    """

    def __init__(
        self,
        num_behaviors: int,
        output_dim: int = 32,
        num_blocks: int = 1,
        expansion: int = 4,
        dropout: float = 0.2,
        activation: str = "relu",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.output_dim = positive_int("output_dim", output_dim)
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.expansion = positive_int("expansion", expansion)
        self.dropout = dropout_rate(dropout)
        self.activation = activation
        self.seed = seed

    def build(self, input_shape: dict[str, Any]) -> None:
        self.modalities = check_history_inputs("mmmlp_encoder", input_shape)
        length, d = (int(n) for n in input_shape["sequence"][1:])
        with float32_layers():
            self.modality_projections = []
            for m, name in enumerate(self.modalities):
                layer = keras.layers.Dense(d, kernel_initializer=keras.initializers.GlorotUniform(self.seed), name=f"modality_projection_{m}")
                layer.build((None, int(input_shape[sequence_tokens_key(name)][-1])))
                self.modality_projections.append(layer)
            self.build_mixers(length, d, 1 + len(self.modalities))
            self.final_norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name="final_norm")
            self.final_norm.build((None, d))
        self.build_output(d)

    def hidden_states(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        """The fused states ``F`` ``(batch, L, d)`` float32 over the history."""
        pad = ops.cast(inputs["sequence_mask"], "float32")
        content = [p(c) for p, c in zip(self.modality_projections, history_content(inputs, self.modalities))]
        branches = [ops.cast(inputs["sequence"], "float32"), *content]
        return self.mix(branches, pad, training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_behaviors": self.num_behaviors, "output_dim": self.output_dim,
                "num_blocks": self.num_blocks, "expansion": self.expansion, "dropout": self.dropout,
                "activation": self.activation, "seed": self.seed}


__all__ = ["MultiModalMixerEncoder"]
