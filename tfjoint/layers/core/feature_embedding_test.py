import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint import features
from tfjoint.layers.core.feature_embedding import FeatureEmbedding
from tfjoint.testing import run_layer_test

KWARGS = {
    "vocab_sizes": {"user_id": 5, "item_id": 7, "title": 9},
    "categorical": ["user_id", "item_id"],
    "dense": ["year"],
    "num_scenarios": 3,
    "embedding_dim": 4,
    "sequence_item_feature": "item_id",
    "num_behaviors": 3,
    "tokens": ["title"],
}


def make_inputs(batch=4, seq_len=5, title_len=3, seed=0):
    rng = np.random.default_rng(seed)
    items = rng.integers(1, 9, size=(batch, seq_len))
    items[:, -2:] = features.PAD_INDEX
    behaviors = np.where(items == features.PAD_INDEX, 0, rng.integers(1, 4, size=(batch, seq_len)))
    return {
        "user_id": rng.integers(1, 7, size=(batch, 1)),
        "item_id": rng.integers(1, 9, size=(batch, 1)),
        "year": rng.normal(size=(batch, 1)).astype("float32"),
        features.SCENARIO_KEY: np.array([[0], [1], [2], [3]])[:batch],  # 3 = unknown-scenario row
        features.SEQUENCE_ITEMS_KEY: items,
        features.SEQUENCE_BEHAVIORS_KEY: behaviors,
        "title": rng.integers(0, 11, size=(batch, title_len)),
    }


@pytest.mark.parametrize("task_tables", [[], ["a"]])
def test_layer_contract(task_tables):
    extra = {f"fields_{t}": (4, 4, 4) for t in task_tables}
    run_layer_test(
        FeatureEmbedding,
        {**KWARGS, "task_tables": task_tables},
        make_inputs(),
        expected_output_shape={
            "fields": (4, 4, 4),
            **extra,
            "sequence": (4, 5, 4),
            "behaviors": (4, 5),
            "sequence_mask": (4, 5),
            "target": (4, 4),
            "tokens_title": (4, 3, 4),
            "tokens_mask_title": (4, 3),
        },
        # Padding rows and unused ids get no gradient; the tables themselves must move.
        frozen_weights=None,
    )


def test_values_follow_the_tables():
    layer = FeatureEmbedding(**KWARGS)
    x = make_inputs()
    out = layer(x)
    item_table = layer.tables["item_id"].embeddings.numpy()
    behavior_table = layer.behavior_table.embeddings.numpy()
    expected_seq = item_table[x["seq_items"]] + behavior_table[x["seq_behaviors"]]
    np.testing.assert_allclose(out["sequence"], expected_seq, rtol=1e-6)
    np.testing.assert_allclose(out["target"], item_table[x["item_id"][:, 0]], rtol=1e-6)
    np.testing.assert_array_equal(out["sequence_mask"], (x["seq_items"] != 0).astype("float32"))
    # fields: user, item, scenario, then the dense field x * v.
    scenario_table = layer.scenario_table.embeddings.numpy()
    np.testing.assert_allclose(out["fields"][:, 2], scenario_table[x["scenario"][:, 0]], rtol=1e-6)
    dense_vector = layer.dense_vectors.numpy()[0]
    np.testing.assert_allclose(out["fields"][:, 3], x["year"] * dense_vector[None], rtol=1e-5)


def test_out_of_vocabulary_and_unknown_scenario_have_rows():
    layer = FeatureEmbedding(**KWARGS)
    x = make_inputs()
    x["user_id"][:] = KWARGS["vocab_sizes"]["user_id"] + 1  # the OOV index V + 1
    out = layer(x)
    assert np.all(np.isfinite(out["fields"]))
    assert layer.scenario_table.input_dim == KWARGS["num_scenarios"] + 1


