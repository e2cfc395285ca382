"""An embedding table whose TensorFlow lookup reads only the rows it is asked for (issue 17).

Keras 3's ``Embedding.call`` is ``ops.take(table, ids)``: on TensorFlow it converts the
table variable to a tensor (``ReadVariableOp``) and gathers from that. Once a table has
been updated row-wise (:class:`~tfjoint.joint.optimizers.LazyAdam`'s ``ResourceScatter*``
ops), TensorFlow keeps the variable in copy-on-read mode, where every ``ReadVariableOp``
copies the whole buffer: each training step then copied every table (24 MB in ``tfjoint
bench train``'s workload) to read a few thousand rows. ``tf.gather`` on the variable itself
is one ``ResourceGather`` of those rows.

The other way round holds too: a ``ResourceGather`` puts the variable in copy-on-read mode,
and then every *dense* update (Keras's Adam rewrites the whole table each step) copies the
table first. So :class:`EmbeddingTable` gathers from the variable only when its table is
updated row-wise: ``LazyAdam.build`` marks the variables it updates
(:func:`mark_row_updated`); any other table is read Keras's way.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


_ROW_UPDATED = "tfjoint_row_updated"


def mark_row_updated(variable: Any) -> None:
    """Marks ``variable`` as updated row by row (sparse scatters), as ``LazyAdam`` does."""
    setattr(variable, _ROW_UPDATED, True)


def is_row_updated(variable: Any) -> bool:
    """Whether :func:`mark_row_updated` marked ``variable``."""
    return bool(getattr(variable, _ROW_UPDATED, False))


@keras.saving.register_keras_serializable(package="tfjoint")
class EmbeddingTable(keras.layers.Embedding):
    """``keras.layers.Embedding`` (same arguments, variable, output, gradient and saved
    weights) whose TensorFlow lookup, once its table is marked row-updated (a ``LazyAdam``
    built over it), gathers the rows from the variable, not from a copy of it. Row ``i`` of
    ``E`` for id ``i``; a negative id ``i`` reads row ``rows + i``, as Keras's ``take``
    does. Unmarked tables, other backends, LoRA and quantized tables use Keras's ``call``.

    Example:
    >>> table = EmbeddingTable(5, 2, embeddings_initializer="ones")
    >>> keras.ops.convert_to_numpy(table(keras.ops.convert_to_tensor([[1, 4]]))).shape
    (1, 2, 2)
    """

    def call(self, inputs: Any) -> Any:
        if (
            keras.backend.backend() != "tensorflow"
            or self.lora_enabled
            or self.quantization_mode is not None
            or not is_row_updated(self.embeddings)
        ):
            return super().call(inputs)
        import tensorflow as tf

        ids = inputs if inputs.dtype in ("int32", "int64") else ops.cast(inputs, "int32")
        ids = tf.where(ids < 0, ids + ops.cast(self.input_dim, ids.dtype), ids)
        # The variable itself (Embedding does not autocast): ResourceGather, row slices back.
        rows = tf.gather(self.embeddings.value, ids)
        return ops.cast(rows, self.compute_dtype)
