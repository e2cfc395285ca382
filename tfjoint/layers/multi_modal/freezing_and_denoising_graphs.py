"""FREEDOM: LightGCN on a degree-pruned user-item graph plus a frozen modality kNN item graph."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, non_negative, positive_int
from tfjoint.layers.multi_modal.item_content import check_cold_start, check_item_features, cold_adjusted, warm_flags
from tfjoint.layers.retrieval.light_graph_convolution_network import LightGraphConvolutionNetwork, normalized_adjacency
from tfjoint.layers.retrieval.two_tower import bpr_loss
from tfjoint.registry import register


def knn_item_graph(features: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The normalized kNN graph ``S̃ = D^-1/2 S D^-1/2`` of one modality, as ``(neighbors, values)``
    ``(num_items, k)``: row ``i`` holds the ``k`` items of highest cosine similarity to ``f_i``
    (itself included, as ``torch.topk`` over the full similarity row in the authors' code),
    ``S_ij = 1`` on them, ``D = diag(S 1)`` the row degrees, so ``S̃_ij = D_ii^-1/2 D_jj^-1/2``.
    An all-zero feature row has similarity 0 to every item. Rows are computed ``chunk`` at a time."""
    features = np.asarray(features, np.float32)
    n = features.shape[0]
    k = min(int(k), n)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    neighbors = np.empty((n, k), np.int64)
    for start in range(0, n, chunk):
        sim = unit[start : start + chunk] @ unit.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        neighbors[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    degree = np.full(n, float(k))  # every row of S has its k neighbours
    inv_sqrt = 1.0 / np.sqrt(degree)
    values = inv_sqrt[:, None] * inv_sqrt[neighbors]
    return neighbors, values.astype(np.float32)


def item_graph(modalities: list[np.ndarray], weights: list[float], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``S = sum_m w_m S̃^m`` (the paper's weighted sum of the modality graphs) as ``(neighbors, values)`` ``(num_items, M k)``: the
    modalities' neighbour lists side by side (an item in two lists counts twice: a sparse
    product sums duplicate entries)."""
    parts = [knn_item_graph(f, k) for f in modalities]
    neighbors = np.concatenate([p[0] for p in parts], axis=1)
    values = np.concatenate([w * p[1] for w, p in zip(weights, parts)], axis=1)
    return neighbors, values.astype(np.float32)


def prune_edges(
    users: np.ndarray, items: np.ndarray, keep_ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Degree-sensitive edge pruning (the authors' ``pre_epoch_processing``): ``round_down(|E| keep_ratio)`` distinct
    edges drawn without replacement with probability ``p_e ∝ 1 / sqrt(d_u d_i)`` (degrees of
    the full training graph), so edges between popular nodes are dropped first."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    d_u = np.bincount(users)[users].astype(np.float64)
    d_i = np.bincount(items)[items].astype(np.float64)
    p = 1.0 / np.sqrt(d_u * d_i)
    keep = rng.choice(len(users), size=int(len(users) * keep_ratio), replace=False, p=p / p.sum())
    return users[keep], items[keep]


class _PrunedGraph:
    """The training graph of the current epoch as variables (read at run time by the traced
    step); a plain object so that Keras neither tracks nor saves them."""

    def __init__(self, size: int, num_nodes: int) -> None:
        self.indices = tf.Variable(tf.zeros((size, 2), tf.int64), trainable=False)
        self.values = tf.Variable(tf.zeros((size,), tf.float32), trainable=False)
        self.shape = (num_nodes, num_nodes)

    def assign(self, adjacency: tf.SparseTensor) -> None:
        self.indices.assign(adjacency.indices)
        self.values.assign(adjacency.values)

    def tensor(self) -> tf.SparseTensor:
        return tf.SparseTensor(self.indices, self.values, self.shape)


@register(
    "freedom",
    slot="retrieval_model",
    family="multi_modal",
    reference="Zhou & Shen, A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal Recommendation, ACM MM 2023",
)
class FreezingAndDenoisingGraphs(LightGraphConvolutionNetwork):
    """FREEDOM: ``ŷ_ui = e_u · (ē_i + h_i)``, LightGCN ``(e_u, ē_i)`` beside ``h = S^L E_i``.

    Zhou & Shen (ACM MM 2023), after the authors' ``models/freedom.py`` (enoche/FREEDOM, MMRec):

    Equation by equation, with the authors' functions (the paper's own numbering is not cited):

    - *Frozen item graph* (``get_knn_adj_mat``): per modality ``m`` the kNN graph of the raw features'
      cosine similarity (``knn_k`` = 10 neighbours, the item itself among them), normalized
      ``S̃^m = D^-1/2 S^m D^-1/2``, summed ``S = sum_m w_m S̃^m`` with ``modality_weights``
      (default equal, summing to 1; the authors' two-modality ``α_v``, ``1 - α_v``); built
      once from the features (:func:`item_graph`) and stored as the non-trainable weights
      ``item_graph_neighbors`` and ``item_graph_values``.
    - *Item-item convolution* (``forward``): ``h = S^L E_i^(0)`` over the item id embeddings,
      ``L = item_graph_layers`` (1).
    - *Denoised user-item graph* (``pre_epoch_processing``): before every epoch ``(1 - dropout)`` of the
      training edges are kept, drawn without replacement with ``p ∝ 1/sqrt(d_u d_i)``
      (:func:`prune_edges`, ``dropout`` 0.8 as the authors' config), renormalized
      ``D^-1/2 A D^-1/2`` on the kept graph (:func:`normalized_adjacency`); LightGCN
      (:func:`propagate_layers`, ``num_layers`` = 2) propagates over it in training and over
      the full graph when scoring.
    - *Prediction and loss* (``forward``, ``calculate_loss``): ``e_i = ē_i + h_i``, ``ŷ_ui = e_u · e_i``; BPR plus
      ``λ sum_m BPR(e_u, W_m f^m_i + b_m, W_m f^m_j + b_m)`` (``modality_weight`` = λ, the
      authors' ``reg_weight``), the projections ``W_m`` entering the loss only. No L2 term
      (``l2_reg`` 0 by default, as the authors' loss).

    Cold items (no training rows): a cold item has no user-item edge, so its LightGCN part is
    its own ego row ``E_i^(0) / (K + 1)``, and its row enters ``h`` of its kNN neighbours.
    ``cold_start`` (:mod:`tfjoint.layers.multi_modal.item_content`) replaces the cold rows of
    ``E_i^(0)`` in training and scoring alike: ``"features"`` (default) zeroes them, so a cold
    item is scored through ``h_i = sum_j S_ij e_j`` over its warm modality neighbours only;
    ``"mean"`` uses the warm rows' mean; ``"none"`` keeps them (the authors' behaviour: a cold
    row is trained only as a neighbour of warm items). Negatives are drawn among warm items.

    Deviations: the raw features stay fixed (the authors fine-tune them as an embedding);
    the ego tables start from LightGCN's N(0, 0.1^2) (the authors: Xavier uniform); the
    sampling distribution uses the degrees of the full training graph without the authors'
    ``1e-7``; only the BPR loss is offered.

    Args:
        num_users, num_items: sizes of the index spaces.
        item_features: one ``(num_items, F_m)`` array or a list of them (modalities); or None
            and ``feature_dims`` (then pass them to :meth:`fit`; ``.keras`` restores them).
        feature_dims: ``[F_m]``; inferred from ``item_features`` when given.
        modality_weights: ``w_m`` of the item graph (default ``1/M`` each).
        knn_k: neighbours per item and modality. item_graph_layers: ``L``.
        dropout: fraction of user-item edges pruned per epoch (0: no pruning).
        modality_weight: λ of the modality BPR terms.
        cold_start: ``"features"``, ``"mean"`` or ``"none"`` (see above).
        other arguments: see :class:`LightGraphConvolutionNetwork` (``num_layers`` = 2 here).

    Example:
    >>> import numpy as np
    >>> features = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    >>> model = FreezingAndDenoisingGraphs(3, 5, item_features=features, knn_k=2, embedding_dim=4, seed=0)
    >>> model.score(np.array([1])).shape
    (1, 5)

    Reference:
        Zhou, Shen. A Tale of Two Graphs: Freezing and Denoising Graph Structures for
        Multimodal Recommendation. ACM MM 2023.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_features: Any = None,
        feature_dims: list[int] | None = None,
        modality_weights: list[float] | None = None,
        knn_k: int = 10,
        item_graph_layers: int = 1,
        dropout: float = 0.8,
        modality_weight: float = 1e-4,
        cold_start: str = "features",
        num_layers: int = 2,
        l2_reg: float = 0.0,
        loss: str = "bpr",
        **kwargs: Any,
    ) -> None:
        if loss != "bpr":
            raise ValueError(f"FREEDOM trains with loss='bpr' only. Received: loss={loss!r}")
        num_items = positive_int("num_items", num_items)
        if item_features is None and feature_dims is None:
            raise ValueError("FREEDOM needs item_features or feature_dims. Received: both None")
        modalities = None
        if item_features is not None:
            modalities = self._check_modalities(item_features, num_items, feature_dims)
            feature_dims = [f.shape[1] for f in modalities]
        feature_dims = [positive_int("feature_dims", f) for f in feature_dims]
        if modality_weights is None:
            modality_weights = [1.0 / len(feature_dims)] * len(feature_dims)
        if len(modality_weights) != len(feature_dims):
            raise ValueError(f"modality_weights must have one weight per modality ({len(feature_dims)}). Received: {modality_weights}")
        modality_weights = [non_negative("modality_weights", w) for w in modality_weights]
        knn_k = positive_int("knn_k", knn_k)
        item_graph_layers = positive_int("item_graph_layers", item_graph_layers, minimum=0)
        dropout = dropout_rate(dropout)
        modality_weight = non_negative("modality_weight", modality_weight)
        cold_start = check_cold_start(cold_start)
        super().__init__(num_users, num_items, num_layers=num_layers, l2_reg=l2_reg, loss=loss, **kwargs)
        self.feature_dims, self.modality_weights, self.knn_k = feature_dims, modality_weights, knn_k
        self.item_graph_layers, self.dropout, self.modality_weight = item_graph_layers, dropout, modality_weight
        self.cold_start = cold_start
        self.pruned: _PrunedGraph | None = None
        self.rng = np.random.default_rng(self.seed)
        width = len(feature_dims) * min(knn_k, num_items)
        self.warm_items = self.add_weight(shape=(num_items,), initializer="ones", trainable=False, name="warm_items")
        self.item_graph_neighbors = self.add_weight(
            shape=(num_items, width), initializer="zeros", dtype="int64", trainable=False, name="item_graph_neighbors"
        )
        self.item_graph_values = self.add_weight(
            shape=(num_items, width), initializer="zeros", trainable=False, name="item_graph_values"
        )
        self.modality_features = [
            self.add_weight(shape=(num_items, f), initializer="zeros", trainable=False, name=f"modality_features_{m}")
            for m, f in enumerate(feature_dims)
        ]
        self.projections = [keras.layers.Dense(self.embedding_dim, name=f"modality_projection_{m}") for m in range(len(feature_dims))]
        for projection, f in zip(self.projections, feature_dims):
            projection.build((None, f))
        self.ready = True
        self.finish_epoch()
        if modalities is not None:
            self.set_item_features(modalities)

    @staticmethod
    def _check_modalities(item_features: Any, num_items: int, feature_dims: list[int] | None) -> list[np.ndarray]:
        modalities = list(item_features) if isinstance(item_features, (list, tuple)) else [item_features]
        if feature_dims is not None and len(feature_dims) != len(modalities):
            raise ValueError(f"feature_dims must have one entry per modality ({len(modalities)}). Received: {feature_dims}")
        return [check_item_features(f, num_items, None if feature_dims is None else feature_dims[m]) for m, f in enumerate(modalities)]

    def set_item_features(self, item_features: Any) -> None:
        """Stores the modality features and freezes the item graph built from them."""
        modalities = self._check_modalities(item_features, self.num_items, self.feature_dims)
        for weight, f in zip(self.modality_features, modalities):
            weight.assign(f)
        neighbors, values = item_graph(modalities, self.modality_weights, self.knn_k)
        self.item_graph_neighbors.assign(neighbors)
        self.item_graph_values.assign(values)
        self.finish_epoch()

    # -- the two graphs -------------------------------------------------------------
    def item_item_graph(self) -> tf.SparseTensor:
        """``S`` as a ``(num_items, num_items)`` sparse tensor (duplicate entries sum)."""
        neighbors = ops.cast(self.item_graph_neighbors, "int64")
        rows = ops.repeat(ops.arange(self.num_items, dtype="int64")[:, None], ops.shape(neighbors)[1], axis=1)
        indices = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(neighbors, (-1,))], axis=1)
        return tf.SparseTensor(indices, ops.reshape(self.item_graph_values, (-1,)), (self.num_items, self.num_items))

    def ego_item_table(self) -> Any:
        """``E_i^(0)`` with the cold rows replaced as ``cold_start`` says."""
        return cold_adjusted(self.cold_start, self.warm_items, self.item_embedding.embeddings)[0]

    def graph(self, training: bool = False) -> tf.SparseTensor | None:
        """The pruned graph of the epoch in training (when pruning), else the full one."""
        return self.pruned.tensor() if training and self.pruned is not None else self.adjacency

    def propagate(self, training: bool = False) -> tuple[Any, Any]:
        """``(e_u, ē_i + h_i)`` with ``h = S^L E_i^(0)``."""
        users, items = super().propagate(training)
        h = self.ego_item_table()
        if self.item_graph_layers:
            graph = self.item_item_graph()
            for _ in range(self.item_graph_layers):
                h = tf.sparse.sparse_dense_matmul(graph, h)
        if training:
            self.training_users = users  # the batch loss's modality terms read it (same trace)
        return users, items + h

    def call(self, users: Any, training: bool | None = None) -> Any:
        """Scores from the cached tables; with ``training=True`` propagated live (over the
        epoch's pruned graph), so that a Keras training step reaches the embeddings."""
        if not training:
            return super().call(users, training=training)
        user_table, item_table = self.propagate(training=True)
        return ops.matmul(ops.take(user_table, ops.cast(users, "int32"), axis=0), ops.transpose(item_table))

    # -- training -------------------------------------------------------------------
    def prepare(self, pairs: tuple[np.ndarray, np.ndarray]) -> None:
        users, items = pairs
        self.warm_items.assign(warm_flags(items, self.num_items))
        self.train_pairs = (np.asarray(users), np.asarray(items))
        self.pruned = None
        if self.dropout > 0.0:
            kept = int(len(users) * (1.0 - self.dropout))
            if kept < 1:
                raise ValueError(f"dropout={self.dropout} keeps no edge of the {len(users)} training pairs")
            self.pruned = _PrunedGraph(2 * kept, self.num_users + self.num_items)
        super().prepare(pairs)  # the full graph, then finish_epoch draws the first pruned graph

    def negative_items(self, items: np.ndarray) -> np.ndarray:
        return np.unique(items)

    def finish_epoch(self) -> None:
        """Caches the scoring tables, then draws the next epoch's pruned graph."""
        if not getattr(self, "ready", False):  # LightGCN's constructor calls it before the graph exists
            return
        super().finish_epoch()
        if getattr(self, "pruned", None) is not None:
            users, items = prune_edges(*self.train_pairs, 1.0 - self.dropout, self.rng)
            self.pruned.assign(normalized_adjacency(users, items, self.num_users, self.num_items))

    def batch_loss(self, users: Any, positives: Any, negatives: Any, log_q: Any) -> Any:
        """BPR of ``e_u · e_i`` plus ``λ`` times each modality's BPR on ``W_m f_i + b_m``."""
        loss = super().batch_loss(users, positives, negatives, log_q)
        if not self.modality_weight:
            return loss
        u = ops.take(self.training_users, users, axis=0)
        for projection, features in zip(self.projections, self.modality_features):
            p = projection(ops.take(features, positives, axis=0))
            n = projection(ops.take(features, negatives, axis=0))
            loss = loss + self.modality_weight * bpr_loss(ops.sum(u * p, axis=-1), ops.sum(u * n, axis=-1))
        return loss

    def fit(self, train: Any, *, item_features: Any = None, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """LightGCN's trainer (BPR, warm negatives); ``item_features`` replaces the stored
        modalities (and the item graph) first."""
        if item_features is not None:
            self.set_item_features(item_features)
        return super().fit(train, **kwargs)

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments but ``item_features``, saved as weights with the graph."""
        return {
            **super().get_config(),
            "feature_dims": list(self.feature_dims),
            "modality_weights": list(self.modality_weights),
            "knn_k": self.knn_k,
            "item_graph_layers": self.item_graph_layers,
            "dropout": self.dropout,
            "modality_weight": self.modality_weight,
            "cold_start": self.cold_start,
        }


__all__ = ["FreezingAndDenoisingGraphs", "item_graph", "knn_item_graph", "prune_edges"]
