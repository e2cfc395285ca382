import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_scenario.hierarchical_information_extraction_network import HierarchicalInformationExtractionNetwork
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.testing import check_joint_model, randomize_weights, run_layer_test, scenario_batch, softmax

P, D, DS = 3, 5, 4
TASKS = ["a", "b"]
KWARGS = {
    "task_names": TASKS,
    "num_scenarios": P,
    "num_scenario_shared_experts": 2,
    "num_scenario_specific_experts": 2,
    "scenario_expert_units": [DS],
    "scenario_embedding_dim": 3,
    "san_units": [4],
    "num_task_experts": 2,
    "num_task_shared_experts": 1,
    "task_expert_units": [4],
    "tower_units": [3],
}


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1):
    x, s = batch()
    layer = HierarchicalInformationExtractionNetwork(**KWARGS)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.weights, seed, scale=0.6)
    return layer


def dense(layer, x):
    k, b = (w.numpy() for w in layer.weights)
    return x @ k + b


def numpy_sei(layer, x, prefix, gate):
    # SEI(x) = sum_k softmax(W_g x + b_g)_k e_k(x), with one-layer ReLU sub-experts.
    names = sorted(n for n in layer.experts if n.startswith(prefix))
    experts = np.stack([np.maximum(dense(layer.experts[n].dense_layers[0], x), 0.0) for n in names], axis=1)
    return np.einsum("bk,bkd->bd", softmax(dense(layer.gates[gate], x)), experts)


def numpy_representation(layer, x, scenario):
    ids = scenario[:, 0]
    known = (ids >= 0) & (ids < P)
    shared = numpy_sei(layer, x, "shared_expert_", "shared_gate")  # V^sh
    specific = np.stack(
        [numpy_sei(layer, x, f"scenario_{j}_expert_", f"scenario_{j}_gate") for j in range(P)], 1
    )
    own = np.where(known[:, None], specific[np.arange(len(x)), np.clip(ids, 0, P - 1)], 0.0)  # S_p
    embedding = layer.scenario_embedding.embeddings.numpy()[np.clip(ids, 0, P - 1)] * known[:, None]
    alpha = softmax(
        dense(layer.san_output, np.maximum(dense(layer.san_hidden.dense_layers[0], embedding), 0.0))
    )
    others = np.ones((len(x), P))
    others[known, ids[known]] = 0.0
    san = np.einsum("bp,bpd->bd", alpha * others, specific)  # A_p = sum_{j != p} alpha_j S_j
    return np.concatenate([shared, own, san], axis=-1)


def parts(c):
    return c[:, :DS], c[:, DS : 2 * DS], c[:, 2 * DS :]


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        HierarchicalInformationExtractionNetwork,
        KWARGS,
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>HierarchicalInformationExtractionNetwork",
        expected_output_shape={"a": (12, 3), "b": (12, 3)},
    )


def test_scenario_extraction_equals_numpy_and_feeds_the_task_extraction():
    layer = built()
    x, s = batch()
    c = np.asarray(layer.scenario_representation([x, s]))
    np.testing.assert_allclose(c, numpy_representation(layer, x, s), rtol=1e-4, atol=1e-5)
    out = layer([x, s])
    expected = layer.task_extraction(c)
    for task in TASKS:
        np.testing.assert_allclose(out[task], expected[task], rtol=1e-5, atol=1e-6)


def test_concatenation_of_shared_own_and_san_mixes_by_hand_set_weights():
    layer = built()
    for w in layer.weights:
        w.assign(np.zeros(w.shape, "float32"))
    v = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    # Constant sub-experts (zero kernels, positive biases through the ReLU).
    layer.experts["shared_expert_0"].dense_layers[0].bias.assign(np.ones(DS, "float32"))
    layer.experts["shared_expert_1"].dense_layers[0].bias.assign(3.0 * np.ones(DS, "float32"))
    for j in range(P):
        for k in range(2):
            layer.experts[f"scenario_{j}_expert_{k}"].dense_layers[0].bias.assign(
                (j + 1) * v
            )  # S_j = (j + 1) v
    # Zero gate kernels and biases: uniform gates, V^sh = (1 + 3) / 2 = 2.
    # SAN: zero hidden layer, logit biases log(1, 2, 3): alpha = (1, 2, 3) / 6 for every row.
    layer.san_output.bias.assign(np.log([1.0, 2.0, 3.0]).astype("float32"))
    x, _ = batch(n=4)
    c = np.asarray(layer.scenario_representation([x, np.array([[0], [1], [2], [3]])]))
    shared, own, san = parts(c)
    np.testing.assert_allclose(shared, np.full((4, DS), 2.0), rtol=1e-6)
    np.testing.assert_allclose(own, np.stack([v, 2 * v, 3 * v, 0 * v]), rtol=1e-6)
    # Row p: sum over j != p of alpha_j (j + 1) v; the unknown row: sum over all j.
    sums = np.array([2 * 2 + 3 * 3, 1 + 3 * 3, 1 + 2 * 2, 1 + 2 * 2 + 3 * 3]) / 6.0
    np.testing.assert_allclose(san, sums[:, None] * v, rtol=1e-5)


