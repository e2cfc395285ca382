"""Target attention over a behavior sequence, pooled per behavior type (DIN with behavior types)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.multi_behavior.behavior_pooling import behavior_one_hot
from tfjoint.registry import register

NORMALIZATIONS = ("none", "softmax")


@register(
    "behavior_attention",
    slot="sequence_encoder",
    family="multi_behavior",
    reference="Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018 (per behavior type)",
)
@keras.saving.register_keras_serializable(package="tfjoint")
class BehaviorAwareAttention(keras.layers.Layer):
    """The target item attends over the user's behavior sequence; one pool per behavior type.

    DIN's local activation unit (Zhou et al., KDD 2018, sec. 4.3, eq. 3; official code
    ``zhougr1993/DeepInterestNetwork`` ``din/model.py``, ``attention``) scores each past
    item ``e_j`` against the target item ``t``:

        a_j = MLP([t, e_j, t - e_j, t * e_j])       (MLP: 80 and 40 sigmoid units, then 1)

    Behavior types enter twice. First, ``e_j`` is the embedding slot's sequence entry, the
    item embedding plus the embedding of its behavior type, so the weight depends on how the
    user interacted with the item. Second, the weighted items are pooled per behavior type
    and the pools are fused as in :class:`BehaviorPooling` (``E^B = G(H_1, ..., H_N)``):

        H_b = sum_j a_j 1[b_j = b] e_j,        E^B = act(W [H_1; ...; H_N] + c)

    so ``E^B`` keeps which behavior each attended item came from (a like and a dislike of a
    similar item do not cancel in one sum).

    ``normalization``: ``"none"`` (default) is the paper: the weights are not normalized,
    "to reserve the intensity of user interests" (sec. 4.3). ``"softmax"`` is the official
    code: the masked scores are divided by ``sqrt(d)`` and normalized by a softmax over the
    sequence. Padded positions (``sequence_mask`` 0) get weight 0 in both; a user with no
    history gets ``E^B = act(c)``.

    Args:
        num_behaviors: number of behavior types (ids ``1..num_behaviors``; 0 is padding).
        output_dim: size of ``E^B``.
        attention_units: hidden sizes of the activation unit (the code's 80, 40).
        attention_activation: their activation (the code's sigmoid; the paper also uses
            PReLU/Dice).
        normalization: ``"none"`` (paper) or ``"softmax"`` (official code).
        activation: activation of the fusion ``G``.

    Call arguments:
        inputs: the embedding slot's dict, with ``sequence`` ``(batch, L, d)``,
            ``behaviors`` ``(batch, L)``, ``sequence_mask`` ``(batch, L)`` and ``target``
            ``(batch, d)``, the embedding of the row's item.

    Returns:
        ``E^B`` of shape ``(batch, output_dim)``.
    """

    def __init__(
        self,
        num_behaviors: int,
        output_dim: int = 32,
        attention_units: tuple[int, ...] | list[int] = (80, 40),
        attention_activation: str = "sigmoid",
        normalization: str = "none",
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.output_dim = positive_int("output_dim", output_dim)
        self.attention_units = [positive_int("attention_units", u) for u in attention_units]
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}. Received: {normalization!r}")
        self.attention_activation = attention_activation
        self.normalization = normalization
        self.activation = activation

    def build(self, input_shape: dict[str, Any]) -> None:
        dim = input_shape["sequence"][-1]
        if input_shape["target"][-1] != dim:
            raise ValueError(f"target width {input_shape['target'][-1]} must equal the sequence width {dim}")
        self.attention_layers = []
        width = 4 * dim
        for i, units in enumerate([*self.attention_units, 1]):
            hidden = i < len(self.attention_units)
            layer = keras.layers.Dense(
                units, activation=self.attention_activation if hidden else None, name=f"attention_{i}",
                dtype=self.dtype_policy,
            )
            layer.build((None, None, width))
            self.attention_layers.append(layer)
            width = units
        self.fusion = keras.layers.Dense(
            self.output_dim, activation=self.activation, name="fusion", dtype=self.dtype_policy
        )
        self.fusion.build((None, dim * self.num_behaviors))

    def attention_weights(self, inputs: dict[str, Any]) -> Any:
        """The weights ``a_j`` of every position, ``(batch, L)`` float32, 0 where padded."""
        seq = ops.cast(inputs["sequence"], self.compute_dtype)
        target = ops.broadcast_to(ops.cast(inputs["target"], self.compute_dtype)[:, None, :], ops.shape(seq))
        hidden = ops.concatenate([target, seq, target - seq, target * seq], axis=-1)
        for layer in self.attention_layers:
            hidden = layer(hidden)
        scores = ops.cast(hidden[..., 0], "float32")
        mask = ops.cast(inputs["sequence_mask"], "float32")
        if self.normalization == "softmax":
            scaled = scores / float(seq.shape[-1]) ** 0.5
            scores = ops.softmax(ops.where(mask > 0, scaled, -1e9), axis=-1)
        return scores * mask

    def pools(self, inputs: dict[str, Any]) -> Any:
        """The per-behavior attention pools ``H_b``, shape ``(batch, num_behaviors, d)``."""
        weighted = behavior_one_hot(inputs, self.num_behaviors) * self.attention_weights(inputs)[..., None]
        return ops.einsum("blk,bld->bkd", weighted, ops.cast(inputs["sequence"], "float32"))

    def call(self, inputs: dict[str, Any]) -> Any:
        pools = ops.cast(self.pools(inputs), self.compute_dtype)
        return self.fusion(ops.reshape(pools, (-1, pools.shape[1] * pools.shape[2])))

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[int | None, int]:
        return (input_shape["sequence"][0], self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_behaviors=self.num_behaviors,
            output_dim=self.output_dim,
            attention_units=list(self.attention_units),
            attention_activation=self.attention_activation,
            normalization=self.normalization,
            activation=self.activation,
        )
        return config
