import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_scenario.automatic_expert_selection import AutomaticExpertSelection, select_experts
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.testing import (
    check_joint_model,
    numpy_mlp,
    randomize_weights,
    run_layer_test,
    scenario_batch,
    softmax,
)

P, D, E = 3, 5, 4
TASKS = ["a", "b"]
KWARGS = {
    "task_names": TASKS,
    "num_scenarios": P,
    "num_experts": E,
    "top_k_specific": 1,
    "top_k_shared": 2,
    "expert_units": [6],
    "tower_units": [3],
    "scenario_embedding_dim": 2,
    "task_embedding_dim": 2,
    "seed": 7,
}


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1, **overrides):
    x, s = batch()
    layer = AutomaticExpertSelection(**{**KWARGS, **overrides})
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.trainable_weights, seed, scale=0.8)
    return layer


def log_softmax(v, axis):
    v = v - v.max(axis=axis, keepdims=True)
    return v - np.log(np.exp(v).sum(axis=axis, keepdims=True))


def numpy_kl(p, q):
    """KL(p || q) for one pair of distributions, 0 log 0 = 0."""
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


def numpy_selection(logits, own, k_sp, k_sh):
    """The paper's rule for one row: ``logits`` is (n_gates, n_experts), ``own`` the row's gate
    (n_gates when unknown). Returns (specific set, shared set, mixing weights)."""
    n_g, n_e = logits.shape
    q = np.exp(log_softmax(logits, axis=0))  # column k: expert k's distribution over the gates
    uniform = np.full(n_g, 1.0 / n_g)
    kl_sh = np.array([numpy_kl(uniform, q[:, k]) for k in range(n_e)])
    shared = set(np.argsort(kl_sh, kind="stable")[:k_sh].tolist())
    if own < n_g:
        onehot = np.eye(n_g)[own]
        kl_sp = np.array([numpy_kl(onehot, q[:, k]) for k in range(n_e)])
        specific = set(np.argsort(kl_sp, kind="stable")[:k_sp].tolist())
        gate = logits[own]
    else:
        specific, gate = set(), logits.mean(axis=0)
    chosen = sorted(specific | shared)
    weights = np.zeros(n_e)
    weights[chosen] = softmax(gate[chosen])
    return specific, shared, weights


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        AutomaticExpertSelection,
        KWARGS,
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>AutomaticExpertSelection",
        expected_output_shape={"a": (12, 3), "b": (12, 3)},
    )


def test_select_experts_follows_the_kl_rule_on_a_hand_set_gate():
    # Two gates (scenarios) over four experts. Column k of softmax over the gates is expert k's
    # distribution over the scenarios; expert 0 leans to scenario 0, expert 3 to scenario 1,
    # experts 1 and 2 are nearly even (2 is the most even).
    logits = np.array([[2.0, 0.3, 0.05, -1.5], [-1.0, 0.0, 0.0, 1.0]], dtype="float32")
    q = np.exp(log_softmax(logits, axis=0))
    kl_own0 = [numpy_kl(np.array([1.0, 0.0]), q[:, k]) for k in range(4)]
    kl_uniform = [numpy_kl(np.array([0.5, 0.5]), q[:, k]) for k in range(4)]
    assert int(np.argmin(kl_own0)) == 0 and int(np.argmin(kl_uniform)) == 2
    rows = np.stack([logits, logits, logits])
    own = np.array([0, 1, 2])  # scenario 0, scenario 1, unknown
    out = {k: np.asarray(v) for k, v in select_experts(rows, own, 1, 1).items()}
    np.testing.assert_allclose(out["specific_kl"][0], kl_own0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["shared_kl"][0], kl_uniform, rtol=1e-5, atol=1e-6)
    for i, (sp, sh) in enumerate([({0}, {2}), ({3}, {2}), (set(), {2})]):
        assert set(np.flatnonzero(out["specific"][i])) == sp, i
        assert set(np.flatnonzero(out["shared"][i])) == sh, i
        _, _, expected = numpy_selection(logits, own[i], 1, 1)
        np.testing.assert_allclose(out["weights"][i], expected, rtol=1e-5, atol=1e-7)
        # Experts outside the selection get exactly zero weight.
        unselected = sorted(set(range(4)) - sp - sh)
        assert np.all(out["weights"][i][unselected] == 0.0), i
    # Scenario 0 mixes experts 0 and 2 with its own gate renormalized over them.
    np.testing.assert_allclose(out["weights"][0][[0, 2]], softmax(logits[0][[0, 2]]), rtol=1e-5)
    # The unknown row mixes only the shared expert, with the mean gate.
    np.testing.assert_array_equal(out["weights"][2], [0.0, 0.0, 1.0, 0.0])


