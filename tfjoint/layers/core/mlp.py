"""A multi-layer perceptron block: the expert, tower and bottom network of every model."""

from __future__ import annotations

from typing import Any

import keras

from tfjoint.layers.core.arguments import dropout_rate, layer_units


@keras.saving.register_keras_serializable(package="tfjoint")
class MLP(keras.layers.Layer):
    """Stack of ``Dense -> activation -> dropout`` layers.

    Args:
        units: hidden sizes, one per layer; must be non-empty and positive.
        activation: activation of every layer.
        dropout: dropout rate after every layer, in ``[0, 1)``.
        kernel_initializer: initializer of every kernel.
        seed: seed of the dropout layers.

    Call arguments:
        inputs: tensor of shape ``(batch, d)``.
        training: Python bool, whether dropout is active.

    Returns:
        Tensor of shape ``(batch, units[-1])``.

    Example:
    >>> MLP([8, 4])(keras.ops.ones((2, 3))).shape
    (2, 4)
    """

    def __init__(
        self,
        units: list[int] | tuple[int, ...],
        activation: str = "relu",
        dropout: float = 0.0,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = layer_units("units", units)
        self.activation = activation
        self.dropout = dropout_rate(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.dense_layers = []
        self.dropout_layers = []
        shape = input_shape
        for i, width in enumerate(self.units):
            dense = keras.layers.Dense(
                width,
                activation=self.activation,
                kernel_initializer=self.kernel_initializer,
                name=f"dense_{i}",
                dtype=self.dtype_policy,
            )
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
            self.dense_layers.append(dense)
            self.dropout_layers.append(
                keras.layers.Dropout(self.dropout, seed=self.seed, name=f"dropout_{i}", dtype=self.dtype_policy)
            )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = inputs
        for dense, dropout in zip(self.dense_layers, self.dropout_layers):
            x = dropout(dense(x), training=training)
        return x

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            seed=self.seed,
        )
        return config
