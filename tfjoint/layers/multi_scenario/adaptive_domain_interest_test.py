import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_scenario.adaptive_domain_interest import AdaptiveDomainInterest  # registers "adi"
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.testing import (
    check_joint_model,
    numpy_mlp,
    randomize_weights,
    run_layer_test,
    scenario_batch,
    sigmoid,
    softmax,
)

P, D, K, U = 3, 5, 2, 4
EPS = 1e-3


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1):
    x, s = batch()
    layer = AdaptiveDomainInterest(
        P, num_shared_networks=K, units=[6, U], scenario_embedding_dim=3, se_units=2
    )
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.weights, seed, scale=0.7)
    return layer


def dense(layer, v):
    w, b = (t.numpy() for t in layer.weights)
    return v @ w + b


def numpy_adi(layer, x, s):
    """The paper's equations at inference, row by row; unknown ids take the shared path."""
    norm = layer.domain_norm
    z = layer.scenario_embedding.embeddings.numpy()
    alpha_table = softmax(dense(layer.shared_network_logits, z))
    beta1_table = sigmoid(dense(layer.specific_fusion_gate, z))
    beta2_table = sigmoid(dense(layer.shared_fusion_gate, z))
    rows = []
    for i, d in enumerate(s[:, 0]):
        known = 0 <= d < P
        if known:  # DSBN_d with domain d's moving statistics and scale/shift
            scale = norm.gamma.numpy() * norm.scenario_gamma.numpy()[d]
            shift = norm.beta.numpy() + norm.scenario_beta.numpy()[d]
            mu, var = norm.moving_mean.numpy()[d], norm.moving_variance.numpy()[d]
        else:
            scale, shift = norm.gamma.numpy(), norm.beta.numpy()
            mu, var = norm.global_moving_mean.numpy(), norm.global_moving_variance.numpy()
        f = scale * (x[i] - mu) / np.sqrt(var + EPS) + shift
        alpha = alpha_table[d] if known else np.full(K, 1.0 / K)
        e_shared = sum(alpha[k] * numpy_mlp(layer.shared_networks[k], f) for k in range(K))
        e_spec = numpy_mlp(layer.specific_networks[d], f) if known else np.zeros(U)
        beta1, beta2 = (beta1_table[d], beta2_table[d]) if known else (np.ones(U), np.ones(U))
        blocks = [beta1 * e_spec, beta1 * e_spec * beta2 * e_shared, beta2 * e_shared]
        squeezed = np.array([b.mean() for b in blocks])
        if known:
            hidden = np.maximum(squeezed @ layer.se_kernel_0.numpy()[d] + layer.se_bias_0.numpy()[d], 0.0)
            se = sigmoid(hidden @ layer.se_kernel_1.numpy()[d] + layer.se_bias_1.numpy()[d])
        else:
            se = np.ones(3)
        rows.append(np.concatenate([se[j] * blocks[j] for j in range(3)]))
    return np.stack(rows)


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        AdaptiveDomainInterest,
        {"num_scenarios": P, "num_shared_networks": K, "units": [6, U], "se_units": 2},
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>AdaptiveDomainInterest",
        expected_output_shape=(12, 3 * U),
    )


def test_equations_match_numpy_for_every_domain_and_unknown_ids():
    layer = built()
    x, s = batch()
    s[1], s[5] = 99, -1  # out of range ids take the unknown path like id 3
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    np.testing.assert_allclose(out, numpy_adi(layer, x, s), rtol=1e-4, atol=1e-5)


def test_shared_network_weights_sum_to_one_per_domain():
    layer = built()
    alpha = np.asarray(layer.shared_network_weights())
    assert alpha.shape == (P, K)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-6)
    z = layer.scenario_embedding.embeddings.numpy()
    np.testing.assert_allclose(alpha, softmax(dense(layer.shared_network_logits, z)), rtol=1e-5)
    assert not np.allclose(alpha[0], alpha[1]) and not np.allclose(alpha[1], alpha[2])


def test_a_domains_specific_network_changes_only_that_domains_rows():
    layer = built()
    x, s = batch()
    before = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    for w in layer.specific_networks[1].weights:
        w.assign(w.numpy() * 2.0 + 0.3)
    after = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    rows = s[:, 0] == 1
    np.testing.assert_array_equal(after[~rows], before[~rows])
    assert not np.allclose(after[rows], before[rows])


def test_unknown_domain_uses_only_the_shared_networks():
    layer = built()
    x, s = batch()
    s[1] = 99
    unknown = (s[:, 0] < 0) | (s[:, 0] >= P)
    before = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    # Fallback: no specific block, uniform alpha, no gates: [0, 0, mean_k MLP_k(F)].
    norm = layer.domain_norm
    f = (x[unknown] - norm.global_moving_mean.numpy()) / np.sqrt(norm.global_moving_variance.numpy() + EPS)
    f = norm.gamma.numpy() * f + norm.beta.numpy()
    shared = np.mean([numpy_mlp(net, f) for net in layer.shared_networks], axis=0)
    np.testing.assert_array_equal(before[unknown, : 2 * U], 0.0)
    np.testing.assert_allclose(before[unknown, 2 * U :], shared, rtol=1e-4, atol=1e-5)
    # Every domain-specific parameter is irrelevant to them.
    domain_specific = [
        *(w for net in layer.specific_networks for w in net.weights),
        layer.scenario_embedding.embeddings,
        layer.se_kernel_0,
        layer.se_kernel_1,
        layer.domain_norm.scenario_gamma,
        layer.domain_norm.moving_mean,
    ]
    for w in domain_specific:
        w.assign(w.numpy() + 0.5)
    after = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    np.testing.assert_array_equal(after[unknown], before[unknown])
    assert not np.allclose(after[~unknown], before[~unknown])


def test_mean_shared_network_weight_is_logged():
    layer = built()
    x, s = batch()
    layer({"inputs": x, "scenario": s})
    means = [float(m.result()) for m in layer.gate_trackers["adi"]]
    alpha = np.asarray(layer.shared_network_weights())
    expected = np.concatenate([alpha[s[s[:, 0] < P, 0]], np.full(((s[:, 0] >= P).sum(), K), 1.0 / K)]).mean(0)
    np.testing.assert_allclose(means, expected, rtol=1e-5)
    assert [m.name for m in layer.gate_trackers["adi"]] == ["gate_adi_expert_0", "gate_adi_expert_1"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios=0"),
        ({"num_scenarios": 2, "num_shared_networks": 0}, "num_shared_networks=0"),
        ({"num_scenarios": 2, "units": []}, "units"),
        ({"num_scenarios": 2, "units": [4, 0]}, r"units=\[4, 0\]"),
        ({"num_scenarios": 2, "scenario_embedding_dim": 0}, "scenario_embedding_dim=0"),
        ({"num_scenarios": 2, "se_units": 0}, "se_units=0"),
        ({"num_scenarios": 2, "dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveDomainInterest(**kwargs)


def test_as_joint_model_scenario_adapter(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        scenario_adapter="adi",
        component_kwargs={"scenario_adapter": {"units": [16, 8]}},
    ).history
    assert "gate_adi_expert_0" in history
