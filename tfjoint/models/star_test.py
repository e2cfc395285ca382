import keras
import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.models import build_joint_model
from tfjoint.models.joint_test import SIZES, fake_batch
from tfjoint.models.star import StarTopologyFullyConnected
from tfjoint.testing import run_layer_test

P = 3


def batch(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    scenario = (np.arange(n) % (P + 1)).reshape(-1, 1).astype("int64")  # 0..2 known, 3 unknown
    return x, scenario


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for w in layer.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))


def relu(v):
    return np.maximum(v, 0.0)


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        StarTopologyFullyConnected,
        {"num_scenarios": P, "units": [6, 4], "aux_units": [3]},
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>StarTopologyFullyConnected",
        expected_output_shape=(12, 5),
    )


def test_effective_kernel_is_elementwise_product_and_bias_is_sum():
    x, s = batch()
    layer = StarTopologyFullyConnected(P, units=[4], use_partitioned_norm=False, use_auxiliary_network=False)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    w, b = layer.shared_kernels[0].numpy(), layer.shared_biases[0].numpy()
    w_p, b_p = layer.scenario_kernels[0].numpy(), layer.scenario_biases[0].numpy()
    eff_w, eff_b = (np.asarray(t) for t in layer.effective_weights(0))
    for p in range(P):
        np.testing.assert_array_equal(eff_w[p], w_p[p] * w)
        np.testing.assert_array_equal(eff_b[p], b_p[p] + b)
    np.testing.assert_array_equal(eff_w[P], w)  # unknown scenario: W alone
    np.testing.assert_array_equal(eff_b[P], b)
    out = np.asarray(layer({"inputs": x, "scenario": s}))
    for i, p in enumerate(s[:, 0]):
        expected = relu(x[i] @ (w_p[p] * w) + b_p[p] + b) if p < P else relu(x[i] @ w + b)
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)


def test_two_layer_stack_and_auxiliary_column():
    x, s = batch()
    layer = StarTopologyFullyConnected(P, units=[4, 3], use_partitioned_norm=False, aux_units=[])
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    out = np.asarray(layer({"inputs": x, "scenario": s}))
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
        np.testing.assert_allclose(out[i], np.concatenate([h, aux]), rtol=1e-4, atol=1e-5)


def test_at_initialization_every_scenario_equals_the_shared_network():
    x, s = batch()
    layer = StarTopologyFullyConnected(
        P, units=[4, 3], use_partitioned_norm=False, use_auxiliary_network=False
    )
    layer.build({"inputs": x.shape, "scenario": s.shape})
    for j in range(2):
        np.testing.assert_array_equal(layer.scenario_kernels[j].numpy(), 1.0)
        np.testing.assert_array_equal(layer.scenario_biases[j].numpy(), 0.0)
    outs = [np.asarray(layer({"inputs": x, "scenario": np.full_like(s, p)})) for p in range(P + 1)]
    for p in range(P):
        np.testing.assert_array_equal(outs[p], outs[P])


def test_partitioned_norm_comes_first():
    x, s = batch()
    layer = StarTopologyFullyConnected(P, units=[4], use_auxiliary_network=False)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    normed = np.asarray(layer.norm({"inputs": x, "scenario": s}, training=False))
    eff_w, eff_b = (np.asarray(t) for t in layer.effective_weights(0))
    p = s[:, 0]
    expected = relu(np.einsum("bi,bio->bo", normed, eff_w[p]) + eff_b[p])
    np.testing.assert_allclose(
        np.asarray(layer({"inputs": x, "scenario": s})), expected, rtol=1e-5, atol=1e-5
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
    model = build_joint_model(
        MOVIELENS_100K,
        SIZES,
        scenario_adapter="star",
        component_kwargs={"scenario_adapter": {"units": [16, 8]}},
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y = fake_batch(MOVIELENS_100K)  # scenario ids 0..3, where 3 is the unknown scenario
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    preds = model.predict(x, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for task, value in reloaded.predict(x, verbose=0).items():
        assert np.all(np.isfinite(value))
        np.testing.assert_allclose(value, preds[task], atol=1e-6)
