"""Gating fusion of modality encodings: E^M = sum_i G^(i) * f_i with G = sigmoid(F W^F)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.multi_modal.modality_fusion import ModalityFusion
from tfjoint.registry import register


def gated_sum(gate: keras.layers.Layer, encodings: list[Any]) -> Any:
    """``sum_i G^(i) * f_i`` with ``G = gate([f_1; ...; f_m])`` split into one ``G^(i)`` per
    encoding (``gate``: a sigmoid Dense of width ``m * d``); any leading shape."""
    g = ops.split(gate(ops.concatenate(encodings, axis=-1)), len(encodings), axis=-1)
    return sum(gi * fi for gi, fi in zip(g, encodings))


@register(
    "gating_fusion",
    slot="modality_encoder",
    family="multi_modal",
    reference="Arevalo et al., Gated Multimodal Units for Information Fusion, ICLR-W 2017",
)
class GatingFusion(ModalityFusion):
    """Encodes each token modality by a masked mean, then fuses them with sigmoid gates.

    With ``f_i`` the projected masked mean of modality ``i``'s token embeddings and
    ``F = [f_1; ...; f_m]``, the gates are ``G = sigmoid(F W^F + b)`` split into one
    ``G^(i)`` per modality, and the output is ``E^M = sum_i G^(i) * f_i``.

    Args:
        modalities: token feature keys, in order.
        output_dim: size of every ``f_i`` and of ``E^M``.

    Call arguments:
        inputs: the embedding slot's dict, with ``tokens_<name>`` ``(batch, T, d)`` and
            ``tokens_mask_<name>`` ``(batch, T)`` for every modality.

    Returns:
        ``E^M`` of shape ``(batch, output_dim)``.
    """

    def build(self, input_shape: dict[str, Any]) -> None:
        super().build(input_shape)
        width = self.output_dim * len(self.modalities)
        self.gate = keras.layers.Dense(width, activation="sigmoid", name="gate", dtype=self.dtype_policy)
        self.gate.build((None, width))

    def call(self, inputs: dict[str, Any]) -> Any:
        return gated_sum(self.gate, self.encode(inputs))
