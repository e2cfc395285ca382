import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.layers.multi_task.shared_and_task_specific_embeddings import SharedAndTaskSpecificEmbeddings
from tfjoint.features import MOVIELENS_100K
from tfjoint.testing import check_joint_model, fake_vocab_sizes, run_layer_test

X = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
TASKS = ["a", "b", "c"]


def _layer(**kwargs):
    keras.utils.set_random_seed(0)
    kwargs = {"embedding_dim": 5, "expert_units": [8], "tower_units": [4], **kwargs}
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


def test_layer_contract():
    run_layer_test(
        SharedAndTaskSpecificEmbeddings,
        {"task_names": TASKS, "embedding_dim": 4, "expert_units": [8], "tower_units": [4], "dropout": 0.1},
        X,
        registered_name="tfjoint>SharedAndTaskSpecificEmbeddings",
        expected_output_shape={t: (16, 4) for t in TASKS},
    )


def test_output_matches_numpy_recomputation_of_the_paper_equations():
    layer = _layer(gate_temperature=2.0)
    out = layer(X)
    # e_s = P_s x, e_k = P_k x (linear), f = expert(e), g_k = softmax(W_gk (e_k + e_s) / T).
    e_s = _dense(layer.shared_embedding, X, relu=False)
    e = {t: _dense(layer.task_embeddings[t], X, relu=False) for t in TASKS}
    f = [_mlp(layer.task_experts[t], e[t]) for t in TASKS] + [_mlp(layer.shared_expert, e_s)]
    stacked = np.stack(f, axis=1)
    for t in TASKS:
        g = _softmax(_dense(layer.gates[t], e[t] + e_s, relu=False) / 2.0)
        np.testing.assert_allclose(layer.gate_weights(X)[t], g, rtol=1e-5, atol=1e-6)
        expected = _mlp(layer.towers[t], np.einsum("be,bed->bd", g, stacked))
        np.testing.assert_allclose(out[t], expected, rtol=1e-5, atol=1e-6)


def _branch_grads(layer, task):
    with tf.GradientTape(persistent=True) as tape:
        y = tf.reduce_sum(layer(X, training=False)[task])
    sublayers = {
        "shared_embedding": layer.shared_embedding,
        "shared_expert": layer.shared_expert,
        **{f"embedding_{t}": layer.task_embeddings[t] for t in TASKS},
        **{f"expert_{t}": layer.task_experts[t] for t in TASKS},
    }
    return {
        name: sum(
            0.0 if g is None else float(np.abs(g).sum())
            for g in tape.gradient(y, sub.trainable_variables)
        )
        for name, sub in sublayers.items()
    }


@pytest.mark.parametrize("task", TASKS)
def test_task_gradient_reaches_only_its_own_and_the_shared_branch(task):
    layer = _layer()
    grads = _branch_grads(layer, task)
    for other in TASKS:
        if other == task:
            assert grads[f"embedding_{other}"] > 0 and grads[f"expert_{other}"] > 0
        else:
            # Stop-gradient: exactly zero, not merely small.
            assert grads[f"embedding_{other}"] == 0.0, other
            assert grads[f"expert_{other}"] == 0.0, other
    assert grads["shared_embedding"] > 0
    assert grads["shared_expert"] > 0


def test_every_task_sees_every_expert_in_the_forward_pass():
    layer = _layer()
    gates = layer.gate_weights(X)
    for t in TASKS:
        g = np.asarray(gates[t])
        assert g.shape == (16, len(TASKS) + 1)
        assert np.all(g > 0)
        np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-6)
    # Changing b's expert changes a's output (all forward), though a's gradient ignores it.
    before = np.asarray(layer(X)["a"])
    kernel = layer.task_experts["b"].dense_layers[0].kernel
    kernel.assign(kernel.numpy() * 3.0)
    after = np.asarray(layer(X)["a"])
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
        {"task_names": ["a"], "embedding_dim": 0},
        {"task_names": ["a"], "gate_temperature": 0.0},
        {"task_names": ["a"], "dropout": 1.0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        SharedAndTaskSpecificEmbeddings(**kwargs)


def test_joint_model_trains_logs_gates_and_reloads(tmp_path):
    sizes = fake_vocab_sizes(MOVIELENS_100K)
    model, history, _ = check_joint_model(MOVIELENS_100K, sizes, tmp_path, task_architecture="stem")
    assert isinstance(model.task_architecture, SharedAndTaskSpecificEmbeddings)
    tasks = model.task_architecture.task_names
    for task in tasks:
        means = [history[f"gate_{task}_expert_{i}"][-1] for i in range(len(tasks) + 1)]
        assert sum(means) == pytest.approx(1.0, abs=1e-5)