def test_san_never_uses_the_rows_own_scenario_experts():
    layer = built()
    x, s = batch()
    before = parts(np.asarray(layer.scenario_representation([x, s])))
    # Perturb scenario 0's specific experts and gate: S_0 changes.
    for w in layer.gates["scenario_0_gate"].weights + [
        w for n, e in layer.experts.items() if n.startswith("scenario_0_") for w in e.weights
    ]:
        w.assign(w.numpy() + 0.7)
    after = parts(np.asarray(layer.scenario_representation([x, s])))
    rows = {p: s[:, 0] == p for p in range(P + 1)}
    np.testing.assert_allclose(after[0], before[0])  # V^sh does not depend on S_0
    # Scenario 0's rows see S_0 through their own branch only; their SAN mix is unchanged.
    assert not np.allclose(after[1][rows[0]], before[1][rows[0]])
    np.testing.assert_allclose(after[2][rows[0]], before[2][rows[0]], rtol=1e-6)
    # Other scenarios' rows (and the unknown scenario's) receive S_0 through the SAN only.
    for p in (1, 2, 3):
        np.testing.assert_allclose(after[1][rows[p]], before[1][rows[p]], rtol=1e-6)
        assert not np.allclose(after[2][rows[p]], before[2][rows[p]]), p


def test_task_gate_covers_only_its_own_and_the_shared_experts():
    layer = built()
    x, s = batch()
    gates = {t: np.asarray(g) for t, g in layer.task_gate_weights([x, s]).items()}
    for task in TASKS:
        assert gates[task].shape == (12, 2 + 1)  # own experts, then the task-shared one
        np.testing.assert_allclose(gates[task].sum(-1), np.ones(12), rtol=1e-6)
    cgc = layer.task_extraction
    before = {t: np.asarray(v) for t, v in layer([x, s]).items()}
    for name in ("level_0_task_b_expert_0", "level_0_task_b_expert_1"):
        for w in cgc.experts[name].weights:
            w.assign(w.numpy() + 0.7)
    after = {t: np.asarray(v) for t, v in layer([x, s]).items()}
    np.testing.assert_array_equal(after["a"], before["a"])
    assert not np.allclose(after["b"], before["b"])
    for w in cgc.experts["level_0_shared_expert_0"].weights:
        w.assign(w.numpy() + 0.7)
    shared_moved = {t: np.asarray(v) for t, v in layer([x, s]).items()}
    for task in TASKS:
        assert not np.allclose(shared_moved[task], after[task]), task
    # The task gates are the monitored gates.
    for task in TASKS:
        assert len(cgc.gate_trackers[task]) == 3
        assert sum(float(m.result()) for m in cgc.gate_trackers[task]) == pytest.approx(1.0, abs=1e-5)


def test_unknown_scenario_takes_the_shared_experts_and_the_san_over_all_scenarios():
    layer = built()
    x, _ = batch(n=3)
    expected = numpy_representation(layer, x, np.full((3, 1), P))
    reps = [
        np.asarray(layer.scenario_representation([x, np.full((3, 1), sid, "int64")])) for sid in (P, 99, -1)
    ]
    for c in reps:
        np.testing.assert_allclose(c, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(parts(c)[1], np.zeros((3, DS)))
    towers = [layer([x, np.full((3, 1), sid, "int64")]) for sid in (P, 99, -1)]
    for out in towers[1:]:
        for task in TASKS:
            np.testing.assert_allclose(out[task], towers[0][task], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios=0"),
        ({"task_names": ["a", "a"]}, "task_names"),
        ({"num_scenario_shared_experts": 0}, "num_scenario_shared_experts=0"),
        ({"num_scenario_specific_experts": 0}, "num_scenario_specific_experts=0"),
        ({"scenario_embedding_dim": 0}, "scenario_embedding_dim=0"),
        ({"num_task_experts": 0}, "num_task_experts=0"),
        ({"num_task_shared_experts": 0}, "num_task_shared_experts=0"),
        ({"scenario_expert_units": []}, "scenario_expert_units"),
        ({"task_expert_units": [0]}, "task_expert_units"),
        ({"tower_units": []}, "tower_units"),
        ({"san_units": [0]}, "san_units"),
        ({"dropout": -0.1}, "dropout=-0.1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HierarchicalInformationExtractionNetwork(**{**KWARGS, **kwargs})


def test_as_joint_model_task_architecture(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        batch_size=16,
        task_architecture="hinet",
        component_kwargs={
            "task_architecture": {"scenario_expert_units": [8], "task_expert_units": [8], "tower_units": [4]}
        },
    ).history
    assert "gate_watch_expert_1" in history
