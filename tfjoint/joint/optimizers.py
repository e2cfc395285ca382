"""Row-wise ("lazy") Adam: an embedding table's update touches only the rows a batch read.

Keras 3's ``Adam.update_step`` takes an embedding's gradient, a ``tf.IndexedSlices`` of
the rows the batch gathered, and turns it dense (``gradient - m``): every step then
rewrites both moments and every row of every table, millions of parameters for a batch
that read a few thousand rows. :class:`LazyAdam` applies such a gradient row-wise, as
TensorFlow Addons' ``LazyAdam`` and PyTorch's ``SparseAdam`` do.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from tfjoint.layers.core.embedding_table import mark_row_updated


def _tf_variable(variable: Any) -> Any:
    return variable.value if isinstance(variable, keras.Variable) else variable


def unique_rows(gradient: tf.IndexedSlices) -> tuple[Any, Any]:
    """``(values, indices)`` of ``gradient`` with each row once: a row gathered several times
    in the batch gets the sum of its gradients, as the dense gradient has it."""
    indices, positions = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(indices)[0])
    return values, indices


@keras.saving.register_keras_serializable(package="tfjoint")
class LazyAdam(keras.optimizers.Adam):
    """Adam (Kingma and Ba, ICLR 2015, Algorithm 1) with row-wise updates of sparse gradients.

    A dense gradient gets Keras's Adam update (``m += (1 - beta_1)(g - m)``,
    ``v += (1 - beta_2)(g^2 - v)``, ``theta -= alpha_t m / (sqrt(v) + epsilon)``) in
    TensorFlow's fused ``ApplyAdam`` kernel: one op per variable instead of a dozen. The
    kernel forms ``1 - beta`` in the variable's dtype where Keras subtracts in Python floats
    first; in float32 with the default ``beta_2 = 0.999`` that makes ``1 - beta_2``
    0.99998713e-3 instead of 1e-3, so ``v`` differs from Keras's by about 1.3e-5 relative
    (TensorFlow 1's and ``tf.keras``'s legacy Adam used the same kernel). A
    ``tf.IndexedSlices`` gradient (an
    embedding table's) updates, for the rows ``r`` it holds only,
    ``m_r += (1 - beta_1)(g_r - m_r)``, ``v_r += (1 - beta_2)(g_r^2 - v_r)`` and
    ``theta_r -= alpha_t m_r / (sqrt(v_r) + epsilon)`` with Adam's bias-corrected
    ``alpha_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``, ``t`` the global step.

    Untouched rows: a row no example of the batch reads keeps its value *and both
    moments* bit for bit. Dense Adam would decay its moments (``m_r *= beta_1``,
    ``v_r *= beta_2``) and still move the row by ``alpha_t m_r / (sqrt(v_r) + epsilon)``
    on momentum alone; here that momentum waits until the row is read again, and is then
    decayed once, not once per skipped step. So the two agree exactly while every row is
    touched every step (and on a row's first update from zero moments), and differ for
    rare ids: lazy Adam does not keep moving a rare id's embedding in steps that never
    saw it. A row read by several examples gets the sum of their gradients, as in the
    dense gradient; Keras's Adam, given the slices themselves, squares each example's
    part apart (``ops.square`` of an ``IndexedSlices``), so its ``v_r`` for such a row is
    ``sum g_i^2`` instead of ``(sum g_i)^2``. ``amsgrad`` is not supported.

    Args:
        learning_rate, beta_1, beta_2, epsilon, **kwargs: as ``keras.optimizers.Adam``.
    """

    def __init__(self, *args: Any, amsgrad: bool = False, **kwargs: Any) -> None:
        if amsgrad:
            raise ValueError("LazyAdam does not support amsgrad. Received: amsgrad=True")
        super().__init__(*args, **kwargs)

    def build(self, variables: Any) -> None:
        super().build(variables)
        # Tables of these variables get scatter updates: their lookups then gather from the
        # variable (EmbeddingTable), which TensorFlow does without copying a scattered table.
        for variable in variables:
            mark_row_updated(variable)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
        lr = ops.cast(learning_rate, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        if not isinstance(gradient, tf.IndexedSlices):
            # Keras's update (m, v, then theta) in one kernel: TensorFlow's ApplyAdam computes
            # the same expressions (alpha_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t); epsilon
            # added to sqrt(v), not scaled) in one pass, where Keras's ``update_step`` is a
            # dozen element-wise ops and variable reads per variable (issue 17).
            tf.raw_ops.ResourceApplyAdam(
                var=_tf_variable(variable).handle,
                m=_tf_variable(m).handle,
                v=_tf_variable(v).handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=lr,
                beta1=ops.cast(self.beta_1, dtype),
                beta2=ops.cast(self.beta_2, dtype),
                epsilon=ops.cast(self.epsilon, dtype),
                grad=ops.cast(gradient, dtype),
            )
            return None
        values, indices = unique_rows(gradient)
        values = ops.cast(values, dtype)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m_rows = tf.gather(_tf_variable(m), indices)
        v_rows = tf.gather(_tf_variable(v), indices)
        # The same expressions as keras.optimizers.Adam.update_step, on the rows only.
        m_rows = m_rows + (values - m_rows) * (1 - self.beta_1)
        v_rows = v_rows + (ops.square(values) - v_rows) * (1 - self.beta_2)
        self.assign(m, tf.IndexedSlices(m_rows, indices))
        self.assign(v, tf.IndexedSlices(v_rows, indices))
        self.assign_sub(variable, tf.IndexedSlices(m_rows * alpha / (ops.sqrt(v_rows) + self.epsilon), indices))
        return None
