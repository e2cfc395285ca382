"""Attention fusion: E^M = sum_i α_i f_i, α = softmax_i(q · tanh(W f_i + b)) over present modalities."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.multi_modal.modality_fusion import ModalityFusion, masked_softmax
from tfjoint.registry import register


@register(
    "attention_fusion",
    slot="modality_encoder",
    family="multi_modal",
    reference="Yang et al., Hierarchical Attention Networks for Document Classification, NAACL 2016",
)
class AttentionFusion(ModalityFusion):
    """Weights the modality encodings of each row by attention, then sums them.

    The attention pooling of HAN (Yang et al., NAACL 2016, Eqs. 5-7, there over words or
    sentences) applied over modalities. With ``f_i`` the encoding of modality ``i``
    (:class:`ModalityFusion`), ``p_i`` its presence and ``d`` a learned default (``default``,
    zeros at init)::

        h_i  = tanh(W f_i + b)                              (``attention``, a Dense layer)
        α_i  = p_i exp(q · h_i) / sum_j p_j exp(q · h_j)     (``query`` q; float32)
        E^M  = sum_i α_i f_i           if some p_i = 1,   else d

    Unlike :class:`LateFusion`'s global weights, ``α`` depends on the item: a modality can
    count more for the items whose encoding of it is informative. A missing modality gets no
    attention; a row with no modality gets ``d``.

    Args:
        modalities: token feature keys, in order.
        output_dim: size of every ``f_i`` and of ``E^M``.
        attention_dim: size of ``h_i`` and ``q``.
        seed: seed of ``q``'s initializer.

    Call arguments:
        inputs: the embedding slot's dict, with ``tokens_<name>`` ``(batch, T, d)`` and
            ``tokens_mask_<name>`` ``(batch, T)`` for every modality.

    Returns:
        ``E^M`` of shape ``(batch, output_dim)``.

    Example:
    >>> import numpy as np
    >>> layer = AttentionFusion(["title", "genres"], output_dim=3, attention_dim=4)
    >>> x = {"tokens_title": np.ones((2, 4, 5), "float32"), "tokens_mask_title": np.ones((2, 4), "float32"),
    ...      "tokens_genres": np.ones((2, 2, 5), "float32"), "tokens_mask_genres": np.ones((2, 2), "float32")}
    >>> tuple(layer(x).shape)
    (2, 3)
    >>> np.allclose(np.asarray(layer.attention_weights(x)).sum(-1), 1.0)
    True

    Reference:
        Yang, Yang, Dyer, He, Smola, Hovy. Hierarchical Attention Networks for Document
        Classification. NAACL 2016.
    """

    def __init__(
        self,
        modalities: list[str] | tuple[str, ...],
        output_dim: int = 32,
        attention_dim: int = 16,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(modalities, output_dim, **kwargs)
        self.attention_dim = positive_int("attention_dim", attention_dim)
        self.seed = seed

    def build(self, input_shape: dict[str, Any]) -> None:
        super().build(input_shape)
        self.attention = keras.layers.Dense(self.attention_dim, activation="tanh", name="attention", dtype=self.dtype_policy)
        self.attention.build((None, self.output_dim))
        self.query = self.add_weight(
            shape=(self.attention_dim,), initializer=keras.initializers.GlorotUniform(seed=self.seed), name="query"
        )
        self.default = self.add_weight(shape=(self.output_dim,), initializer="zeros", name="default")

    def _weights_and_encodings(self, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
        f = ops.stack(self.encode(inputs), axis=1)  # (batch, m, output_dim)
        logits = ops.sum(ops.cast(self.attention(f), "float32") * ops.cast(self.query, "float32"), axis=-1)
        present = self.presence(inputs)
        return masked_softmax(logits, present), f, present

    def attention_weights(self, inputs: dict[str, Any]) -> Any:
        """``(batch, num_modalities)`` float32 ``α`` (zero for missing modalities)."""
        return self._weights_and_encodings(inputs)[0]

    def call(self, inputs: dict[str, Any]) -> Any:
        alpha, f, present = self._weights_and_encodings(inputs)
        fused = ops.sum(f * ops.cast(alpha, self.compute_dtype)[..., None], axis=1)
        empty = 1.0 - ops.max(present, axis=-1, keepdims=True)
        return fused + ops.cast(empty, self.compute_dtype) * ops.cast(self.default, self.compute_dtype)[None, :]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(attention_dim=self.attention_dim, seed=self.seed)
        return config
