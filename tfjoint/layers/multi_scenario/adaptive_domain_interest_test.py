import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_scenario.adaptive_domain_interest import AdaptiveDomainInterest  # registers "adi"
from tfjoint.testing import (
    built_with_random_weights,
    check_joint_model,
    fake_vocab_sizes,
    fields_batch,
    relu,
    run_layer_test,
    sigmoid,
    softmax,
)

SIZES = fake_vocab_sizes(MOVIELENS_100K)
P, D, F, E, K, U, H = 3, 5, 4, 3, 2, 4, 5
EPS = 1e-3
KWARGS = {
    "num_scenarios": P,
    "num_shared_networks": K,
    "units": [6, U],
    "forward_units": [H],
    "scenario_embedding_dim": 3,
    "se_units": 2,
}


def batch(n=12, seed=0):
    return fields_batch(n, D, P, F, E, seed)  # ids 0..2 known, 3 unknown


def built(seed=1, **overrides):
    return built_with_random_weights(AdaptiveDomainInterest(**{**KWARGS, **overrides}), batch(), seed, scale=0.7)


def dense(layer, v):
    w, b = (t.numpy() for t in layer.weights)
    return v @ w + b


def dsbn(norm, v, d):
    """DSBN_d at inference: domain d's moving statistics and scale/shift, the shared ones if unknown."""
    if 0 <= d < P:
        scale = norm.gamma.numpy() * norm.scenario_gamma.numpy()[d]
        shift = norm.beta.numpy() + norm.scenario_beta.numpy()[d]
        mu, var = norm.moving_mean.numpy()[d], norm.moving_variance.numpy()[d]
    else:
        scale, shift = norm.gamma.numpy(), norm.beta.numpy()
        mu, var = norm.global_moving_mean.numpy(), norm.global_moving_variance.numpy()
    return scale * (v - mu) / np.sqrt(var + EPS) + shift


def numpy_adi(layer, data):
    """The paper's equations at inference, row by row; unknown ids take the documented fallbacks."""
    x, s, fields = data["inputs"], data["scenario"], data["fields"]
    z = layer.scenario_embedding.embeddings.numpy()
    alpha_table = softmax(dense(layer.shared_network_logits, z))
    beta1_table = sigmoid(dense(layer.specific_fusion_gate, z))
    beta2_table = sigmoid(dense(layer.shared_fusion_gate, z))
    rows = []
    for i, d in enumerate(s[:, 0]):
        known = 0 <= d < P
        if known:  # SE block of domain d over the fields: one weight per field
            hidden = relu(fields[i].mean(-1) @ layer.se_kernel_0.numpy()[d] + layer.se_bias_0.numpy()[d])
            a = sigmoid(hidden @ layer.se_kernel_1.numpy()[d] + layer.se_bias_1.numpy()[d])
        else:
            a = np.ones(F)
        f = (fields[i] * a[:, None]).reshape(-1)
        if layer.use_merged_inputs:
            f = np.concatenate([f, x[i]])
        shared = [f] * K
        for kernel, norm in zip(layer.shared_kernels, layer.shared_norms):
            pre = np.concatenate([shared[k] @ kernel.numpy()[k] for k in range(K)])
            out = relu(dsbn(norm, pre, d))
            shared = np.split(out, K)
        alpha = alpha_table[d] if known else np.full(K, 1.0 / K)
        e_shared = sum(alpha[k] * shared[k] for k in range(K))
        e_spec = np.zeros(U)
        if known:
            e_spec = f
            for kernel, norm in zip(layer.specific_kernels, layer.specific_norms):
                e_spec = relu(dsbn(norm, e_spec @ kernel.numpy()[d], d))
        beta1, beta2 = (beta1_table[d], beta2_table[d]) if known else (np.ones(U), np.ones(U))
        h = np.concatenate([beta1 * e_spec, beta1 * e_spec * beta2 * e_shared, beta2 * e_shared])
        for kernel, norm in zip(layer.forward_kernels, layer.forward_norms):
            w = kernel.numpy()[d] if known else kernel.numpy().mean(0)
            h = relu(dsbn(norm, h @ w, d))
        rows.append(h)
    return np.stack(rows)


def predict(layer, data, training=False):
    return np.asarray(layer(data, training=training))


def test_shared_layer_checks():
    run_layer_test(
        AdaptiveDomainInterest,
        KWARGS,
        batch(),
        registered_name="tfjoint>AdaptiveDomainInterest",
        expected_output_shape=(12, H),
    )


@pytest.mark.parametrize("use_merged_inputs", [False, True])
def test_equations_match_numpy_for_every_domain_and_unknown_ids(use_merged_inputs):
    layer = built(use_merged_inputs=use_merged_inputs)
    data = batch()
    data["scenario"][1], data["scenario"][5] = 99, -1  # out of range ids take the unknown path like id 3
    np.testing.assert_allclose(predict(layer, data), numpy_adi(layer, data), rtol=1e-4, atol=1e-5)


def test_domain_interest_weights_are_one_per_field_of_each_domain():
    layer = built()
    data = batch()
    a = np.asarray(layer.domain_interest_weights(data["fields"], data["scenario"]))
    assert a.shape == (12, F)
    # Close field 1 for domain 0 only: that field then no longer reaches domain 0's rows.
    bias = layer.se_bias_1.numpy()
    bias[0, 1] = -40.0
    layer.se_bias_1.assign(bias)
    before = predict(layer, data)
    moved = {**data, "fields": data["fields"].copy()}
    moved["fields"][:, 1] += 3.0
    after = predict(layer, moved)
    domain0 = data["scenario"][:, 0] == 0
    np.testing.assert_allclose(after[domain0], before[domain0], atol=1e-6)
    assert np.all(np.abs(after[~domain0] - before[~domain0]).max(axis=1) > 1e-3)
    # The other fields still reach domain 0's rows.
    moved = {**data, "fields": data["fields"].copy()}
    moved["fields"][:, 2] += 3.0
    assert np.all(np.abs(predict(layer, moved)[domain0] - before[domain0]).max(axis=1) > 1e-3)


