"""MB-STR: a multi-behavior sequential transformer trained by cloze, as a top-K retrieval model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import dropout_rate, non_negative, positive, positive_int
from tfjoint.layers.multi_behavior.multi_behavior_transformer import BehaviorAwareExperts, MultiBehaviorTransformerEncoder, normal
from tfjoint.layers.retrieval.base import (
    Recommender,
    behavior_names,
    check_behaviors,
    check_catalog,
    check_users,
    select_best_epoch,
    training_step,
)
from tfjoint.registry import register


def event_windows(
    log: InteractionLog, users: np.ndarray, length: int, ends: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's events ``[end - length, end)`` of the time-sorted ``log`` (default ``end``:
    the user's last event), items and behaviors shifted by one, left-padded with 0:
    two ``(len(users), length)`` int64 arrays. ``log`` must be sorted (``log.sorted()``)."""
    if not len(log.items):
        return np.zeros((len(users), length), np.int64), np.zeros((len(users), length), np.int64)
    starts = np.searchsorted(log.users, users, "left")
    ends = np.searchsorted(log.users, users, "right") if ends is None else ends
    index = ends[:, None] - length + np.arange(length)[None, :]
    valid = index >= starts[:, None]
    index = np.clip(index, 0, len(log.items) - 1)
    return np.where(valid, log.items[index] + 1, 0), np.where(valid, log.behaviors[index] + 1, 0)