def test_layer_selects_experts_by_kl_of_its_gates():
    layer = built(top_k_specific=1, top_k_shared=1)
    x, s = batch()
    gates = layer.gates["scenario_layer_0"]
    # A fixed gate matrix: zero kernel, hand-set biases, so every row sees the same G.
    g = np.array([[3.0, 0.1, 0.0, -2.0], [0.0, 2.5, 0.2, -1.0], [-1.0, 0.0, 0.3, 1.5]], dtype="float32")
    gates.kernel.assign(np.zeros(gates.kernel.shape, "float32"))
    gates.bias.assign(g.reshape(-1))
    weights = np.asarray(layer.gate_weights({"inputs": x, "scenario": s})["scenario_layer_0"])
    for i, p in enumerate(s[:, 0]):
        specific, shared, expected = numpy_selection(g, int(p), 1, 1)
        np.testing.assert_allclose(weights[i], expected, rtol=1e-5, atol=1e-7)
        assert set(np.flatnonzero(weights[i])) == specific | shared
    # By hand: expert 0's column peaks at scenario 0, expert 1's at 1, expert 3's at 2; expert 2's
    # column is the most even, so it is every row's shared expert and the unknown row's only one.
    assert [set(np.flatnonzero(weights[i])) for i in range(4)] == [{0, 2}, {1, 2}, {2, 3}, {2}]


def test_equation_on_a_tiny_input():
    layer = built()
    x, s = batch()
    out = layer({"inputs": x, "scenario": s}, training=False)
    emb = layer.scenario_embedding.embeddings.numpy()
    tau = layer.task_embedding.embeddings.numpy()

    def aesm_layer(name, h, gate_in, own, n_gates):
        w, b = (t.numpy() for t in layer.gates[name].weights)
        logits = (gate_in @ w + b).reshape(n_gates, E)
        _, _, mix = numpy_selection(logits, own, 1, 2)
        experts = np.stack([numpy_mlp(layer.experts[f"{name}_expert_{k}"], h) for k in range(E)])
        return mix @ experts

    for i, p in enumerate(s[:, 0]):
        z = emb[p] if p < P else np.zeros(2, "float32")
        h = aesm_layer("scenario_layer_0", x[i], np.concatenate([x[i], z]), int(p), P)
        for t, task in enumerate(TASKS):
            h_t = aesm_layer("task_layer_0", h, np.concatenate([h, z, tau[t]]), t, len(TASKS))
            np.testing.assert_allclose(out[task][i], numpy_mlp(layer.towers[task], h_t), rtol=1e-4, atol=1e-5)


def test_noise_only_in_training_and_seeded():
    x, _ = batch(n=32)
    data = {"inputs": x, "scenario": np.arange(32).reshape(-1, 1) % (P + 1)}
    layer = built(noise_stddev=3.0, specific_kl_weight=0.0, shared_kl_weight=0.0)
    first = layer(data, training=False)["a"]
    np.testing.assert_array_equal(first, layer(data, training=False)["a"])
    noisy_1 = np.asarray(layer(data, training=True)["a"])
    noisy_2 = np.asarray(layer(data, training=True)["a"])
    assert not np.allclose(noisy_1, first) and not np.allclose(noisy_1, noisy_2)
    # Seeded: a fresh layer with the same seed and weights draws the same noise.
    twin = built(noise_stddev=3.0, specific_kl_weight=0.0, shared_kl_weight=0.0)
    np.testing.assert_allclose(twin(data, training=True)["a"], noisy_1, rtol=1e-6)
    # Without noise (and without dropout) training equals inference.
    quiet = built(noise_stddev=0.0)
    np.testing.assert_allclose(quiet(data, training=True)["a"], quiet(data, training=False)["a"], rtol=1e-6)


