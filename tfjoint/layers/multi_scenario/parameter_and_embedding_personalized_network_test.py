import numpy as np
import pytest
import tensorflow as tf

from tfjoint.features import MOVIELENS_100K
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.layers.multi_scenario.parameter_and_embedding_personalized_network import (  # registers "pepnet"
    ParameterAndEmbeddingPersonalizedNetwork,
)
from tfjoint.testing import check_joint_model, randomize_weights, run_layer_test, scenario_batch, sigmoid

P, D, F, E = 3, 5, 4, 3
TASKS = ["a", "b"]
PRIOR = [0, 2]
KWARGS = {
    "task_names": TASKS,
    "num_scenarios": P,
    "tower_units": [6, 4],
    "gate_units": 5,
    "prior_fields": PRIOR,
}


def batch(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x, scenario = scenario_batch(n, D, P, rng)  # ids 0..2 known, 3 unknown
    return {"inputs": x, "scenario": scenario, "fields": rng.normal(size=(n, F, E)).astype("float32")}


def built(seed=1, **kwargs):
    data = batch()
    layer = ParameterAndEmbeddingPersonalizedNetwork(**{**KWARGS, **kwargs})
    layer.build({k: v.shape for k, v in data.items()})
    randomize_weights(layer.weights, seed, scale=0.7)
    return layer


def gate_nu(gate, v):
    w1, b1 = (t.numpy() for t in gate.hidden.weights)
    w2, b2 = (t.numpy() for t in gate.logits.weights)
    return gate.gamma * sigmoid(np.maximum(v @ w1 + b1, 0.0) @ w2 + b2)


def numpy_pepnet(layer, data):
    x, s, fields = data["inputs"], data["scenario"][:, 0], data["fields"]
    n = len(x)
    known = (s >= 0) & (s < P)
    z = np.where(known[:, None], layer.scenario_embedding.embeddings.numpy()[np.clip(s, 0, P - 1)], 0.0)
    delta = gate_nu(layer.epnet_gate, np.concatenate([z, fields.reshape(n, -1)], axis=1))  # EPNet
    o_ep = (fields * delta[:, :, None]).reshape(n, -1)
    gate_input = np.concatenate([fields[:, PRIOR].reshape(n, -1), o_ep], axis=1)  # O_prior ⊕ O_ep
    tower_input = np.concatenate([o_ep, x], axis=1) if layer.use_merged_inputs else o_ep
    out = {}
    for task in TASKS:
        h = tower_input
        for i in range(2):
            w, b = (t.numpy() for t in layer.tower_layers[f"{task}_{i}"].weights)
            h = np.maximum(h @ w + b, 0.0) * gate_nu(layer.ppnet_gates[f"{task}_{i}"], gate_input)  # PPNet
        out[task] = h
    return out


def test_shared_layer_checks():
    run_layer_test(
        ParameterAndEmbeddingPersonalizedNetwork,
        KWARGS,
        batch(),
        registered_name="tfjoint>ParameterAndEmbeddingPersonalizedNetwork",
        expected_output_shape={"a": (12, 4), "b": (12, 4)},
    )


@pytest.mark.parametrize("use_merged_inputs", [True, False])
def test_epnet_and_ppnet_equations_match_numpy(use_merged_inputs):
    layer = built(use_merged_inputs=use_merged_inputs)
    data = batch()
    data["scenario"][1], data["scenario"][5] = 99, -1  # out of range ids take the unknown path like id 3
    out = layer(data)
    expected = numpy_pepnet(layer, data)
    for task in TASKS:
        np.testing.assert_allclose(out[task], expected[task], rtol=1e-4, atol=1e-5)


def test_gate_nu_is_within_zero_and_gamma_and_follows_the_formula():
    layer = built(gamma=3.0)
    v = np.random.default_rng(2).normal(scale=4.0, size=(64, layer.epnet_gate.hidden.kernel.shape[0]))
    v = v.astype("float32")
    delta = np.asarray(layer.epnet_gate(v))
    expected = 3.0 * sigmoid(
        np.maximum(v @ layer.epnet_gate.hidden.kernel.numpy() + layer.epnet_gate.hidden.bias.numpy(), 0.0)
        @ layer.epnet_gate.logits.kernel.numpy()
        + layer.epnet_gate.logits.bias.numpy()
    )
    np.testing.assert_allclose(delta, expected, rtol=1e-5, atol=1e-6)
    assert delta.min() >= 0.0 and delta.max() <= 3.0
    assert delta.max() > 2.0  # more than a plain sigmoid could give: the gamma scale is there
    assert delta.min() < 1.0


def tf_forward(layer, data, fields, gate_fields):
    """PEPNet's forward through the layer's sublayers, with both gates' inputs built from ``gate_fields``."""
    n = len(data["inputs"])
    s = data["scenario"][:, 0]
    z = tf.gather(layer.scenario_embedding.embeddings, s)  # every id of the batch is known
    delta = layer.epnet_gate(tf.concat([z, tf.reshape(gate_fields, (n, -1))], axis=1))
    o_ep = tf.reshape(fields * delta[:, :, None], (n, -1))
    o_ep_for_gates = tf.reshape(gate_fields * delta[:, :, None], (n, -1))
    gate_input = tf.concat([tf.reshape(tf.gather(fields, PRIOR, axis=1), (n, -1)), o_ep_for_gates], axis=1)
    h = tf.concat([o_ep, data["inputs"]], axis=1)
    out = {}
    for task in TASKS:
        t = h
        for i in range(2):
            t = layer.tower_layers[f"{task}_{i}"](t) * layer.ppnet_gates[f"{task}_{i}"](gate_input)
        out[task] = t
    return out


def test_stop_gradient_on_the_embeddings_entering_the_gates():
    layer = built()
    data = batch()
    data["scenario"] = data["scenario"] % P
    weights = {t: tf.constant(np.random.default_rng(3).normal(size=(12, 4)), "float32") for t in TASKS}

    def grads(forward):
        fields = tf.Variable(data["fields"])
        with tf.GradientTape() as tape:
            out = forward(fields)
            loss = sum(tf.reduce_sum(out[t] * weights[t]) for t in TASKS)
        return tape.gradient(loss, fields).numpy()

    actual = grads(lambda f: layer({**data, "fields": f}))
    as_constant = grads(lambda f: tf_forward(layer, data, f, tf.constant(data["fields"])))
    without_stop = grads(lambda f: tf_forward(layer, data, f, f))
    np.testing.assert_allclose(actual, as_constant, rtol=1e-4, atol=1e-6)
    assert not np.allclose(actual, without_stop, rtol=1e-3, atol=1e-4)
    # The EPNet gate's output does not depend on E through its input at all.
    fields = tf.Variable(data["fields"])
    with tf.GradientTape() as tape:
        delta = layer.domain_gate(data["scenario"], fields)
    assert tape.gradient(delta, fields) is None


def test_ppnet_has_its_own_gate_per_task_and_layer():
    layer = built()
    data = batch()
    assert sorted(layer.ppnet_gates) == ["a_0", "a_1", "b_0", "b_1"]
    variables = [id(w) for g in layer.ppnet_gates.values() for w in g.weights]
    assert len(set(variables)) == len(variables) == 16
    v = np.random.default_rng(4).normal(size=(8, (len(PRIOR) + F) * E)).astype("float32")
    values = {name: np.asarray(g(v)) for name, g in layer.ppnet_gates.items()}
    assert not np.allclose(values["a_0"], values["b_0"]) and not np.allclose(values["a_1"], values["b_1"])
    assert values["a_0"].shape == (8, 6) and values["a_1"].shape == (8, 4)
    before = layer(data)
    kernel = layer.ppnet_gates["a_1"].logits.kernel
    kernel.assign(kernel.numpy() + 1.0)
    after = layer(data)
    np.testing.assert_array_equal(after["b"], before["b"])
    assert not np.allclose(after["a"], before["a"])


def test_unknown_scenario_has_a_zero_domain_embedding():
    layer = built()
    data = batch()
    for i, sid in ((3, 99), (7, -1)):  # rows 3 and 7 hold id 3 already: make other unknown ids
        data["scenario"][i] = sid
    unknown = (data["scenario"][:, 0] < 0) | (data["scenario"][:, 0] >= P)
    same = {**data, "scenario": np.full_like(data["scenario"], P)}
    before = layer(data)
    for task in TASKS:
        np.testing.assert_array_equal(
            np.asarray(before[task])[unknown], np.asarray(layer(same)[task])[unknown]
        )
    table = layer.scenario_embedding.embeddings
    table.assign(table.numpy() + 1.0)
    after = layer(data)
    for task in TASKS:
        np.testing.assert_array_equal(np.asarray(after[task])[unknown], np.asarray(before[task])[unknown])
        assert not np.allclose(np.asarray(after[task])[~unknown], np.asarray(before[task])[~unknown])


def test_mean_epnet_gate_per_field_is_logged():
    layer = built()
    data = batch()
    layer(data)
    means = [float(m.result()) for m in layer.gate_trackers["epnet"]]
    delta = np.asarray(layer.domain_gate(data["scenario"], data["fields"]))
    np.testing.assert_allclose(means, delta.mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_names": []}, "task_names"),
        ({"num_scenarios": 0}, "num_scenarios=0"),
        ({"tower_units": []}, "tower_units"),
        ({"tower_units": [4, 0]}, r"tower_units=\[4, 0\]"),
        ({"gate_units": 0}, "gate_units=0"),
        ({"gamma": 0.0}, "gamma=0.0"),
        ({"prior_fields": []}, r"prior_fields=\[\]"),
        ({"prior_fields": [0, 0]}, r"prior_fields=\[0, 0\]"),
        ({"prior_fields": [-1]}, r"prior_fields=\[-1\]"),
        ({"scenario_embedding_dim": 0}, "scenario_embedding_dim=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParameterAndEmbeddingPersonalizedNetwork(**{**KWARGS, **kwargs})


def test_prior_fields_must_index_the_fields():
    layer = ParameterAndEmbeddingPersonalizedNetwork(**{**KWARGS, "prior_fields": [0, F]})
    with pytest.raises(ValueError, match=r"prior_fields=\[0, 4\]"):
        layer(batch())
    with pytest.raises(ValueError, match="keys"):
        ParameterAndEmbeddingPersonalizedNetwork(**KWARGS)([batch()["inputs"], batch()["scenario"]])


def test_as_joint_model_task_architecture(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        epochs=2,
        task_architecture="pepnet",
        # user_id, item_id: fields are spec.categorical, then the scenario, then spec.dense.
        component_kwargs={"task_architecture": {"prior_fields": [0, 1], "tower_units": [8], "gate_units": 8}},
    ).history
    assert "gate_epnet_expert_5" in history  # one per field: 4 categorical, the scenario, 1 dense
