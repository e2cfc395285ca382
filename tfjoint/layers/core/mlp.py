"""A multi-layer perceptron block: the expert, tower and bottom network of every model."""

from __future__ import annotations

from typing import Any

import keras

from tfjoint.layers.core.arguments import dropout_rate, layer_units
from tfjoint.layers.core.batch_norm import BatchNormalization


@keras.saving.register_keras_serializable(package="tfjoint")
class MLP(keras.layers.Layer):
    """Stack of ``Dense -> activation -> dropout`` layers, or, with ``batch_norm``,
    ``Dense -> BatchNormalization -> activation -> dropout`` (Ioffe and Szegedy, Batch
    Normalization, ICML 2015, eq. of Algorithm 1 applied to the pre-activation ``W x``; the
    ``Dense`` then has no bias, which the normalization's ``beta`` replaces). The
    ``batch_norm`` layout is DeepCTR's and torch-rechub's ``DNN``/``MLP``. The normalization
    is :class:`~tfjoint.layers.core.batch_norm.BatchNormalization`: Keras's equations, one
    fused kernel in training.

    Args:
        units: hidden sizes, one per layer; must be non-empty and positive.
        activation: activation of every layer.
        dropout: dropout rate after every layer, in ``[0, 1)``.
        kernel_initializer: initializer of every kernel.
        seed: seed of the dropout layers.
        batch_norm: normalize every layer's pre-activation over the batch (default off:
            the models of the catalog are specified without it, and batch statistics make
            a row's output depend on its batch in training).

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
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = layer_units("units", units)
        self.activation = activation
        self.dropout = dropout_rate(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False. Received: batch_norm={batch_norm!r}")
        self.batch_norm = batch_norm

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.dense_layers = []
        self.dropout_layers = []
        self.norm_layers = []
        shape = input_shape
        for i, width in enumerate(self.units):
            dense = keras.layers.Dense(
                width,
                activation=None if self.batch_norm else self.activation,
                use_bias=not self.batch_norm,
                kernel_initializer=self.kernel_initializer,
                name=f"dense_{i}",
                dtype=self.dtype_policy,
            )
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
            self.dense_layers.append(dense)
            if self.batch_norm:
                norm = BatchNormalization(name=f"batch_norm_{i}", dtype=self.dtype_policy)
                norm.build(shape)
                self.norm_layers.append(norm)
            self.dropout_layers.append(
                keras.layers.Dropout(self.dropout, seed=self.seed, name=f"dropout_{i}", dtype=self.dtype_policy)
            )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = inputs
        for i, (dense, dropout) in enumerate(zip(self.dense_layers, self.dropout_layers)):
            x = dense(x)
            if self.batch_norm:
                x = keras.activations.get(self.activation)(self.norm_layers[i](x, training=training))
            x = dropout(x, training=training)
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
            batch_norm=self.batch_norm,
        )
        return config
