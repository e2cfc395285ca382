"""MB-STR's multi-behavior self-attention: projections, attention and aggregation per behavior pair."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.multi_behavior.behavior_pooling import behavior_selector

MASKED_LOGIT = -1e30  # the authors' padding fill


def relative_position_bucket(relative: np.ndarray, num_buckets: int = 32, max_distance: int = 40) -> np.ndarray:
    """T5's bidirectional bucketing of ``j - i`` (``relative``), as the authors'
    ``relative_position.py``: half of the buckets per direction (``j > i`` in the upper
    half), of those the first half exact distances, the rest logarithmic up to
    ``max_distance`` and clipped."""
    half = num_buckets // 2
    n = -np.asarray(relative, np.int64)
    bucket = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    with np.errstate(divide="ignore"):
        large = exact + (np.log(np.maximum(n, 1) / exact) / math.log(max_distance / exact) * (half - exact)).astype(np.int64)
    return bucket + np.where(n < exact, n, np.minimum(large, half - 1))


@keras.saving.register_keras_serializable(package="tfjoint")
class BehaviorPairAttention(keras.layers.Layer):
    """MB-STR's multi-behavior multi-head self-attention (bidirectional, padding masked).

    For the sequence ``x_1..x_L`` with behaviors ``b_1..b_L`` (Yuan et al., SIGIR 2022,
    sec. 3.2; code ``yuanenming/mb-str`` ``src/models/new_transformer.py``), per head:

        Q_i = x_i W^Q_(b_i),  K_j = x_j W^K_(b_j),  V_j = x_j W^V_(b_j)     (behavior-specific)
        A[i,j] = softmax_j( Q_i W^att_(b_i,b_j) K_j^T / sqrt(d_h) + P_(b_i,b_j)(bucket(j - i)) )
        G_i   = sum_j A[i,j] V_j W^agg_(b_i,b_j)

    with one ``d_h x d_h`` matrix per ordered behavior pair (``W^att``, ``W^agg``) and one
    learned bias per pair and relative-position bucket (T5 buckets, the code's 32 buckets
    up to distance 40, :func:`relative_position_bucket`). The heads are concatenated.

    Deviation: the code builds each pair's matrix as a softmax mixture of ``T`` base
    matrices (``alpha1``, ``alpha2``); here every pair has its own matrix, the paper's
    equation without the low-rank sharing; they start at the identity (the plain
    attention of BERT4Rec), the projections and biases at ``N(0, 0.02^2)`` as the code.

    Args:
        num_behaviors: ``T`` (behavior ids ``1..T``; 0 is padding).
        num_heads: attention heads (the code: 2).
        num_buckets, max_distance: relative-position buckets (the code: 32, 40).
        dropout: dropout on the attention weights.
        seed: seed of the initializers and the dropout.

    Call arguments:
        inputs: ``(batch, L, d)`` hidden states.
        behaviors: int ``(batch, L)``, behavior id + 1, 0 for padding (masked as keys).

    Returns:
        ``G`` ``(batch, L, d)``.
    """

    def __init__(
        self,
        num_behaviors: int,
        num_heads: int = 2,
        num_buckets: int = 32,
        max_distance: int = 40,
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.num_heads = positive_int("num_heads", num_heads)
        self.num_buckets = positive_int("num_buckets", num_buckets)
        if self.num_buckets < 4:
            raise ValueError(f"num_buckets must be >= 4. Received: num_buckets={num_buckets}")
        self.max_distance = positive_int("max_distance", max_distance)
        if self.max_distance <= self.num_buckets // 4:
            raise ValueError(f"max_distance must exceed num_buckets // 4. Received: max_distance={max_distance}")
        self.dropout = float(dropout)
        self.seed = seed
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=seed)

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        if d % self.num_heads:
            raise ValueError(f"the hidden width {d} must be divisible by num_heads={self.num_heads}")
        t, h, w = self.num_behaviors, self.num_heads, d // self.num_heads
        normal = keras.initializers.RandomNormal(stddev=0.02, seed=self.seed)
        # (3: Q, K, V) x behavior x d x head x width, as the code's linear_layers
        self.projections = self.add_weight(name="projections", shape=(3, t, d, h, w), initializer=normal)
        eye = np.broadcast_to(np.eye(w, dtype="float32"), (t, t, h, w, w)).copy()
        self.attention_kernel = self.add_weight(name="attention_kernel", shape=(t, t, h, w, w), initializer=keras.initializers.Constant(eye))
        self.aggregation_kernel = self.add_weight(name="aggregation_kernel", shape=(t, t, h, w, w), initializer=keras.initializers.Constant(eye))
        self.position_bias = self.add_weight(name="position_bias", shape=(t, t, self.num_buckets, h), initializer=normal)

    def one_hot(self, behaviors: Any) -> Any:
        """``(batch, L, T)``: the behavior of each position, all zero on padding."""
        return behavior_selector(behaviors, self.num_behaviors)

    def project(self, inputs: Any, onehot: Any, which: int) -> Any:
        """``x_i W_(b_i)`` per head: ``(batch, heads, L, width)``."""
        return ops.einsum("bnd,tdhk,bnt->bhnk", inputs, self.projections[which], onehot)

    def pair_transform(self, x: Any, kernel: Any, onehot: Any, select: int) -> Any:
        """``x_i W_(x,y)`` with one behavior of the pair fixed per position by ``onehot``:
        ``select=0`` fixes ``x = b_i`` (returns ``(batch, heads, L, T_y, width)``),
        ``select=1`` fixes ``y = b_i`` (returns ``(batch, heads, L, T_x, width)``).

        One batched matmul per head and a masked sum (an einsum over the 5-D kernel, or a
        one-hot einsum over the 6-D product, is several times slower on CPU)."""
        t, h, w = self.num_behaviors, self.num_heads, kernel.shape[-1]
        batch, length = ops.shape(x)[0], ops.shape(x)[2]
        rows = ops.reshape(ops.transpose(x, (1, 0, 2, 3)), (h, -1, w))  # (h, B L, k)
        order = (2, 3, 0, 1, 4) if select == 0 else (2, 3, 1, 0, 4)  # (h, k, fixed, free, l)
        out = ops.matmul(rows, ops.reshape(ops.transpose(kernel, order), (h, w, t * t * w)))
        out = ops.reshape(out, (h, batch, length, t, t * w)) * onehot[None, :, :, :, None]
        return ops.transpose(ops.reshape(ops.sum(out, axis=3), (h, batch, length, t, w)), (1, 0, 2, 3, 4))

    def bias(self, onehot: Any, length: int) -> Any:
        """``P_(b_i,b_j)(bucket(j - i))``: ``(batch, heads, L, L)``."""
        positions = np.arange(length)
        buckets = relative_position_bucket(positions[None, :] - positions[:, None], self.num_buckets, self.max_distance)
        table = ops.take(self.position_bias, ops.convert_to_tensor(buckets, "int32"), axis=2)  # (T, T, L, L, h)
        # two-operand contractions only: a multi-operand einsum may form (batch, L, L, T, T, h)
        by_query = ops.einsum("xyijh,bix->biyjh", table, onehot)
        return ops.einsum("biyjh,bjy->bhij", by_query, onehot)

    def scores(self, inputs: Any, behaviors: Any) -> Any:
        """The pre-softmax ``A`` logits ``(batch, heads, L, L)``, padded keys at -1e30."""
        onehot = self.one_hot(behaviors)
        q, k = self.project(inputs, onehot, 0), self.project(inputs, onehot, 1)
        width = q.shape[-1]
        # Q_i W^att_(x,y) K_j for every pair (x, y), then the pair (b_i, b_j) selected
        q_pairs = self.pair_transform(q, self.attention_kernel, onehot, 0)  # Q_i W^att_(b_i, y)
        logits = ops.einsum("bhiyj,bjy->bhij", ops.einsum("bhiyl,bhjl->bhiyj", q_pairs, k), onehot) / math.sqrt(width)
        logits = logits + self.bias(onehot, ops.shape(inputs)[1])
        keys = ops.cast(ops.not_equal(behaviors, 0), "bool")[:, None, None, :]
        return ops.where(keys, logits, MASKED_LOGIT)

    def call(self, inputs: Any, behaviors: Any, training: bool | None = None) -> Any:
        onehot = self.one_hot(behaviors)
        weights = self.dropout_layer(ops.softmax(self.scores(inputs, behaviors), axis=-1), training=training)
        v = self.project(inputs, onehot, 2)
        # V_j W^agg_(x, b_j) for every query behavior x, then x = b_i selected
        v_pairs = self.pair_transform(v, self.aggregation_kernel, onehot, 1)  # V_j W^agg_(x, b_j)
        out = ops.einsum("bhixl,bix->bihl", ops.einsum("bhij,bhjxl->bhixl", weights, v_pairs), onehot)
        return ops.reshape(out, ops.shape(inputs))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_behaviors=self.num_behaviors, num_heads=self.num_heads, num_buckets=self.num_buckets,
            max_distance=self.max_distance, dropout=self.dropout, seed=self.seed,
        )
        return config
