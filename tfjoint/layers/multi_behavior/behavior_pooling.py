"""Behavior-wise pooling: the simplest behavior-sequence encoder E^B = G(H_1, ..., H_N)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import positive_int
from tfjoint.registry import register


def behavior_selector(behaviors: Any, num_behaviors: int) -> Any:
    """``1[b = t]`` as ``(..., num_behaviors)`` float32: behavior id ``b`` (1..num_behaviors)
    is column ``b - 1``; padding (id 0) is all zero."""
    return ops.one_hot(ops.cast(behaviors, "int32") - 1, num_behaviors)


def behavior_one_hot(inputs: dict[str, Any], num_behaviors: int) -> Any:
    """:func:`behavior_selector` of ``inputs["behaviors"]``, zero at masked positions:
    ``(batch, L, num_behaviors)`` float32."""
    mask = ops.cast(inputs["sequence_mask"], "float32")
    return behavior_selector(inputs["behaviors"], num_behaviors) * mask[..., None]


@register(
    "behavior_pooling",
    slot="sequence_encoder",
    family="multi_behavior",
    reference="Wang et al., Joint Modeling in Recommendations: A Survey, 2025 (E^B = G(H_1, ..., H_N))",
)
@keras.saving.register_keras_serializable(package="tfjoint")
class BehaviorPooling(keras.layers.Layer):
    """Pools a behavior sequence per behavior type, then fuses the pools with a dense layer.

    For each behavior type ``b`` the pool is the masked mean of the item embeddings the user
    interacted with through ``b``: ``H_b = sum_j 1[b_j = b] e_j / max(1, sum_j 1[b_j = b])``.
    The fusion ``G`` is ``E^B = act(W [H_1; ...; H_N] + c)``. A behavior type that is absent
    from a user's history contributes a zero pool.

    Args:
        num_behaviors: number of behavior types (ids ``1..num_behaviors``; 0 is padding).
        output_dim: size of ``E^B``.
        activation: activation of ``G``.

    Call arguments:
        inputs: the embedding slot's dict, with ``sequence`` ``(batch, L, d)``,
            ``behaviors`` ``(batch, L)`` and ``sequence_mask`` ``(batch, L)``.

    Returns:
        ``E^B`` of shape ``(batch, output_dim)``.
    """

    def __init__(self, num_behaviors: int, output_dim: int = 32, activation: str = "relu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_behaviors = positive_int("num_behaviors", num_behaviors)
        self.output_dim = positive_int("output_dim", output_dim)
        self.activation = activation

    def build(self, input_shape: dict[str, Any]) -> None:
        dim = input_shape["sequence"][-1]
        self.fusion = keras.layers.Dense(
            self.output_dim, activation=self.activation, name="fusion", dtype=self.dtype_policy
        )
        self.fusion.build((None, dim * self.num_behaviors))

    def pools(self, inputs: dict[str, Any]) -> Any:
        """The per-behavior pools ``H_b``, shape ``(batch, num_behaviors, d)``."""
        seq = ops.cast(inputs["sequence"], "float32")
        onehot = behavior_one_hot(inputs, self.num_behaviors)
        sums = ops.einsum("blk,bld->bkd", onehot, seq)
        counts = ops.sum(onehot, axis=1)[..., None]
        return sums / ops.maximum(counts, 1.0)

    def call(self, inputs: dict[str, Any]) -> Any:
        pools = ops.cast(self.pools(inputs), self.compute_dtype)
        return self.fusion(ops.reshape(pools, (-1, pools.shape[1] * pools.shape[2])))

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[int | None, int]:
        return (input_shape["sequence"][0], self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_behaviors=self.num_behaviors, output_dim=self.output_dim, activation=self.activation)
        return config
