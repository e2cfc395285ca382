import numpy as np
import pytest

from tfjoint.layers.multi_task.progressive_layered_extraction import CustomizedGateControl, ProgressiveLayeredExtraction
from tfjoint.testing import run_layer_test

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
KWARGS = {
    "task_names": ["a", "b"],
    "num_shared_experts": 2,
    "num_task_experts": 2,
    "expert_units": [8],
    "tower_units": [4],
}


def test_ple_layer_contract():
    run_layer_test(
        ProgressiveLayeredExtraction,
        {**KWARGS, "num_levels": 2},
        X,
        expected_output_shape={"a": (5, 4), "b": (5, 4)},
    )


def test_cgc_layer_contract():
    run_layer_test(CustomizedGateControl, KWARGS, X, expected_output_shape={"a": (5, 4), "b": (5, 4)})


def _mlp(layer, x):
    for dense in layer.dense_layers:
        w, b = (v.numpy() for v in dense.weights)
        x = np.maximum(x @ w + b, 0.0)
    return x


def _softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _gate(layer, name, x):
    w, b = (v.numpy() for v in layer.gates[name].weights)
    return _softmax((x @ w + b) / layer.gate_temperature)


def _manual_two_level_ple(layer, x):
    # Level 0: every branch reads x.
    e_a = [_mlp(layer.experts[f"level_0_task_a_expert_{i}"], x) for i in range(2)]
    e_b = [_mlp(layer.experts[f"level_0_task_b_expert_{i}"], x) for i in range(2)]
    e_s = [_mlp(layer.experts[f"level_0_shared_expert_{i}"], x) for i in range(2)]
    mix = lambda g, es: np.einsum("be,bed->bd", g, np.stack(es, axis=1))
    x_a = mix(_gate(layer, "level_0_task_gate_a", x), e_a + e_s)
    x_b = mix(_gate(layer, "level_0_task_gate_b", x), e_b + e_s)
    x_s = mix(_gate(layer, "level_0_shared_gate", x), e_a + e_b + e_s)
    # Level 1: task experts on their branch, shared experts on the shared branch, no shared gate.
    e_a = [_mlp(layer.experts[f"level_1_task_a_expert_{i}"], x_a) for i in range(2)]
    e_b = [_mlp(layer.experts[f"level_1_task_b_expert_{i}"], x_b) for i in range(2)]
    e_s = [_mlp(layer.experts[f"level_1_shared_expert_{i}"], x_s) for i in range(2)]
    out_a = mix(_gate(layer, "level_1_task_gate_a", x_a), e_a + e_s)
    out_b = mix(_gate(layer, "level_1_task_gate_b", x_b), e_b + e_s)
    return {"a": _mlp(layer.towers["a"], out_a), "b": _mlp(layer.towers["b"], out_b)}


def test_two_level_ple_equals_numpy_recomputation():
    layer = ProgressiveLayeredExtraction(**KWARGS, num_levels=2, gate_temperature=1.7)
    out = layer(X)
    expected = _manual_two_level_ple(layer, X)
    for task in ("a", "b"):
        np.testing.assert_allclose(out[task], expected[task], rtol=1e-5, atol=1e-6)


def test_only_intermediate_levels_have_a_shared_gate_over_all_experts():
    layer = ProgressiveLayeredExtraction(**KWARGS, num_levels=3)
    layer(X)
    assert sorted(n for n in layer.gates if "shared" in n) == ["level_0_shared_gate", "level_1_shared_gate"]
    # Shared gate: K * num_task_experts + num_shared_experts = 2 * 2 + 2 columns; task gates: 2 + 2.
    assert layer.gates["level_1_shared_gate"].kernel.shape == (8, 6)
    assert layer.gates["level_2_task_gate_a"].kernel.shape == (8, 4)
    assert not any("level_2_shared_gate" in w.path for w in layer.weights)
    cgc = CustomizedGateControl(**KWARGS)
    cgc(X)
    assert sorted(cgc.gates) == ["level_0_task_gate_a", "level_0_task_gate_b"]


def _perturb(expert, scale=3.0):
    for w in expert.weights:
        w.assign(w.numpy() * scale + 0.5)


@pytest.mark.parametrize(
    "make",
    [lambda: CustomizedGateControl(**KWARGS), lambda: ProgressiveLayeredExtraction(**KWARGS, num_levels=2)],
)
def test_task_output_ignores_other_tasks_last_level_experts(make):
    layer = make()
    before = {t: np.asarray(v) for t, v in layer(X).items()}
    last = layer.num_levels - 1
    for i in range(2):
        _perturb(layer.experts[f"level_{last}_task_b_expert_{i}"])
    after = layer(X)
    np.testing.assert_array_equal(after["a"], before["a"])
    assert not np.allclose(after["b"], before["b"])


def test_intermediate_shared_gate_mixes_other_tasks_experts():
    # Task b's level-0 experts reach task a only through the level-0 shared gate and the shared
    # experts of level 1.
    layer = ProgressiveLayeredExtraction(**KWARGS, num_levels=2)
    before = np.asarray(layer(X)["a"])
    x_s_before = np.asarray(_shared_branch(layer))
    for i in range(2):
        _perturb(layer.experts[f"level_0_task_b_expert_{i}"])
    assert not np.allclose(_shared_branch(layer), x_s_before)
    assert not np.allclose(layer(X)["a"], before)


def _shared_branch(layer):
    experts = [
        layer.experts[n](X)
        for n in (
            "level_0_task_a_expert_0",
            "level_0_task_a_expert_1",
            "level_0_task_b_expert_0",
            "level_0_task_b_expert_1",
            "level_0_shared_expert_0",
            "level_0_shared_expert_1",
        )
    ]
    g = _gate(layer, "level_0_shared_gate", X)
    return np.einsum("be,bed->bd", g, np.stack(experts, axis=1))


def test_gate_weights_are_last_level_task_gates():
    layer = ProgressiveLayeredExtraction(**KWARGS, num_levels=1)
    layer(X)
    g = layer.gate_weights(X)
    assert set(g) == {"a", "b"}
    assert g["a"].shape == (5, 4)
    np.testing.assert_allclose(np.sum(g["a"], axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(g["b"], _gate(layer, "level_0_task_gate_b", X), rtol=1e-5, atol=1e-7)


def test_cgc_is_single_level_ple():
    cgc = CustomizedGateControl(**KWARGS)
    ple = ProgressiveLayeredExtraction(**KWARGS, num_levels=1)
    cgc(X)
    ple(X)
    assert [w.path.split("/", 1)[1] for w in cgc.weights] == [w.path.split("/", 1)[1] for w in ple.weights]
    ple.set_weights(cgc.get_weights())
    for task in ("a", "b"):
        np.testing.assert_array_equal(cgc(X)[task], ple(X)[task])
    assert "num_levels" not in cgc.get_config()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_names": []},
        {"task_names": ["a", "a"]},
        {"task_names": ["a"], "num_levels": 0},
        {"task_names": ["a"], "num_shared_experts": 0},
        {"task_names": ["a"], "num_task_experts": 0},
        {"task_names": ["a"], "expert_units": []},
        {"task_names": ["a"], "tower_units": [0]},
        {"task_names": ["a"], "dropout": 1.0},
        {"task_names": ["a"], "gate_temperature": 0.0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        ProgressiveLayeredExtraction(**kwargs)