def test_ids_outside_the_tables_take_the_oov_and_unknown_scenario_rows():
    layer = FeatureEmbedding(**KWARGS)
    x = make_inputs()
    x["user_id"][:, 0] = [6, 7, 99, -4]  # V + 1 = 6 is OOV; larger or negative ids too
    x[features.SCENARIO_KEY][:, 0] = [3, 4, 99, -1]  # P = 3 is unknown; so is any other id
    x["title"][0] = [1, 50, -2]
    out = layer(x)
    user_table = layer.tables["user_id"].embeddings.numpy()
    np.testing.assert_allclose(out["fields"][:, 0], np.repeat(user_table[6][None], 4, axis=0), rtol=1e-6)
    unknown = layer.scenario_table.embeddings.numpy()[3]
    np.testing.assert_allclose(out["fields"][:, 2], np.repeat(unknown[None], 4, axis=0), rtol=1e-6)
    title_table = layer.token_tables["title"].embeddings.numpy()
    np.testing.assert_allclose(out["tokens_title"][0], title_table[[1, 10, 10]], rtol=1e-6)


@pytest.mark.parametrize(
    "change",
    [{"embedding_dim": 0}, {"num_scenarios": 0}, {"vocab_sizes": {"user_id": 3}}, {"sequence_item_feature": "nope"}],
)
def test_bad_arguments(change):
    with pytest.raises(ValueError, match="Received"):
        FeatureEmbedding(**{**KWARGS, **change})


def test_without_task_tables_the_variables_and_outputs_are_unchanged():
    # The default keeps the variables (names, order, values under a seed) and the outputs of
    # the layer before task tables existed, so saved models keep loading.
    keras.utils.set_random_seed(0)
    default = FeatureEmbedding(**KWARGS, name="embedding")
    out = default(make_inputs())
    assert [v.path for v in default.weights] == [
        "embedding/dense_vectors",
        "embedding/embedding_user_id/embeddings",
        "embedding/embedding_item_id/embeddings",
        "embedding/embedding_title/embeddings",
        "embedding/embedding_scenario/embeddings",
        "embedding/embedding_behavior/embeddings",
    ]
    assert sorted(out) == [
        "behaviors", "fields", "sequence", "sequence_mask", "target", "tokens_mask_title", "tokens_title"
    ]
    keras.utils.set_random_seed(0)
    with_tasks = FeatureEmbedding(**KWARGS, task_tables=["a", "b"], name="embedding")
    out_tasks = with_tasks(make_inputs())
    by_path = {w.path: w for w in with_tasks.weights}
    for v in default.weights:
        np.testing.assert_array_equal(v.numpy(), by_path[v.path].numpy())
    for key, value in out.items():
        np.testing.assert_array_equal(value, out_tasks[key])


def test_task_tables_embed_the_same_fields_with_their_own_tables():
    layer = FeatureEmbedding(**KWARGS, task_tables=["a", "b"])
    x = make_inputs()
    out = layer(x)
    assert sorted(k for k in out if k.startswith("fields")) == ["fields", "fields_a", "fields_b"]
    for task in ("a", "b"):
        fields = np.asarray(out[f"fields_{task}"])
        assert fields.shape == (4, layer.num_fields, 4)
        user = layer.task_field_tables[f"{task}/user_id"].embeddings.numpy()
        np.testing.assert_allclose(fields[:, 0], user[x["user_id"][:, 0]], rtol=1e-6)
        scenario = layer.task_scenario_tables[task].embeddings.numpy()
        np.testing.assert_allclose(fields[:, 2], scenario[x["scenario"][:, 0]], rtol=1e-6)
        vector = layer.task_dense_vectors[task].numpy()[0]
        np.testing.assert_allclose(fields[:, 3], x["year"] * vector[None], rtol=1e-5)
    # Every table starts from its own draw: task a, task b and the shared ones all differ.
    for k in ("user_id", "item_id"):
        a, b = (layer.task_field_tables[f"{t}/{k}"].embeddings.numpy() for t in ("a", "b"))
        shared = layer.tables[k].embeddings.numpy()
        assert not np.allclose(a, b) and not np.allclose(a, shared) and not np.allclose(b, shared)
    # A loss on fields_a reaches task a's tables only.
    inputs = {k: tf.constant(v) for k, v in x.items()}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(inputs)["fields_a"] ** 2)
    grads = tape.gradient(loss, layer.trainable_variables)
    reached = sorted(v.path.split("/")[1] for v, g in zip(layer.trainable_variables, grads) if g is not None)
    assert reached == [
        "dense_vectors_a",
        "embedding_item_id_a",
        "embedding_scenario_a",
        "embedding_user_id_a",
    ]


