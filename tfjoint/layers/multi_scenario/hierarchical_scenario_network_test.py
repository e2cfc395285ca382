import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.layers.multi_scenario.hierarchical_scenario_network import HierarchicalScenarioNetwork
from tfjoint.testing import (
    built_with_random_weights,
    check_joint_model,
    fake_vocab_sizes,
    fields_batch,
    relu,
    run_layer_test,
    softmax,
)

SIZES = fake_vocab_sizes(MOVIELENS_100K)
P, D, F, E, SE, HEADS = 3, 5, 4, 4, 4, 2
KWARGS = {
    "num_scenarios": P,
    "shared_units": [6],
    "explicit_units": [5, 4],
    "implicit_units": [4, 2],
    "num_implicit_heads": HEADS,
    "output_units": [4],
    "scenario_embedding_dim": SE,
}


def batch(n=8, seed=0):
    return fields_batch(n, D, P, F, E, seed)  # ids 0..2 known, 3 unknown


def built(seed=1, **overrides):
    return built_with_random_weights(HierarchicalScenarioNetwork(**{**KWARGS, **overrides}), batch(), seed, scale=0.5)


def numpy_scenario_embedding(layer, scenario):
    s = scenario[:, 0]
    known = (s >= 0) & (s < P)
    table = layer.scenario_embedding.embeddings.numpy()
    return np.where(known[:, None], table[np.clip(s, 0, P - 1)], 0.0)


def numpy_generated(module, condition):
    """[(W_l(SC), b_l(SC))] with W_l(SC) = reshape(SC G_l + g_l) and b_l(SC) = SC B_l + c_l."""
    out = []
    for g, g0, b, b0 in zip(
        module.kernel_generators, module.kernel_bases, module.bias_generators, module.bias_bases
    ):
        fan_in, units = g0.shape
        kernel = (condition @ g.numpy() + g0.numpy().reshape(-1)).reshape(-1, fan_in, units)
        out.append((kernel, condition @ b.numpy() + b0.numpy()))
    return out


def numpy_field_weights(layer, scenario):
    e_s = numpy_scenario_embedding(layer, scenario)
    part = SE // HEADS
    logits = [
        e_s[:, k * part : (k + 1) * part] @ d.kernel.numpy() + d.bias.numpy()
        for k, d in enumerate(layer.field_weight_layers)
    ]
    return softmax(np.stack(logits, axis=1))


def numpy_attention(mha, x):
    """One-head self-attention of keras.layers.MultiHeadAttention on (n, F, E)."""
    q = np.einsum("nfe,ehk->nfhk", x, mha.query_dense.kernel.numpy()) + mha.query_dense.bias.numpy()
    k = np.einsum("nfe,ehk->nfhk", x, mha.key_dense.kernel.numpy()) + mha.key_dense.bias.numpy()
    v = np.einsum("nfe,ehk->nfhk", x, mha.value_dense.kernel.numpy()) + mha.value_dense.bias.numpy()
    scores = softmax(np.einsum("nqhk,nshk->nhqs", q, k) / np.sqrt(E))
    mixed = np.einsum("nhqs,nshk->nqhk", scores, v)
    out = mha.output_dense
    return np.einsum("nqhk,hke->nqe", mixed, out.kernel.numpy()) + out.bias.numpy()


def numpy_forward(layer, data, act):
    x, s, fields = data["inputs"], data["scenario"], data["fields"]
    n = len(x)
    k0, b0 = (w.numpy() for w in layer.shared_tower.weights)
    h = relu(x @ k0 + b0)  # shared tower
    for kernel, bias in numpy_generated(layer.explicit_module, numpy_scenario_embedding(layer, s)):
        h = act(np.einsum("bi,bio->bo", h, kernel) + bias)  # explicit module, SC = e_s
    w = numpy_field_weights(layer, s)
    weighted = (w[:, :, :, None] * fields[:, None]).reshape(n * HEADS, F, E)
    condition = numpy_attention(layer.field_attention, weighted).reshape(n, HEADS, F * E)
    heads = []
    for k in range(HEADS):
        hk = h
        for kernel, bias in numpy_generated(layer.implicit_module, condition[:, k]):
            hk = act(np.einsum("bi,bio->bo", hk, kernel) + bias)  # implicit module, SC = SC_im^k
        heads.append(hk)
    k1, b1 = (w.numpy() for w in layer.output_tower.weights)
    return relu(np.concatenate(heads, axis=1) @ k1 + b1)


def test_shared_layer_checks():
    data = batch()
    run_layer_test(
        HierarchicalScenarioNetwork,
        KWARGS,
        data,
        registered_name="tfjoint>HierarchicalScenarioNetwork",
        expected_output_shape=(8, 4),
    )


@pytest.mark.parametrize("activation, act", [("linear", lambda v: v), ("relu", relu)])
def test_forward_pass_matches_numpy(activation, act):
    layer = built(generated_activation=activation)
    data = batch()
    out = np.asarray(layer(data, training=False))
    np.testing.assert_allclose(out, numpy_forward(layer, data, act), rtol=1e-4, atol=1e-5)


