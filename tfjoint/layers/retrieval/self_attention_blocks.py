"""SASRec's attention blocks, shared by every model that runs them (SASRec, NOVA, their encoders).

Kang and McAuley, Self-Attentive Sequential Recommendation, ICDM 2018; the authors' code
kang205/SASRec ``modules.py``. :class:`CausalSelfAttentionBlocks` is a mixin: the class
using it sets ``hidden_dim``, ``num_blocks``, ``num_heads``, ``seed``, ``dropout_layer`` and
``final_norm``, calls :meth:`build_blocks` once, and runs :meth:`encode` on its input.
NOVA's non-invasive attention is the ``context`` argument: the queries and keys read it,
the values and the residual never do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

PAD_LOGIT = -(2.0**32) + 1  # the authors' masking value


def split_heads(x: Any, heads: int) -> Any:
    """``(B, L, d) -> (B, heads, L, d / heads)``."""
    length, width = ops.shape(x)[1], ops.shape(x)[2] // heads
    return ops.transpose(ops.reshape(x, (-1, length, heads, width)), (0, 2, 1, 3))


class CausalSelfAttentionBlocks:
    """The position embedding and ``num_blocks`` pre-norm causal self-attention + FFN blocks.

    Per block (pre-norm as the code) ``Q = LN(c) W^Q``, ``K = c W^K``, ``V = F W^V`` (biased
    projections, no output projection), causal and key-padding masks, query masking,
    dropout on the weights, the residual ``+ LN(F)``; then the point-wise FFN
    ``ReLU(x W1 + b1) W2 + b2`` with dropout and the residual ``+ x`` on ``x = LN(.)``; the
    padding masked again; a final LN. ``c = F`` (SASRec) or NOVA's fused context.
    """

    def build_blocks(self) -> None:
        """The position embedding (``max_len`` rows) and the ``num_blocks`` attention + FFN
        blocks (MMMLP replaces them by its mixers)."""
        d, seed = self.hidden_dim, self.seed
        self.position_embedding = keras.layers.Embedding(self.max_len, d, embeddings_initializer=keras.initializers.GlorotUniform(seed), name="position_embedding")
        self.position_embedding.build((None,))

        def dense(name: str, activation: str | None = None) -> keras.layers.Dense:
            layer = keras.layers.Dense(d, activation=activation, kernel_initializer=keras.initializers.GlorotUniform(seed), name=name)
            layer.build((None, d))
            return layer

        def norm(name: str) -> keras.layers.LayerNormalization:
            layer = keras.layers.LayerNormalization(epsilon=1e-8, name=name)
            layer.build((None, d))
            return layer

        self.attention_norms = [norm(f"attention_norm_{b}") for b in range(self.num_blocks)]
        self.queries = [dense(f"query_{b}") for b in range(self.num_blocks)]
        self.keys = [dense(f"key_{b}") for b in range(self.num_blocks)]
        self.values = [dense(f"value_{b}") for b in range(self.num_blocks)]
        self.ffn_norms = [norm(f"ffn_norm_{b}") for b in range(self.num_blocks)]
        self.ffn_inner = [dense(f"ffn_inner_{b}", "relu") for b in range(self.num_blocks)]
        self.ffn_outer = [dense(f"ffn_outer_{b}") for b in range(self.num_blocks)]

    def attention_weights(self, block: int, seq: Any, pad: Any, training: bool | None, context: Any = None) -> Any:
        """``(batch, heads, L, L)`` causal, padding-masked ``softmax(Q Kᵀ / sqrt(d/h))`` of
        ``block`` with ``Q = LN(c) W^Q``, ``K = c W^K`` and ``c = seq`` (SASRec) or
        ``c = context`` (NOVA's fused id and side information); dropout applied."""
        c = seq if context is None else context
        length, heads, width = ops.shape(seq)[1], self.num_heads, self.hidden_dim // self.num_heads
        q = split_heads(self.queries[block](self.attention_norms[block](c)), heads)
        k = split_heads(self.keys[block](c), heads)
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(width)
        causal = ops.tril(ops.ones((length, length), "bool"))
        allowed = ops.logical_and(causal[None, None], ops.cast(pad, "bool")[:, None, None, :])
        weights = ops.softmax(ops.where(allowed, logits, PAD_LOGIT), axis=-1)
        weights = weights * ops.cast(pad, weights.dtype)[:, None, :, None]  # query masking
        return self.dropout_layer(weights, training=training)

    def attend(self, block: int, seq: Any, pad: Any, training: bool | None, context: Any = None) -> Any:
        """One causal self-attention sublayer (``multihead_attention`` of modules.py): the
        weights of :meth:`attention_weights` times the values ``seq W^V``, plus ``LN(seq)``.
        The values and the residual always read ``seq``, whatever ``context`` is."""
        weights = self.attention_weights(block, seq, pad, training, context)
        v = split_heads(self.values[block](seq), self.num_heads)
        out = ops.reshape(ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3)), (-1, ops.shape(seq)[1], self.hidden_dim))
        return out + self.attention_norms[block](seq)

    def encode(self, seq: Any, pad: Any, training: bool | None, context: Callable[[int, Any], Any] | None = None) -> Any:
        """The blocks and the final LN; ``context(block, seq)`` (NOVA) gives each block's
        query/key input, None (SASRec) uses ``seq`` itself."""
        for b in range(self.num_blocks):
            seq = self.attend(b, seq, pad, training, None if context is None else context(b, seq))
            x = self.ffn_norms[b](seq)
            h = self.dropout_layer(self.ffn_inner[b](x), training=training)
            seq = (self.dropout_layer(self.ffn_outer[b](h), training=training) + x) * pad[..., None]
        return self.final_norm(seq)

