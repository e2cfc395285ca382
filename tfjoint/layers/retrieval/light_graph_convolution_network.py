"""LightGCN: linear propagation over the normalized user-item graph, mean over layers."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.retrieval.two_tower import TwoTowerRecommender
from tfjoint.registry import register


def normalized_adjacency(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> tf.SparseTensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, R], [R^T, 0]]`` (users first),
    with ``R`` the binary user-item matrix of the pairs; a node of degree 0 gets 0 (as
    ``getSparseGraph`` of the authors' code)."""
    keys = np.unique(np.asarray(users, np.int64) * num_items + np.asarray(items, np.int64))
    u, i = keys // num_items, keys % num_items + num_users
    degree = np.bincount(np.concatenate([u, i]), minlength=num_users + num_items).astype(np.float64)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    rows, cols = np.concatenate([u, i]), np.concatenate([i, u])
    values = (inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
    n = num_users + num_items
    return tf.sparse.reorder(tf.SparseTensor(np.stack([rows, cols], 1), values, (n, n)))


def propagate_layers(adjacency: tf.SparseTensor, ego: Any, num_layers: int) -> Any:
    """``mean_{k=0..K} E^(k)`` with ``E^(k+1) = Â E^(k)`` (Eq. 8 and 9, α_k = 1/(K+1))."""
    layers = [ego]
    for _ in range(num_layers):
        layers.append(tf.sparse.sparse_dense_matmul(adjacency, layers[-1]))
    return ops.mean(ops.stack(layers, axis=0), axis=0)


@register(
    "lightgcn",
    slot="retrieval_model",
    family="retrieval",
    reference="He et al., LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation, SIGIR 2020",
)
class LightGraphConvolutionNetwork(TwoTowerRecommender):
    """LightGCN: ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)``, ``E = mean_k E^(k)``, ``ŷ_ui = e_u · e_i``.

    Light graph convolution (Eq. 3, in matrix form Eq. 7-8) with no feature transformation
    and no non-linearity over the bipartite graph of the training pairs, the layer
    combination ``α_k = 1/(K+1)`` (Eq. 4 / 9) and the inner-product prediction (Eq. 5).
    Trained with BPR (Eq. 15) and the L2 term on the batch's ego (layer-0) embeddings only,
    ``0.5 (|E_u^(0)|^2 + |E_i^(0)|^2 + |E_j^(0)|^2) / B``, N(0, 0.1^2) initialization and the
    full-graph propagation at every step, as ``computer`` and ``bpr_loss`` of
    gusye1234/LightGCN-PyTorch ``code/model.py``. The authors' edge dropout is off by
    default there and not implemented here.

    The graph is built by :meth:`fit` from the training pairs. After each epoch the
    propagated tables are cached in the non-trainable weights ``propagated_users`` and
    ``propagated_items``, which :meth:`score` uses, so a reloaded ``.keras`` model scores
    without the graph.

    Args:
        num_layers: K, the number of propagation layers (the paper uses 1-4; 3 by default).
        other arguments: see :class:`~tfjoint.layers.retrieval.two_tower.TwoTowerRecommender`.

    Example:
    >>> import numpy as np
    >>> model = LightGraphConvolutionNetwork(num_users=3, num_items=5, embedding_dim=4, seed=0)
    >>> model.score(np.array([1])).shape
    (1, 5)

    Reference:
        He, Deng, Wang, Li, Zhang, Wang. LightGCN: Simplifying and Powering Graph
        Convolution Network for Recommendation. SIGIR 2020.
    """

    def __init__(self, num_users: int, num_items: int, num_layers: int = 3, **kwargs: Any) -> None:
        super().__init__(num_users, num_items, **kwargs)
        self.num_layers = positive_int("num_layers", num_layers, minimum=0)
        self.adjacency: tf.SparseTensor | None = None
        self.propagated_users = self.add_weight(
            shape=(self.num_users, self.embedding_dim), initializer="zeros", trainable=False, name="propagated_users"
        )
        self.propagated_items = self.add_weight(
            shape=(self.num_items, self.embedding_dim), initializer="zeros", trainable=False, name="propagated_items"
        )
        self.finish_epoch()

    def set_graph(self, users: np.ndarray, items: np.ndarray) -> None:
        """Propagates over the graph of these ``(user, item)`` pairs from now on."""
        self.adjacency = normalized_adjacency(users, items, self.num_users, self.num_items)
        self.finish_epoch()

    def prepare(self, pairs: tuple[np.ndarray, np.ndarray]) -> None:
        self.set_graph(*pairs)

    def ego_item_table(self) -> Any:
        """``E_i^(0)``: the item rows propagation starts from (FREEDOM masks its cold rows)."""
        return self.item_embedding.embeddings

    def graph(self, training: bool = False) -> tf.SparseTensor | None:
        """The adjacency propagated over (FREEDOM prunes it in training)."""
        return self.adjacency

    def propagate(self, training: bool = False) -> tuple[Any, Any]:
        ego = ops.concatenate([self.user_embedding.embeddings, self.ego_item_table()], axis=0)
        adjacency = self.graph(training)
        if adjacency is None:  # no graph yet: every node isolated, E^(k) = 0 for k >= 1
            final = ego / float(self.num_layers + 1)
        else:
            final = propagate_layers(adjacency, ego, self.num_layers)
        return final[: self.num_users], final[self.num_users :]

    def finish_epoch(self) -> None:
        users, items = self.propagate(training=False)
        self.propagated_users.assign(users)
        self.propagated_items.assign(items)

    def final_tables(self) -> tuple[Any, Any]:
        return self.propagated_users, self.propagated_items

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_layers": self.num_layers}


__all__ = ["LightGraphConvolutionNetwork", "normalized_adjacency", "propagate_layers"]
