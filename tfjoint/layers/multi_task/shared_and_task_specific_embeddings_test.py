import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.features import MOVIELENS_100K
from tfjoint.joint import JointModel, build_joint_model
from tfjoint.layers.core.feature_embedding import FeatureEmbedding
from tfjoint.layers.multi_task.shared_and_task_specific_embeddings import SharedAndTaskSpecificEmbeddings
from tfjoint.testing import check_joint_model, fake_batch, fake_vocab_sizes, run_layer_test

TASKS = ["a", "b", "c"]
BATCH, NUM_FIELDS, DIM, EXTRA = 16, 3, 2, 4


def _inputs(seed=0):
    """What the joint model passes: E_merge = [flatten(fields), a sequence part], fields and
    each task's own fields (different tables, so different values)."""
    rng = np.random.default_rng(seed)
    fields = rng.normal(size=(BATCH, NUM_FIELDS, DIM)).astype("float32")
    extra = rng.normal(size=(BATCH, EXTRA)).astype("float32")
    x = {"inputs": np.concatenate([fields.reshape(BATCH, -1), extra], axis=1), "fields": fields}
    for t in TASKS:
        x[f"fields_{t}"] = rng.normal(size=(BATCH, NUM_FIELDS, DIM)).astype("float32")
    return x


X = _inputs()


def _layer(**kwargs):
    keras.utils.set_random_seed(0)
    kwargs = {"expert_units": [8], "tower_units": [4], **kwargs}
    layer = SharedAndTaskSpecificEmbeddings(TASKS, **kwargs)
    layer(X)
    return layer


def _dense(layer, x, relu):
    y = x @ layer.kernel.numpy() + layer.bias.numpy()
    return np.maximum(y, 0.0) if relu else y


def _mlp(mlp, x):
    for dense in mlp.dense_layers:
        x = _dense(dense, x, relu=True)
    return x


def _softmax(z):
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _flat(fields):
    return fields.reshape(len(fields), -1)


def test_layer_contract():
    run_layer_test(
        SharedAndTaskSpecificEmbeddings,
        {"task_names": TASKS, "expert_units": [8], "tower_units": [4], "dropout": 0.1},
        X,
        registered_name="tfjoint>SharedAndTaskSpecificEmbeddings",
        expected_output_shape={t: (16, 4) for t in TASKS},
    )


def test_output_matches_numpy_recomputation_of_the_paper_equations():
    layer = _layer(gate_temperature=2.0)
    out = layer(X)
    # f_s = F_s(E_merge), f_k = F_k(x_k), g_k = softmax(W_gk (x_k + x_s) / T).
    x_s = _flat(X["fields"])
    x = {t: _flat(X[f"fields_{t}"]) for t in TASKS}
    f = [_mlp(layer.task_experts[t], x[t]) for t in TASKS] + [_mlp(layer.shared_expert, X["inputs"])]
    stacked = np.stack(f, axis=1)
    for t in TASKS:
        g = _softmax(_dense(layer.gates[t], x[t] + x_s, relu=False) / 2.0)
        expected = _mlp(layer.towers[t], np.einsum("be,bed->bd", g, stacked))
        np.testing.assert_allclose(out[t], expected, rtol=1e-5, atol=1e-6)


def test_the_gate_reads_the_task_embedding_plus_the_shared_one():
    # The official code's gate[i](x[i] + x[-1]); a gate on x_k alone (or x_s alone) fails.
    layer = _layer()
    gates = layer.gate_weights(X)
    x_s = _flat(X["fields"])
    for t in TASKS:
        x_k = _flat(X[f"fields_{t}"])
        expected = _softmax(_dense(layer.gates[t], x_k + x_s, relu=False))
        np.testing.assert_allclose(gates[t], expected, rtol=1e-5, atol=1e-6)
        for wrong in (x_k, x_s):
            assert np.abs(_softmax(_dense(layer.gates[t], wrong, relu=False)) - expected).max() > 1e-2


def _input_grads(layer, task):
    inputs = {k: tf.constant(v) for k, v in X.items()}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        y = tf.reduce_sum(layer(inputs, training=False)[task])
    sublayers = {"shared_expert": layer.shared_expert}
    sublayers.update({f"expert_{t}": layer.task_experts[t] for t in TASKS})
    grads = {
        name: sum(0.0 if g is None else float(np.abs(g).sum()) for g in tape.gradient(y, sub.weights))
        for name, sub in sublayers.items()
    }
    for key, value in inputs.items():
        g = tape.gradient(y, value)
        grads[key] = 0.0 if g is None else float(np.abs(g).sum())
    return grads


@pytest.mark.parametrize("task", TASKS)
def test_task_gradient_reaches_only_its_own_and_the_shared_branch(task):
    grads = _input_grads(_layer(), task)
    for other in TASKS:
        if other == task:
            assert grads[f"fields_{other}"] > 0 and grads[f"expert_{other}"] > 0
        else:
            # Stop-gradient: exactly zero, not merely small.
            assert grads[f"fields_{other}"] == 0.0, other
            assert grads[f"expert_{other}"] == 0.0, other
    assert grads["fields"] > 0 and grads["inputs"] > 0 and grads["shared_expert"] > 0


