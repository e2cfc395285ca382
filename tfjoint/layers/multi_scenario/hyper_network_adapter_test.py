import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_scenario.hyper_network_adapter import HyperNetworkAdapter
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.testing import check_joint_model, randomize_weights, run_layer_test, scenario_batch

P, D, R, K = 3, 5, 4, 2
EPS = 1e-3


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1):
    x, s = batch()
    layer = HyperNetworkAdapter(P, bottleneck_dim=R, core_dim=K, scenario_embedding_dim=3, hyper_units=[6])
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.weights, seed, scale=0.7)
    return layer


def numpy_core(layer):
    z = layer.scenario_embedding.embeddings.numpy()
    k1, b1 = (w.numpy() for w in layer.hyper_hidden.weights)
    k2, b2 = (w.numpy() for w in layer.hyper_output.weights)
    h = np.maximum(z @ k1 + b1, 0.0) @ k2 + b2  # H(z_d), one row per domain
    return h.reshape(P, K, K)


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        HyperNetworkAdapter,
        {"num_scenarios": P, "bottleneck_dim": R, "core_dim": K, "hyper_units": [6]},
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>HyperNetworkAdapter",
        expected_output_shape=(12, D),
    )


def test_low_rank_decomposition_of_the_hyper_networks_core():
    layer = built()
    core = numpy_core(layer)
    u, v = (np.asarray(t) for t in layer.adapter_weights())
    assert u.shape == (P, D, R) and v.shape == (P, R, D)
    for d in range(P):
        np.testing.assert_allclose(
            u[d], layer.down_left.numpy()[d] @ core[d] @ layer.down_right.numpy()[d], rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            v[d], layer.up_left.numpy()[d] @ core[d] @ layer.up_right.numpy()[d], rtol=1e-4, atol=1e-5
        )
    assert not np.allclose(u[0], u[1]) and not np.allclose(u[1], u[2])


def test_one_hyper_network_generates_every_domains_adapter():
    layer = built()
    # H has one set of weights: no domain axis anywhere in it.
    assert [tuple(w.shape) for w in layer.hyper_hidden.weights + layer.hyper_output.weights] == [
        (3, 6),
        (6,),
        (6, K * K),
        (K * K,),
    ]
    u_before, v_before = (np.asarray(t) for t in layer.adapter_weights())
    kernel = layer.hyper_output.kernel
    kernel.assign(kernel.numpy() + 0.5)
    u_after, v_after = (np.asarray(t) for t in layer.adapter_weights())
    for d in range(P):
        assert not np.allclose(u_before[d], u_after[d]), d
        assert not np.allclose(v_before[d], v_after[d]), d


def test_adapter_equation_for_one_domain():
    layer = built()
    x, s = batch()
    core = numpy_core(layer)
    d = 1
    u = layer.down_left.numpy()[d] @ core[d] @ layer.down_right.numpy()[d]
    v = layer.up_left.numpy()[d] @ core[d] @ layer.up_right.numpy()[d]
    rows = s[:, 0] == d
    hidden = 1.0 / (1.0 + np.exp(-(x[rows] @ u + layer.down_bias.numpy()[d])))
    y = hidden @ v + layer.up_bias.numpy()[d]
    norm = layer.domain_norm
    scale = norm.gamma.numpy() * norm.scenario_gamma.numpy()[d]
    shift = norm.beta.numpy() + norm.scenario_beta.numpy()[d]
    # Inference: DN_d uses domain d's moving statistics.
    dn = scale * (y - norm.moving_mean.numpy()[d]) / np.sqrt(norm.moving_variance.numpy()[d] + EPS) + shift
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    np.testing.assert_allclose(out[rows], dn + x[rows], rtol=1e-4, atol=1e-4)
    # Training: DN_d uses the statistics of domain d's rows of the batch.
    dn = scale * (y - y.mean(0)) / np.sqrt(y.var(0) + EPS) + shift
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=True))
    np.testing.assert_allclose(out[rows], dn + x[rows], rtol=1e-4, atol=1e-4)


def test_unknown_scenario_returns_inputs_unchanged():
    layer = built()
    x, s = batch()
    s[0] = 99
    unknown = s[:, 0] >= P
    for training in (False, True):
        out = np.asarray(layer({"inputs": x, "scenario": s}, training=training))
        np.testing.assert_array_equal(out[unknown], x[unknown])
        assert not np.allclose(out[~unknown], x[~unknown])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios"),
        ({"num_scenarios": 2, "bottleneck_dim": 0}, "bottleneck_dim"),
        ({"num_scenarios": 2, "core_dim": 0}, "core_dim"),
        ({"num_scenarios": 2, "scenario_embedding_dim": 0}, "scenario_embedding_dim"),
        ({"num_scenarios": 2, "hyper_units": [0]}, "hyper_units"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HyperNetworkAdapter(**kwargs)


def test_as_joint_model_scenario_adapter(tmp_path):
    check_joint_model(MOVIELENS_100K, SIZES, tmp_path, scenario_adapter="hamur")