def test_forward_network_after_fusion_is_per_domain():
    layer = built()
    data = batch()
    assert [tuple(k.shape) for k in layer.forward_kernels] == [(P, 3 * U, H)]
    before = predict(layer, data)
    kernel = layer.forward_kernels[0].numpy()
    kernel[1] = kernel[1] * 2.0 + 0.3
    layer.forward_kernels[0].assign(kernel)
    after = predict(layer, data)
    s = data["scenario"][:, 0]
    changed = (s == 1) | (s == P)  # domain 1, and the unknown domain's mean kernel
    np.testing.assert_array_equal(after[~changed], before[~changed])
    assert np.all(np.abs(after[changed] - before[changed]).max(axis=1) > 1e-4)


def test_a_domains_specific_network_changes_only_that_domains_rows():
    layer = built()
    data = batch()
    before = predict(layer, data)
    for kernel in layer.specific_kernels:
        k = kernel.numpy()
        k[1] = k[1] * 2.0 + 0.3
        kernel.assign(k)
    after = predict(layer, data)
    rows = data["scenario"][:, 0] == 1
    np.testing.assert_array_equal(after[~rows], before[~rows])
    assert not np.allclose(after[rows], before[rows])


def test_every_network_layer_normalizes_each_domain_with_its_own_statistics():
    layer = AdaptiveDomainInterest(**KWARGS)
    data = batch()
    layer.build({k: v.shape for k, v in data.items()})
    norms = [*layer.shared_norms, *layer.specific_norms, *layer.forward_norms]
    assert len(norms) == 2 * len(KWARGS["units"]) + len(KWARGS["forward_units"])
    layer(data, training=True)
    s = data["scenario"][:, 0]
    # First layers, by hand: E_d <- 0.9 * 0 + 0.1 * mean of domain d's pre-activations.
    a = np.asarray(layer.domain_interest_weights(data["fields"], data["scenario"]))
    f = (data["fields"] * a[:, :, None]).reshape(len(s), -1)
    shared_pre = np.concatenate([f @ layer.shared_kernels[0].numpy()[k] for k in range(K)], axis=1)
    for d in range(P):
        rows = s == d
        np.testing.assert_allclose(
            layer.shared_norms[0].moving_mean.numpy()[d], 0.1 * shared_pre[rows].mean(0), rtol=1e-4, atol=1e-6
        )
        spec_pre = f[rows] @ layer.specific_kernels[0].numpy()[d]
        np.testing.assert_allclose(
            layer.specific_norms[0].moving_mean.numpy()[d], 0.1 * spec_pre.mean(0), rtol=1e-4, atol=1e-6
        )
    # Every later layer's statistics moved too, for every domain.
    for norm in norms:
        assert np.all(np.abs(norm.moving_mean.numpy()).max(axis=1) > 0), norm.name


def test_unknown_domain_uses_no_domain_specific_part_but_the_forward_mean():
    layer = built()
    data = batch()
    data["scenario"][1] = 99
    s = data["scenario"][:, 0]
    unknown = (s < 0) | (s >= P)
    before = predict(layer, data)
    domain_specific = [
        *layer.specific_kernels,
        layer.scenario_embedding.embeddings,
        layer.se_kernel_0,
        layer.se_kernel_1,
        *(norm.scenario_gamma for norm in layer.shared_norms),
        *(norm.moving_mean for norm in layer.shared_norms),
        *(norm.moving_mean for norm in layer.forward_norms),
    ]
    for w in domain_specific:
        w.assign(w.numpy() + 0.5)
    after = predict(layer, data)
    np.testing.assert_array_equal(after[unknown], before[unknown])
    assert not np.allclose(after[~unknown], before[~unknown])


def test_shared_network_weights_sum_to_one_per_domain():
    layer = built()
    alpha = np.asarray(layer.shared_network_weights())
    assert alpha.shape == (P, K)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-6)
    z = layer.scenario_embedding.embeddings.numpy()
    np.testing.assert_allclose(alpha, softmax(dense(layer.shared_network_logits, z)), rtol=1e-5)
    assert not np.allclose(alpha[0], alpha[1]) and not np.allclose(alpha[1], alpha[2])


def test_mean_shared_network_weight_is_logged():
    layer = built()
    data = batch()
    s = data["scenario"]
    layer(data)
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
        ({"num_scenarios": 2, "forward_units": []}, "forward_units"),
        ({"num_scenarios": 2, "scenario_embedding_dim": 0}, "scenario_embedding_dim=0"),
        ({"num_scenarios": 2, "se_units": 0}, "se_units=0"),
        ({"num_scenarios": 2, "dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveDomainInterest(**kwargs)


def test_bad_inputs():
    layer = AdaptiveDomainInterest(P)
    with pytest.raises(ValueError, match="fields"):
        layer.build({"inputs": (None, D), "scenario": (None, 1), "fields": (None, F * E)})
    with pytest.raises(ValueError, match="keys"):
        layer.build({"inputs": (None, D), "scenario": (None, 1)})


def test_as_joint_model_scenario_adapter(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        scenario_adapter="adi",
        component_kwargs={"scenario_adapter": {"units": [16, 8], "forward_units": [8]}},
    ).history
    assert "gate_adi_expert_0" in history
