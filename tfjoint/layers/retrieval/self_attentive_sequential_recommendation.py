"""SASRec: causal self-attention over the user's item sequence, shared item table for prediction."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import dropout_rate, non_negative, positive, positive_int
from tfjoint.layers.retrieval.base import (
    Recommender,
    behavior_names,
    check_catalog,
    check_users,
    select_best_epoch,
    training_rows,
    training_step,
)
from tfjoint.layers.retrieval.self_attention_blocks import CausalSelfAttentionBlocks
from tfjoint.registry import register


def last_events(log: InteractionLog, users: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Two ``(len(users), max_len)`` int arrays: each user's latest ``max_len`` events of
    ``log`` in time order, items and behaviors each shifted by one (0 is padding) and
    left-padded, as the authors' sampler."""
    log = log.sorted()
    starts, ends = np.searchsorted(log.users, users, "left"), np.searchsorted(log.users, users, "right")
    items, behaviors = np.zeros((len(users), max_len), np.int64), np.zeros((len(users), max_len), np.int64)
    for row, (start, end) in enumerate(zip(starts, ends)):
        first = max(start, end - max_len)
        items[row, max_len - (end - first) :] = log.items[first:end] + 1
        behaviors[row, max_len - (end - first) :] = log.behaviors[first:end] + 1
    return items, behaviors


def last_items(log: InteractionLog, users: np.ndarray, max_len: int) -> np.ndarray:
    """The items of :func:`last_events` (SASRec's input)."""
    return last_events(log, users, max_len)[0]


