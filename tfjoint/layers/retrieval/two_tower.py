"""Two-tower retrieval: score(u, i) = e_u · e_i, trained by one helper with three losses.

:class:`TwoTowerRecommender` is the base of BPR-MF and LightGCN: it owns the ego (layer-0)
user and item tables, the scoring ``e_u · e_i`` over the whole catalog, the training loop
and the validation selection. A subclass only says how the final tables are computed from
the ego tables (:meth:`TwoTowerRecommender.propagate`).

Losses (``loss=``), each plus ``l2_reg`` times :func:`l2_penalty` of the batch's ego rows:

- ``"bpr"`` (Rendle et al., UAI 2009, Eq. of BPR-Opt): ``mean_b softplus(s_uj - s_ui)`` =
  ``-mean log σ(s_ui - s_uj)``, one negative ``j`` per positive pair drawn uniformly from the
  items ``u`` has not interacted with in training (rejection sampling, as LightGCN's
  ``UniformSample_original``).
- ``"in_batch_softmax"``: softmax cross-entropy of each user over the batch's positive items
  (the other rows' positives are its negatives). Those negatives follow the items'
  popularity; ``logq_correction=True`` subtracts ``log q_j`` (q = training frequency of the
  item) from every logit (Yi et al., RecSys 2019, sampling-bias correction). Default: plain.
  Duplicates of the positive in the batch are not removed.
- ``"sampled_softmax"``: softmax cross-entropy over the positive and ``num_negatives`` items
  drawn uniformly per batch (shared by the batch, accidental hits kept). The sampler is
  uniform, so the logQ correction is a constant and is not applied.

The L2 term follows the authors' LightGCN code (``bpr_loss`` of
gusye1234/LightGCN-PyTorch ``code/model.py``): ``0.5 * (|E_u|^2 + |E_i|^2 + |E_j|^2) / B`` on
the ego rows of the batch, the batch form of BPR-Opt's ``λ_Θ ||Θ||^2``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import non_negative, positive, positive_int
from tfjoint.layers.retrieval.base import (
    Recommender,
    behavior_names,
    check_catalog,
    check_users,
    select_best_epoch,
    training_rows,
    unique_pairs,
)

LOSSES = ("bpr", "in_batch_softmax", "sampled_softmax")


def bpr_loss(positive_scores: Any, negative_scores: Any) -> Any:
    """``-mean log σ(s_ui - s_uj)``, written as ``mean softplus(s_uj - s_ui)`` (stable)."""
    return ops.mean(ops.softplus(ops.cast(negative_scores, "float32") - ops.cast(positive_scores, "float32")))


def l2_penalty(*rows: Any) -> Any:
    """``0.5 * sum_t |rows_t|^2 / B`` with ``B`` the batch size (rows of the first tensor)."""
    batch = ops.cast(ops.shape(rows[0])[0], "float32")
    return 0.5 * sum(ops.sum(ops.square(r)) for r in rows) / batch


def sample_negatives(
    rng: np.random.Generator, users: np.ndarray, num_items: int, seen: np.ndarray, max_tries: int = 100
) -> np.ndarray:
    """One item per user, uniform over the items whose key ``u * num_items + i`` is not in
    the sorted array ``seen`` (rejection sampling; a user who has seen every item keeps a
    seen one after ``max_tries``)."""
    negatives = rng.integers(num_items, size=len(users))
    todo = np.arange(len(users))
    for _ in range(max_tries):
        keys = users[todo] * np.int64(num_items) + negatives[todo]
        pos = np.minimum(np.searchsorted(seen, keys), max(len(seen) - 1, 0))
        hit = seen[pos] == keys if len(seen) else np.zeros(len(keys), bool)
        todo = todo[hit]
        if not len(todo):
            break
        negatives[todo] = rng.integers(num_items, size=len(todo))
    return negatives


class TwoTowerRecommender(Recommender, keras.Model):
    """Base of the dot-product models: ego tables, ``score = E_u E_i^T``, the shared trainer.

    Args:
        num_users, num_items: sizes of the index spaces of the logs it is fitted on.
        embedding_dim: size of every embedding.
        loss: one of ``"bpr"`` (default, the paper's), ``"in_batch_softmax"``,
            ``"sampled_softmax"`` (see the module docstring).
        l2_reg: weight of the L2 term on the batch's ego embeddings.
        num_negatives: negatives per batch of ``"sampled_softmax"``.
        logq_correction: subtract ``log q_j`` in ``"in_batch_softmax"``.
        behaviors: behaviors trained on (default: the log's target behavior).
        seed: seed of the initializers.

    Call arguments:
        users: int user indices ``(batch,)``.

    Returns:
        Scores ``(batch, num_items)``.
    """

    uses_negatives = True  # False: fit passes no negatives to batch_loss (BM3 needs none)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        loss: str = "bpr",
        l2_reg: float = 1e-4,
        num_negatives: int = 100,
        logq_correction: bool = False,
        behaviors: list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}. Received: loss={loss!r}")
        self.num_users = positive_int("num_users", num_users)
        self.num_items = positive_int("num_items", num_items)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.loss_name = loss
        self.l2_reg = non_negative("l2_reg", l2_reg)
        self.num_negatives = positive_int("num_negatives", num_negatives)
        self.logq_correction = bool(logq_correction)
        self.behaviors = None if behaviors is None else list(behaviors)
        self.seed = seed
        # N(0, 0.1^2) as the authors' LightGCN and PureMF (code/model.py, std=0.1).
        init = keras.initializers.RandomNormal(stddev=0.1, seed=seed)
        self.user_embedding = keras.layers.Embedding(self.num_users, self.embedding_dim, embeddings_initializer=init, name="user_embedding")
        init = keras.initializers.RandomNormal(stddev=0.1, seed=None if seed is None else seed + 1)
        self.item_embedding = keras.layers.Embedding(self.num_items, self.embedding_dim, embeddings_initializer=init, name="item_embedding")
        self.user_embedding.build((None,))
        self.item_embedding.build((None,))
        self.built = True  # every weight exists: a .keras file restores them without a call

    # -- what a subclass defines ------------------------------------------------------
    def propagate(self, training: bool = False) -> tuple[Any, Any]:
        """The final ``(user table, item table)`` from the ego tables (identity: MF)."""
        return self.user_embedding.embeddings, self.item_embedding.embeddings

    def prepare(self, pairs: tuple[np.ndarray, np.ndarray]) -> None:
        """Called by :meth:`fit` with the training pairs before the first step."""

    def finish_epoch(self) -> None:
        """Called after every epoch, before validation (LightGCN caches its tables)."""

    def negative_items(self, items: np.ndarray) -> np.ndarray | None:
        """The sorted items BPR negatives are drawn from, given the training pairs' items;
        None: every item (FREEDOM draws among the warm items, as VBPR)."""
        return None

    def final_tables(self) -> tuple[Any, Any]:
        """The tables :meth:`score` uses."""
        return self.propagate(training=False)

    # -- scoring --------------------------------------------------------------------
    def call(self, users: Any, training: bool | None = None) -> Any:
        user_table, item_table = self.final_tables()
        return ops.matmul(ops.take(user_table, ops.cast(users, "int32"), axis=0), ops.transpose(item_table))

    def user_embeddings(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        users = check_users(users, self.num_users)
        return np.asarray(ops.take(self.final_tables()[0], users, axis=0), dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        return np.asarray(self.final_tables()[1], dtype=np.float32)

    def score(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        """``e_u · e_i`` for every item; ``history`` is ignored (the towers read ids only)."""
        users = check_users(users, self.num_users)
        return np.asarray(self(users), dtype=np.float32).reshape(len(users), self.num_items)

    # -- training -------------------------------------------------------------------
    def batch_loss(self, users: Any, positives: Any, negatives: Any, log_q: Any) -> Any:
        """The loss of one batch of positive pairs (see the module docstring)."""
        user_table, item_table = self.propagate(training=True)
        u, p = ops.take(user_table, users, axis=0), ops.take(item_table, positives, axis=0)
        ego_u = ops.take(self.user_embedding.embeddings, users, axis=0)
        ego_p = ops.take(self.item_embedding.embeddings, positives, axis=0)
        if self.loss_name == "in_batch_softmax":
            logits = ops.matmul(u, ops.transpose(p))
            if self.logq_correction:
                logits = logits - ops.take(log_q, positives, axis=0)[None, :]
            labels = ops.arange(ops.shape(u)[0])
            main = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            return main + self.l2_reg * l2_penalty(ego_u, ego_p)
        n = ops.take(item_table, negatives, axis=0)
        ego_n = ops.take(self.item_embedding.embeddings, negatives, axis=0)
        if self.loss_name == "bpr":
            main = bpr_loss(ops.sum(u * p, axis=-1), ops.sum(u * n, axis=-1))
        else:
            logits = ops.concatenate([ops.sum(u * p, axis=-1, keepdims=True), ops.matmul(u, ops.transpose(n))], axis=-1)
            labels = ops.zeros((ops.shape(u)[0],), "int32")
            main = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        reg = l2_penalty(ego_u, ego_p) + 0.5 * ops.sum(ops.square(ego_n)) / ops.cast(ops.shape(u)[0], "float32")
        return main + self.l2_reg * reg

    def optimized_variables(self) -> list[Any]:
        """The variables :meth:`fit`'s Adam updates (all trainable ones; CML keeps its
        meta-network out: it has its own meta-learning step)."""
        return self.trainable_variables

    def train_batch(self, optimizer: Any, users: Any, positives: Any, negatives: Any, log_q: Any) -> Any:
        """One optimizer step on :meth:`batch_loss` (traced once per shape by :meth:`fit`)."""
        variables = self.optimized_variables()
        with tf.GradientTape() as tape:
            loss = self.batch_loss(users, positives, negatives, log_q)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

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
        """Adam on the distinct ``(user, item)`` pairs of the training behaviors, one
        shuffled pass per epoch, negatives redrawn every batch; validation-selected."""
        check_catalog(train, self.num_items)
        if train.num_users != self.num_users:
            raise ValueError(f"the log has num_users={train.num_users}, the model num_users={self.num_users}")
        behavior_names(train, self.behaviors)
        users, items = unique_pairs(training_rows(train, self.behaviors))
        if not len(users):
            raise ValueError("the training log has no rows of the trained behaviors")
        batch_size = positive_int("batch_size", batch_size)
        rng = np.random.default_rng(seed)
        seen = users * np.int64(self.num_items) + items  # sorted: unique_pairs sorts the keys
        counts = np.bincount(items, minlength=self.num_items).astype(np.float32)
        log_q = tf.constant(np.log(np.maximum(counts, 1.0) / counts.sum()), tf.float32)
        self.prepare((users, items))
        pool = self.negative_items(items)
        if pool is not None:  # negatives among `pool`: index it 0..len(pool)-1 for the sampler
            pool_seen = users * np.int64(len(pool)) + np.searchsorted(pool, items)
        optimizer = keras.optimizers.Adam(learning_rate=positive("learning_rate", learning_rate))
        optimizer.build(self.optimized_variables())

        @tf.function(reduce_retracing=True)
        def step(u: Any, p: Any, n: Any) -> Any:
            return self.train_batch(optimizer, u, p, n, log_q)

        def run_epoch(epoch: int) -> float:
            order = rng.permutation(len(users))
            total = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                if not self.uses_negatives:
                    negatives = np.zeros(0, np.int64)
                elif self.loss_name == "sampled_softmax":
                    negatives = rng.integers(self.num_items, size=self.num_negatives)
                elif pool is not None:
                    negatives = pool[sample_negatives(rng, users[batch], len(pool), pool_seen)]
                else:
                    negatives = sample_negatives(rng, users[batch], self.num_items, seen)
                loss = step(tf.constant(users[batch], tf.int32), tf.constant(items[batch], tf.int32), tf.constant(negatives, tf.int32))
                total += float(loss) * len(batch)
            self.finish_epoch()
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
            "loss": self.loss_name,
            "l2_reg": self.l2_reg,
            "num_negatives": self.num_negatives,
            "logq_correction": self.logq_correction,
            "behaviors": self.behaviors,
            "seed": self.seed,
        }
