import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.layers.multi_scenario.multi_scenario_multi_task_meta_learner import MultiScenarioMultiTaskMetaLearner
from tfjoint.testing import check_joint_model, randomize_weights, run_layer_test, scenario_batch, softmax

P, D, N, DE, DT, DS = 3, 5, 3, 4, 3, 2
TASKS = ["a", "b"]
KWARGS = {
    "task_names": TASKS,
    "num_scenarios": P,
    "num_experts": N,
    "expert_units": [DE],
    "task_dim": DT,
    "scenario_dim": DS,
    "meta_unit_depth": 2,
    "meta_tower_depth": 2,
}


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1):
    x, s = batch()
    layer = MultiScenarioMultiTaskMetaLearner(**KWARGS)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights(layer.weights, seed, scale=0.6)
    return layer


def leaky_relu(z):
    return np.where(z > 0, z, 0.2 * z)


def numpy_knowledge(layer, scenario):
    ids = scenario[:, 0]
    known = (ids >= 0) & (ids < P)
    table = layer.scenario_embedding.embeddings.numpy()
    return table[np.clip(ids, 0, P - 1)] * known[:, None]  # S, zero for an unknown scenario


def numpy_meta_unit(unit, h, knowledge):
    # W^(i) = Reshape(V_W S + b_W), b^(i) = V_b S + b_b, h^(i) = sigma(h^(i-1) W^(i) + b^(i)).
    for i in range(unit.depth):
        kernel = np.einsum("bs,sij->bij", knowledge, unit.kernel_generators[i].numpy())
        kernel = kernel + unit.kernel_generator_biases[i].numpy()
        bias = knowledge @ unit.bias_generators[i].numpy() + unit.bias_generator_biases[i].numpy()
        h = leaky_relu(np.einsum("bmi,bij->bmj", h, kernel) + bias[:, None, :])
    return h


def numpy_experts(layer, x):
    out = []
    for expert in layer.experts:
        k, b = (w.numpy() for w in expert.dense_layers[0].weights)
        out.append(np.maximum(x @ k + b, 0.0))
    return np.stack(out, axis=1)  # E_i


def numpy_attention(layer, x, scenario):
    knowledge = numpy_knowledge(layer, scenario)
    experts = numpy_experts(layer, x)
    alphas, mixes = {}, {}
    for k, task in enumerate(TASKS):
        view = np.broadcast_to(layer.task_views.numpy()[k], (len(x), N, DT))
        meta = numpy_meta_unit(layer.meta_attention[task], np.concatenate([experts, view], -1), knowledge)
        alphas[task] = softmax(
            meta @ layer.attention_vectors[task].numpy()
        )  # softmax_i(v_t^T Meta_t([E_i || T_t]))
        mixes[task] = np.einsum("bn,bnd->bd", alphas[task], experts)  # R_t
    return alphas, mixes, knowledge


def numpy_towers(layer, x, scenario):
    _, mixes, knowledge = numpy_attention(layer, x, scenario)
    towers = {}
    for task in TASKS:
        h = mixes[task]
        for j in range(2):
            unit = layer.meta_towers[f"meta_tower_{task}_{j}"]
            h = leaky_relu(numpy_meta_unit(unit, h[:, None, :], knowledge)[:, 0, :] + h)  # L^(j)
        towers[task] = h
    return towers


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        MultiScenarioMultiTaskMetaLearner,
        KWARGS,
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>MultiScenarioMultiTaskMetaLearner",
        expected_output_shape={"a": (12, DE), "b": (12, DE)},
    )


def test_forward_equals_numpy_recomputation_of_the_paper_equations():
    layer = built()
    x, s = batch()
    out = layer([x, s])
    expected = numpy_towers(layer, x, s)
    for task in TASKS:
        np.testing.assert_allclose(out[task], expected[task], rtol=1e-4, atol=1e-5)