def test_kl_loss_only_in_training_and_equal_to_the_mean_kl_of_selected_experts():
    layer = built(noise_stddev=0.0, specific_kl_weight=0.3, shared_kl_weight=0.05)
    x, s = batch()
    layer({"inputs": x, "scenario": s}, training=False)
    assert not layer.losses
    layer({"inputs": x, "scenario": s}, training=True)
    (loss,) = layer.losses
    emb = layer.scenario_embedding.embeddings.numpy()
    w, b = (t.numpy() for t in layer.gates["scenario_layer_0"].weights)
    sp, sh = [], []
    for i, p in enumerate(s[:, 0]):
        z = emb[p] if p < P else np.zeros(2, "float32")
        logits = (np.concatenate([x[i], z]) @ w + b).reshape(P, E)
        q = np.exp(log_softmax(logits, axis=0))
        specific, shared, _ = numpy_selection(logits, int(p), 1, 2)
        sp += [numpy_kl(np.eye(P)[p], q[:, k]) for k in specific]
        sh += [numpy_kl(np.full(P, 1.0 / P), q[:, k]) for k in shared]
    scenario_term = 0.3 * np.mean(sp) + 0.05 * np.mean(sh)
    # The task layers add their own (non-negative) terms on top.
    selections = layer._forward({"inputs": x, "scenario": s}, training=False)[2]
    np.testing.assert_allclose(float(layer.kl_loss(selections[:1])), scenario_term, rtol=1e-4)
    assert float(loss) >= scenario_term - 1e-6
    np.testing.assert_allclose(float(loss), float(layer.kl_loss(selections)), rtol=1e-5)


def test_unknown_scenario_uses_only_shared_experts_and_ignores_scenario_weights():
    layer = built(top_k_specific=1, top_k_shared=1)
    x, s = batch()
    s[0] = -5  # any id outside [0, P) is unknown
    unknown = (s[:, 0] < 0) | (s[:, 0] >= P)
    before = {k: np.asarray(v) for k, v in layer({"inputs": x, "scenario": s}).items()}
    weights = np.asarray(layer.gate_weights({"inputs": x, "scenario": s})["scenario_layer_0"])
    assert np.all((weights[unknown] > 0).sum(axis=1) == 1)  # the one shared expert
    emb = layer.scenario_embedding.embeddings
    emb.assign(emb.numpy() + 5.0)
    after = {k: np.asarray(v) for k, v in layer({"inputs": x, "scenario": s}).items()}
    for task in TASKS:
        np.testing.assert_array_equal(after[task][unknown], before[task][unknown])
        assert not np.allclose(after[task][~unknown], before[task][~unknown])


def test_gates_are_tracked_per_expert():
    layer = AutomaticExpertSelection(**KWARGS)
    x, s = batch()
    layer({"inputs": x, "scenario": s})
    names = sorted(m.name for ms in layer.gate_trackers.values() for m in ms)
    assert names == sorted(
        [f"gate_scenario_layer_0_expert_{k}" for k in range(E)]
        + [f"gate_{t}_expert_{k}" for t in TASKS for k in range(E)]
    )
    means = [float(m.result()) for m in layer.gate_trackers["scenario_layer_0"]]
    np.testing.assert_allclose(sum(means), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_scenarios": 0}, "num_scenarios=0"),
        ({"task_names": []}, "task_names"),
        ({"num_experts": 0}, "num_experts=0"),
        ({"num_scenario_layers": 0}, "num_scenario_layers=0"),
        ({"num_task_layers": 0}, "num_task_layers=0"),
        ({"top_k_specific": 0}, "top_k_specific=0"),
        ({"top_k_shared": 5}, "top_k_shared=5"),
        ({"noise_stddev": -1.0}, "noise_stddev=-1.0"),
        ({"specific_kl_weight": -0.1}, "specific_kl_weight=-0.1"),
        ({"expert_units": []}, "expert_units"),
        ({"tower_units": [0]}, "tower_units"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"scenario_embedding_dim": 0}, "scenario_embedding_dim=0"),
    ],
)
def test_bad_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        AutomaticExpertSelection(**{**KWARGS, **overrides})


def test_as_joint_model_task_architecture(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        task_architecture="aesm2",
        component_kwargs={
            "task_architecture": {"num_experts": 3, "expert_units": [8], "tower_units": [4], "seed": 0}
        },
    ).history
    assert "gate_scenario_layer_0_expert_0" in history