def test_generated_kernel_is_the_generator_output_reshaped():
    layer = built()
    data = batch()
    e_s = numpy_scenario_embedding(layer, data["scenario"])
    generated = [(np.asarray(k), np.asarray(b)) for k, b in layer.explicit_module.generate(e_s)]
    module = layer.explicit_module
    for i, (kernel, bias) in enumerate(generated):
        g, g0 = module.kernel_generators[i].numpy(), module.kernel_bases[i].numpy()
        for row in range(len(e_s)):
            expected = (e_s[row] @ g + g0.reshape(-1)).reshape(g0.shape)
            np.testing.assert_allclose(kernel[row], expected, rtol=1e-5, atol=1e-6)
            b, b0 = module.bias_generators[i].numpy(), module.bias_bases[i].numpy()
            np.testing.assert_allclose(bias[row], e_s[row] @ b + b0, rtol=1e-5, atol=1e-6)


def test_one_generator_gives_each_scenario_its_own_kernels():
    layer = built()
    # Only the scenario embedding has a scenario axis: the generators are shared.
    per_scenario = [w.path for w in layer.weights if w.shape[0] == P]
    assert per_scenario == [layer.scenario_embedding.embeddings.path]
    scenario = np.arange(P).reshape(-1, 1)
    condition = layer.scenario_condition(scenario)
    before = [np.asarray(k) for k, _ in layer.explicit_module.generate(condition)]
    for kernel in before:
        assert not np.allclose(kernel[0], kernel[1]) and not np.allclose(kernel[1], kernel[2])
    generator = layer.explicit_module.kernel_generators[0]
    generator.assign(generator.numpy() + 0.3)
    after = np.asarray(layer.explicit_module.generate(condition)[0][0])
    for p in range(P):
        assert not np.allclose(before[0][p], after[p]), p


def test_implicit_field_weights_are_a_softmax_over_fields():
    layer = built()
    s = batch()["scenario"]
    w = np.asarray(layer.field_weights(s))
    assert w.shape == (8, HEADS, F)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w, numpy_field_weights(layer, s), rtol=1e-5, atol=1e-6)
    # The heads read different slices of e_s, so they weigh the fields differently.
    assert not np.allclose(w[:, 0], w[:, 1])


def test_without_field_attention_the_condition_is_the_flattened_weighted_fields():
    layer = built(use_field_attention=False)
    data = batch()
    w = numpy_field_weights(layer, data["scenario"])
    expected = (w[:, :, :, None] * data["fields"][:, None]).reshape(8, HEADS, F * E)
    got = np.asarray(layer.implicit_condition(data["scenario"], data["fields"]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_unknown_scenario_uses_the_shared_generated_layers():
    layer = built()
    data = batch()
    data["scenario"][:4, 0] = [P, 99, -1, P]
    unknown = np.array([True] * 4 + [False] * 4)
    np.testing.assert_array_equal(np.asarray(layer.scenario_condition(data["scenario"]))[unknown], 0.0)
    module = layer.explicit_module
    for (kernel, bias), g0, b0 in zip(
        module.generate(layer.scenario_condition(data["scenario"])), module.kernel_bases, module.bias_bases
    ):
        np.testing.assert_allclose(
            np.asarray(kernel)[unknown], np.broadcast_to(g0.numpy(), (4, *g0.shape)), atol=1e-7
        )
        np.testing.assert_allclose(
            np.asarray(bias)[unknown], np.broadcast_to(b0.numpy(), (4, *b0.shape)), atol=1e-7
        )
    weights = np.asarray(layer.field_weights(data["scenario"]))
    shared = softmax(np.stack([d.bias.numpy() for d in layer.field_weight_layers]))
    np.testing.assert_allclose(weights[unknown], np.broadcast_to(shared, (4, HEADS, F)), rtol=1e-5, atol=1e-6)
    out = np.asarray(layer(data, training=False))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, numpy_forward(layer, data, lambda v: v), rtol=1e-4, atol=1e-5)
    # The same row as an unknown scenario and as scenario 0 differ.
    known = {k: v.copy() for k, v in data.items()}
    known["scenario"][:4] = 0
    assert not np.allclose(np.asarray(layer(known, training=False))[unknown], out[unknown])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios"),
        ({"num_scenarios": 2, "shared_units": []}, "shared_units"),
        ({"num_scenarios": 2, "explicit_units": [4, 0]}, "explicit_units"),
        ({"num_scenarios": 2, "implicit_units": [-1]}, "implicit_units"),
        ({"num_scenarios": 2, "output_units": [0]}, "output_units"),
        ({"num_scenarios": 2, "num_implicit_heads": 0}, "num_implicit_heads"),
        (
            {"num_scenarios": 2, "scenario_embedding_dim": 6, "num_implicit_heads": 4},
            "scenario_embedding_dim=6",
        ),
        ({"num_scenarios": 2, "dropout": 1.0}, "dropout"),
        ({"num_scenarios": 2, "generated_activation": "nope"}, "nope"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HierarchicalScenarioNetwork(**kwargs)


def test_inputs_must_include_the_fields():
    layer = HierarchicalScenarioNetwork(**KWARGS)
    data = batch()
    del data["fields"]
    with pytest.raises(ValueError, match="fields"):
        layer(data)


def test_as_joint_model_scenario_adapter(tmp_path):
    check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        scenario_adapter="hierrec",
        component_kwargs={
            "scenario_adapter": {"shared_units": [16], "explicit_units": [8], "implicit_units": [8]}
        },
    )
