"""Early fusion: E^M = W [f~_1; ...; f~_m] + b, a missing modality replaced by a learned default."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.multi_modal.modality_fusion import ModalityFusion
from tfjoint.registry import register


@register(
    "early_fusion",
    slot="modality_encoder",
    family="multi_modal",
    reference="Baltrusaitis, Ahuja, Morency, Multimodal Machine Learning: A Survey and Taxonomy, TPAMI 2019",
)
class EarlyFusion(ModalityFusion):
    """Concatenates the modality encodings and projects them: feature-level (early) fusion.

    With ``f_i`` the encoding of modality ``i`` (:class:`ModalityFusion`), ``p_i`` its
    presence in the row and ``d_i`` a learned default (``defaults[i]``, zeros at init)::

        f~_i = p_i f_i + (1 - p_i) d_i
        E^M  = W [f~_1; ...; f~_m] + b          (``fusion``, a Dense layer)

    A concatenation needs every slot filled, so a missing modality is *imputed* with what
    training finds best for items that lack it, instead of the constant ``tanh(b_i)`` its
    empty token mean would encode to.

    Args:
        modalities: token feature keys, in order.
        output_dim: size of every ``f_i`` and of ``E^M``.

    Call arguments:
        inputs: the embedding slot's dict, with ``tokens_<name>`` ``(batch, T, d)`` and
            ``tokens_mask_<name>`` ``(batch, T)`` for every modality.

    Returns:
        ``E^M`` of shape ``(batch, output_dim)``.

    Example:
    >>> import numpy as np
    >>> layer = EarlyFusion(["title"], output_dim=3)
    >>> x = {"tokens_title": np.ones((2, 4, 5), "float32"), "tokens_mask_title": np.ones((2, 4), "float32")}
    >>> tuple(layer(x).shape)
    (2, 3)

    Reference:
        Baltrusaitis, Ahuja, Morency. Multimodal Machine Learning: A Survey and Taxonomy.
        IEEE TPAMI 2019 (Sec. 5, model-agnostic early and late fusion).
    """

    def build(self, input_shape: dict[str, Any]) -> None:
        super().build(input_shape)
        self.defaults = self.add_weight(
            shape=(len(self.modalities), self.output_dim), initializer="zeros", name="defaults"
        )
        self.fusion = keras.layers.Dense(self.output_dim, name="fusion", dtype=self.dtype_policy)
        self.fusion.build((None, self.output_dim * len(self.modalities)))

    def call(self, inputs: dict[str, Any]) -> Any:
        present = ops.cast(self.presence(inputs), self.compute_dtype)
        defaults = ops.cast(self.defaults, self.compute_dtype)
        filled = [
            present[:, i : i + 1] * f + (1.0 - present[:, i : i + 1]) * defaults[i][None, :]
            for i, f in enumerate(self.encode(inputs))
        ]
        return self.fusion(ops.concatenate(filled, axis=-1))