def test_every_task_sees_every_expert_in_the_forward_pass():
    layer = _layer()
    gates = layer.gate_weights(X)
    for t in TASKS:
        g = np.asarray(gates[t])
        assert g.shape == (16, len(TASKS) + 1)
        assert np.all(g > 0)
        np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-6)
    # Changing b's embedding changes a's output (all forward), though a's gradient ignores it.
    before = np.asarray(layer(X)["a"])
    after = np.asarray(layer({**X, "fields_b": X["fields_b"] * 3.0})["a"])
    assert not np.allclose(before, after)


def test_gate_trackers_cover_specific_and_shared_experts():
    layer = _layer()
    assert sorted(layer.gate_trackers) == TASKS
    names = [m.name for m in layer.gate_trackers["b"]]
    assert names == [f"gate_b_expert_{i}" for i in range(len(TASKS) + 1)]
    means = [float(m.result()) for m in layer.gate_trackers["b"]]
    assert sum(means) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_names": []},
        {"task_names": ["a", "a"]},
        {"task_names": ["a"], "gate_temperature": 0.0},
        {"task_names": ["a"], "dropout": 1.0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        SharedAndTaskSpecificEmbeddings(**kwargs)


def test_a_plain_tensor_or_missing_task_fields_raise():
    layer = SharedAndTaskSpecificEmbeddings(TASKS)
    with pytest.raises(ValueError, match="per-task"):
        layer(X["inputs"])
    with pytest.raises(ValueError, match="fields_c"):
        SharedAndTaskSpecificEmbeddings(TASKS)({k: v for k, v in X.items() if k != "fields_c"})


def test_joint_model_trains_logs_gates_and_reloads(tmp_path):
    sizes = fake_vocab_sizes(MOVIELENS_100K)
    model, history, _ = check_joint_model(MOVIELENS_100K, sizes, tmp_path, task_architecture="stem")
    assert isinstance(model.task_architecture, SharedAndTaskSpecificEmbeddings)
    tasks = model.task_architecture.task_names
    assert model.embedding.task_tables == tasks
    for task in tasks:
        means = [history[f"gate_{task}_expert_{i}"][-1] for i in range(len(tasks) + 1)]
        assert sum(means) == pytest.approx(1.0, abs=1e-5)
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = JointModel.from_config(config)
    assert rebuilt.embedding.task_tables == tasks
    assert [v.path for v in rebuilt.weights] == [v.path for v in model.weights]


def test_in_the_joint_model_a_task_loss_reaches_only_its_own_and_the_shared_tables():
    keras.utils.set_random_seed(0)
    model = build_joint_model(MOVIELENS_100K, fake_vocab_sizes(MOVIELENS_100K), task_architecture="stem")
    x, y = fake_batch(MOVIELENS_100K)
    tasks = [t.name for t in MOVIELENS_100K.tasks]
    embedding = model.embedding
    shared = [*embedding.tables.values(), embedding.scenario_table]
    shared_vars = [v for table in shared for v in table.trainable_variables] + [embedding.dense_vectors]

    def own(task):
        tables = [t for key, t in embedding.task_field_tables.items() if key.startswith(f"{task}/")]
        tables.append(embedding.task_scenario_tables[task])
        variables = [v for table in tables for v in table.trainable_variables]
        return [*variables, embedding.task_dense_vectors[task]]

    def mass(grads):
        return [0.0 if g is None else float(np.abs(tf.convert_to_tensor(g)).sum()) for g in grads]

    for task in tasks:
        with tf.GradientTape(persistent=True) as tape:
            loss = model.task_losses(y, model(x, training=True))[task]
        assert all(m > 0 for m in mass(tape.gradient(loss, own(task)))), task
        assert all(m > 0 for m in mass(tape.gradient(loss, shared_vars))), task
        for other in tasks:
            if other != task:
                expert = model.task_architecture.task_experts[other].trainable_variables
                unreached = own(other) + expert
                assert mass(tape.gradient(loss, unreached)) == [0.0] * len(unreached)
        del tape


class _EmbeddingWithoutTaskTables(FeatureEmbedding):
    def __init__(self, vocab_sizes, categorical, dense, num_scenarios, embedding_dim=16,
                 sequence_item_feature=None, num_behaviors=0, tokens=(), **kwargs):
        super().__init__(vocab_sizes, categorical, dense, num_scenarios, embedding_dim,
                         sequence_item_feature, num_behaviors, tokens, **kwargs)


def test_an_embedding_without_task_tables_is_refused():
    with pytest.raises(ValueError, match="task_tables"):
        build_joint_model(
            MOVIELENS_100K,
            fake_vocab_sizes(MOVIELENS_100K),
            task_architecture="stem",
            embedding=_EmbeddingWithoutTaskTables,
        )
