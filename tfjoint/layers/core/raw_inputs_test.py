import keras
import numpy as np
import pytest

from tfjoint import features
from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.layers.core.raw_inputs import RawInputs
from tfjoint.testing import check_joint_model, run_layer_test

DENSE = ["x0", "x1", "x2"]
RNG = np.random.default_rng(0)
X = {k: RNG.normal(size=(5, 1)).astype("float32") for k in DENSE}
SPEC = DatasetSpec(
    name="raw-inputs-test",
    categorical=(),
    dense=tuple(DENSE),
    tasks=(TaskSpec("y1", "regression"), TaskSpec("y2", "regression")),
)


def test_layer_contract():
    # The shared checks run in order; the one that trains a step needs trainable weights,
    # and this layer has none by design, so the checks before it (registered name, config
    # JSON round trip, eager and symbolic calls, finite outputs) must pass and it must stop
    # there. The .keras round trip is checked inside a joint model below.
    with pytest.raises(AssertionError, match="no trainable weights"):
        run_layer_test(RawInputs, {"dense": DENSE}, X, expected_output_shape={"fields": (5, 3, 1)})


def test_fields_are_the_inputs_in_dense_order():
    fields = keras.ops.convert_to_numpy(RawInputs(["x2", "x0"])(X)["fields"])
    np.testing.assert_array_equal(fields[:, :, 0], np.concatenate([X["x2"], X["x0"]], axis=1))


def test_mixed_precision_computes_in_float16():
    fields = RawInputs(DENSE, dtype="mixed_float16")(X)["fields"]
    assert keras.backend.standardize_dtype(fields.dtype) == "float16"


def test_joint_model_sees_raw_x_and_reloads(tmp_path):
    run = check_joint_model(
        SPEC,
        {},
        tmp_path,
        embedding="raw_inputs",
        task_architecture="shared_bottom",
        sequence_encoder=None,
        modality_encoder=None,
    )
    x = {**X, features.SCENARIO_KEY: np.zeros((5, 1), "int64")}
    merged = keras.Model(run.model.inputs, run.model.get_layer("flatten_fields").output)(x)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(merged), np.concatenate([X[k] for k in DENSE], axis=1)
    )
    # Nothing is learned between the inputs and the task architecture.
    assert run.model.embedding.count_params() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dense": []},
        {"dense": DENSE, "categorical": ["user"]},
        {"dense": DENSE, "tokens": ["tags"]},
        {"dense": DENSE, "sequence_item_feature": "item"},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        RawInputs(**kwargs)
