"""NMTR: neural multi-task recommendation over behaviors in funnel order, with a cascade."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import non_negative, positive, positive_int
from tfjoint.layers.retrieval.base import Recommender, check_behaviors, check_catalog, check_users, select_best_epoch, training_step
from tfjoint.layers.retrieval.two_tower import sample_negatives
from tfjoint.registry import register


def cascade_log_loss(logits: Any, labels: Any, behaviors: Any, loss_weights: Any, batch_size: Any) -> Any:
    """``sum_n λ_(r_n) BCE(y_n, σ(z_n)) / batch_size``: the batch form of ``sum_r λ_r L_r``.

    ``logits`` ``z_n`` are the cascaded logits of each instance's behavior ``r_n``; ``labels``
    ``y_n`` are 1 for an observed ``(u, i, r)`` and 0 for a sampled negative. ``L_r`` is the
    paper's *sum* of log losses over the positives and sampled negatives of behavior ``r``;
    dividing by the number of positive rows in the batch (a constant) makes the batch an
    unbiased, rescaled estimate of it. BCE is written ``softplus(z) - y z`` (stable).
    """
    z, y = ops.cast(logits, "float32"), ops.cast(labels, "float32")
    per_instance = ops.softplus(z) - y * z
    weights = ops.take(ops.cast(loss_weights, "float32"), ops.cast(behaviors, "int32"), axis=0)
    return ops.sum(weights * per_instance) / ops.cast(batch_size, "float32")


def with_negatives(
    rng: np.random.Generator,
    groups: np.ndarray,
    items: np.ndarray,
    seen: np.ndarray,
    num_users: int,
    num_items: int,
    num_negatives: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A batch of positives ``(u, i, r)`` and ``num_negatives`` sampled negatives per positive.

    ``groups`` are ``r * num_users + u`` and ``seen`` the sorted keys
    ``group * num_items + item`` of every training triple: a negative of ``(u, i, r)`` is
    uniform over the items ``u`` has no behavior-``r`` event with (an item ``u`` only viewed
    is a valid negative for buy). Returns ``(users, items, behaviors, labels)``, the
    positives first (label 1), then their negatives (label 0).
    """
    repeated = np.repeat(groups, num_negatives)
    negatives = sample_negatives(rng, repeated, num_items, seen)
    g = np.concatenate([groups, repeated])
    labels = np.concatenate([np.ones(len(groups), np.float32), np.zeros(len(repeated), np.float32)])
    return g % num_users, np.concatenate([items, negatives]), g // num_users, labels


