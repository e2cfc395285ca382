"""The base of the fusion layers: one encoder per token modality, and which modalities a row has.

Every fusion layer of :mod:`tfjoint.layers.multi_modal` reads the embedding slot's dict:
``tokens_<name>`` ``(batch, T, d)`` and ``tokens_mask_<name>`` ``(batch, T)`` per modality.
Modality ``i`` is encoded as ``f_i = tanh(W_i mean_i + b_i)``, ``mean_i`` the masked mean
of its token embeddings (:meth:`ModalityFusion.encode`), and it is *present* in a row when
at least one of its tokens is unmasked (:meth:`ModalityFusion.presence`). A missing
modality (an item without a title, a genre, an image) encodes to ``tanh(b_i)``, a constant
that says nothing about the item; each fusion layer states what it does instead.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import positive_int


def masked_softmax(logits: Any, mask: Any) -> Any:
    """Softmax of ``logits`` over the last axis among entries with ``mask = 1``, in float32;
    a row with no such entry gives all zeros (not a uniform average of missing ones)."""
    logits, mask = ops.cast(logits, "float32"), ops.cast(mask, "float32")
    shifted = logits - ops.max(logits - 1e9 * (1.0 - mask), axis=-1, keepdims=True)
    weights = ops.exp(ops.minimum(shifted, 0.0)) * mask
    return weights / ops.maximum(ops.sum(weights, axis=-1, keepdims=True), 1e-12)


def masked_mean(tokens: Any, mask: Any) -> Any:
    """``(..., d)`` float32: the mean of ``tokens`` ``(..., T, d)`` over the positions with
    ``mask`` ``(..., T)`` = 1 (``(batch, T, d)`` for a row's tokens, ``(batch, L, T, d)`` for
    every history item's); a row with none gives zeros."""
    tokens, mask = ops.cast(tokens, "float32"), ops.cast(mask, "float32")[..., None]
    return ops.sum(tokens * mask, axis=-2) / ops.maximum(ops.sum(mask, axis=-2), 1.0)


class ModalityFusion(keras.layers.Layer):
    """Per-modality encoders ``f_i`` and the presence mask; subclasses fuse them.

    Args:
        modalities: token feature keys, in order.
        output_dim: size of every ``f_i`` and of the fused ``E^M``.
    """

    def __init__(self, modalities: list[str] | tuple[str, ...], output_dim: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not modalities:
            raise ValueError("modalities must name at least one token feature. Received: modalities=[]")
        if len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be distinct. Received: modalities={list(modalities)}")
        self.modalities = list(modalities)
        self.output_dim = positive_int("output_dim", output_dim)

    def build(self, input_shape: dict[str, Any]) -> None:
        self.encoders = {}
        for name in self.modalities:
            dense = keras.layers.Dense(self.output_dim, activation="tanh", name=f"encoder_{name}", dtype=self.dtype_policy)
            dense.build((None, input_shape[f"tokens_{name}"][-1]))
            self.encoders[name] = dense

    def encode(self, inputs: dict[str, Any]) -> list[Any]:
        """The per-modality encodings ``f_i``, each ``(batch, output_dim)``."""
        means = self.means(inputs)
        return [self.encoders[name](ops.cast(mean, self.compute_dtype)) for name, mean in zip(self.modalities, means)]

    def means(self, inputs: dict[str, Any]) -> list[Any]:
        """Per modality, the masked mean of its token embeddings ``(batch, d_i)``, float32
        (zeros for a row without the modality)."""
        return [masked_mean(inputs[f"tokens_{name}"], inputs[f"tokens_mask_{name}"]) for name in self.modalities]

    def content(self, inputs: dict[str, Any]) -> Any:
        """``f_i = [mean_1; ...; mean_m]`` ``(batch, sum_i d_i)``, float32: the item's content
        vector, the concatenated masked means (:meth:`means`), a missing modality's block 0."""
        return ops.concatenate(self.means(inputs), axis=-1)

    def content_width(self, input_shape: dict[str, Any]) -> int:
        """The width of :meth:`content` for ``input_shape``."""
        return sum(int(input_shape[f"tokens_{name}"][-1]) for name in self.modalities)

    def presence(self, inputs: dict[str, Any]) -> Any:
        """``(batch, num_modalities)`` float32: 1 where the row has a token of the modality."""
        present = [ops.max(ops.cast(inputs[f"tokens_mask_{name}"], "float32"), axis=1) for name in self.modalities]
        return ops.cast(ops.stack(present, axis=-1) > 0, "float32")

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[int | None, int]:
        return (None, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(modalities=self.modalities, output_dim=self.output_dim)
        return config
