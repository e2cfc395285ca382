import numpy as np
import pytest
from keras import ops

from tfjoint.layers.core.scenarios import (
    is_known,
    map_unknown,
    per_scenario_dense,
    scenario_one_hot,
    scenario_segments,
    unknown_scenario,
)

P = 3


def test_unknown_id_and_mapping():
    assert unknown_scenario(P) == P
    ids = np.array([[0], [2], [3], [-1], [7]], dtype="int64")
    np.testing.assert_array_equal(np.asarray(map_unknown(ids, P)), [[0], [2], [3], [3], [3]])
    np.testing.assert_array_equal(np.asarray(is_known(ids, P))[:, 0], [True, True, False, False, False])
    np.testing.assert_array_equal(np.asarray(scenario_segments(ids, P)), [0, 2, 3, 3, 3])


def test_one_hot_makes_the_unknown_choice_explicit():
    seg = np.array([0, 2, P], dtype="int32")
    shared = np.asarray(scenario_one_hot(seg, P, unknown="shared"))
    zeros = np.asarray(scenario_one_hot(seg, P, unknown="zeros"))
    assert shared.shape == (3, P + 1) and zeros.shape == (3, P)
    np.testing.assert_array_equal(shared[2], [0, 0, 0, 1])  # the layer's shared row
    np.testing.assert_array_equal(zeros[2], [0, 0, 0])  # no scenario-specific part
    np.testing.assert_array_equal(shared[:2, :P], zeros[:2])
    with pytest.raises(ValueError, match="unknown="):
        scenario_one_hot(seg, P, unknown="mean")


@pytest.mark.parametrize("middle", [(), (2,)])
def test_per_scenario_dense_applies_each_rows_own_map(middle):
    rng = np.random.default_rng(0)
    seg = np.array([0, 1, 2, 3, 1], dtype="int32")
    x = rng.normal(size=(5, *middle, 4)).astype("float32")
    kernels = rng.normal(size=(P + 1, *middle, 4, 6)).astype("float32")
    biases = rng.normal(size=(P + 1, *middle, 6)).astype("float32")
    out = np.asarray(per_scenario_dense(x, kernels, biases, scenario_one_hot(seg, P, unknown="shared")))
    for b, s in enumerate(seg):
        expected = np.einsum("...i,...io->...o", x[b], kernels[s]) + biases[s]
        np.testing.assert_allclose(out[b], expected, rtol=1e-5, atol=1e-5)
    # Without a shared row, an unknown row gets zeros; known rows are unchanged.
    zeros = np.asarray(per_scenario_dense(x, kernels[:P], biases[:P], scenario_one_hot(seg, P, unknown="zeros")))
    np.testing.assert_array_equal(zeros[3], np.zeros_like(zeros[3]))
    np.testing.assert_allclose(zeros[[0, 1, 2, 4]], out[[0, 1, 2, 4]], rtol=1e-6)
    assert ops.convert_to_tensor(out).shape == (5, *middle, 6)


def test_unknown_scenario_masking_hides_a_seeded_fraction_in_training_only():
    import json

    import keras

    from tfjoint.layers.core.scenarios import UnknownScenarioMasking

    ids = (np.arange(4000) % P).reshape(-1, 1).astype("int64")
    layer = UnknownScenarioMasking(P, rate=0.25, seed=7)
    np.testing.assert_array_equal(np.asarray(layer(ids, training=False)), ids)
    np.testing.assert_array_equal(np.asarray(layer(ids)), ids)
    masked = np.asarray(layer(ids, training=True))
    hidden = masked != ids
    assert masked.dtype == ids.dtype and masked.shape == ids.shape
    assert np.all(masked[hidden] == unknown_scenario(P))
    assert abs(hidden.mean() - 0.25) < 0.03  # 4000 draws: 3 standard deviations is 0.021
    # Seeded: a fresh layer with the same seed hides the same rows.
    again = UnknownScenarioMasking(P, rate=0.25, seed=7)
    np.testing.assert_array_equal(np.asarray(again(ids, training=True)), masked)
    np.testing.assert_array_equal(np.asarray(UnknownScenarioMasking(P, rate=0.0)(ids, training=True)), ids)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    revived = keras.saving.deserialize_keras_object(config)
    assert isinstance(revived, UnknownScenarioMasking) and revived.get_config() == layer.get_config()
    for rate in (-0.1, 1.0):
        with pytest.raises(ValueError, match="rate must be in"):
            UnknownScenarioMasking(P, rate=rate)
