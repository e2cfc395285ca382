import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.joint.optimizers import LazyAdam


def _slices(rows, width=4, seed=0):
    values = np.random.RandomState(seed).randn(len(rows), width).astype("float32")
    return tf.IndexedSlices(tf.constant(values), tf.constant(rows, tf.int32), tf.constant([10, width]))


def _moments(optimizer, variable):
    i = optimizer._get_variable_index(variable)
    return optimizer._momentums[i].numpy(), optimizer._velocities[i].numpy()


def test_untouched_rows_keep_value_and_moments_and_touched_rows_match_adam():
    init = np.random.RandomState(1).randn(10, 4).astype("float32")
    lazy_var, dense_var = keras.Variable(init), keras.Variable(init)
    lazy, dense = LazyAdam(0.1), keras.optimizers.Adam(0.1)
    first = _slices([1, 3, 3, 7])  # row 3 twice: its gradients add up
    lazy.apply([first], [lazy_var])
    # Adam of the dense gradient (Keras's Adam given the slices themselves squares each
    # duplicate apart: v gets g_a^2 + g_b^2, not (g_a + g_b)^2).
    dense.apply([tf.convert_to_tensor(first)], [dense_var])
    # First step, zero moments: the touched rows are dense Adam's, the others unchanged.
    np.testing.assert_allclose(lazy_var.numpy(), dense_var.numpy(), rtol=1e-6, atol=0)
    for mine, adams in zip(_moments(lazy, lazy_var), _moments(dense, dense_var)):
        np.testing.assert_allclose(mine, adams, rtol=1e-6, atol=0)
    value, (m, v) = lazy_var.numpy(), _moments(lazy, lazy_var)
    lazy.apply([_slices([2], seed=2)], [lazy_var])
    dense.apply([tf.convert_to_tensor(_slices([2], seed=2))], [dense_var])
    untouched = [0, 1, 3, 4, 5, 6, 7, 8, 9]
    after_m, after_v = _moments(lazy, lazy_var)
    np.testing.assert_array_equal(lazy_var.numpy()[untouched], value[untouched])
    np.testing.assert_array_equal(after_m[untouched], m[untouched])
    np.testing.assert_array_equal(after_v[untouched], v[untouched])
    assert not np.array_equal(lazy_var.numpy()[2], value[2])
    # Dense Adam keeps moving rows 1, 3 and 7 on momentum alone: the documented difference.
    assert not np.allclose(dense_var.numpy()[[1, 3, 7]], value[[1, 3, 7]])


def test_a_dense_gradient_gets_adams_update_in_one_fused_kernel():
    """Five steps of Keras's Adam and of LazyAdam on dense gradients: the same variable and
    moments. beta_2 = 0.9 and epsilon = 0.1 make both terms visible; with them 1 - beta in
    float32 (the kernel's) equals Keras's float64 one to 4e-7, so the two agree to 1e-6."""
    rng = np.random.RandomState(1)
    init = rng.randn(3, 2).astype("float32")
    lazy_var, dense_var = keras.Variable(init), keras.Variable(init)
    options = dict(learning_rate=0.1, beta_1=0.8, beta_2=0.9, epsilon=0.1)
    lazy, dense = LazyAdam(**options), keras.optimizers.Adam(**options)
    for step in range(5):
        grad = rng.randn(3, 2).astype("float32") * (step + 1)
        lazy.apply([grad], [lazy_var])
        dense.apply([grad], [dense_var])
        np.testing.assert_allclose(lazy_var.numpy(), dense_var.numpy(), rtol=1e-6, atol=1e-7)
        for mine, adams in zip(_moments(lazy, lazy_var), _moments(dense, dense_var)):
            np.testing.assert_allclose(mine, adams, rtol=1e-6, atol=0)
    assert not np.allclose(lazy_var.numpy(), init, atol=0.1)

    @tf.function
    def traced(gradient):
        lazy.apply([gradient], [lazy_var])

    graph = traced.get_concrete_function(tf.TensorSpec((3, 2))).graph
    assert [op.type for op in graph.get_operations()].count("ResourceApplyAdam") == 1


def test_fit_updates_only_the_rows_each_batch_reads():
    """In a compiled ``fit``, the embedding gradient reaches the optimizer as row slices."""
    ids = keras.Input((1,), dtype="int32")
    table = keras.layers.Embedding(20, 3)
    model = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Flatten()(table(ids))))
    model.compile(optimizer=LazyAdam(0.05), loss="mse")
    x = np.array([[1], [2], [3], [4]], "int32")  # batch 1 reads rows 1-2, batch 2 rows 3-4
    model.fit(x[:2], np.ones((2, 1)), batch_size=2, epochs=1, verbose=0)
    after_first = table.embeddings.numpy().copy()
    model.fit(x[2:], np.ones((2, 1)), batch_size=2, epochs=1, verbose=0)
    after_second = table.embeddings.numpy()
    np.testing.assert_array_equal(after_second[[0, 1, 2, *range(5, 20)]], after_first[[0, 1, 2, *range(5, 20)]])
    assert not np.array_equal(after_second[[3, 4]], after_first[[3, 4]])


def test_serializes_and_refuses_amsgrad():
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(LazyAdam(0.01)))
    assert isinstance(restored, LazyAdam)
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)
