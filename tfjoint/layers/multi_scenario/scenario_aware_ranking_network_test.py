import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.layers.multi_scenario.scenario_aware_ranking_network import ScenarioAwareRankingNetwork
from tfjoint.testing import (
    check_joint_model,
    randomize_weights,
    relu,
    run_layer_test,
    scenario_batch,
    softmax,
)

P, D, L, EMB, A = 3, 5, 4, 3, 2
KWARGS = {
    "num_scenarios": P,
    "expert_units": [6, 4],
    "num_scenario_experts": 2,
    "num_shared_experts": 2,
    "attention_dim": A,
    "scenario_embedding_dim": 2,
}


def batch(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x, scenario = scenario_batch(n, D, P, rng)  # ids 0..2 known, 3 unknown
    lengths = np.arange(n) % (L + 1)  # 0 (no behavior) .. L real items, then padding
    return {
        "inputs": x,
        "scenario": scenario,
        "sequence": rng.normal(size=(n, L, EMB)).astype("float32"),
        "sequence_mask": (np.arange(L)[None, :] < lengths[:, None]).astype("float32"),
        "target": rng.normal(size=(n, EMB)).astype("float32"),
    }


def built(seed=1, **overrides):
    data = batch()
    layer = ScenarioAwareRankingNetwork(**{**KWARGS, **overrides})
    layer.build({k: v.shape for k, v in data.items()})
    randomize_weights(layer.trainable_weights, seed, scale=0.7)
    return layer


def numpy_v_cb(layer, data, i):
    """``sum_k alpha^i_k alpha^s_k p_k`` for row ``i``, both softmaxes over its real items."""
    p = int(data["scenario"][i, 0])
    z = layer.scenario_embedding.embeddings.numpy()[p] if p < P else np.zeros(2, "float32")
    real = data["sequence_mask"][i] > 0
    seq = data["sequence"][i][real]
    if not real.any():
        return np.zeros(EMB, "float32")
    scale = np.sqrt(A)
    q_i = data["target"][i] @ layer.item_query.kernel.numpy()
    alpha_i = softmax(seq @ layer.item_key.kernel.numpy() @ q_i / scale)
    q_s = z @ layer.scenario_query.kernel.numpy()
    alpha_s = softmax(seq @ layer.scenario_key.kernel.numpy() @ q_s / scale)
    return (alpha_i * alpha_s) @ seq


def test_shared_layer_checks():
    run_layer_test(
        ScenarioAwareRankingNetwork,
        KWARGS,
        batch(),
        registered_name="tfjoint>ScenarioAwareRankingNetwork",
        expected_output_shape=(12, 4),
    )


def test_cross_scenario_behavior_vector_equals_the_masked_formula():
    layer = built()
    # Identity transform, so the last EMB columns of v' are v_cb itself.
    layer.scenario_beta.assign(np.ones((P, D + EMB), "float32"))
    layer.scenario_gamma.assign(np.zeros((P, D + EMB), "float32"))
    data = batch()
    v = np.asarray(layer.transform(data))
    for i in range(12):
        np.testing.assert_allclose(v[i, D:], numpy_v_cb(layer, data, i), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(v[:, :D], data["inputs"])
    np.testing.assert_array_equal(v[data["sequence_mask"].sum(1) == 0, D:], 0.0)  # no behavior: v_cb = 0
    item, scene = (np.asarray(t) for t in layer.behavior_weights(data))
    padded = data["sequence_mask"] == 0
    assert np.all(item[padded] == 0.0) and np.all(scene[padded] == 0.0)


def test_padded_items_do_not_change_the_output():
    layer = built()
    data = batch()
    before = np.asarray(layer(data))
    changed = dict(data)
    changed["sequence"] = np.where(data["sequence_mask"][:, :, None] > 0, data["sequence"], 50.0).astype(
        "float32"
    )
    np.testing.assert_array_equal(np.asarray(layer(changed)), before)
    # A real item does change it (rows with at least one real item).
    changed["sequence"] = data["sequence"].copy()
    changed["sequence"][:, 0] += 1.0
    has_items = data["sequence_mask"][:, 0] > 0
    after = np.asarray(layer(changed))
    assert not np.allclose(after[has_items], before[has_items])
    np.testing.assert_array_equal(after[~has_items], before[~has_items])


def test_transform_is_v_times_beta_plus_gamma_of_the_rows_scenario():
    layer = built()
    data = batch()
    v_prime = np.asarray(layer.transform(data))
    beta, gamma = layer.scenario_beta.numpy(), layer.scenario_gamma.numpy()
    for i in range(12):
        p = int(data["scenario"][i, 0])
        v = np.concatenate([data["inputs"][i], numpy_v_cb(layer, data, i)])
        expected = v * beta[p] + gamma[p] if p < P else v  # unknown: beta = 1, gamma = 0
        np.testing.assert_allclose(v_prime[i], expected, rtol=1e-4, atol=1e-5)


def test_transform_starts_as_identity():
    layer = ScenarioAwareRankingNetwork(**KWARGS)
    data = batch()
    layer(data)
    np.testing.assert_array_equal(layer.scenario_beta.numpy(), np.ones((P, D + EMB)))
    np.testing.assert_array_equal(layer.scenario_gamma.numpy(), np.zeros((P, D + EMB)))


def test_mixture_of_scenario_and_shared_experts_equation():
    layer = built()
    data = batch()
    out = np.asarray(layer(data))
    v_prime = np.asarray(layer.transform(data))
    gate_w, gate_b = layer.gate.kernel.numpy(), layer.gate.bias.numpy()
    for i in range(12):
        p = int(data["scenario"][i, 0])
        v = v_prime[i]
        shared = []
        for expert in layer.shared_experts:
            h = v
            for dense in expert.dense_layers:
                h = relu(h @ dense.kernel.numpy() + dense.bias.numpy())
            shared.append(h)
        logits = v @ gate_w + gate_b
        if p < P:
            specific = []
            for k in range(2):
                h = v
                for kernel, bias in zip(layer.scenario_expert_kernels, layer.scenario_expert_biases):
                    h = relu(h @ kernel.numpy()[p, k] + bias.numpy()[p, k])
                specific.append(h)
            expected = softmax(logits) @ np.stack(specific + shared)
        else:  # unknown: the shared experts only, gate renormalized over them
            expected = softmax(logits[2:]) @ np.stack(shared)
        np.testing.assert_allclose(out[i], expected, rtol=1e-4, atol=1e-5)


def test_unknown_scenario_fallback():
    layer = built()
    data = batch()
    data["scenario"][1] = -4  # any id outside [0, P) is unknown
    unknown = (data["scenario"][:, 0] < 0) | (data["scenario"][:, 0] >= P)
    weights = np.asarray(layer.gate_weights(data))
    assert np.all(weights[unknown, :2] == 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    before = np.asarray(layer(data))
    # Nothing scenario-specific reaches an unknown row.
    for w in [layer.scenario_beta, layer.scenario_gamma, layer.scenario_embedding.embeddings]:
        w.assign(w.numpy() + 3.0)
    for w in layer.scenario_expert_kernels + layer.scenario_expert_biases:
        w.assign(-w.numpy())
    after = np.asarray(layer(data))
    np.testing.assert_array_equal(after[unknown], before[unknown])
    assert not np.allclose(after[~unknown], before[~unknown])
    # alpha^s is uniform over the real items of an unknown row.
    _, scene = (np.asarray(t) for t in layer.behavior_weights(data))
    for i in np.flatnonzero(unknown):
        real = data["sequence_mask"][i] > 0
        np.testing.assert_allclose(scene[i][real], 1.0 / real.sum(), rtol=1e-6)


def test_gate_is_tracked_per_expert():
    layer = ScenarioAwareRankingNetwork(**KWARGS)
    layer(batch())
    trackers = layer.gate_trackers["sar_net"]
    assert [m.name for m in trackers] == [f"gate_sar_net_expert_{k}" for k in range(4)]
    np.testing.assert_allclose(sum(float(m.result()) for m in trackers), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_scenarios": 0}, "num_scenarios=0"),
        ({"expert_units": []}, "expert_units"),
        ({"num_scenario_experts": 0}, "num_scenario_experts=0"),
        ({"num_shared_experts": 0}, "num_shared_experts=0"),
        ({"attention_dim": 0}, "attention_dim=0"),
        ({"scenario_embedding_dim": -1}, "scenario_embedding_dim=-1"),
    ],
)
def test_bad_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        ScenarioAwareRankingNetwork(**{**KWARGS, **overrides})


def test_bad_inputs():
    layer = ScenarioAwareRankingNetwork(**KWARGS)
    data = batch()
    with pytest.raises(ValueError, match="Received: \\['inputs', 'scenario'\\]"):
        layer({"inputs": data["inputs"], "scenario": data["scenario"]})
    data["target"] = np.ones((12, EMB + 1), "float32")
    with pytest.raises(ValueError, match="same embedding size"):
        layer(data)


def test_as_joint_model_scenario_adapter(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        scenario_adapter="sar_net",
        component_kwargs={"scenario_adapter": {"expert_units": [8], "attention_dim": 4}},
    ).history
    assert "gate_sar_net_expert_0" in history
