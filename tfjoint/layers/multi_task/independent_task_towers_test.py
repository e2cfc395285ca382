import keras
import numpy as np
import pytest

from tfjoint.features import SYNTHETIC
from tfjoint.joint import build_joint_model
from tfjoint.layers.core.contracts import CascadeArchitecture
from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceMultiTask
from tfjoint.layers.multi_task.independent_task_towers import IndependentTaskTowers
from tfjoint.testing import bce, fake_batch, fake_vocab_sizes, numpy_mlp, run_layer_test

X = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
TASKS = list(SYNTHETIC.label_keys)


def test_layer_contract():
    run_layer_test(
        IndependentTaskTowers,
        {"task_names": ["a", "b"], "tower_units": [8, 4], "dropout": 0.1},
        X,
        expected_output_shape={"a": (6, 4), "b": (6, 4)},
    )


def test_each_task_is_its_own_tower_over_the_input():
    layer = IndependentTaskTowers(["a", "b"], tower_units=[3, 2])
    out = layer(X)
    for name in ("a", "b"):
        np.testing.assert_allclose(out[name], numpy_mlp(layer.towers[name], X), rtol=1e-5, atol=1e-6)


def test_esmm_towers_at_the_same_seed():
    """The same towers as ESMM: the same weights drawn in the same order, the same outputs;
    only the training differs (it is not a cascade architecture)."""

    def built(cls):
        keras.utils.set_random_seed(7)
        layer = cls(TASKS, name="task_architecture")
        return layer, layer(X)

    towers, out = built(IndependentTaskTowers)
    esmm, esmm_out = built(EntireSpaceMultiTask)
    assert [w.path for w in towers.weights] == [w.path for w in esmm.weights]
    for a, b in zip(towers.get_weights(), esmm.get_weights()):
        np.testing.assert_array_equal(a, b)
    for name in TASKS:
        np.testing.assert_array_equal(out[name], esmm_out[name])
    assert not isinstance(towers, CascadeArchitecture) and isinstance(esmm, CascadeArchitecture)


def test_a_child_task_is_fitted_on_its_parents_positive_rows_only():
    # The synthetic spec's conversion has parent click: its loss is the mean cross-entropy
    # over the clicked rows, TaskSpec.defined_rows. ESMM would judge pCTCVR on every row.
    model = build_joint_model(SYNTHETIC, fake_vocab_sizes(SYNTHETIC), task_architecture="independent_towers")
    assert model.entire_space_tasks == [] and "conversion_joint" not in model.output_names
    x, y = fake_batch(SYNTHETIC, n=64, seed=1)
    preds = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
    clicked = SYNTHETIC.task("conversion").defined_rows(y)
    assert 0 < clicked.sum() < 64
    per_row = bce(y["conversion"][:, 0], preds["conversion"][:, 0])
    expected = (per_row * clicked).sum() / clicked.sum()
    np.testing.assert_allclose(float(model.task_losses(y, preds)["conversion"]), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_names": []},
        {"task_names": ["a", "a"]},
        {"task_names": ["a"], "tower_units": []},
        {"task_names": ["a"], "dropout": 1.0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        IndependentTaskTowers(**kwargs)