@register(
    "sasrec",
    slot="retrieval_model",
    family="retrieval",
    reference="Kang and McAuley, Self-Attentive Sequential Recommendation, ICDM 2018",
)
class SelfAttentiveSequentialRecommendation(CausalSelfAttentionBlocks, Recommender, keras.Model):
    """SASRec: ``F^(b) = FFN(SA(F^(b-1)))`` over ``E_seq * sqrt(d) + P``, ``r_ti = F_t · M_i``.

    Follows the paper (Sec. III) and the authors' code (kang205/SASRec ``model.py`` and
    ``modules.py``) line by line: item embeddings scaled by ``sqrt(d)`` plus learned position
    embeddings, dropout, padding masked to 0; then per block (pre-norm as in the code)
    ``Q = LN(F)``, single- or multi-head attention with ``Q W^Q`` against ``F W^K``, ``F W^V``
    (biased projections, no output projection), causal and key-padding masks, query
    masking, dropout on the attention weights, the residual ``+ LN(F)``; then the point-wise
    FFN ``ReLU(x W1 + b1) W2 + b2`` with dropout after each and the residual ``+ x`` on
    ``x = LN(.)``; the padding masked again; a final LN. The prediction uses the shared
    item table ``M`` (Sec. III-D, ``r_{i,t} = F_t M_i^T``), no separate output layer.
    Loss (Eq. 8): binary cross-entropy of the next item against one negative per position
    drawn uniformly from the items outside the user's training sequence, averaged over the
    non-padding positions, plus ``l2_emb`` on the embeddings (0 in the authors' runs). Adam
    with ``beta_2 = 0.98``. Layer norm epsilon 1e-8 as the code's ``normalize``.

    Deviation: each epoch visits every user with at least two training items once, in a
    random order (the code draws users with replacement, ``num_users / batch_size`` batches).

    Items are fed shifted by one, 0 being padding, as the code; ``score`` drops the padding
    row. ``score(users, history)`` uses each user's latest ``max_len`` events of the trained
    behaviors (default: the target behavior; ``behaviors=`` adds others, e.g. all
    behaviors) in ``history``, default the training log.

    Args:
        num_items: size of the item index space.
        max_len: n, the sequence length (the paper: 50 on sparse data, 200 on ML-1M).
        hidden_dim: d (the paper: 50).
        num_blocks: b (the paper: 2).
        num_heads: attention heads (the paper: 1).
        dropout: dropout rate (the paper: 0.5 on sparse data, 0.2 on ML-1M).
        l2_emb: L2 weight on the embeddings (the code's ``l2_emb``, default 0).
        behaviors: behaviors of the sequences (default: the log's target behavior).
        seed: seed of the initializers and the dropout.

    Call arguments:
        sequences: int ``(batch, max_len)`` of item index + 1, 0 for padding.

    Returns:
        The hidden states ``F`` ``(batch, max_len, hidden_dim)``.

    Example:
    >>> import numpy as np
    >>> model = SelfAttentiveSequentialRecommendation(num_items=9, max_len=4, hidden_dim=8, seed=0)
    >>> tuple(model(np.array([[0, 0, 3, 5]])).shape)
    (1, 4, 8)

    Reference:
        Kang and McAuley. Self-Attentive Sequential Recommendation. ICDM 2018.
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        hidden_dim: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.5,
        l2_emb: float = 0.0,
        behaviors: list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_items = positive_int("num_items", num_items)
        self.max_len = positive_int("max_len", max_len)
        self.hidden_dim = positive_int("hidden_dim", hidden_dim)
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.num_heads = positive_int("num_heads", num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim must be divisible by num_heads={num_heads}. Received: hidden_dim={hidden_dim}")
        self.dropout = dropout_rate(dropout)
        self.l2_emb = non_negative("l2_emb", l2_emb)
        self.behaviors = None if behaviors is None else list(behaviors)
        self.seed = seed
        self.train_log: InteractionLog | None = None
        d = self.hidden_dim
        self.item_embedding = keras.layers.Embedding(self.num_items + 1, d, embeddings_initializer=keras.initializers.GlorotUniform(seed), name="item_embedding")
        self.item_embedding.build((None,))
        self.build_blocks()

        norm = keras.layers.LayerNormalization(epsilon=1e-8, name="final_norm")
        norm.build((None, d))
        self.final_norm = norm
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=seed, name="dropout")
        self.built = True  # every weight exists: a .keras file restores them without a call

    def embed(self, sequences: Any, training: bool | None, positions: bool = True) -> tuple[Any, Any]:
        """``(E_seq * sqrt(d) [+ P], pad)``: the input of the blocks (dropout, padding zeroed)
        and the float ``(batch, L)`` padding mask."""
        sequences = ops.cast(sequences, "int32")
        pad = ops.cast(ops.not_equal(sequences, 0), "float32")
        seq = self.item_embedding(sequences) * math.sqrt(self.hidden_dim)
        if positions:
            seq = seq + self.position_embedding(ops.arange(ops.shape(sequences)[1]))[None]
        return self.dropout_layer(seq, training=training) * pad[..., None], pad

    def call(self, sequences: Any, training: bool | None = None) -> Any:
        seq, pad = self.embed(sequences, training)
        return self.encode(seq, pad, training)

    def output_table(self) -> Any:
        """The candidate item table ``M`` with its padding row 0: ``r_{i,t} = F_t · M_i``."""
        return self.item_embedding.embeddings

    # -- the Recommender protocol ----------------------------------------------------
    def sequences(self, users: Any, history: InteractionLog | None) -> np.ndarray:
        log = self.train_log if history is None else history
        if log is None:
            raise ValueError("SASRec needs history= (the events to condition on) before fit or after a reload")
        check_catalog(log, self.num_items)
        return last_items(training_rows(log, self.behaviors), check_users(users, log.num_users), self.max_len)

    def user_embeddings(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        """``F_n``, the last position's hidden state of each user's sequence."""
        return np.asarray(self(self.sequences(users, history), training=False)[:, -1], np.float32)

    def item_embeddings(self) -> np.ndarray:
        """``M`` (:meth:`output_table`) without the padding row: ``(num_items, hidden_dim)``."""
        return np.asarray(self.output_table()[1:], np.float32)

    def score(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        return self.user_embeddings(users, history) @ self.item_embeddings().T

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
        """Adam(lr, beta_2=0.98) on the next-item BCE; validation-selected (see base)."""
        check_catalog(train, self.num_items)
        behavior_names(train, self.behaviors)
        rows = training_rows(train, self.behaviors).sorted()
        users = np.unique(rows.users)
        full = last_items(rows, users, self.max_len + 1)
        users, full = users[(full > 0).sum(1) >= 2], full[(full > 0).sum(1) >= 2]
        if not len(users):
            raise ValueError("no user has two events of the trained behaviors")
        inputs, targets = full[:, :-1], full[:, 1:]
        keys = np.unique(rows.users * np.int64(self.num_items + 1) + rows.items + 1)
        self.train_log = train
        batch_size = positive_int("batch_size", batch_size)
        rng = np.random.default_rng(seed)
        optimizer = keras.optimizers.Adam(learning_rate=positive("learning_rate", learning_rate), beta_2=0.98)
        optimizer.build(self.trainable_variables)

        step = training_step(self, optimizer, lambda seq, pos, neg: self.sequence_loss(seq, pos, neg, training=True))

        pool = self.negative_pool(rows)

        def draw(size: Any) -> np.ndarray:
            if pool is None:
                return rng.integers(1, self.num_items + 1, size=size)
            return pool[rng.integers(0, len(pool), size=size)]

        def negatives(batch: np.ndarray) -> np.ndarray:
            neg = draw(targets[batch].shape)
            for _ in range(100):  # redraw the items of the user's own sequence
                key = users[batch][:, None] * np.int64(self.num_items + 1) + neg
                hit = (keys[np.minimum(np.searchsorted(keys, key), len(keys) - 1)] == key) & (targets[batch] > 0)
                if not hit.any():
                    break
                neg[hit] = draw(hit.sum())
            return np.where(targets[batch] > 0, neg, 0)

        def run_epoch(epoch: int) -> float:
            order, total = rng.permutation(len(users)), 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                loss = step(*(tf.constant(a, tf.int32) for a in (inputs[batch], targets[batch], negatives(batch))))
                total += float(loss) * len(batch)
            return total / len(order)

        return select_best_epoch(
            self, run_epoch, epochs=epochs, validate=validate, patience=patience,
            get_weights=self.get_weights, set_weights=self.set_weights,
        )

    def negative_pool(self, rows: InteractionLog) -> np.ndarray | None:
        """The items (index + 1) negatives are drawn from; None: every item, as the code."""
        return None

    def sequence_loss(self, seq: Any, pos: Any, neg: Any, training: bool | None = None) -> Any:
        """Eq. 8: ``-mean_t [log σ(r_{o_t}) + log(1 - σ(r_{j_t}))]`` over non-padding targets."""
        hidden = self(seq, training=training)
        table = self.output_table()
        pos_logits = ops.sum(hidden * ops.take(table, pos, axis=0), axis=-1)
        neg_logits = ops.sum(hidden * ops.take(table, neg, axis=0), axis=-1)
        is_target = ops.cast(ops.not_equal(pos, 0), "float32")
        # -log σ(x) = softplus(-x), -log(1 - σ(x)) = softplus(x): the stable form of the code's logs
        per_position = ops.softplus(-pos_logits) + ops.softplus(neg_logits)
        loss = ops.sum(per_position * is_target) / ops.maximum(ops.sum(is_target), 1.0)
        if self.l2_emb:
            loss = loss + self.l2_emb * sum(ops.sum(ops.square(t)) for t in self.embedding_tables()) / 2
        return loss

    def embedding_tables(self) -> list[Any]:
        """The tables ``l2_emb`` weighs: the item and the position embeddings."""
        return [self.item_embedding.embeddings, self.position_embedding.embeddings]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "max_len": self.max_len,
            "hidden_dim": self.hidden_dim,
            "num_blocks": self.num_blocks,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "l2_emb": self.l2_emb,
            "behaviors": self.behaviors,
            "seed": self.seed,
        }
