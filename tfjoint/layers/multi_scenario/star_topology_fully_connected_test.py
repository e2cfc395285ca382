import keras
import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.layers.multi_scenario.star_topology_fully_connected import StarTopologyFullyConnected
from tfjoint.joint import build_joint_model
from tfjoint.testing import (
    check_joint_model,
    fake_batch,
    randomize_weights,
    relu,
    run_layer_test,
    scenario_batch,
    sigmoid,
)

P = 3


def batch(n=12, d=5, seed=0):
    return scenario_batch(n, d, P, seed)  # ids 0..2 known, 3 unknown


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        StarTopologyFullyConnected,
        {"num_scenarios": P, "units": [6, 4], "aux_units": [3]},
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>StarTopologyFullyConnected",
        expected_output_shape={"outputs": (12, 4), "logit": (12, 1)},
    )


def test_effective_kernel_is_elementwise_product_and_bias_is_sum():
    x, s = batch()
    layer = StarTopologyFullyConnected(P, units=[4], use_partitioned_norm=False, use_auxiliary_network=False)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.trainable_weights)
    w, b = layer.shared_kernels[0].numpy(), layer.shared_biases[0].numpy()
    w_p, b_p = layer.scenario_kernels[0].numpy(), layer.scenario_biases[0].numpy()
    eff_w, eff_b = (np.asarray(t) for t in layer.effective_weights(0))
    for p in range(P):
        np.testing.assert_array_equal(eff_w[p], w_p[p] * w)
        np.testing.assert_array_equal(eff_b[p], b_p[p] + b)
    np.testing.assert_array_equal(eff_w[P], w)  # unknown scenario: W alone
    np.testing.assert_array_equal(eff_b[P], b)
    out = np.asarray(layer({"inputs": x, "scenario": s})["outputs"])
    np.testing.assert_array_equal(np.asarray(layer({"inputs": x, "scenario": s})["logit"]), 0.0)
    for i, p in enumerate(s[:, 0]):
        expected = relu(x[i] @ (w_p[p] * w) + b_p[p] + b) if p < P else relu(x[i] @ w + b)
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)


def test_two_layer_stack_and_auxiliary_logit():
    x, s = batch()
    layer = StarTopologyFullyConnected(P, units=[4, 3], use_partitioned_norm=False, aux_units=[])
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.trainable_weights)
    result = layer({"inputs": x, "scenario": s})
    out, logit = np.asarray(result["outputs"]), np.asarray(result["logit"])
    emb = layer.scenario_embedding.embeddings.numpy()
    aux_k, aux_b = (v.numpy() for v in layer.aux_output.weights)
    for i, p in enumerate(s[:, 0]):
        h = x[i]
        for j in range(2):
            w, b = layer.shared_kernels[j].numpy(), layer.shared_biases[j].numpy()
            if p < P:
                w, b = layer.scenario_kernels[j].numpy()[p] * w, layer.scenario_biases[j].numpy()[p] + b
            h = relu(h @ w + b)
        indicator = emb[p] if p < P else np.zeros(emb.shape[1], "float32")
        aux = np.concatenate([indicator, x[i]]) @ aux_k + aux_b
        np.testing.assert_allclose(out[i], h, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(logit[i], aux, rtol=1e-4, atol=1e-5)


def test_at_initialization_every_scenario_equals_the_shared_network():
    x, s = batch()
    layer = StarTopologyFullyConnected(
        P, units=[4, 3], use_partitioned_norm=False, use_auxiliary_network=False
    )
    layer.build({"inputs": x.shape, "scenario": s.shape})
    for j in range(2):
        np.testing.assert_array_equal(layer.scenario_kernels[j].numpy(), 1.0)
        np.testing.assert_array_equal(layer.scenario_biases[j].numpy(), 0.0)
    outs = [np.asarray(layer({"inputs": x, "scenario": np.full_like(s, p)})["outputs"]) for p in range(P + 1)]
    for p in range(P):
        np.testing.assert_array_equal(outs[p], outs[P])


def test_partitioned_norm_comes_first():
    x, s = batch()
    layer = StarTopologyFullyConnected(P, units=[4], use_auxiliary_network=False)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.trainable_weights)
    normed = np.asarray(layer.norm({"inputs": x, "scenario": s}, training=False))
    eff_w, eff_b = (np.asarray(t) for t in layer.effective_weights(0))
    p = s[:, 0]
    expected = relu(np.einsum("bi,bio->bo", normed, eff_w[p]) + eff_b[p])
    np.testing.assert_allclose(
        np.asarray(layer({"inputs": x, "scenario": s})["outputs"]), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios"),
        ({"num_scenarios": 2, "units": []}, "units"),
        ({"num_scenarios": 2, "units": [4, 0]}, "units"),
        ({"num_scenarios": 2, "aux_units": [-1]}, "aux_units"),
        ({"num_scenarios": 2, "scenario_embedding_dim": 0}, "scenario_embedding_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StarTopologyFullyConnected(**kwargs)


def test_as_joint_model_scenario_adapter(tmp_path):
    check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        scenario_adapter="star",
        component_kwargs={"scenario_adapter": {"units": [16, 8]}},
    )


def test_auxiliary_output_is_added_to_every_task_logit_of_the_joint_model():
    """Each head gives act(s_m + s_a): s_m its own logit, s_a the auxiliary network's scalar."""
    model = build_joint_model(
        MOVIELENS_100K,
        SIZES,
        task_architecture="shared_bottom",
        scenario_adapter="star",
        component_kwargs={"scenario_adapter": {"units": [8, 4]}},
    )
    star = model.scenario_adapter
    star.aux_output.bias.assign([1.5])  # s_a clearly away from 0
    x, _ = fake_batch(MOVIELENS_100K, n=8)
    predictions = model.predict(x, verbose=0)
    for task in MOVIELENS_100K.tasks:
        head = model.get_layer(f"{task.name}_logit")
        s_a = model.get_layer(f"{task.name}_plus_logit_offset").input[1]
        assert s_a._keras_history.operation is star  # the STAR layer's auxiliary scalar
        taps = keras.Model(model.inputs, {"tower": head.input, "aux": s_a}).predict(x, verbose=0)
        assert np.abs(taps["aux"]).min() > 1e-3
        s_m = taps["tower"] @ head.kernel.numpy() + head.bias.numpy()
        expected = sigmoid(s_m + taps["aux"]) if task.type == "binary" else s_m + taps["aux"]
        np.testing.assert_allclose(predictions[task.name], expected, rtol=1e-5, atol=1e-6)
    assert sorted(model.output_names) == sorted(t.name for t in MOVIELENS_100K.tasks)
