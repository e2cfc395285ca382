"""MBGCN: multi-behavior graph convolution for top-K retrieval of the target behavior.

The graphs are built once from the training log by :func:`behavior_graphs` (numpy and
scipy, sparse throughout); the model (:class:`MultiBehaviorGraphConvolutionNetwork`)
propagates over them with ``tf.sparse`` ops at every training step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import non_negative, positive_int
from tfjoint.layers.retrieval.base import check_catalog, training_rows, unique_pairs
from tfjoint.layers.retrieval.two_tower import TwoTowerRecommender, bpr_loss
from tfjoint.registry import register

ITEM_GRAPHS = ("binary", "counts")


def behavior_importance(counts: Any, weights: Any) -> Any:
    """``α_ut = w_t n_ut / (Σ_m w_m n_um + 1e-8)`` (the paper's behavior importance, the ``1e-8`` of the
    authors' ``forward``): ``counts`` ``(users, T)``, ``weights`` ``(T,)``; a user with no
    event gets 0 everywhere."""
    counts = ops.cast(counts, "float32")
    weighted = counts * ops.cast(weights, "float32")[None, :]
    return weighted / (ops.sum(weighted, axis=1, keepdims=True) + 1e-8)


def _inverse(values: np.ndarray) -> np.ndarray:
    """``1 / values`` where positive, else 0, as float32."""
    return np.where(values > 0, 1.0 / np.maximum(values, 1.0), 0.0).astype(np.float32)


def _sparse(matrix: sp.spmatrix) -> tf.SparseTensor:
    coo = sp.csr_matrix(matrix)
    coo.sort_indices()  # row-major order: already the canonical order, no tf.sparse.reorder
    coo = coo.tocoo()
    indices = np.stack([coo.row, coo.col], 1).astype(np.int64)
    return tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape)


@dataclasses.dataclass(frozen=True)
class BehaviorGraphs:
    """The graphs of one training log (built by :func:`behavior_graphs`).

    Attributes:
        relations: per behavior ``t`` the binary user-item matrix ``R_t`` ``(U, I)``.
        counts: ``n_ut``, the user's distinct items of behavior ``t``, ``(U, T)`` float32.
        target: the binary user-item matrix of the trained (target) pairs ``(U, I)``.
        item_graph: ``"binary"`` or ``"counts"`` (see :class:`MultiBehaviorGraphConvolutionNetwork`).
        item_adjacency: per behavior the row-normalized item-item matrix (``"binary"`` only).
        item_users: per behavior ``c_it``, the users of item ``i`` under ``t`` (``(I, 1)``).
        item_inverse_degree: per behavior ``1 / Σ_j C_t[i, j]`` or 0 (``"counts"`` only).
    """

    relations: tuple[tf.SparseTensor, ...]
    counts: np.ndarray
    target: tf.SparseTensor
    item_graph: str
    item_adjacency: tuple[tf.SparseTensor, ...] = ()
    item_users: tuple[np.ndarray, ...] = ()
    item_inverse_degree: tuple[np.ndarray, ...] = ()


def behavior_graphs(
    log: InteractionLog,
    behaviors: Sequence[str],
    target_pairs: tuple[np.ndarray, np.ndarray],
    item_graph: str = "binary",
) -> BehaviorGraphs:
    """The user-item matrices per behavior, ``n_ut``, and the item-item graphs of ``log``.

    Item ``i`` and ``j != i`` are linked under behavior ``t`` when one user did ``t`` on both
    (the paper's item-item graph). ``"binary"``: the link weighs 1, ``A_t = 1[R_t^T R_t > 0]``
    off the diagonal, stored row-normalized (its number of non-zeros grows as the square of
    the users' histories: 48 million for Retailrocket's views). ``"counts"``: the link weighs
    the number of such users, ``C_t = R_t^T R_t - diag(c_t)``, never stored: the model
    computes ``C_t E = R_t^T (R_t E) - c_t ⊙ E``.
    """
    if item_graph not in ITEM_GRAPHS:
        raise ValueError(f"item_graph must be one of {ITEM_GRAPHS}. Received: item_graph={item_graph!r}")
    shape = (log.num_users, log.num_items)
    relations, counts, adjacency, item_users, inverse_degree = [], [], [], [], []
    for name in behaviors:
        users, items = unique_pairs(log.of_behavior(name))
        r = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
        relations.append(_sparse(r))
        counts.append(np.bincount(users, minlength=log.num_users))
        c = np.bincount(items, minlength=log.num_items).astype(np.float32)
        item_users.append(c[:, None])
        if item_graph == "binary":
            a = (r.T @ r).tocsr()
            a = (a - sp.diags(a.diagonal())).tocsr()
            a.eliminate_zeros()
            a.data[:] = 1.0
            degree = np.asarray(a.sum(axis=1)).ravel()
            a = sp.diags(_inverse(degree)) @ a
            adjacency.append(_sparse(a))
        else:
            degree = r.T @ np.asarray(r.sum(axis=1)).ravel() - c  # Σ_{j != i} C_t[i, j]
            inverse_degree.append(_inverse(degree)[:, None])
    users, items = target_pairs
    target = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    return BehaviorGraphs(
        tuple(relations), np.stack(counts, 1).astype(np.float32), _sparse(target), item_graph,
        tuple(adjacency), tuple(item_users), tuple(inverse_degree),
    )


def check_behavior_log(log: InteractionLog, num_users: int, num_items: int, num_behaviors: int) -> None:
    """Raises unless ``log`` has a model's users, items and number of behaviors."""
    check_catalog(log, num_items)
    if log.num_users != num_users:
        raise ValueError(f"the log has num_users={log.num_users}, the model num_users={num_users}")
    if len(log.spec.behaviors) != num_behaviors:
        raise ValueError(f"the log has {len(log.spec.behaviors)} behaviors, model num_behaviors={num_behaviors}")


def _drop_values(matrix: tf.SparseTensor, rate: float, seed: Any) -> tf.SparseTensor:
    """Dropout on the stored values of a sparse matrix (the authors' "node dropout")."""
    values = keras.random.dropout(matrix.values, rate, seed=seed)
    return tf.SparseTensor(matrix.indices, values, matrix.dense_shape)


@register(
    "mbgcn",
    slot="retrieval_model",
    family="multi_behavior",
    reference="Jin et al., Multi-behavior Recommendation with Graph Convolutional Networks, SIGIR 2020",
)
class MultiBehaviorGraphConvolutionNetwork(TwoTowerRecommender):
    """MBGCN: behavior-weighted user-item propagation plus per-behavior item-item semantics.

    With ``e_u``, ``e_i`` the ego embeddings, ``R_t`` the binary user-item matrix of
    behavior ``t`` (``N_t(u)`` the user's items, ``n_ut = |N_t(u)|``) and ``T`` behaviors
    (the log's, in funnel order), one propagation layer as the authors' code:

    - behavior importance ``α_ut = w_t n_ut / Σ_m w_m n_um``, ``w_t`` trainable,
      initialized to 1 and unconstrained as in the code (``mgnn_weight``);
    - user-item propagation ``p_u = W^T Σ_t α_ut Σ_{i ∈ N_t(u)} e_i / n_ut`` and
      ``q_i = W^T Σ_{u ∈ N(i)} e_u`` with ``N(i)`` the users of the *target* behavior (a
      sum, not a mean: the code's ``train_matrix.t() @ user_embedding``); final
      ``p*_u = [e_u; p_u]``, ``q*_i = [e_i; q_i]`` (concatenation of the layers);
    - item-item propagation per behavior ``s_it = [e_i; W_t'^T Σ_j A_t[i, j] e_j]`` with
      ``A_t`` the row-normalized item-item graph of behavior ``t`` (see ``item_graph``);
    - score ``y_ui = λ p*_u · q*_i + (1 - λ) (1/T) Σ_t Σ_{j ∈ N_t(u)} s_jt^T M_t s_it / n_ut``
      (the ``1/T`` is the code's ``score2 / len(mgnn_weight)``).

    Trained with BPR on the target behavior (one uniform negative per positive pair, the
    shared sampler of :class:`~tfjoint.layers.retrieval.two_tower.TwoTowerRecommender`)
    plus ``l2_reg (2 |p*_u|^2 + |q*_i|^2 + |q*_j|^2) / B`` on the final features of the
    batch, as ``MBGCN.forward`` / ``regularize`` and ``bprloss`` of tsinghua-fib-lab/MBGCN
    (``model.py``, ``loss.py``). The propagated tables are cached in ``propagated_users``
    and ``propagated_items`` after every epoch, so a reloaded ``.keras`` model scores
    without the graphs. ``score`` is a dot product of those tables:
    ``[λ p*_u, (1-λ)/T z_u1, ..]`` with ``z_ut = (Σ_{j ∈ N_t(u)} s_jt / n_ut) M_t``, against
    ``[q*_i, s_i1, ..]``.

    Deviations: the authors' ``MBGCN.sh`` writes the score as ``y1 + lamb y2`` with
    ``lamb = 1``; the paper's convex ``λ y1 + (1 - λ) y2`` with ``λ = 0.5`` ranks the same
    and halves every score. The authors start from pre-trained MF embeddings
    (``create_embeddings=False``) and Xavier-normal weights; here the embeddings start at
    N(0, 0.1^2) as the other two-tower models (Glorot normal for ``W``, ``W_t'``, ``M_t``).
    The code loads its item-item graphs from files it does not release; ``"binary"``
    follows the paper's definition (a link when one user did ``t`` on both items).
    Message and node dropout default to 0.2, the values of the authors' ``MBGCN.sh``.

    Args:
        num_behaviors: T, the number of behaviors of the logs it is fitted on.
        lamb: λ in [0, 1], the weight of the user-item score.
        item_graph: ``"binary"`` (default, the paper's) or ``"counts"``: links weighted by
            the number of users, computed as ``R_t^T (R_t E)`` without storing the item-item
            matrix (Retailrocket's binary view graph has 48 million links).
        message_dropout: dropout on ``p*_u``, ``q*_i`` while training.
        node_dropout: dropout on the entries of ``R_t`` and of the target matrix while
            training (the code's ``node_drop``, applied to the matrix values).
        other arguments: see :class:`~tfjoint.layers.retrieval.two_tower.TwoTowerRecommender`
            (``loss`` must be ``"bpr"``; ``behaviors`` are the trained behaviors, default
            the target).

    Call arguments:
        users: int user indices ``(batch,)``.

    Returns:
        Scores ``(batch, num_items)``.

    Example:
    >>> import numpy as np
    >>> model = MultiBehaviorGraphConvolutionNetwork(num_users=3, num_items=5, embedding_dim=4, seed=0)
    >>> model.score(np.array([1])).shape
    (1, 5)

    Reference:
        Jin, Gao, He, Jin, Li. Multi-behavior Recommendation with Graph Convolutional
        Networks. SIGIR 2020. Code: github.com/tsinghua-fib-lab/MBGCN (``model.py``).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_behaviors: int = 3,
        lamb: float = 0.5,
        item_graph: str = "binary",
        message_dropout: float = 0.2,
        node_dropout: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_users, num_items, **kwargs)
        if self.loss_name != "bpr":
            raise ValueError(f"MBGCN trains with loss='bpr'. Received: loss={self.loss_name!r}")
        if not 0.0 <= float(lamb) <= 1.0:
            raise ValueError(f"lamb must lie in [0, 1]. Received: lamb={lamb}")
        if item_graph not in ITEM_GRAPHS:
            raise ValueError(f"item_graph must be one of {ITEM_GRAPHS}. Received: item_graph={item_graph!r}")
        for name, rate in (("message_dropout", message_dropout), ("node_dropout", node_dropout)):
            if not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1). Received: {name}={rate}")
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.lamb = float(lamb)
        self.item_graph = item_graph
        self.message_dropout = non_negative("message_dropout", message_dropout)
        self.node_dropout = non_negative("node_dropout", node_dropout)
        self.graphs: BehaviorGraphs | None = None
        d, t, seed = self.embedding_dim, self.num_behaviors, self.seed

        def glorot(offset: int) -> Any:
            return keras.initializers.GlorotNormal(seed=None if seed is None else seed + offset)

        self.behavior_weights = self.add_weight(shape=(t,), initializer="ones", name="behavior_weights")
        self.user_item_kernel = self.add_weight(shape=(d, d), initializer=glorot(2), name="user_item_kernel")
        self.item_item_kernels = [
            self.add_weight(shape=(d, d), initializer=glorot(3 + k), name=f"item_item_kernel_{k}")
            for k in range(t)
        ]
        self.behavior_kernels = [
            self.add_weight(shape=(2 * d, 2 * d), initializer=glorot(3 + t + k), name=f"behavior_kernel_{k}")
            for k in range(t)
        ]
        self.seed_generator = keras.random.SeedGenerator(seed)
        width = 2 * d * (1 + t)
        self.propagated_users = self.add_weight(
            shape=(self.num_users, width), initializer="zeros", trainable=False, name="propagated_users"
        )
        self.propagated_items = self.add_weight(
            shape=(self.num_items, width), initializer="zeros", trainable=False, name="propagated_items"
        )
        self.finish_epoch()

    # -- graphs -----------------------------------------------------------------------
    def set_graph(self, log: InteractionLog, target_pairs: tuple[np.ndarray, ...] | None = None) -> None:
        """Propagates over the graphs of ``log`` from now on (``target_pairs``: the pairs of
        the trained behaviors, by default the log's distinct target pairs)."""
        check_behavior_log(log, self.num_users, self.num_items, self.num_behaviors)
        if target_pairs is None:
            target_pairs = unique_pairs(training_rows(log, self.behaviors))
        self.graphs = behavior_graphs(log, log.spec.behaviors, target_pairs, self.item_graph)
        self.finish_epoch()

    def fit(self, train: InteractionLog, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Builds the graphs of ``train`` (every behavior), then trains as
        :meth:`TwoTowerRecommender.fit` (BPR on the trained behaviors, validation-selected)."""
        self.set_graph(train)
        return super().fit(train, **kwargs)

    def item_semantics(self, behavior: int, items: Any) -> Any:
        """``Σ_j A_t[i, j] e_j`` for every item (before the kernel ``W_t'``)."""
        g = self.graphs
        if g.item_graph == "binary":
            return tf.sparse.sparse_dense_matmul(g.item_adjacency[behavior], items)
        r = g.relations[behavior]
        shared = tf.sparse.sparse_dense_matmul(r, tf.sparse.sparse_dense_matmul(r, items), adjoint_a=True)
        users = ops.convert_to_tensor(g.item_users[behavior])
        return (shared - users * items) * ops.convert_to_tensor(g.item_inverse_degree[behavior])

    def towers(self, training: bool = False) -> tuple[Any, Any, list[Any], list[Any]]:
        """``(p*, q*, [z_t], [s_t])``: the user-item features and, per behavior, the user and
        item sides of the item-item score (see the class docstring)."""
        e_u, e_i = self.user_embedding.embeddings, self.item_embedding.embeddings
        g = self.graphs
        if g is None:  # no graph yet: nothing to propagate
            zeros_u, zeros_i = ops.zeros_like(e_u), ops.zeros_like(e_i)
            semantics = ops.concatenate([e_i, zeros_i], axis=1)
            user_aux = [ops.concatenate([zeros_u, zeros_u], axis=1)] * self.num_behaviors
            return (
                ops.concatenate([e_u, zeros_u], axis=1), ops.concatenate([e_i, zeros_i], axis=1),
                user_aux, [semantics] * self.num_behaviors,
            )
        counts = ops.convert_to_tensor(g.counts)
        alpha = behavior_importance(counts, self.behavior_weights)
        inverse_counts = ops.where(counts > 0, 1.0 / ops.maximum(counts, 1.0), 0.0)
        drop = training and self.node_dropout > 0
        neighbours, user_aux, item_aux = 0.0, [], []
        for t in range(self.num_behaviors):
            r = g.relations[t]
            if drop:
                r = _drop_values(r, self.node_dropout, self.seed_generator)
            semantics = ops.matmul(self.item_semantics(t, e_i), self.item_item_kernels[t])
            s_t = ops.concatenate([e_i, semantics], axis=1)  # s_it = [e_i; W_t'^T Σ_j A_t[i, j] e_j]
            mean = inverse_counts[:, t : t + 1]  # 1 / n_ut
            neighbours = neighbours + alpha[:, t : t + 1] * mean * tf.sparse.sparse_dense_matmul(r, e_i)
            z_t = ops.matmul(mean * tf.sparse.sparse_dense_matmul(r, s_t), self.behavior_kernels[t])
            user_aux.append(z_t)  # z_ut = (Σ_{j ∈ N_t(u)} s_jt / n_ut) M_t
            item_aux.append(s_t)
        target = _drop_values(g.target, self.node_dropout, self.seed_generator) if drop else g.target
        p = ops.matmul(neighbours, self.user_item_kernel)
        q = ops.matmul(tf.sparse.sparse_dense_matmul(target, e_u, adjoint_a=True), self.user_item_kernel)
        user, item = ops.concatenate([e_u, p], axis=1), ops.concatenate([e_i, q], axis=1)
        if training and self.message_dropout > 0:
            user = keras.random.dropout(user, self.message_dropout, seed=self.seed_generator)
            item = keras.random.dropout(item, self.message_dropout, seed=self.seed_generator)
        return user, item, user_aux, item_aux

    def propagate(self, training: bool = False) -> tuple[Any, Any]:
        user, item, user_aux, item_aux = self.towers(training)
        side = (1.0 - self.lamb) / self.num_behaviors
        users = ops.concatenate([self.lamb * user] + [side * z for z in user_aux], axis=1)
        return users, ops.concatenate([item] + item_aux, axis=1)

    def finish_epoch(self) -> None:
        users, items = self.propagate(training=False)
        self.propagated_users.assign(users)
        self.propagated_items.assign(items)

    def final_tables(self) -> tuple[Any, Any]:
        return self.propagated_users, self.propagated_items

    def batch_loss(self, users: Any, positives: Any, negatives: Any, log_q: Any) -> Any:
        """BPR of ``y_ui - y_uj`` plus the code's L2 on the batch's ``p*_u``, ``q*_i``, ``q*_j``."""
        user, item, user_aux, item_aux = self.towers(training=True)
        u = ops.take(user, users, axis=0)
        side = (1.0 - self.lamb) / self.num_behaviors

        def score(items: Any) -> Any:
            main = ops.sum(u * ops.take(item, items, axis=0), axis=-1)
            aux = sum(
                ops.sum(ops.take(z, users, axis=0) * ops.take(s, items, axis=0), axis=-1)
                for z, s in zip(user_aux, item_aux)
            )
            return self.lamb * main + side * aux

        p, n = ops.take(item, positives, axis=0), ops.take(item, negatives, axis=0)
        reg = 2.0 * ops.sum(ops.square(u)) + ops.sum(ops.square(p)) + ops.sum(ops.square(n))
        batch = ops.cast(ops.shape(u)[0], "float32")
        return bpr_loss(score(positives), score(negatives)) + self.l2_reg * reg / batch

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_behaviors": self.num_behaviors,
            "lamb": self.lamb,
            "item_graph": self.item_graph,
            "message_dropout": self.message_dropout,
            "node_dropout": self.node_dropout,
        }


__all__ = [
    "BehaviorGraphs",
    "MultiBehaviorGraphConvolutionNetwork",
    "behavior_graphs",
    "behavior_importance",
    "check_behavior_log",
]
