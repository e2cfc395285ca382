"""Late fusion: E^M = sum_i w_i f_i over the present modalities, w = softmax of learned logits."""

from __future__ import annotations

from typing import Any

from keras import ops

from tfjoint.layers.multi_modal.modality_fusion import ModalityFusion, masked_softmax
from tfjoint.registry import register


@register(
    "late_fusion",
    slot="modality_encoder",
    family="multi_modal",
    reference="Baltrusaitis, Ahuja, Morency, Multimodal Machine Learning: A Survey and Taxonomy, TPAMI 2019",
)
class LateFusion(ModalityFusion):
    """A learned weighted mean of per-modality encodings: decision-level (late) fusion.

    With ``f_i`` the encoding of modality ``i`` (:class:`ModalityFusion`), ``p_i`` its
    presence, ``l_i`` a learned logit per modality (``modality_logits``, zeros at init: equal
    weights) and ``d`` a learned default (``default``, zeros at init)::

        w_i  = p_i exp(l_i) / sum_j p_j exp(l_j)          (float32, over present modalities)
        E^M  = sum_i w_i f_i           if some p_i = 1,   else d

    Each modality is encoded on its own and only the results are combined. Downstream,
    ``E^M`` enters the score linearly (``u · E^M`` in a two-tower model), so the fused score
    is the same weighted mean of the per-modality scores ``u · f_i``: late fusion of
    scores. A missing modality is left out and the weights renormalize over the others; a
    row with no modality gets ``d``.

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
    >>> layer = LateFusion(["title", "genres"], output_dim=3)
    >>> x = {"tokens_title": np.ones((2, 4, 5), "float32"), "tokens_mask_title": np.zeros((2, 4), "float32"),
    ...      "tokens_genres": np.ones((2, 2, 5), "float32"), "tokens_mask_genres": np.ones((2, 2), "float32")}
    >>> np.allclose(layer(x), layer.encode(x)[1])  # no title anywhere: the genres alone
    True

    Reference:
        Baltrusaitis, Ahuja, Morency. Multimodal Machine Learning: A Survey and Taxonomy.
        IEEE TPAMI 2019 (Sec. 5, model-agnostic early and late fusion).
    """

    def build(self, input_shape: dict[str, Any]) -> None:
        super().build(input_shape)
        self.modality_logits = self.add_weight(shape=(len(self.modalities),), initializer="zeros", name="modality_logits")
        self.default = self.add_weight(shape=(self.output_dim,), initializer="zeros", name="default")

    def modality_weights(self, inputs: dict[str, Any]) -> Any:
        """``(batch, num_modalities)`` float32 weights ``w_i`` (zero for missing modalities)."""
        present = self.presence(inputs)
        return masked_softmax(ops.zeros_like(present) + ops.cast(self.modality_logits, "float32")[None, :], present)

    def call(self, inputs: dict[str, Any]) -> Any:
        weights = self.modality_weights(inputs)
        any_present = ops.max(self.presence(inputs), axis=-1, keepdims=True)
        fused = ops.sum(ops.stack(self.encode(inputs), axis=1) * ops.cast(weights, self.compute_dtype)[..., None], axis=1)
        return fused + ops.cast(1.0 - any_present, self.compute_dtype) * ops.cast(self.default, self.compute_dtype)[None, :]
