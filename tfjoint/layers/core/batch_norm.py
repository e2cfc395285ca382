"""Batch normalization whose training step is one fused kernel (issue 17).

Keras 3's ``BatchNormalization`` computes a training batch's statistics with
``tf.nn.moments`` and normalizes with ``tf.nn.batch_normalization``: a dozen element-wise
ops over the ``(batch, units)`` activation forward and about twice as many backward. In the
peer-shaped MMoE (8 experts of 2 normalized layers) those ops were a quarter of the
training step's op time. TensorFlow's ``FusedBatchNormV3`` computes the same equations in
one kernel forward and one backward (``FusedBatchNormGradV3``); oneDNN runs both.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfjoint")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` (Ioffe and Szegedy, ICML 2015, Algorithm 1) whose
    training call runs TensorFlow's fused kernel; same variables, arguments and inference.

    In training (``training=True``, the layer trainable, no mask, normalized axis last, the
    TensorFlow backend), over every axis but the last with ``n`` rows:

    - ``mu = mean(x)``, ``sigma^2 = mean((x - mu)^2)`` (biased, as Keras's);
    - ``y = gamma (x - mu) / sqrt(sigma^2 + epsilon) + beta``, its gradient through
      ``mu`` and ``sigma^2`` included;
    - ``moving_mean <- momentum moving_mean + (1 - momentum) mu`` and
      ``moving_variance <- momentum moving_variance + (1 - momentum) sigma^2``. The kernel
      returns the unbiased ``n / (n - 1) sigma^2``; it is scaled back to the biased one
      Keras's layer keeps.

    Every other call (inference, a mask, another axis or backend) is Keras's own. The
    equations are Keras's; only the rounding differs (``batch_norm_test.py`` compares the
    two layers' outputs, gradients and moving statistics).
    """

    def _fused_applies(self, inputs: Any, training: Any, mask: Any) -> bool:
        axis = self.axis if self.axis >= 0 else self.axis + len(inputs.shape)
        return (
            bool(training)
            and self.trainable
            and mask is None
            and keras.backend.backend() == "tensorflow"
            and axis == len(inputs.shape) - 1
        )

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = ops.cast(inputs, "float32")
        units = x.shape[-1]
        shape = tf.shape(x)
        gamma = ops.cast(self.gamma, "float32") if self.scale else tf.ones((units,), "float32")
        beta = ops.cast(self.beta, "float32") if self.center else tf.zeros((units,), "float32")
        empty = tf.constant([], "float32")
        y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
            x=tf.reshape(x, (-1, 1, 1, units)),  # NHWC: the statistics over N (every row)
            scale=gamma,
            offset=beta,
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        rows = tf.cast(tf.size(x) // units, "float32")
        variance = unbiased * tf.math.divide_no_nan(rows - 1.0, rows)  # Bessel's correction undone
        momentum = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, "float32") * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            ops.cast(self.moving_variance, "float32") * momentum + variance * (1.0 - momentum)
        )
        return ops.cast(tf.reshape(y, shape), self.compute_dtype)
