import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_scenario.hyper_network_adapter import HyperNetworkAdapter
from tfjoint.testing import check_joint_model, fake_vocab_sizes, randomize_weights, run_layer_test, scenario_batch

SIZES = fake_vocab_sizes(MOVIELENS_100K)
P, D, R, K = 3, 5, 4, 2
UNITS = [6, 3]
EPS = 1e-3  # BatchNormalization's and PartitionedNormalization's epsilon


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1, **kwargs):
    x, s = batch()
    kwargs = {"backbone_units": UNITS, "bottleneck_dim": R, "core_dim": K, "hyper_units": [6], **kwargs}
    layer = HyperNetworkAdapter(P, **kwargs)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.weights, seed, scale=0.7)
    return layer


def np_dense_bn_relu(h, dense, norm):
    """Inference: ``ReLU(BN(h W + b))`` with the moving statistics."""
    y = h @ dense.kernel.numpy() + dense.bias.numpy()
    y = norm.gamma.numpy() * (y - norm.moving_mean.numpy()) / np.sqrt(norm.moving_variance.numpy() + EPS)
    return np.maximum(y + norm.beta.numpy(), 0.0)


def np_core(layer, x):
    """``I_b = reshape(H(x_b), (k, k))``, one per row."""
    h = x
    for dense, norm in zip(layer.hyper_dense, layer.hyper_norms):
        h = np_dense_bn_relu(h, dense, norm)
    return h.reshape(len(x), K, K)


def np_forward(layer, x, s):
    """The backbone with an adapter cell after each adapted layer, per row, at inference."""
    core = np_core(layer, x)
    cells = dict(zip(layer.adapted_layers, zip(layer.adapter_cells, layer.adapter_norms)))
    h = x
    for i, (dense, norm) in enumerate(zip(layer.backbone_dense, layer.backbone_norms)):
        h = np_dense_bn_relu(h, dense, norm)
        if i not in cells:
            continue
        w, dn = ({k: v.numpy() for k, v in cells[i][0].items()}, cells[i][1])
        out = h.copy()
        for b, d in enumerate(s[:, 0]):
            if d >= P:
                continue  # unknown scenario: no adapter
            u = w["down_left"][d] @ core[b] @ w["down_right"][d]
            v = w["up_left"][d] @ core[b] @ w["up_right"][d]
            t = 1.0 / (1.0 + np.exp(-(h[b] @ u + w["down_bias"][d])))
            t = t @ v + w["up_bias"][d]
            scale = dn.gamma.numpy() * dn.scenario_gamma.numpy()[d]
            shift = dn.beta.numpy() + dn.scenario_beta.numpy()[d]
            t = scale * (t - dn.moving_mean.numpy()[d]) / np.sqrt(dn.moving_variance.numpy()[d] + EPS) + shift
            out[b] = t + h[b]
        h = out
    return h


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        HyperNetworkAdapter,
        {"num_scenarios": P, "backbone_units": UNITS, "bottleneck_dim": R, "core_dim": K, "hyper_units": [6]},
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>HyperNetworkAdapter",
        expected_output_shape=(12, UNITS[-1]),
    )


def test_adapter_weights_are_generated_per_instance_from_its_representation():
    layer = built()
    x, s = batch()
    weights = layer.adapter_weights({"inputs": x, "scenario": s}, training=False)
    core = np_core(layer, x)
    rows = np.flatnonzero(s[:, 0] == 1)  # two rows of the same domain, different inputs
    assert len(rows) >= 2
    for i, cell in zip(layer.adapted_layers, layer.adapter_cells):
        u, v = (np.asarray(t) for t in weights[i])
        assert u.shape == (12, UNITS[i], R) and v.shape == (12, R, UNITS[i])
        w = {k: t.numpy() for k, t in cell.items()}
        for b in rows:
            np.testing.assert_allclose(u[b], w["down_left"][1] @ core[b] @ w["down_right"][1], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(v[b], w["up_left"][1] @ core[b] @ w["up_right"][1], rtol=1e-4, atol=1e-5)
        assert not np.allclose(u[rows[0]], u[rows[1]]) and not np.allclose(v[rows[0]], v[rows[1]])
        np.testing.assert_array_equal(u[s[:, 0] >= P], 0.0)  # no adapter for the unknown scenario


def test_one_hyper_network_without_a_domain_axis():
    layer = built()
    shapes = [tuple(w.shape) for dense in layer.hyper_dense for w in dense.weights]
    assert shapes == [(D, 6), (6,), (6, K * K), (K * K,)]


def test_an_adapter_cell_follows_every_backbone_layer():
    layer = built()
    assert layer.adapted_layers == [0, 1] and len(layer.adapter_norms) == len(UNITS)
    x, s = batch()
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    np.testing.assert_allclose(out, np_forward(layer, x, s), rtol=1e-4, atol=1e-4)
    # Silencing the first cell (DN_d = 0) changes the output: it is on the path.
    norm = layer.adapter_norms[0]
    for w in (norm.gamma, norm.beta, norm.scenario_beta):
        w.assign(np.zeros(w.shape, "float32"))
    silenced = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    known = s[:, 0] < P
    assert not np.allclose(silenced[known], out[known], atol=1e-3)
    np.testing.assert_allclose(silenced, np_forward(layer, x, s), rtol=1e-4, atol=1e-4)


def test_num_adapters_keeps_the_last_cells_only():
    layer = built(num_adapters=1)
    assert layer.adapted_layers == [1] and len(layer.adapter_cells) == 1
    x, s = batch()
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    np.testing.assert_allclose(out, np_forward(layer, x, s), rtol=1e-4, atol=1e-4)


def test_unknown_scenario_goes_through_the_backbone_alone():
    layer = built()
    x, s = batch()
    s[0] = 99
    unknown = s[:, 0] >= P
    backbone = x
    for dense, norm in zip(layer.backbone_dense, layer.backbone_norms):
        backbone = np_dense_bn_relu(backbone, dense, norm)
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    np.testing.assert_allclose(out[unknown], backbone[unknown], rtol=1e-4, atol=1e-5)
    assert not np.allclose(out[~unknown], backbone[~unknown], atol=1e-3)
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=True))
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios"),
        ({"num_scenarios": 2, "backbone_units": []}, "backbone_units"),
        ({"num_scenarios": 2, "bottleneck_dim": 0}, "bottleneck_dim"),
        ({"num_scenarios": 2, "core_dim": 0}, "core_dim"),
        ({"num_scenarios": 2, "hyper_units": [0]}, "hyper_units"),
        ({"num_scenarios": 2, "num_adapters": 0}, "num_adapters"),
        ({"num_scenarios": 2, "backbone_units": [4, 3], "num_adapters": 3}, "num_adapters=3"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HyperNetworkAdapter(**kwargs)


def test_as_joint_model_scenario_adapter(tmp_path):
    check_joint_model(
        MOVIELENS_100K, SIZES, tmp_path, scenario_adapter="hamur",
        component_kwargs={"scenario_adapter": {"backbone_units": [16, 8], "core_dim": 3, "bottleneck_dim": 4}},
    )
