"""MB-STR's building blocks: behavior-specific feed-forward, the transformer encoder, the CGC head.

Yuan, Gao, Kang, Wang and Jin. Multi-Behavior Sequential Transformer Recommender. SIGIR
2022; code ``yuanenming/mb-str`` (``src/models/bert4rec.py``, ``new_transformer.py``,
``utils.py``, ``heads.py``). Behavior ids are ``1..T``, 0 is padding, everywhere here.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, positive_int
from tfjoint.layers.multi_behavior.behavior_pair_attention import BehaviorPairAttention
from tfjoint.layers.multi_behavior.behavior_pooling import behavior_selector
from tfjoint.registry import register


def normal(seed: int | None) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=0.02, seed=seed)


@keras.saving.register_keras_serializable(package="tfjoint")
class BehaviorSpecificFeedForward(keras.layers.Layer):
    """``FFN_(b_i)(x_i) = W2_(b_i) dropout(ReLU(W1_(b_i) x_i + c1_(b_i))) + c2_(b_i)``.

    One point-wise feed-forward network per behavior (the code's ``BehaviorSpecificPFF``
    with ``bpff=True``), width ``4 d`` inside; a padding position (behavior 0) gets 0.
    Weights ``N(0, 0.02^2)``, biases 0, as the code.
    """

    def __init__(self, num_behaviors: int, inner_dim: int, dropout: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.inner_dim = positive_int("inner_dim", inner_dim)
        self.dropout = dropout_rate(dropout)
        self.seed = seed
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=seed)

    def build(self, input_shape: Any) -> None:
        d, t, f = int(input_shape[-1]), self.num_behaviors, self.inner_dim
        self.inner_kernel = self.add_weight(name="inner_kernel", shape=(t, d, f), initializer=normal(self.seed))
        self.inner_bias = self.add_weight(name="inner_bias", shape=(t, f), initializer="zeros")
        self.outer_kernel = self.add_weight(name="outer_kernel", shape=(t, f, d), initializer=normal(self.seed))
        self.outer_bias = self.add_weight(name="outer_bias", shape=(t, d), initializer="zeros")

    def call(self, inputs: Any, behaviors: Any, training: bool | None = None) -> Any:
        onehot = behavior_selector(behaviors, self.num_behaviors)  # (B, L, T)
        inner = ops.einsum("bld,tdf->bltf", inputs, self.inner_kernel) + self.inner_bias
        inner = self.dropout_layer(ops.relu(inner), training=training)
        outer = ops.einsum("bltf,tfd->bltd", inner, self.outer_kernel) + self.outer_bias
        return ops.einsum("bltd,blt->bld", outer, onehot)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_behaviors": self.num_behaviors, "inner_dim": self.inner_dim,
                "dropout": self.dropout, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfjoint")
class MultiBehaviorTransformerEncoder(keras.layers.Layer):
    """MB-STR's encoder: ``num_blocks`` post-norm blocks over the item embeddings.

    Per block (the code's ``TransformerBlock`` with ``SublayerConnection``)::

        x = LN(x + dropout(BehaviorPairAttention(x, b)))      # A[i,j], G[i] (sec. 3.2)
        x = LN(x + dropout(FFN_(b_i)(x)))                      # behavior-specific FFN
        x = dropout(x)

    No absolute position embedding: order enters through the behavior-pair relative
    position bias only (the code's ``SimpleEmbedding``).

    Call arguments:
        inputs: ``(batch, L, d)`` embeddings. behaviors: int ``(batch, L)``, ``1..T``, 0 padding.

    Returns:
        ``(batch, L, d)`` hidden states.
    """

    def __init__(
        self, num_behaviors: int, num_blocks: int = 2, num_heads: int = 2, dropout: float = 0.2,
        seed: int | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.num_heads = positive_int("num_heads", num_heads)
        self.dropout = dropout_rate(dropout)
        self.seed = seed
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=seed)

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        self.attentions, self.feed_forwards, self.attention_norms, self.ffn_norms = [], [], [], []
        for b in range(self.num_blocks):
            attention = BehaviorPairAttention(self.num_behaviors, self.num_heads, dropout=self.dropout, seed=self.seed, name=f"attention_{b}")
            ffn = BehaviorSpecificFeedForward(self.num_behaviors, 4 * d, self.dropout, self.seed, name=f"feed_forward_{b}")
            norms = [keras.layers.LayerNormalization(epsilon=1e-5, name=f"{n}_norm_{b}") for n in ("attention", "ffn")]
            for layer in (attention, ffn, *norms):
                layer.build((None, None, d))
            self.attentions.append(attention)
            self.feed_forwards.append(ffn)
            self.attention_norms.append(norms[0])
            self.ffn_norms.append(norms[1])

    def call(self, inputs: Any, behaviors: Any, training: bool | None = None) -> Any:
        x = inputs
        for b in range(self.num_blocks):
            x = self.attention_norms[b](x + self.dropout_layer(self.attentions[b](x, behaviors, training=training), training=training))
            x = self.ffn_norms[b](x + self.dropout_layer(self.feed_forwards[b](x, behaviors, training=training), training=training))
            x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_behaviors": self.num_behaviors, "num_blocks": self.num_blocks,
                "num_heads": self.num_heads, "dropout": self.dropout, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfjoint")
class BehaviorAwareExperts(keras.layers.Layer):
    """MB-STR's behavior-aware prediction head (CGC: shared and behavior-specific experts).

    For a hidden state ``h`` of behavior ``b`` (the code's ``CGCDotProductPredictionHead``)::

        experts_b = [S_1 h, ..., S_(n_sh) h, P_(b,1) h, ..., P_(b,n_sp) h]     (linear, biased)
        g_b       = softmax(h W^g_b)                                          (n_sh + n_sp gates)
        o         = h + LN(sum_e g_b[e] experts_b[e])

    and the next-item distribution is ``p(v) = softmax(o · E_v)`` over the item table ``E``.
    A padding position (``b = 0``) mixes nothing: ``o = h + LN(0)``. Expert kernels
    ``N(0, 0.02^2)``; gate kernels ``N(0, 1)`` (the code's ``torch.randn``).

    Args:
        num_behaviors: ``T``. num_shared: shared experts (the code: 3). num_specific:
        experts per behavior (the code: 1).
    """

    def __init__(self, num_behaviors: int, num_shared: int = 3, num_specific: int = 1, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.num_shared = positive_int("num_shared", num_shared, minimum=0)
        self.num_specific = positive_int("num_specific", num_specific, minimum=0)
        if self.num_shared + self.num_specific < 1:
            raise ValueError(f"num_shared + num_specific must be >= 1. Received: {num_shared}, {num_specific}")
        self.seed = seed

    def build(self, input_shape: Any) -> None:
        d, t = int(input_shape[-1]), self.num_behaviors
        self.shared_kernel = self.add_weight(name="shared_kernel", shape=(self.num_shared, d, d), initializer=normal(self.seed))
        self.shared_bias = self.add_weight(name="shared_bias", shape=(self.num_shared, d), initializer="zeros")
        self.specific_kernel = self.add_weight(name="specific_kernel", shape=(t, self.num_specific, d, d), initializer=normal(self.seed))
        self.specific_bias = self.add_weight(name="specific_bias", shape=(t, self.num_specific, d), initializer="zeros")
        gates = keras.initializers.RandomNormal(stddev=1.0, seed=self.seed)
        self.gate_kernel = self.add_weight(name="gate_kernel", shape=(t, d, self.num_shared + self.num_specific), initializer=gates)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
        self.norm.build((None, d))

    def gates(self, inputs: Any, behaviors: Any) -> Any:
        """``g_b`` per row: ``(n, n_sh + n_sp)``, all zero for padding."""
        onehot = behavior_selector(behaviors, self.num_behaviors)
        return ops.einsum("tne,nt->ne", ops.softmax(ops.einsum("nd,tde->tne", inputs, self.gate_kernel), axis=-1), onehot)

    def call(self, inputs: Any, behaviors: Any) -> Any:
        """``inputs`` ``(n, d)``, ``behaviors`` ``(n,)`` -> ``o`` ``(n, d)``."""
        onehot = behavior_selector(behaviors, self.num_behaviors)
        shared = ops.einsum("nd,edk->nek", inputs, self.shared_kernel) + self.shared_bias
        specific = ops.einsum("nd,tedk->ntek", inputs, self.specific_kernel) + self.specific_bias
        specific = ops.einsum("ntek,nt->nek", specific, onehot)
        experts = ops.concatenate([shared, specific], axis=1)  # (n, n_sh + n_sp, d)
        mixed = ops.einsum("ne,ned->nd", self.gates(inputs, behaviors), experts)
        return inputs + self.norm(mixed)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_behaviors": self.num_behaviors, "num_shared": self.num_shared,
                "num_specific": self.num_specific, "seed": self.seed}


@register(
    "mbstr_encoder",
    slot="sequence_encoder",
    family="multi_behavior",
    reference="Yuan et al., Multi-Behavior Sequential Transformer Recommender, SIGIR 2022",
)
@keras.saving.register_keras_serializable(package="tfjoint")
class MultiBehaviorSequenceEncoder(keras.layers.Layer):
    """MB-STR's encoder as the joint model's ``E^B``: the candidate item joins the sequence.

    The row's item embedding ``e_target`` is appended to the behavior sequence as one more
    position with its own behavior id ``T + 1`` (the candidate; as MB-STR's query position
    carries the target behavior), the
    :class:`MultiBehaviorTransformerEncoder` runs over the ``L + 1`` positions (behavior-pair
    attention with relative-position bias, behavior-specific FFN), and the candidate's
    hidden state ``h_(L+1)``, which attended to every past item through its behavior pair,
    is ``E^B = act(W h_(L+1) + c)``.

    Call arguments:
        inputs: dict with ``sequence`` ``(batch, L, d)`` item embeddings, ``behaviors``
            ``(batch, L)`` ids ``1..T`` (0 padding), ``sequence_mask`` ``(batch, L)`` and
            ``target`` ``(batch, d)``.

    Returns:
        ``E^B`` ``(batch, output_dim)``.
    """

    def __init__(
        self, num_behaviors: int, output_dim: int = 32, num_blocks: int = 1, num_heads: int = 2,
        dropout: float = 0.1, activation: str = "relu", seed: int | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.output_dim = positive_int("output_dim", output_dim)
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.num_heads = positive_int("num_heads", num_heads)
        self.dropout = dropout_rate(dropout)
        self.activation = activation
        self.seed = seed

    def build(self, input_shape: dict[str, Any]) -> None:
        d = int(input_shape["sequence"][-1])
        if int(input_shape["target"][-1]) != d:
            raise ValueError(f"target width {input_shape['target'][-1]} must equal the sequence width {d}")
        if d % self.num_heads:
            raise ValueError(f"the sequence width {d} must be divisible by num_heads={self.num_heads}")
        # float32 under a mixed policy too: the attention masks with -1e30 and mixes one-hots
        self.encoder = MultiBehaviorTransformerEncoder(
            self.num_behaviors + 1, self.num_blocks, self.num_heads, self.dropout, self.seed, name="encoder", dtype="float32"
        )
        self.encoder.build((None, None, d))
        self.output_layer = keras.layers.Dense(self.output_dim, activation=self.activation, name="output", dtype=self.dtype_policy)
        self.output_layer.build((None, d))

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        seq = ops.cast(inputs["sequence"], "float32")
        target = ops.cast(inputs["target"], "float32")[:, None, :]
        mask = ops.cast(inputs["sequence_mask"], "int32")
        behaviors = ops.cast(inputs["behaviors"], "int32") * mask
        candidate = ops.full_like(behaviors[:, :1], self.num_behaviors + 1)
        hidden = self.encoder(ops.concatenate([seq, target], 1), ops.concatenate([behaviors, candidate], 1), training=training)
        return self.output_layer(ops.cast(hidden[:, -1], self.compute_dtype))

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[int | None, int]:
        return (input_shape["sequence"][0], self.output_dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_behaviors": self.num_behaviors, "output_dim": self.output_dim,
                "num_blocks": self.num_blocks, "num_heads": self.num_heads, "dropout": self.dropout,
                "activation": self.activation, "seed": self.seed}
