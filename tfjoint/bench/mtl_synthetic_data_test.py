"""The data of the synthetic MTL bench."""

import numpy as np
import pandas as pd
import tensorflow as tf

from tfjoint import features
from tfjoint.bench import mtl_synthetic_data
from tfjoint.bench.mtl_synthetic_data import TASKS, label_correlation, regression_batches, regression_spec
from tfjoint.datasets.synthetic import CLICK_KEY, CONVERSION_KEY, SCORE_KEY, mmoe_regression


def test_task_correlation_sets_the_label_correlation():
    # w1 = w2 at correlation 1: the labels are one noiseless label of variance V plus
    # independent N(0, 0.1^2) noise each, so their correlation is V / (V + 0.01), above 0.9
    # whenever V > 0.09 (V is 1 for the linear part alone; the sines move it, down to 0.33
    # over 30 seeds). At correlation 0 the two projections are independent, so the
    # population correlation is 0 and the sample one lies within a few 1/sqrt(n) = 0.014.
    for seed in range(2):
        _, y_related = mmoe_regression(5000, 1.0, seed=seed)
        _, y_unrelated = mmoe_regression(5000, 0.0, seed=seed)
        assert label_correlation(y_related) > 0.9
        assert abs(label_correlation(y_unrelated)) < 0.07


def test_regression_batches_are_model_inputs_in_row_order():
    spec = regression_spec(input_dim=3)
    x = np.arange(15, dtype="float32").reshape(5, 3)
    y = -np.arange(10, dtype="float32").reshape(5, 2)
    batches = regression_batches(x, y, spec, batch_size=2, seed=None)
    assert [len(labels["y1"]) for _, labels in batches.as_numpy_iterator()] == [2, 2, 1]
    inputs, labels = mtl_synthetic_data.materialize(batches)
    np.testing.assert_array_equal(np.concatenate([inputs[k] for k in spec.dense], axis=1), x)
    np.testing.assert_array_equal(inputs[features.SCENARIO_KEY], np.zeros((5, 1)))
    for i, task in enumerate(TASKS):
        np.testing.assert_array_equal(labels[task][:, 0], y[:, i])


def test_materialize_concatenates_every_batch_in_order():
    rows = {"a": np.arange(5.0)[:, None]}, {"y": np.arange(5.0)[:, None] * 10}
    x, y = mtl_synthetic_data.materialize(tf.data.Dataset.from_tensor_slices(rows).batch(2))
    np.testing.assert_array_equal(x["a"][:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(y["y"][:, 0], [0, 10, 20, 30, 40])


def test_conversions_are_observed_on_clicked_impressions_only():
    frame = pd.DataFrame(
        {CLICK_KEY: [1.0, 0.0, 1.0, 0.0], CONVERSION_KEY: [1.0, 0.0, 0.0, 0.0], SCORE_KEY: 0.0}
    )
    np.testing.assert_array_equal(mtl_synthetic_data.observed_conversions(frame), [True, False, True, False])


def test_take_rows_slices_every_array():
    arrays = {"a": np.arange(4), "b": np.arange(4) * 2}
    taken = mtl_synthetic_data.take_rows(arrays, slice(1, 3))
    np.testing.assert_array_equal(taken["a"], [1, 2])
    np.testing.assert_array_equal(taken["b"], [2, 4])
