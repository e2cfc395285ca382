import numpy as np
import pytest

from tfjoint.layers.multi_behavior.behavior_pooling import BehaviorPooling
from tfjoint.testing import run_layer_test


def make_inputs(batch=3, length=6, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    behaviors = rng.integers(1, 4, size=(batch, length))
    behaviors[:, -1] = 0
    behaviors[0] = [1, 1, 2, 0, 0, 0]  # no "3" behavior in row 0
    mask = (behaviors != 0).astype("float32")
    return {
        "sequence": rng.normal(size=(batch, length, dim)).astype("float32"),
        "behaviors": behaviors,
        "sequence_mask": mask,
    }


def test_layer_contract():
    run_layer_test(BehaviorPooling, {"num_behaviors": 3, "output_dim": 5}, make_inputs(), expected_output_shape=(3, 5))


def test_pools_are_per_behavior_masked_means():
    x = make_inputs()
    layer = BehaviorPooling(num_behaviors=3, output_dim=5)
    pools = np.asarray(layer.pools(x))
    for row in range(3):
        for b in (1, 2, 3):
            chosen = x["sequence"][row][x["behaviors"][row] == b]
            expected = chosen.mean(axis=0) if len(chosen) else np.zeros(4)
            np.testing.assert_allclose(pools[row, b - 1], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pools[0, 2], 0.0)
    # G: a dense layer over the concatenated pools.
    out = layer(x)
    w, c = (v.numpy() for v in layer.fusion.weights)
    np.testing.assert_allclose(out, np.maximum(pools.reshape(3, -1) @ w + c, 0), rtol=1e-5, atol=1e-6)


def test_padding_is_ignored():
    x = make_inputs()
    layer = BehaviorPooling(num_behaviors=3)
    before = np.asarray(layer(x))
    x["sequence"][:, -1] += 100.0  # the padded position
    np.testing.assert_allclose(layer(x), before, rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_behaviors"):
        BehaviorPooling(num_behaviors=0)
