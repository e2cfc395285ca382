import keras
import numpy as np
import tensorflow as tf

from tfjoint.joint import LazyAdam
from tfjoint.layers.core.embedding_table import EmbeddingTable, mark_row_updated


def _pair(rows=7, width=3, dtype=None):
    init = keras.initializers.RandomNormal(seed=1)
    mine = EmbeddingTable(rows, width, embeddings_initializer=init, dtype=dtype)
    keras_table = keras.layers.Embedding(rows, width, embeddings_initializer=init, dtype=dtype)
    mine.build((None,))
    keras_table.build((None,))
    keras_table.embeddings.assign(mine.embeddings.numpy())
    return mine, keras_table


def test_rows_and_row_gradients_are_keras_embeddings():
    mine, keras_table = _pair()
    mark_row_updated(mine.embeddings)
    ids = tf.constant([[1, 6], [-1, 1], [0, 3]])  # -1 is the last row, as Keras's take has it
    np.testing.assert_array_equal(mine(ids).numpy(), keras_table(ids).numpy())
    np.testing.assert_array_equal(mine(ids).numpy()[1, 0], mine.embeddings.numpy()[6])
    weights = tf.constant(np.random.RandomState(0).randn(3, 2, 3).astype("float32"))
    grads = []
    for table in (mine, keras_table):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(table(ids) * weights)
        (grad,) = tape.gradient(loss, [table.embeddings.value])
        assert isinstance(grad, tf.IndexedSlices)  # row slices: LazyAdam's row-wise update applies
        grads.append(tf.convert_to_tensor(grad).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)


def test_mixed_precision_output_and_float32_table():
    mine, keras_table = _pair(dtype="mixed_bfloat16")
    mark_row_updated(mine.embeddings)
    ids = tf.constant([[2, 5]])
    assert mine(ids).dtype == tf.bfloat16 and mine.embeddings.dtype == "float32"
    np.testing.assert_array_equal(mine(ids).numpy(), keras_table(ids).numpy())


def _table_readers(optimizer):
    """The op types that read the table's variable in a traced step with ``optimizer``."""
    table = EmbeddingTable(1000, 4)
    table.build((None,))
    optimizer.build([table.embeddings])  # as fit does before it traces the step
    ids = tf.constant([[3, 5]])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(table(ids))
        optimizer.apply(tape.gradient(loss, [table.embeddings.value]), [table.embeddings])

    step()
    graph = step.get_concrete_function().graph
    handle = table.embeddings.value.handle
    (inside,) = [internal for external, internal in graph.captures if external is handle]
    touched = table.embeddings.numpy()
    step()
    moved = ~np.all(table.embeddings.numpy() == touched, axis=1)
    return {op.type for op in inside.consumers()}, moved


def test_a_row_wise_updated_table_is_read_without_copying_it():
    """After LazyAdam's scatters the table is in copy-on-read mode: the traced lookup must
    gather from the variable (ResourceGather), not read the whole table (ReadVariableOp)."""
    readers, moved = _table_readers(LazyAdam(0.1))
    assert "ResourceGather" in readers and "ReadVariableOp" not in readers, readers
    assert moved[[3, 5]].all() and not moved[[0, 1, 2, 4, 6]].any()


def test_a_densely_updated_table_is_read_as_keras_reads_it():
    """Keras's Adam rewrites the whole table: a ResourceGather would put it in copy-on-read
    mode, where each of those dense updates copies the table first, so the lookup stays Keras's."""
    readers, moved = _table_readers(keras.optimizers.Adam(0.1))
    assert "ResourceGather" not in readers and "ReadVariableOp" in readers, readers
    assert moved[[3, 5]].all()