@register(
    "nmtr",
    slot="retrieval_model",
    family="multi_behavior",
    reference="Gao et al., Neural Multi-Task Recommendation from Multi-Behavior Data, ICDE 2019",
)
@keras.saving.register_keras_serializable(package="tfjoint")
class NeuralMultiTaskRecommendation(Recommender, keras.Model):
    """NMTR: shared embeddings, one GMF per behavior, cascaded predictions, weighted log loss.

    Behaviors ``1..T`` are ordered as in the funnel (``InteractionSpec.behaviors``, e.g.
    view, cart, buy). Mapped to the paper's method (Gao et al., ICDE 2019):

    - shared embedding layer: ``p_u`` (``user_embedding``), ``q_i`` (``item_embedding``);
    - one interaction function per behavior, GMF (NCF's generalized matrix factorization):
      ``f_t(u, i) = h_t · (p_u ⊙ q_i) + b_t`` (``behavior_kernel[t]``, ``behavior_bias[t]``,
      the bias as in the ``Dense`` output of NCF's GMF);
    - cascaded prediction: ``ŷ_r(u, i) = σ(sum_(t <= r) f_t(u, i))``, so a behavior's
      prediction builds on every earlier behavior of the funnel
      (:meth:`cascaded_logits`);
    - multi-task loss ``L = sum_r λ_r L_r``, ``L_r`` the pointwise log loss over the observed
      ``(u, i)`` of behavior ``r`` and ``num_negatives`` negatives per positive, drawn
      uniformly from the items ``u`` has no behavior-``r`` event with in training
      (:func:`cascade_log_loss`). Batches are shuffled distinct ``(u, i, r)`` triples of every
      behavior, negatives redrawn every batch.

    :meth:`score` ranks by the target's logit ``sum_(t <= target) f_t``, which is the dot
    product ``[p_u ⊙ H_target, B_target] · [q_i, 1]`` with ``H_r = sum_(t <= r) h_t`` and
    ``B_r = sum_(t <= r) b_t`` (:meth:`user_embeddings`, :meth:`item_embeddings`): the whole
    catalog is one matmul.

    Choices and what they follow: the paper instantiates ``f_t`` with GMF, MLP or NeuMF; this
    implements GMF only (its ranking is a dot product). Neither the authors' code nor the
    paper's experimental settings were in the sources searched, so the defaults follow NCF
    (He et al., WWW 2017, the same group; ``GMF.py`` of
    hexiangnan/neural_collaborative_filtering): 4 negatives per positive, LeCun-uniform
    ``h_t``, no L2 (``l2_reg=0``). The embeddings start at ``N(0, 0.1^2)`` as this package's
    BPR-MF, and training uses Adam as every model of :mod:`tfjoint.layers.retrieval`.
    ``loss_weights`` default to equal weights ``λ_r = 1 / T`` (summing to 1); they are a
    hyperparameter to choose on validation.

    Args:
        num_users, num_items: index-space sizes of the logs it is fitted on.
        embedding_dim: size of ``p_u`` and ``q_i``.
        behaviors: behavior names in funnel order; None takes ``train.spec.behaviors`` at the
            first ``fit`` (the per-behavior weights are created then).
        target: the behavior :meth:`score` ranks; None: the last of ``behaviors`` when they
            are given, else ``train.spec.target`` at ``fit``.
        loss_weights: ``λ_r`` per behavior, non-negative, not all zero; None: ``1 / T``.
        num_negatives: negatives per positive instance.
        l2_reg: weight of ``0.5 sum |p|^2 + |q|^2 / B`` over the rows of the batch's instances
            (``B`` positives, each with its negatives).
        seed: seed of the initializers.

    Call arguments:
        users: int user indices ``(batch,)``.

    Returns:
        The target's cascaded logits ``(batch, num_items)``.

    Example:
    >>> import numpy as np
    >>> model = NeuralMultiTaskRecommendation(3, 5, embedding_dim=4, behaviors=["view", "buy"], seed=0)
    >>> model.score(np.array([0, 2])).shape
    (2, 5)

    Reference:
        Gao, He, Gan, Chen, Feng, Li, Chua, Jin. Neural Multi-Task Recommendation from
        Multi-Behavior Data. ICDE 2019 (extended: Learning to Recommend with Multiple
        Cascading Behaviors, TKDE 2019).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        behaviors: list[str] | None = None,
        target: str | None = None,
        loss_weights: list[float] | None = None,
        num_negatives: int = 4,
        l2_reg: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_users = positive_int("num_users", num_users)
        self.num_items = positive_int("num_items", num_items)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.num_negatives = positive_int("num_negatives", num_negatives)
        self.l2_reg = non_negative("l2_reg", l2_reg)
        self.seed = seed
        self.behaviors: list[str] | None = None
        self.target = target
        self.loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]
        init = keras.initializers.RandomNormal(stddev=0.1, seed=seed)
        self.user_embedding = keras.layers.Embedding(
            self.num_users, self.embedding_dim, embeddings_initializer=init, name="user_embedding"
        )
        init = keras.initializers.RandomNormal(stddev=0.1, seed=None if seed is None else seed + 1)
        self.item_embedding = keras.layers.Embedding(
            self.num_items, self.embedding_dim, embeddings_initializer=init, name="item_embedding"
        )
        self.user_embedding.build((None,))
        self.item_embedding.build((None,))
        if behaviors is not None:
            self.set_behaviors(behaviors, target)
        elif target is not None or loss_weights is not None:
            raise ValueError("target and loss_weights need behaviors. Received: behaviors=None")
        self.built = True

    def set_behaviors(self, behaviors: Sequence[str], target: str | None) -> None:
        """Fixes the funnel and the target and creates the per-behavior weights ``h_t``, ``b_t``."""
        names, target = check_behaviors(behaviors, target)
        if self.loss_weights is not None:
            w = np.asarray(self.loss_weights, np.float64)
            if w.shape != (len(names),) or (w < 0).any() or not w.sum() > 0:
                raise ValueError(
                    f"loss_weights must be {len(names)} non-negative numbers, not all 0. Received: {self.loss_weights}"
                )
        self.behaviors, self.target = names, target
        self.behavior_kernel = self.add_weight(
            shape=(len(names), self.embedding_dim),
            initializer=keras.initializers.LecunUniform(seed=self.seed),
            name="behavior_kernel",
        )
        self.behavior_bias = self.add_weight(shape=(len(names),), initializer="zeros", name="behavior_bias")

    def lambdas(self) -> np.ndarray:
        """``λ_r`` per behavior (``1 / T`` each by default)."""
        if self.loss_weights is None:
            return np.full(len(self.behaviors), 1.0 / len(self.behaviors), np.float32)
        return np.asarray(self.loss_weights, np.float32)

    def _require_behaviors(self) -> None:
        if self.behaviors is None:
            raise ValueError("the behaviors are unknown until fit; pass behaviors= to the constructor")

    # -- the model ------------------------------------------------------------------
    def interaction_logits(self, users: Any, items: Any) -> Any:
        """``f_t(u, i) = h_t · (p_u ⊙ q_i) + b_t`` for every behavior ``t``: ``(batch, T)``."""
        self._require_behaviors()
        p = ops.take(self.user_embedding.embeddings, ops.cast(users, "int32"), axis=0)
        q = ops.take(self.item_embedding.embeddings, ops.cast(items, "int32"), axis=0)
        return ops.matmul(p * q, ops.transpose(self.behavior_kernel)) + self.behavior_bias[None, :]

    def cascaded_logits(self, users: Any, items: Any) -> Any:
        """``sum_(t <= r) f_t(u, i)`` for every behavior ``r``: ``(batch, T)``; ``ŷ_r`` is its σ."""
        return ops.cumsum(self.interaction_logits(users, items), axis=-1)

    def target_tables(self) -> tuple[Any, Any]:
        """``([P ⊙ H_target, B_target], [Q, 1])``: their product is the target's logits."""
        self._require_behaviors()
        r = self.behaviors.index(self.target)
        h = ops.sum(self.behavior_kernel[: r + 1], axis=0)
        b = ops.sum(self.behavior_bias[: r + 1])
        users = self.user_embedding.embeddings * h[None, :]
        users = ops.concatenate([users, ops.ones((self.num_users, 1)) * b], axis=-1)
        items = ops.concatenate([self.item_embedding.embeddings, ops.ones((self.num_items, 1))], axis=-1)
        return users, items

    def call(self, users: Any, training: bool | None = None) -> Any:
        user_table, item_table = self.target_tables()
        return ops.matmul(ops.take(user_table, ops.cast(users, "int32"), axis=0), ops.transpose(item_table))

    def user_embeddings(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        users = check_users(users, self.num_users)
        return np.asarray(ops.take(self.target_tables()[0], users, axis=0), dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        return np.asarray(self.target_tables()[1], dtype=np.float32)

    def score(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        """The target's cascaded logit for every item; ``history`` is ignored (ids only)."""
        users = check_users(users, self.num_users)
        return np.asarray(self(users), dtype=np.float32).reshape(len(users), self.num_items)

    # -- training -------------------------------------------------------------------
    def batch_loss(self, users: Any, items: Any, behaviors: Any, labels: Any, batch_size: Any) -> Any:
        """``sum_r λ_r L_r`` on one batch of instances (positives and their negatives)."""
        logits = self.cascaded_logits(users, items)
        chosen = ops.take_along_axis(logits, ops.cast(behaviors, "int32")[:, None], axis=1)[:, 0]
        main = cascade_log_loss(chosen, labels, behaviors, self.lambdas(), batch_size)
        if not self.l2_reg:
            return main
        p = ops.take(self.user_embedding.embeddings, ops.cast(users, "int32"), axis=0)
        q = ops.take(self.item_embedding.embeddings, ops.cast(items, "int32"), axis=0)
        # the rows of every instance, positive or negative, over the positives of the batch
        norms = ops.sum(ops.square(p)) + ops.sum(ops.square(q))
        return main + self.l2_reg * 0.5 * norms / ops.cast(batch_size, "float32")

    def fit(  # type: ignore[override]
        self,
        train: InteractionLog,
        *,
        validate: Callable[[Any], float] | None = None,
        epochs: int = 20,
        batch_size: int = 2048,
        learning_rate: float = 1e-3,
        seed: int = 0,
        patience: int | None = None,
    ) -> dict[str, Any]:
        """Adam on the distinct ``(u, i, r)`` triples of every behavior, ``num_negatives``
        fresh negatives per triple and batch; validation-selected (:func:`select_best_epoch`)."""
        check_catalog(train, self.num_items)
        if train.num_users != self.num_users:
            raise ValueError(f"the log has num_users={train.num_users}, the model num_users={self.num_users}")
        if self.behaviors is None:
            self.set_behaviors(train.spec.behaviors, train.spec.target)
        missing = [b for b in self.behaviors if b not in train.spec.behaviors]
        if missing:
            raise ValueError(f"the log has no behavior {missing[0]!r}; it has {train.spec.behaviors}")
        codes = np.array([train.spec.behaviors.index(b) for b in self.behaviors])
        rows = train.select(np.isin(train.behaviors, codes))
        if not len(rows):
            raise ValueError("the training log has no rows of the model's behaviors")
        remap = np.full(len(train.spec.behaviors), -1, np.int64)
        remap[codes] = np.arange(len(codes))
        # one key per distinct (behavior, user, item); `group = r * U + u` indexes sample_negatives' "users"
        group = remap[rows.behaviors] * np.int64(self.num_users) + rows.users
        seen = np.unique(group * np.int64(self.num_items) + rows.items)
        groups, items = seen // self.num_items, seen % self.num_items
        batch_size = positive_int("batch_size", batch_size)
        rng = np.random.default_rng(seed)
        optimizer = keras.optimizers.Adam(learning_rate=positive("learning_rate", learning_rate))
        optimizer.build(self.trainable_variables)

        step = training_step(self, optimizer, self.batch_loss)

        def run_epoch(epoch: int) -> float:
            order = rng.permutation(len(groups))
            total = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                u, i, r, y = with_negatives(
                    rng, groups[batch], items[batch], seen, self.num_users, self.num_items, self.num_negatives
                )
                tensors = [tf.constant(x, tf.int32) for x in (u, i, r)]
                loss = step(*tensors, tf.constant(y, tf.float32), tf.constant(len(batch), tf.float32))
                total += float(loss) * len(batch)
            return total / len(order)

        return select_best_epoch(
            self, run_epoch, epochs=epochs, validate=validate, patience=patience,
            get_weights=self.get_weights, set_weights=self.set_weights,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_users": self.num_users,
            "num_items": self.num_items,
            "embedding_dim": self.embedding_dim,
            "behaviors": self.behaviors,
            "target": self.target,
            "loss_weights": self.loss_weights,
            "num_negatives": self.num_negatives,
            "l2_reg": self.l2_reg,
            "seed": self.seed,
        }
