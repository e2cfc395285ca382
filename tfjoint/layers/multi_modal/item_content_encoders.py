"""Multi-modal recommenders as the joint model's modality encoder ``E^M`` (issue 14).

The joint model (``E_merge = U(E, E^B, E^M)``) already holds the candidate item's id
embedding among the fields of ``E``; these layers add, as ``E^M``, the piece of a multi-modal
recommender that turns the item's content into a representation beside it. Both read the
item content ``f_i`` the embedding slot hands every modality encoder
(:class:`~tfjoint.layers.multi_modal.modality_fusion.ModalityFusion`): per modality the
masked mean of its token embeddings (a fixed item vector of ``build_joint_model(...,
item_vectors=...)`` arrives as one projected token), concatenated, ``f_i = [mean_1; ...;
mean_m]``, a missing modality's block 0. ``E^M`` depends on the content only, never on the
item id, so a cold item (out-of-vocabulary id) gets a representation from its content alone.

- :class:`VisualContentEncoder` (``vbpr_encoder``): VBPR's item content term ``E f_i``.
- :class:`BootstrapContentEncoder` (``bm3_encoder``): BM3's projected modality view
  ``h_i^m = W_m f_i + b_m``, aligned with the item's id embedding by BM3's bootstrap loss
  (or InfoNCE) through ``add_loss``.

Not built as ``E^M``: FREEDOM's item-item branch, ``h_i = sum_j S_ij e_j`` over the frozen
kNN graph ``S`` of the *catalog's* modality vectors, needs that catalog when it is built
and the row's item id (to find its neighbours ``j``) when it is called, but a modality
encoder is built from the modality names and called on one row's embedding dict, which
holds neither the ids nor the catalog (the frozen ``item_vectors`` table lives in the
embedding slot). It would need the builder to hand it ``item_vectors`` and the joint model
to pass the item ids (a contract as ``NeedsEmbeddings``). NOVA and MMMLP are sequence models:
their defining pieces (NOVA's attention with queries and keys from the history items'
modality vectors, MMMLP's mixers over the id and modality sequences) read the modality
vectors of every *history* position, so they are built for the ``sequence_encoder`` slot
instead: :class:`~tfjoint.layers.multi_modal.noninvasive_sequence_encoder.NoninvasiveSequenceEncoder`
(``nova_encoder``) and
:class:`~tfjoint.layers.multi_modal.multi_modal_mixer_encoder.MultiModalMixerEncoder`
(``mmmlp_encoder``) declare :class:`~tfjoint.layers.core.contracts.NeedsSequenceContent`, and
the embedding slot then gives them every history item's ``item_vectors`` (the token features
stay the candidate's only: the model holds no item-to-tokens table).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, non_negative, positive
from tfjoint.layers.multi_modal.contrastive_alignment import ALIGNMENTS, ContrastiveAlignment
from tfjoint.layers.multi_modal.item_content import content_embedding
from tfjoint.layers.multi_modal.modality_fusion import ModalityFusion
from tfjoint.registry import register


@register(
    "vbpr_encoder",
    slot="modality_encoder",
    family="multi_modal",
    reference="He & McAuley, VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback, AAAI 2016",
)
class VisualContentEncoder(ModalityFusion):
    """VBPR's item content term as ``E^M``: ``E^M = E f_i``, a linear map without bias.

    VBPR (He & McAuley, AAAI 2016) scores ``x̂_ui = β_i + γ_u^T γ_i + θ_u^T (E f_i) +
    β'^T f_i``: beside the id factor ``γ_i``, the item's visual factor ``θ_i = E f_i``, the
    content vector ``f_i`` mapped linearly (no bias, no activation) by a learned ``E``. Here
    ``γ_i`` is the item's id field of ``E`` and ``E f_i`` is ``E^M``, so a task tower reading
    ``E_merge`` sees both, as VBPR's user factors ``γ_u, θ_u`` do; an item without any
    modality gets ``E^M = 0``. ``E`` is the ``projection`` weight ``(F, output_dim)`` (stored
    transposed, Glorot-uniform as VBPR's), and the product is VBPR's own
    (:func:`~tfjoint.layers.multi_modal.item_content.content_embedding`). The user-independent
    visual bias ``β'^T f_i`` is not carried: it is an item score, left to the towers.

    Args:
        modalities: token feature keys, in order.
        output_dim: ``D``, the width of ``E f_i``.

    Call arguments:
        inputs: the embedding slot's dict, with ``tokens_<name>`` ``(batch, T, d)`` and
            ``tokens_mask_<name>`` ``(batch, T)`` for every modality.

    Returns:
        ``E^M = E f_i`` of shape ``(batch, output_dim)``.
    """

    def build(self, input_shape: dict[str, Any]) -> None:
        self.projection = self.add_weight(
            shape=(self.content_width(input_shape), self.output_dim), initializer="glorot_uniform", name="projection"
        )

    def call(self, inputs: dict[str, Any]) -> Any:
        return content_embedding(ops.cast(self.content(inputs), self.compute_dtype), self.projection)


@register(
    "bm3_encoder",
    slot="modality_encoder",
    family="multi_modal",
    reference="Zhou et al., Bootstrap Latent Representations for Multi-modal Recommendation, WWW 2023",
)
class BootstrapContentEncoder(ModalityFusion):
    """BM3's modality view as ``E^M``, aligned with the item's id embedding by ``add_loss``.

    BM3 (Zhou et al., WWW 2023) projects an item's modality features into the id space,
    ``h_i^m = W_m f_i + b_m``, and aligns it with the item's id view ``h_i`` without
    negatives (Eq. 9): ``L_align = 1 - cos(q(h_i^m), sg(dropout(h_i)))``, ``q`` a linear
    predictor and ``sg`` the stop-gradient, so the id view is the target and no gradient of
    this loss reaches it. Here ``E^M = h_i^m``, the id view is the candidate item's id
    embedding ``target`` of the embedding slot (width ``d``, so ``h_i^m ∈ R^d``), and in
    training the layer adds ``cl_weight * L_align``, averaged over the rows with at least one
    modality, to the model's loss. The loss is
    :class:`~tfjoint.layers.multi_modal.contrastive_alignment.ContrastiveAlignment`, the one
    BM3's retrieval model uses: ``alignment="infonce"`` replaces it by InfoNCE of
    ``q(h_i^m)`` against ``h_i`` with the other rows as negatives (both views receive the
    gradient; a joint-model batch repeats items, and a repeat counts as a negative, so the
    negative-free ``"bootstrap"`` is the default). BM3's other terms are left to the joint
    model: its task losses replace the id-view ``L_rec``, and ``L_mask`` is not added.

    Needs ``target``: the embedding slot gives it for a dataset with a behavior sequence
    (``sequence_item_feature``).

    Args:
        modalities: token feature keys, in order.
        output_dim: the width of ``E^M``; ``None`` (default) takes the id embedding's width
            ``d``, which BM3's projection maps into; any other value must equal it.
        alignment: ``"bootstrap"`` (BM3's) or ``"infonce"``.
        cl_weight: ``λ_cl``, the weight of ``L_align`` (0 turns it off).
        dropout: the target view's dropout (BM3: 0.3-0.5).
        temperature: ``τ`` of InfoNCE.
        seed: seed of the projection, the predictor and the dropout.

    Call arguments:
        inputs: the embedding slot's dict: ``tokens_<name>``, ``tokens_mask_<name>`` per
            modality and ``target`` ``(batch, d)``.

    Returns:
        ``E^M = h_i^m = W_m f_i + b_m`` of shape ``(batch, d)``.
    """

    def __init__(
        self,
        modalities: list[str] | tuple[str, ...],
        output_dim: int | None = None,
        alignment: str = "bootstrap",
        cl_weight: float = 1.0,
        dropout: float = 0.5,
        temperature: float = 0.2,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}. Received: alignment={alignment!r}")
        super().__init__(modalities, output_dim=1 if output_dim is None else output_dim, **kwargs)
        self.output_dim = None if output_dim is None else self.output_dim
        self.alignment_name = alignment
        self.cl_weight = non_negative("cl_weight", cl_weight)
        self.dropout = dropout_rate(dropout)
        self.temperature = positive("temperature", temperature)
        self.seed = seed

    def build(self, input_shape: dict[str, Any]) -> None:
        if "target" not in input_shape:
            raise ValueError(
                "bm3_encoder aligns the modality view with the item's id embedding `target`, which the "
                "embedding slot gives only for a dataset with a behavior sequence. Received keys: "
                f"{sorted(input_shape)}"
            )
        d = int(input_shape["target"][-1])
        if self.output_dim is not None and self.output_dim != d:
            raise ValueError(f"output_dim must equal the id embedding width {d} (or be None). Received: {self.output_dim}")
        seed = self.seed
        self.projection = keras.layers.Dense(
            d, kernel_initializer=keras.initializers.GlorotNormal(seed=None if seed is None else seed + 2),
            name="projection", dtype=self.dtype_policy,
        )
        self.projection.build((None, self.content_width(input_shape)))
        self.alignment = ContrastiveAlignment(
            d, self.alignment_name, self.dropout, self.temperature, seed=seed, name="alignment"
        )

    def alignment_loss(self, view: Any, target: Any, present: Any, training: bool | None = None) -> Any:
        """``mean over rows with content of ContrastiveAlignment(q(view), target)``, float32."""
        per_row = ops.cast(self.alignment({"online": view, "target": target}, training=training), "float32")
        return ops.sum(per_row * present) / ops.maximum(ops.sum(present), 1.0)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        view = self.projection(ops.cast(self.content(inputs), self.compute_dtype))
        if training and self.cl_weight > 0:
            present = ops.max(self.presence(inputs), axis=-1)
            self.add_loss(self.cl_weight * self.alignment_loss(view, inputs["target"], present, training))
        return view

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[int | None, int]:
        return (None, int(input_shape["target"][-1]))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alignment": self.alignment_name,
            "cl_weight": self.cl_weight,
            "dropout": self.dropout,
            "temperature": self.temperature,
            "seed": self.seed,
        }


__all__ = ["BootstrapContentEncoder", "VisualContentEncoder"]