@pytest.mark.parametrize("task_tables", [["a", "a"], "ab", [""]])
def test_bad_task_tables(task_tables):
    with pytest.raises(ValueError, match="Received"):
        FeatureEmbedding(**KWARGS, task_tables=task_tables)


def test_item_vectors_are_frozen_rows_of_the_item_projected_into_a_one_token_modality():
    layer = FeatureEmbedding(**KWARGS, item_vectors={"minilm": 6})
    inputs = make_inputs()
    inputs["item_id"] = np.array([[1], [7], [0], [8]])  # vocab 0, vocab 6, padding, OOV
    layer(inputs)
    vectors = np.random.default_rng(3).normal(size=(7, 6)).astype("float32")
    layer.set_item_vectors("minilm", vectors)
    out = layer(inputs)
    projection = layer.item_vector_projections["minilm"]
    kernel, bias = (np.asarray(w) for w in projection.weights)
    want = np.stack([vectors[0] @ kernel + bias, vectors[6] @ kernel + bias, bias, bias])
    np.testing.assert_allclose(np.asarray(out["tokens_minilm"])[:, 0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["tokens_mask_minilm"]), [[1], [1], [0], [0]])
    table = layer.item_vector_tables["minilm"].embeddings
    assert not table.trainable and table.path not in [w.path for w in layer.trainable_weights]
    with pytest.raises(ValueError, match=r"must have shape \(7, 6\)"):
        layer.set_item_vectors("minilm", vectors[:3])
    with pytest.raises(ValueError, match="item_vectors need an item feature"):
        FeatureEmbedding(**{**KWARGS, "sequence_item_feature": None, "num_behaviors": 0}, item_vectors={"minilm": 6})


def test_item_vectors_reach_the_modality_encoder_and_survive_a_keras_round_trip(tmp_path):
    from tfjoint.features import MOVIELENS_100K
    from tfjoint.testing import check_joint_model, fake_vocab_sizes, fake_batch

    sizes = fake_vocab_sizes(MOVIELENS_100K)
    item = MOVIELENS_100K.sequence.item_feature
    vectors = np.random.default_rng(0).normal(size=(sizes[item], 5)).astype("float32")
    run = check_joint_model(MOVIELENS_100K, sizes, tmp_path, item_vectors={"title_minilm": vectors})
    assert run.model.modality_encoder.modalities[-1] == "title_minilm"
    reloaded = keras.saving.load_model(str(tmp_path / "model.keras"))
    table = reloaded.embedding.item_vector_tables["title_minilm"].embeddings
    np.testing.assert_array_equal(np.asarray(table)[1 : sizes[item] + 1], vectors)
    # the vectors change the predictions: zeroing them (mask 0, the learned default) moves them
    x, _ = fake_batch(MOVIELENS_100K)
    run.model.embedding.set_item_vectors("title_minilm", np.zeros_like(vectors))
    after = run.model.predict(x, verbose=0)
    assert any(not np.allclose(after[t], run.predictions[t], atol=1e-6) for t in after)


@pytest.mark.parametrize("initializer", ["uniform", keras.initializers.RandomNormal(stddev=1e-4, seed=3)])
def test_every_table_starts_from_its_own_draw(initializer):
    # One initializer instance draws the same values every call (its seed is fixed when it
    # is created): the tables used to start equal row by row, id i of every field the same
    # vector (docs/training_speed.md, "BatchNorm and the embedding tables").
    def tables():
        layer = FeatureEmbedding(**KWARGS, embeddings_initializer=initializer)
        layer(make_inputs())
        return [t.embeddings.numpy() for t in [*layer.tables.values(), *layer.token_tables.values(),
                                                layer.scenario_table, layer.behavior_table]]

    first = tables()
    for i, a in enumerate(first):
        for b in first[i + 1:]:
            rows = min(len(a), len(b))
            assert not np.allclose(a[:rows], b[:rows], rtol=0.0, atol=0.0)
    if not isinstance(initializer, str):  # a seeded initializer stays reproducible
        for a, b in zip(first, tables()):
            np.testing.assert_array_equal(a, b)
