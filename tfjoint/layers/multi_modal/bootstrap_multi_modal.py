"""BM3: LightGCN id views and projected modality views aligned by bootstrapping, no negatives."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import non_negative, positive_int
from tfjoint.layers.multi_modal.contrastive_alignment import ContrastiveAlignment
from tfjoint.layers.multi_modal.item_content import check_cold_start, check_item_features, cold_adjusted, set_item_content
from tfjoint.layers.retrieval.light_graph_convolution_network import LightGraphConvolutionNetwork
from tfjoint.registry import register

_UNUSED = ("loss", "l2_reg", "num_negatives", "logq_correction")  # TwoTowerRecommender's, not BM3's


@register(
    "bm3",
    slot="retrieval_model",
    family="multi_modal",
    reference="Zhou et al., Bootstrap Latent Representations for Multi-modal Recommendation, WWW 2023",
)
class BootstrapMultiModal(LightGraphConvolutionNetwork):
    """BM3: ``ŷ_ui = q(h_u) · q(h_i)``, trained by aligning views, without negatives.

    Zhou, Zhou, Liu, Zeng, Miao, Wang, You, Jiang (WWW 2023), as the authors' code
    (enoche/MMRec ``src/models/bm3.py``):

    - id views: LightGCN (:func:`~tfjoint.layers.retrieval.light_graph_convolution_network.propagate_layers`)
      over the user-item graph, ``h_u = mean_k E_u^(k)``, and for items the residual
      ``h_i = mean_k E_i^(k) + E_i^(0)`` (``forward`` of the authors' code);
    - modality view: ``h_i^m = W_m (f_i + Δ_i) + b_m`` (``projection``, a linear map into the
      id space) of the item features ``f_i`` (one modality table, as VBPR and NOVA), fine-tuned
      as the authors' ``nn.Embedding.from_pretrained(f, freeze=False)``: ``Δ_i`` is a trainable
      offset that starts at 0 (the same Adam steps as training ``f_i`` itself), kept apart so
      that ``f_i`` stays as given;
    - target views ``h̃ = sg(dropout(h))`` (no target network) and the shared predictor
      ``q`` of :class:`~tfjoint.layers.multi_modal.contrastive_alignment.ContrastiveAlignment`;
    - per batch of distinct training pairs ``(u, i)``, with ``c(a, b) = 1 - cos(q(a), h̃_b)``
      (:func:`~tfjoint.layers.multi_modal.contrastive_alignment.bootstrap_loss`):
      ``L_rec = mean c(h_u, h_i) + mean c(h_i, h_u)`` (Eq. 6-7),
      ``L_align = mean c(h_i^m, h_i)`` (inter-modality alignment, Eq. 9),
      ``L_mask = mean c(h_i^m, h_i^m)`` (masked feature loss, Eq. 8), and
      ``L = L_rec + λ_reg (|H_U|_F + |H_I|_F) / |I| + λ_cl (L_align + L_mask)`` (Eq. 10;
      the regularizer as the authors' ``EmbLoss`` on the full propagated tables).

    No negative is sampled. Initialization as the authors' code: Xavier-uniform ids,
    Xavier-normal predictor and projection.

    ``alignment="infonce"`` (ours, not in the paper): ``L_align`` is replaced by InfoNCE
    of ``q(h_i^m)`` against ``h_i`` over the batch's distinct items (in-batch negatives,
    temperature ``τ``; the id view receives the gradient too); ``L_rec``, ``L_mask`` and the
    regularizer are unchanged.

    Cold items (no training rows; beyond the paper, which scores warm items only): their id
    rows are replaced as ``cold_start`` says (shared with VBPR and NOVA,
    :mod:`tfjoint.layers.multi_modal.item_content`): ``"features"`` (default) scores a cold
    item by its modality view alone, ``q(h_i^m)`` in place of ``q(h_i)`` (the alignment
    trains ``q(h_i^m)`` towards the item's id view, which ``q(h_u)`` is trained towards);
    ``"mean"`` uses the mean warm ``h_i``; ``"none"`` the untrained row. A cold item is in no
    batch, so its ``Δ_i`` stays 0: it is scored from its features as given.

    Id-only BM3 (BM3's own counterpart without modalities, ``tfjoint bench mmr``'s ``bm3_ids``):
    built with neither ``item_features`` nor ``feature_dim``, ``cl_weight=0`` and ``cold_start``
    ``"mean"`` or ``"none"``, it has no projection, feature or offset weights and trains
    ``L = L_rec + λ_reg (|H_U|_F + |H_I|_F) / |I|`` only (the online / target id views with the
    predictor); at ``cl_weight=0`` the modality terms are not computed, with or without features.

    Args:
        num_users, num_items: sizes of the index spaces of the logs it is fitted on.
        item_features: ``(num_items, F)`` float modality vectors; or None and ``feature_dim``
            (then pass them to :meth:`fit`; a ``.keras`` file restores them as a weight);
            or both None for id-only BM3 (above).
        feature_dim: ``F``; inferred from ``item_features`` when it is given.
        embedding_dim: ``d`` of ids, modality view and predictor (64 in the paper).
        num_layers: LightGCN layers (the paper: 1 or 2).
        dropout: target-view dropout (the paper: 0.3 or 0.5).
        reg_weight: ``λ_reg`` (the paper: 0.1 or 0.01). cl_weight: ``λ_cl`` (2.0 in the code).
        alignment: ``"bootstrap"`` (the paper's) or ``"infonce"`` (see above).
        temperature: ``τ`` of the InfoNCE alignment.
        cold_start: ``"features"``, ``"mean"`` or ``"none"`` (see above).
        fine_tune_features: train ``Δ`` (the authors'; default) or keep ``f`` fixed (``Δ = 0``).
        behaviors, seed: as :class:`~tfjoint.layers.retrieval.two_tower.TwoTowerRecommender`.

    Example:
    >>> import numpy as np
    >>> model = BootstrapMultiModal(3, 5, item_features=np.eye(5, 2, dtype="float32"), embedding_dim=4, seed=0)
    >>> model.score(np.array([0, 2])).shape
    (2, 5)

    Reference:
        Zhou et al. Bootstrap Latent Representations for Multi-modal Recommendation. WWW 2023.
    """

    uses_negatives = False

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_features: Any = None,
        feature_dim: int | None = None,
        embedding_dim: int = 64,
        num_layers: int = 1,
        dropout: float = 0.5,
        reg_weight: float = 0.1,
        cl_weight: float = 2.0,
        alignment: str = "bootstrap",
        temperature: float = 0.2,
        cold_start: str = "features",
        fine_tune_features: bool = True,
        behaviors: list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        given = sorted(set(kwargs) & set(_UNUSED))
        if given:
            raise ValueError(f"BM3 trains with its own loss and regularizer (see reg_weight). Received: {given}")
        self.cold_start = check_cold_start(cold_start)
        self.reg_weight = non_negative("reg_weight", reg_weight)
        self.cl_weight = non_negative("cl_weight", cl_weight)
        self.modalities = item_features is not None or feature_dim is not None
        if not self.modalities and (self.cl_weight > 0 or self.cold_start == "features"):
            raise ValueError(
                "BM3 needs item_features or feature_dim (id-only BM3: cl_weight=0 and cold_start 'mean' or 'none'). "
                f"Received: both None with cl_weight={cl_weight}, cold_start={cold_start!r}"
            )
        if item_features is not None:
            item_features = check_item_features(item_features, int(num_items), feature_dim)
            feature_dim = item_features.shape[1]
        feature_dim = positive_int("feature_dim", feature_dim) if self.modalities else None
        super().__init__(
            num_users, num_items, num_layers=num_layers, embedding_dim=embedding_dim, l2_reg=0.0,
            behaviors=behaviors, seed=seed, **kwargs,
        )
        self.feature_dim = feature_dim
        self.alignment = ContrastiveAlignment(
            self.embedding_dim, alignment=alignment, dropout=dropout, temperature=temperature, seed=seed, name="alignment"
        )
        self.projection = self.item_features = self.feature_offset = None  # id-only: no modality view
        if self.modalities:
            self.projection = keras.layers.Dense(
                self.embedding_dim, kernel_initializer=keras.initializers.GlorotNormal(seed=None if seed is None else seed + 2),
                name="projection",
            )
            self.projection.build((None, feature_dim))
        for offset, table in enumerate((self.user_embedding.embeddings, self.item_embedding.embeddings)):
            init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)
            table.assign(init(table.shape))
        if self.modalities:
            self.item_features = self.add_weight(
                shape=(self.num_items, feature_dim), initializer="zeros", trainable=False, name="item_features"
            )
        self.warm_items = self.add_weight(shape=(self.num_items,), initializer="ones", trainable=False, name="warm_items")
        self.fine_tune_features = bool(fine_tune_features)
        if self.modalities:
            self.feature_offset = self.add_weight(  # Δ: the fine-tuning of the features
                shape=(self.num_items, feature_dim), initializer="zeros", trainable=self.fine_tune_features,
                name="feature_offset",
            )
            if item_features is not None:
                self.item_features.assign(item_features)
        self.finish_epoch()

    # -- views ----------------------------------------------------------------------
    def propagate(self, training: bool = False) -> tuple[Any, Any]:
        """``(h_u, h_i)``: LightGCN's mean over layers, plus the ego row for items."""
        users, items = super().propagate(training)
        return users, items + self.item_embedding.embeddings

    def modality_view(self, items: Any | None = None) -> Any:
        """``h_i^m = W_m (f_i + Δ_i) + b_m`` of ``items`` (every item when None)."""
        table = self.item_features + self.feature_offset
        features = table if items is None else ops.take(table, items, axis=0)
        return self.projection(features)

    def final_tables(self) -> tuple[Any, Any]:
        """``(q(h_u), q(h_i))``, cold items' ``h_i`` as ``cold_start`` says."""
        users, items = self.propagated_users, self.propagated_items
        (items,) = cold_adjusted(self.cold_start, self.warm_items, items)
        if self.cold_start == "features":
            items = items + (1.0 - self.warm_items)[:, None] * self.modality_view()
        return self.alignment.predict_view(users), self.alignment.predict_view(items)

    # -- training -------------------------------------------------------------------
    def batch_loss(self, users: Any, positives: Any, negatives: Any, log_q: Any) -> Any:
        """BM3's loss of a batch of pairs (class docstring); ``negatives``, ``log_q`` unused."""
        user_table, item_table = self.propagate(training=True)
        h_u, h_i = ops.take(user_table, users, axis=0), ops.take(item_table, positives, axis=0)
        align = self.alignment
        rec = ops.mean(align.bootstrap(h_u, h_i, training=True)) + ops.mean(align.bootstrap(h_i, h_u, training=True))
        norm = ops.sqrt(ops.sum(ops.square(user_table))) + ops.sqrt(ops.sum(ops.square(item_table)))
        if self.cl_weight == 0:  # id-only BM3 (or λ_cl = 0): no modality term, the features never read
            return rec + self.reg_weight * norm / float(self.num_items)
        h_m = self.modality_view(positives)
        if align.alignment == "bootstrap":
            alignment = ops.mean(align.bootstrap(h_m, h_i, training=True))
        else:  # distinct items only: a duplicate would be its own negative
            distinct = tf.unique(positives).y
            alignment = ops.mean(align.info_nce(self.modality_view(distinct), ops.take(item_table, distinct, axis=0)))
        mask = ops.mean(align.bootstrap(h_m, h_m, training=True))
        return rec + self.reg_weight * norm / float(self.num_items) + self.cl_weight * (alignment + mask)

    def fit(self, train: InteractionLog, *, item_features: Any = None, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Sets the warm items (and ``item_features`` when given), then LightGCN's loop
        (Adam over shuffled distinct pairs, validation-selected) with BM3's loss."""
        if item_features is not None and not self.modalities:
            raise ValueError("id-only BM3 (built without item_features or feature_dim) reads no item features. Received: item_features")
        set_item_content(self, train, item_features)
        return super().fit(train, **kwargs)

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments but ``item_features`` (saved as a weight)."""
        config = {k: v for k, v in super().get_config().items() if k not in _UNUSED}
        align = self.alignment
        return {
            **config,
            "feature_dim": self.feature_dim,
            "dropout": align.dropout,
            "reg_weight": self.reg_weight,
            "cl_weight": self.cl_weight,
            "alignment": align.alignment,
            "temperature": align.temperature,
            "cold_start": self.cold_start,
            "fine_tune_features": self.fine_tune_features,
        }


__all__ = ["BootstrapMultiModal"]
