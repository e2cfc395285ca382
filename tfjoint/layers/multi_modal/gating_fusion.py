"""Gating fusion of modality encodings: E^M = sum_i G^(i) * f_i with G = sigmoid(F W^F)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import positive_int
from tfjoint.registry import register


@register(
    "gating_fusion",
    slot="modality_encoder",
    family="multi_modal",
    reference="Arevalo et al., Gated Multimodal Units for Information Fusion, ICLR-W 2017",
)
class GatingFusion(keras.layers.Layer):
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

    def __init__(self, modalities: list[str] | tuple[str, ...], output_dim: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not modalities:
            raise ValueError("modalities must name at least one token feature. Received: modalities=[]")
        self.modalities = list(modalities)
        self.output_dim = positive_int("output_dim", output_dim)

    def build(self, input_shape: dict[str, Any]) -> None:
        self.encoders = {}
        for name in self.modalities:
            dense = keras.layers.Dense(self.output_dim, activation="tanh", name=f"encoder_{name}", dtype=self.dtype_policy)
            dense.build((None, input_shape[f"tokens_{name}"][-1]))
            self.encoders[name] = dense
        width = self.output_dim * len(self.modalities)
        self.gate = keras.layers.Dense(width, activation="sigmoid", name="gate", dtype=self.dtype_policy)
        self.gate.build((None, width))

    def encode(self, inputs: dict[str, Any]) -> list[Any]:
        """The per-modality encodings ``f_i``."""
        encoded = []
        for name in self.modalities:
            tokens = ops.cast(inputs[f"tokens_{name}"], "float32")
            mask = ops.cast(inputs[f"tokens_mask_{name}"], "float32")[..., None]
            mean = ops.sum(tokens * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
            encoded.append(self.encoders[name](ops.cast(mean, self.compute_dtype)))
        return encoded

    def call(self, inputs: dict[str, Any]) -> Any:
        f = self.encode(inputs)
        gates = self.gate(ops.concatenate(f, axis=-1))
        g = ops.split(gates, len(self.modalities), axis=-1)
        return sum(gi * fi for gi, fi in zip(g, f))

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[int | None, int]:
        return (None, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(modalities=self.modalities, output_dim=self.output_dim)
        return config