def test_meta_tower_is_residual():
    layer = built()
    x, s = batch()
    # With every tower meta unit generating zeros, Meta(L) = sigma(0) = 0, so the residual
    # L^(j) = sigma(0 + L^(j-1)) leaves R_t (non-negative: a convex mix of ReLU experts) as is.
    for unit in layer.meta_towers.values():
        for w in unit.weights:
            w.assign(np.zeros(w.shape, "float32"))
    _, mixes, _ = numpy_attention(layer, x, s)
    out = layer([x, s])
    for task in TASKS:
        assert mixes[task].max() > 0
        np.testing.assert_allclose(out[task], mixes[task], rtol=1e-5, atol=1e-6)
    # Restoring one tower unit changes that task only, by the residual equation.
    unit = layer.meta_towers["meta_tower_a_0"]
    randomize_weights(unit.weights, 5, scale=0.6)
    knowledge = numpy_knowledge(layer, s)
    l1 = leaky_relu(numpy_meta_unit(unit, mixes["a"][:, None, :], knowledge)[:, 0, :] + mixes["a"])
    out = layer([x, s])
    np.testing.assert_allclose(out["a"], leaky_relu(l1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["b"], mixes["b"], rtol=1e-5, atol=1e-6)


def test_attention_weights_sum_to_one_over_experts_per_task():
    layer = built()
    x, s = batch()
    weights = {t: np.asarray(w) for t, w in layer.attention_weights([x, s]).items()}
    expected, _, _ = numpy_attention(layer, x, s)
    for task in TASKS:
        assert weights[task].shape == (12, N)
        assert np.all(weights[task] > 0)
        np.testing.assert_allclose(weights[task].sum(-1), np.ones(12), rtol=1e-6)
        np.testing.assert_allclose(weights[task], expected[task], rtol=1e-4, atol=1e-6)
    assert not np.allclose(weights["a"], weights["b"])
    # Same features, other scenario: other attention.
    x_same = np.repeat(x[:1], P, axis=0)
    per_scenario = np.asarray(layer.attention_weights([x_same, np.arange(P).reshape(-1, 1)])["a"])
    assert not np.allclose(per_scenario[0], per_scenario[1]) and not np.allclose(
        per_scenario[1], per_scenario[2]
    )
    # The attention weights are the monitored gates.
    layer([x, s])
    for task in TASKS:
        means = [float(m.result()) for m in layer.gate_trackers[task]]
        np.testing.assert_allclose(means, weights[task].mean(0), rtol=1e-5)


def test_generated_weights_differ_per_scenario_but_come_from_one_generator():
    layer = built()
    unit = layer.meta_towers["meta_tower_b_1"]
    # The generator has no scenario axis: one (V, b) pair per generated layer.
    assert [tuple(w.shape) for w in unit.weights] == [(DS, DE, DE), (DE, DE), (DS, DE), (DE,)] * 2
    ids = np.array([[0], [1], [2], [3]])
    knowledge = np.asarray(layer.scenario_knowledge(ids))
    np.testing.assert_array_equal(knowledge[3], np.zeros(DS))
    kernels, biases = (np.asarray(t) for t in unit.generated_weights(knowledge)[0])
    for p in range(P):
        np.testing.assert_allclose(
            kernels[p],
            np.einsum("s,sij->ij", knowledge[p], unit.kernel_generators[0].numpy())
            + unit.kernel_generator_biases[0].numpy(),
            rtol=1e-5,
            atol=1e-6,
        )
    for p, q in ((0, 1), (1, 2), (0, 2)):
        assert not np.allclose(kernels[p], kernels[q]) and not np.allclose(biases[p], biases[q])
    # Perturbing the one generator moves every known scenario's weights, not the unknown's.
    unit.kernel_generators[0].assign(unit.kernel_generators[0].numpy() + 0.5)
    moved = np.asarray(unit.generated_weights(knowledge)[0][0])
    for p in range(P):
        assert not np.allclose(moved[p], kernels[p]), p
    np.testing.assert_allclose(moved[3], kernels[3])


def test_unknown_scenario_runs_the_generators_biases():
    layer = built()
    x, _ = batch(n=3)
    outs = [layer([x, np.full((3, 1), sid, "int64")]) for sid in (P, 99, -1)]
    expected = numpy_towers(layer, x, np.full((3, 1), P))
    for out in outs:
        for task in TASKS:
            np.testing.assert_allclose(out[task], expected[task], rtol=1e-4, atol=1e-5)
    # S = 0: the generated layers are the generator biases, whatever the generators V hold.
    for unit in [*layer.meta_attention.values(), *layer.meta_towers.values()]:
        for v in unit.kernel_generators + unit.bias_generators:
            v.assign(v.numpy() + 1.0)
    after = layer([x, np.full((3, 1), P, "int64")])
    for task in TASKS:
        np.testing.assert_allclose(after[task], outs[0][task], rtol=1e-6)
    known = layer([x, np.zeros((3, 1), "int64")])
    assert not np.allclose(known["a"], after["a"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios=0"),
        ({"task_names": []}, "task_names"),
        ({"num_experts": 0}, "num_experts=0"),
        ({"expert_units": []}, "expert_units"),
        ({"task_dim": 0}, "task_dim=0"),
        ({"scenario_dim": 0}, "scenario_dim=0"),
        ({"meta_unit_depth": 0}, "meta_unit_depth=0"),
        ({"meta_tower_depth": 0}, "meta_tower_depth=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiScenarioMultiTaskMetaLearner(**{**KWARGS, **kwargs})


def test_as_joint_model_task_architecture(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        batch_size=16,
        task_architecture="m2m",
        component_kwargs={
            "task_architecture": {"num_experts": 2, "expert_units": [8], "task_dim": 4, "scenario_dim": 4}
        },
    ).history
    assert "gate_watch_expert_1" in history
