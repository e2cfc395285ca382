"""CML: contrastive meta learning over per-behavior graph views, for top-K retrieval.

One LightGCN-style view per behavior (shared ego tables, one normalized graph per
behavior), an InfoNCE contrast between each auxiliary behavior's user view and the target
behavior's, weighted per user by a meta-network, and BPR on the target behavior. The
meta-network is trained by a one-step look-ahead (the authors' meta-learning step).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import non_negative, positive, positive_int
from tfjoint.layers.core.contrastive import info_nce
from tfjoint.layers.multi_behavior.multi_behavior_graph_convolution_network import check_behavior_log
from tfjoint.layers.retrieval.base import unique_pairs
from tfjoint.layers.retrieval.light_graph_convolution_network import (
    LightGraphConvolutionNetwork,
    normalized_adjacency,
    propagate_layers,
)
from tfjoint.layers.retrieval.two_tower import bpr_loss, l2_penalty
from tfjoint.registry import register


def mean_view(views: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """``(Ū, Ī) = (mean_t U_t, mean_t I_t)``: the embeddings that score (the authors' mean
    over the behaviors' propagations)."""
    return tuple(ops.mean(ops.stack(side, axis=0), axis=0) for side in zip(*views))  # type: ignore[return-value]


@register(
    "cml",
    slot="retrieval_model",
    family="multi_behavior",
    reference="Wei et al., Contrastive Meta Learning with Behavior Multiplicity for Recommendation, WSDM 2022",
)
class ContrastiveMetaLearning(LightGraphConvolutionNetwork):
    """CML: per-behavior graph views, meta-weighted behavior contrast, BPR on the target.

    With ``E`` the shared ego tables and ``Â_t`` the normalized user-item graph of behavior
    ``t`` (:func:`~tfjoint.layers.retrieval.light_graph_convolution_network.normalized_adjacency`):

    - views ``[U_t; I_t] = mean_{k=0..K} Â_t^k E`` (LightGCN propagation per behavior);
    - contrast, for every auxiliary behavior ``k`` and batch user ``u`` (the batch's
      distinct users are each other's negatives):
      ``L_uk = -log(exp(cos(U_k[u], U_T[u])/τ) / Σ_v exp(cos(U_k[u], U_T[v])/τ))``;
    - meta weights ``w_uk = σ(W_2 relu(W_1 [U_k[u]; U_T[u]; L_uk] + b_1) + b_2)`` (inputs
      held constant: the meta-network only weighs);
    - score ``Ū[u] · Ī[i]`` with ``Ū = mean_t U_t``, ``Ī = mean_t I_t`` (every behavior's
      view, as the authors' mean over behaviors; cached after every epoch);
    - loss ``BPR(Ū[u]·Ī[i] - Ū[u]·Ī[j]) + β mean_u Σ_k w_uk L_uk + λ L2(ego batch)`` on the
      target pairs ``(u, i)``.

    Meta step, before every ordinary step: ``E' = E - η ∇_E loss(E, w_φ)`` (one SGD
    look-ahead, differentiable in ``φ``), then the meta-network's Adam takes a step on
    ``∇_φ BPR(E')``; the ordinary Adam step then updates ``E`` only, with the updated ``w``.

    Deviations: the authors' meta-network reads per-behavior embeddings and losses in a
    different arrangement and their look-ahead copies the whole model; here only the ego
    tables are looked ahead (the loss has no other parameter besides ``φ``), with the SGD
    step ``meta_step``. Graph views have no
    edge dropout. ``temperature`` and ``contrast_weight`` are untuned defaults.

    Args:
        num_behaviors: T, the number of behaviors of the logs it is fitted on.
        num_layers: K, propagation layers per view.
        temperature: τ of the InfoNCE.
        contrast_weight: β, the weight of the contrast.
        meta_hidden: width of the meta-network's hidden layer.
        meta_step: η, the look-ahead's SGD step.
        meta_learning_rate: the meta-network's Adam learning rate.
        other arguments: see :class:`~tfjoint.layers.retrieval.two_tower.TwoTowerRecommender`
            (``loss`` must be ``"bpr"``).

    Example:
    >>> model = ContrastiveMetaLearning(num_users=3, num_items=5, embedding_dim=4, seed=0)
    >>> model.score(np.array([1])).shape
    (1, 5)

    Reference:
        Wei, Huang, Xia, Li, Xu, Zhang. Contrastive Meta Learning with Behavior Multiplicity
        for Recommendation. WSDM 2022. Code: github.com/weiwei1206/CML.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_behaviors: int = 3,
        num_layers: int = 2,
        temperature: float = 0.2,
        contrast_weight: float = 0.1,
        meta_hidden: int = 16,
        meta_step: float = 1e-3,
        meta_learning_rate: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.target_index = self.num_behaviors - 1
        super().__init__(num_users, num_items, num_layers=positive_int("num_layers", num_layers), **kwargs)
        if self.loss_name != "bpr":
            raise ValueError(f"CML trains with loss='bpr'. Received: loss={self.loss_name!r}")
        if self.num_behaviors < 2:
            raise ValueError(f"CML needs an auxiliary behavior: num_behaviors >= 2. Received: {num_behaviors}")
        self.temperature = positive("temperature", temperature)
        self.contrast_weight = non_negative("contrast_weight", contrast_weight)
        self.meta_hidden = positive_int("meta_hidden", meta_hidden)
        self.meta_step = non_negative("meta_step", meta_step)
        self.meta_learning_rate = positive("meta_learning_rate", meta_learning_rate)
        seed = None if self.seed is None else self.seed + 2
        self.meta_network = keras.Sequential(
            [
                keras.layers.Dense(self.meta_hidden, activation="relu", kernel_initializer=keras.initializers.GlorotNormal(seed)),
                keras.layers.Dense(1, activation="sigmoid"),
            ],
            name="meta_network",
        )
        self.meta_network.build((None, 2 * self.embedding_dim + 1))
        self.meta_optimizer: Any = None

    # -- graphs -----------------------------------------------------------------------
    def set_graph(self, log: InteractionLog) -> None:  # type: ignore[override]
        """Propagates over one graph per behavior of ``log`` from now on (``adjacency``
        becomes a list: one normalized graph per behavior)."""
        check_behavior_log(log, self.num_users, self.num_items, self.num_behaviors)
        self.adjacency = [  # type: ignore[assignment]
            normalized_adjacency(*unique_pairs(log.of_behavior(name)), self.num_users, self.num_items)
            for name in log.spec.behaviors
        ]
        self.target_index = log.spec.behaviors.index(log.spec.target)
        self.finish_epoch()

    def fit(self, train: InteractionLog, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Builds the behavior graphs of ``train``, then trains as :meth:`TwoTowerRecommender.fit`."""
        self.set_graph(train)
        return super().fit(train, **kwargs)

    def prepare(self, pairs: tuple[np.ndarray, np.ndarray]) -> None:
        self.meta_optimizer = keras.optimizers.Adam(learning_rate=self.meta_learning_rate)
        self.meta_optimizer.build(self.meta_network.trainable_variables)

    # -- views and losses -------------------------------------------------------------
    def views(self, ego_users: Any, ego_items: Any) -> list[tuple[Any, Any]]:
        """``(U_t, I_t)`` per behavior (before a graph is set every node is isolated, as in
        LightGCN: ``E / (K + 1)``)."""
        if self.adjacency is None:
            scale = 1.0 / (self.num_layers + 1)
            return [(ego_users * scale, ego_items * scale)] * self.num_behaviors
        ego = ops.concatenate([ego_users, ego_items], axis=0)
        out = []
        for adjacency in self.adjacency:
            final = propagate_layers(adjacency, ego, self.num_layers)
            out.append((final[: self.num_users], final[self.num_users :]))
        return out

    def propagate(self, training: bool = False) -> tuple[Any, Any]:
        return mean_view(self.views(self.user_embedding.embeddings, self.item_embedding.embeddings))

    def contrast(self, views: list[tuple[Any, Any]], users: Any) -> tuple[Any, Any]:
        """``(L, w)``: the InfoNCE ``L_uk`` and meta weights ``w_uk``, ``(distinct users, T-1)``."""
        distinct = tf.unique(users)[0]
        target = ops.take(views[self.target_index][0], distinct, axis=0)
        losses, weights = [], []
        for k, (user_view, _) in enumerate(views):
            if k == self.target_index:
                continue
            anchor = ops.take(user_view, distinct, axis=0)
            loss = info_nce(anchor, target, self.temperature)
            inputs = ops.stop_gradient(ops.concatenate([anchor, target, loss[:, None]], axis=1))
            losses.append(loss)
            weights.append(self.meta_network(inputs)[:, 0])
        return ops.stack(losses, axis=1), ops.stack(weights, axis=1)

    def target_bpr(self, views: list[tuple[Any, Any]], users: Any, positives: Any, negatives: Any) -> Any:
        """BPR on the target pairs with the mean view: ``Ū[u] · Ī[i]`` against ``Ū[u] · Ī[j]``."""
        user_view, item_view = mean_view(views)
        u = ops.take(user_view, users, axis=0)
        pos = ops.sum(u * ops.take(item_view, positives, axis=0), axis=-1)
        return bpr_loss(pos, ops.sum(u * ops.take(item_view, negatives, axis=0), axis=-1))

    def cml_loss(self, ego_users: Any, ego_items: Any, users: Any, positives: Any, negatives: Any) -> Any:
        """``BPR + β mean_u Σ_k w_uk L_uk + λ L2`` from these ego tables."""
        views = self.views(ego_users, ego_items)
        losses, weights = self.contrast(views, users)
        contrast = ops.mean(ops.sum(weights * losses, axis=1))
        reg = l2_penalty(
            ops.take(ego_users, users, axis=0), ops.take(ego_items, positives, axis=0), ops.take(ego_items, negatives, axis=0)
        )
        return self.target_bpr(views, users, positives, negatives) + self.contrast_weight * contrast + self.l2_reg * reg

    def batch_loss(self, users: Any, positives: Any, negatives: Any, log_q: Any) -> Any:
        return self.cml_loss(self.user_embedding.embeddings, self.item_embedding.embeddings, users, positives, negatives)

    # -- training ---------------------------------------------------------------------
    def optimized_variables(self) -> list[Any]:
        meta = {id(v) for v in self.meta_network.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in meta]

    def meta_gradients(self, users: Any, positives: Any, negatives: Any) -> tuple[Any, list[Any]]:
        """``(BPR(E'), ∇_φ BPR(E'))`` with ``E' = E - η ∇_E loss(E, w_φ)`` (the look-ahead)."""
        ego_users, ego_items = self.user_embedding.embeddings, self.item_embedding.embeddings
        meta = self.meta_network.trainable_variables
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = self.cml_loss(ego_users, ego_items, users, positives, negatives)
            grads = inner.gradient(loss, [ego_users, ego_items])
            ahead_users = ego_users - self.meta_step * tf.convert_to_tensor(grads[0])
            ahead_items = ego_items - self.meta_step * tf.convert_to_tensor(grads[1])
            meta_loss = self.target_bpr(self.views(ahead_users, ahead_items), users, positives, negatives)
        return meta_loss, outer.gradient(meta_loss, meta)

    def train_batch(self, optimizer: Any, users: Any, positives: Any, negatives: Any, log_q: Any) -> Any:
        """The meta step on the meta-network, then the ordinary step on the ego tables."""
        _, grads = self.meta_gradients(users, positives, negatives)
        self.meta_optimizer.apply_gradients(zip(grads, self.meta_network.trainable_variables))
        return super().train_batch(optimizer, users, positives, negatives, log_q)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_behaviors": self.num_behaviors,
            "temperature": self.temperature,
            "contrast_weight": self.contrast_weight,
            "meta_hidden": self.meta_hidden,
            "meta_step": self.meta_step,
            "meta_learning_rate": self.meta_learning_rate,
        }


__all__ = ["ContrastiveMetaLearning", "info_nce", "mean_view"]