def cloze(rng: np.random.Generator, items: np.ndarray, mask_token: int, mask_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """BERT4Rec's cloze task as the authors' ``RecTrainDataset``: every non-padding position
    is replaced by ``mask_token`` with probability ``mask_prob`` and labelled with its item
    (label 0: not a target). Returns ``(tokens, labels)``."""
    masked = (rng.random(items.shape) < mask_prob) & (items > 0)
    return np.where(masked, mask_token, items), np.where(masked, items, 0)


@register(
    "mbstr",
    slot="retrieval_model",
    family="multi_behavior",
    reference="Yuan et al., Multi-Behavior Sequential Transformer Recommender, SIGIR 2022",
)
@keras.saving.register_keras_serializable(package="tfjoint")
class MultiBehaviorSequentialTransformer(Recommender, keras.Model):
    """MB-STR: multi-behavior self-attention, behavior-aware experts, cloze training.

    The user's events of every behavior, in time order, are the sequence ``(v_j, b_j)``
    (Yuan et al., SIGIR 2022; code ``yuanenming/mb-str``, the ``*_full.yaml`` configs):

    - item embeddings ``E`` (``N(0, 0.02^2)``, items shifted by one, 0 padding, ``N + 1``
      the mask token), dropout, no absolute positions;
    - :class:`~tfjoint.layers.multi_behavior.MultiBehaviorTransformerEncoder`: per block
      ``A[i,j] = softmax_j(Q_i W^att_(b_i,b_j) K_j / sqrt(d) + P_(b_i,b_j)(j - i))``,
      ``G_i = sum_j A[i,j] W^agg_(b_i,b_j) V_j``, then a behavior-specific FFN, post-norm;
    - :class:`~tfjoint.layers.multi_behavior.BehaviorAwareExperts` (CGC):
      ``o_i = h_i + LN(sum_e softmax(h_i W^g_(b_i))_e expert_e(h_i))`` over shared and
      ``b_i``-specific experts, and ``p_i(v) = softmax(o_i · E_v)``;
    - cloze training (:func:`cloze`): 20% of the positions of every behavior are replaced by
      the mask token and predicted with the cross-entropy over the whole catalog; each
      epoch visits every user once; a sequence longer than ``max_len`` is its latest window
      with probability 0.8, else a uniform random window (as the code's sampler);
    - scoring (the code's evaluation): the latest ``max_len - 1`` events, then the mask
      token with the *target* behavior; ``o`` of that position against every item:
      ``score = o · E^T`` (:meth:`user_embeddings`, :meth:`item_embeddings`).

    Adam(lr 1e-3) with weight decay 1e-6 as the configs (decoupled here, L2 in torch's
    Adam; negligible at 1e-6). Deviations: every behavior pair has its own ``W^att``,
    ``W^agg`` (the code mixes ``T`` base matrices); the softmax runs over the ``N`` items
    (the code's also has the padding row, logit 0).

    Args:
        num_items: size of the item index space.
        behaviors: behavior names; None takes ``train.spec.behaviors`` at the first fit.
        target: the behavior scored; None: the log's target at fit, or the last of
            ``behaviors`` when given.
        max_len: sequence length (the code: 50). hidden_dim: d (the code: 16 on
            Retailrocket, 64 elsewhere). num_blocks, num_heads: 2 and 2 (the code).
        dropout: 0.2 (the code). mask_prob: cloze probability (the code: 0.2).
        num_shared_experts, num_specific_experts: CGC experts (the code: 3 and 1).
        weight_decay: Adam's (the code: 1e-6). seed: initializers, dropout and sampling.

    Call arguments:
        inputs: ``(tokens, behaviors)``, int ``(batch, L)`` each (tokens: item + 1, 0
        padding, ``num_items + 1`` mask; behaviors: ``1..T``, 0 padding).

    Returns:
        The encoder's hidden states ``(batch, L, hidden_dim)``.

    Example:
    >>> import numpy as np
    >>> model = MultiBehaviorSequentialTransformer(9, behaviors=["view", "buy"], max_len=4, hidden_dim=8, seed=0)
    >>> tuple(model((np.array([[0, 3, 5, 10]]), np.array([[0, 1, 2, 2]]))).shape)
    (1, 4, 8)

    Reference:
        Yuan, Gao, Kang, Wang, Jin. Multi-Behavior Sequential Transformer Recommender. SIGIR 2022.
    """

    def __init__(
        self,
        num_items: int,
        behaviors: list[str] | None = None,
        target: str | None = None,
        max_len: int = 50,
        hidden_dim: int = 64,
        num_blocks: int = 2,
        num_heads: int = 2,
        dropout: float = 0.2,
        mask_prob: float = 0.2,
        num_shared_experts: int = 3,
        num_specific_experts: int = 1,
        weight_decay: float = 1e-6,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_items = positive_int("num_items", num_items)
        self.max_len = positive_int("max_len", max_len, minimum=2)
        self.hidden_dim = positive_int("hidden_dim", hidden_dim)
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.num_heads = positive_int("num_heads", num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim must be divisible by num_heads={num_heads}. Received: hidden_dim={hidden_dim}")
        self.dropout = dropout_rate(dropout)
        self.mask_prob = positive("mask_prob", mask_prob)
        if self.mask_prob >= 1:
            raise ValueError(f"mask_prob must lie in (0, 1). Received: mask_prob={mask_prob}")
        self.num_shared_experts = positive_int("num_shared_experts", num_shared_experts, minimum=0)
        self.num_specific_experts = positive_int("num_specific_experts", num_specific_experts, minimum=0)
        self.weight_decay = non_negative("weight_decay", weight_decay)
        self.seed = seed
        self.behaviors: list[str] | None = None
        self.target = target
        self.train_log: InteractionLog | None = None
        self.mask_token = self.num_items + 1
        self.item_embedding = keras.layers.Embedding(self.num_items + 2, self.hidden_dim, embeddings_initializer=normal(seed), name="item_embedding")
        self.item_embedding.build((None,))
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=seed, name="dropout")
        if behaviors is not None:
            self.set_behaviors(behaviors, target)
        elif target is not None:
            raise ValueError("target needs behaviors. Received: behaviors=None")
        self.built = True

    def set_behaviors(self, behaviors: Sequence[str], target: str | None) -> None:
        """Fixes the behaviors and the target and builds the encoder and the head."""
        names, target = check_behaviors(behaviors, target)
        self.behaviors, self.target = names, target
        t, d = len(names), self.hidden_dim
        self.encoder = MultiBehaviorTransformerEncoder(t, self.num_blocks, self.num_heads, self.dropout, self.seed, name="encoder")
        self.head = BehaviorAwareExperts(t, self.num_shared_experts, self.num_specific_experts, self.seed, name="head")
        self.encoder.build((None, None, d))
        self.head.build((None, d))

    def require_behaviors(self) -> None:
        if self.behaviors is None:
            raise ValueError("the behaviors are unknown until fit; pass behaviors= to the constructor")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        self.require_behaviors()
        tokens, behaviors = (ops.cast(x, "int32") for x in inputs)
        x = self.dropout_layer(self.item_embedding(tokens), training=training)
        return self.encoder(x, behaviors, training=training)

    def item_table(self) -> Any:
        """``E`` of the ``N`` items (rows ``1..N``): ``(num_items, d)``."""
        return self.item_embedding.embeddings[1 : self.num_items + 1]

    # -- the Recommender protocol ----------------------------------------------------
    def scoring_inputs(self, users: Any, history: InteractionLog | None) -> tuple[np.ndarray, np.ndarray]:
        """The latest ``max_len - 1`` events of the model's behaviors in ``history`` (default:
        the training log), then the mask token with the target behavior."""
        self.require_behaviors()
        log = self.train_log if history is None else history
        if log is None:
            raise ValueError("MB-STR needs history= (the events to condition on) before fit or after a reload")
        check_catalog(log, self.num_items)
        rows = self.behavior_rows(log)
        items, behaviors = event_windows(rows, check_users(users, log.num_users), self.max_len - 1)
        return self.with_query(items, behaviors)

    def with_query(self, items: np.ndarray, behaviors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Appends the mask token with the target behavior (1-based) to each sequence."""
        n = len(items)
        query_behavior = self.behaviors.index(self.target) + 1
        return (np.concatenate([items, np.full((n, 1), self.mask_token)], 1),
                np.concatenate([behaviors, np.full((n, 1), query_behavior)], 1))

    def behavior_rows(self, log: InteractionLog) -> InteractionLog:
        """The rows of the model's behaviors, recoded ``0..T-1`` in the model's order, time-sorted."""
        codes = np.full(len(log.spec.behaviors), -1, np.int64)
        for k, name in enumerate(self.behaviors):
            if name not in log.spec.behaviors:
                raise ValueError(f"the log has no behavior {name!r}; it has {log.spec.behaviors}")
            codes[log.spec.behaviors.index(name)] = k
        rows = log.select(codes[log.behaviors] >= 0).sorted()
        spec = dataclasses.replace(log.spec, behaviors=tuple(self.behaviors), target=self.target)
        return dataclasses.replace(rows, spec=spec, behaviors=codes[rows.behaviors])

    def query_vectors(self, tokens: Any, behaviors: Any) -> Any:
        """``o`` of the last position of each sequence (the head at its behavior)."""
        hidden = self((tokens, behaviors), training=False)[:, -1]
        return self.head(hidden, ops.cast(behaviors, "int32")[:, -1])

    def user_embeddings(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        """``o`` of the appended mask position, ``(len(users), hidden_dim)``."""
        return np.asarray(self.query_vectors(*self.scoring_inputs(users, history)), np.float32)

    def item_embeddings(self) -> np.ndarray:
        """``E`` of the items, ``(num_items, hidden_dim)``."""
        return np.asarray(self.item_table(), np.float32)

    def score(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        return self.user_embeddings(users, history) @ self.item_embeddings().T

    def cloze_loss(self, tokens: Any, behaviors: Any, labels: Any, training: bool | None = None) -> Any:
        """Mean cross-entropy of the masked positions' items over the catalog."""
        hidden = self((tokens, behaviors), training=training)
        where = ops.not_equal(labels, 0)
        o = self.head(tf.boolean_mask(hidden, where), tf.boolean_mask(ops.cast(behaviors, "int32"), where))
        logits = ops.matmul(o, ops.transpose(self.item_table()))
        targets = tf.boolean_mask(ops.cast(labels, "int32"), where) - 1
        losses = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return ops.sum(losses) / ops.maximum(ops.cast(ops.size(targets), "float32"), 1.0)

    def fit(  # type: ignore[override]
        self,
        train: InteractionLog,
        *,
        validate: Callable[[Any], float] | None = None,
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        seed: int = 0,
        patience: int | None = None,
    ) -> dict[str, Any]:
        """Adam on the cloze loss; validation-selected (see :mod:`tfjoint.layers.retrieval.base`)."""
        check_catalog(train, self.num_items)
        if self.behaviors is None:
            self.set_behaviors(train.spec.behaviors, self.target or train.spec.target)
        behavior_names(train, self.behaviors)
        batch_size = positive_int("batch_size", batch_size)
        rows = self.behavior_rows(train)
        users = np.unique(rows.users)
        if not len(users):
            raise ValueError(f"the log has no event of the behaviors {self.behaviors}")
        starts, ends = np.searchsorted(rows.users, users, "left"), np.searchsorted(rows.users, users, "right")
        self.train_log = train
        rng = np.random.default_rng(seed)
        optimizer = keras.optimizers.Adam(learning_rate=positive("learning_rate", learning_rate), weight_decay=self.weight_decay or None)
        optimizer.build(self.trainable_variables)

        step = training_step(self, optimizer, lambda tokens, behaviors, labels: self.cloze_loss(tokens, behaviors, labels, training=True))

        def run_epoch(epoch: int) -> float:
            # the latest window with probability 0.8 (or when it all fits), else a random one
            lengths = ends - starts
            window = np.where(
                (lengths <= self.max_len) | (rng.random(len(users)) < 0.8),
                ends,
                starts + self.max_len + rng.integers(0, np.maximum(lengths - self.max_len, 0) + 1),
            )
            items, behaviors = event_windows(rows, users, self.max_len, window)
            tokens, labels = cloze(rng, items, self.mask_token, self.mask_prob)
            order, total, count = rng.permutation(len(users)), 0.0, 0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                if not labels[batch].any():
                    continue
                loss = step(*(tf.constant(a[batch], tf.int32) for a in (tokens, behaviors, labels)))
                total, count = total + float(loss) * len(batch), count + len(batch)
            return total / max(count, 1)

        return select_best_epoch(
            self, run_epoch, epochs=epochs, validate=validate, patience=patience,
            get_weights=self.get_weights, set_weights=self.set_weights,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_items": self.num_items, "behaviors": self.behaviors, "target": self.target,
            "max_len": self.max_len, "hidden_dim": self.hidden_dim, "num_blocks": self.num_blocks,
            "num_heads": self.num_heads, "dropout": self.dropout, "mask_prob": self.mask_prob,
            "num_shared_experts": self.num_shared_experts, "num_specific_experts": self.num_specific_experts,
            "weight_decay": self.weight_decay, "seed": self.seed,
        }
