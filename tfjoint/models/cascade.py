"""The conditional probability of a cascade step from joint probabilities."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.models.arguments import positive


@keras.saving.register_keras_serializable(package="tfjoint")
class ConditionalFromJoint(keras.layers.Layer):
    """``p(task | parent) = clip(p(task, joint) / max(p(parent, joint), epsilon), 0, 1)``.

    Args:
        epsilon: lower bound of the parent probability.

    Call arguments:
        inputs: ``[joint, parent_joint]``, each ``(batch, 1)``.

    Returns:
        ``(batch, 1)`` conditional probabilities.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = positive("epsilon", epsilon)

    def call(self, inputs: list[Any]) -> Any:
        joint, parent = inputs
        return ops.clip(joint / ops.maximum(parent, self.epsilon), 0.0, 1.0)

    def compute_output_shape(self, input_shape: list[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config
