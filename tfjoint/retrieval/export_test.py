"""The top-K SavedModel's signatures against the models' own in-process scores."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from tfjoint.datasets.interactions import synthetic_behaviors
from tfjoint.layers.multi_behavior import ContrastiveMetaLearning, MultiBehaviorSequentialTransformer
from tfjoint.layers.retrieval import (
    BPRMatrixFactorization,
    EmbarrassinglyShallowAutoencoder,
    ItemPopularity,
    LightGraphConvolutionNetwork,
    SelfAttentiveSequentialRecommendation,
)
from tfjoint.retrieval.export import export_topk_model, push

K = 5


@pytest.fixture(scope="module")
def log():
    return synthetic_behaviors(40, 60, signal=1.0, seed=0)


def example(user=None, recent=(), exclude=(), behaviors=()):
    """A serialized request; features left out when None or empty."""
    ex = tf.train.Example()
    if user is not None:
        ex.features.feature["user"].int64_list.value.append(int(user))
    if len(recent):
        ex.features.feature["recent_items"].int64_list.value.extend(int(i) for i in recent)
    if len(behaviors):
        ex.features.feature["recent_behaviors"].int64_list.value.extend(int(b) for b in behaviors)
    if len(exclude):
        ex.features.feature["exclude_items"].int64_list.value.extend(int(i) for i in exclude)
    return ex.SerializeToString()


def recent_items(log, user):
    """The user's target-behavior items in time order (what SASRec's score reads)."""
    rows = log.sorted()
    keep = (rows.users == user) & (rows.behaviors == log.spec.target_index)
    return rows.items[keep]


def assert_top_k(got_items, got_scores, scores, k=K):
    """``got`` are the k best of ``scores`` per row: distinct items, their own scores, and
    the same score values as ``np.argsort(-scores)[:, :k]`` (which equals the indices up to
    ties, broken towards the lower index by both)."""
    want = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    assert got_items.shape == got_scores.shape == (len(scores), k)
    assert all(len(set(row)) == k for row in got_items.tolist())
    np.testing.assert_allclose(got_scores, np.take_along_axis(scores, got_items, 1), atol=1e-5)
    np.testing.assert_allclose(got_scores, np.take_along_axis(scores, want, 1), atol=1e-5)
    with np.errstate(invalid="ignore"):  # -inf - -inf of excluded items
        gaps = np.diff(np.sort(scores, axis=1), axis=1)
    if np.all(gaps[np.isfinite(gaps)] > 1e-4):  # no near-ties anywhere: the indices themselves must agree
        np.testing.assert_array_equal(got_items, want)


def serve(export_dir, signature="serving_default"):
    fn = tf.saved_model.load(export_dir).signatures[signature]
    return lambda examples: {k: v.numpy() for k, v in fn(examples=tf.constant(examples)).items()}


@pytest.fixture(scope="module")
def bpr(log):
    model = BPRMatrixFactorization(log.num_users, log.num_items, embedding_dim=8, seed=0)
    model.fit(log, epochs=2, batch_size=64)
    return model


@pytest.fixture(scope="module")
def lightgcn(log):
    model = LightGraphConvolutionNetwork(log.num_users, log.num_items, num_layers=2, embedding_dim=8, seed=0)
    model.fit(log, epochs=1, batch_size=64, learning_rate=0.05)
    return model


@pytest.fixture(scope="module")
def cml(log):
    model = ContrastiveMetaLearning(log.num_users, log.num_items, num_layers=2, embedding_dim=8, seed=0)
    model.fit(log, epochs=1, batch_size=64, learning_rate=0.05)
    return model


@pytest.fixture(scope="module")
def sasrec(log):
    model = SelfAttentiveSequentialRecommendation(log.num_items, max_len=3, hidden_dim=8, num_blocks=1, dropout=0.2, seed=0)
    model.fit(log, epochs=1, batch_size=16)
    return model


@pytest.fixture(scope="module")
def vbpr(log):
    """VBPR fitted without the events of items 50..59: those are cold (scored by features only)."""
    from tfjoint.layers.multi_modal import VisualBayesianPersonalizedRanking

    features = np.random.default_rng(0).standard_normal((log.num_items, 6)).astype(np.float32)
    model = VisualBayesianPersonalizedRanking(log.num_users, log.num_items, item_features=features,
                                              embedding_dim=4, content_dim=3, seed=0)
    model.fit(log.select(log.items < 50), epochs=2, batch_size=64)
    return model


@pytest.fixture(scope="module")
def freedom(log):
    """FREEDOM fitted without the events of items 50..59: those are cold (scored through h_i)."""
    from tfjoint.layers.multi_modal import FreezingAndDenoisingGraphs

    features = np.random.default_rng(0).standard_normal((log.num_items, 6)).astype(np.float32)
    model = FreezingAndDenoisingGraphs(log.num_users, log.num_items, item_features=features, knn_k=5,
                                       embedding_dim=4, seed=0)
    model.fit(log.select(log.items < 50), epochs=2, batch_size=64)
    return model


@pytest.fixture(scope="module")
def bm3(log):
    """BM3 fitted without the events of items 50..59: those are cold (scored by features only)."""
    from tfjoint.layers.multi_modal import BootstrapMultiModal

    features = np.random.default_rng(0).standard_normal((log.num_items, 6)).astype(np.float32)
    model = BootstrapMultiModal(log.num_users, log.num_items, item_features=features, embedding_dim=4, seed=0)
    model.fit(log.select(log.items < 50), epochs=2, batch_size=64, learning_rate=0.05)
    return model


@pytest.mark.parametrize("name", ["bpr", "lightgcn", "cml", "vbpr", "freedom", "bm3"])
def test_two_tower_topk_embeddings_exclusion_and_cold_user(name, log, tmp_path, request):
    model = request.getfixturevalue(name)
    item_ids = np.array([f"item-{i}" for i in range(log.num_items)])
    export_dir = export_topk_model(model, str(tmp_path / "1"), k=K, item_ids=item_ids)
    users = np.array([0, 7, 39])
    scores = model.score(users)

    got = serve(export_dir)([example(u) for u in users])
    assert set(got) == {"top_k_items", "top_k_scores", "top_k_item_ids"}
    assert got["top_k_items"].dtype == np.int64 and got["top_k_scores"].dtype == np.float32
    assert_top_k(got["top_k_items"], got["top_k_scores"], scores)
    np.testing.assert_array_equal(got["top_k_item_ids"].astype(str), item_ids[got["top_k_items"]])

    # exclusion: the in-process top 3 of each user (and an unknown index) are never returned
    exclude = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    got = serve(export_dir)([example(u, exclude=[*e, 999, -1]) for u, e in zip(users, exclude)])
    masked = scores.copy()
    np.put_along_axis(masked, exclude, -np.inf, axis=1)
    assert not any(np.isin(g, e).any() for g, e in zip(got["top_k_items"], exclude))
    assert_top_k(got["top_k_items"], got["top_k_scores"], masked)

    # cold user (missing or out-of-range `user`): the mean user embedding
    cold = model.user_embeddings(np.arange(log.num_users)).mean(axis=0)
    got = serve(export_dir)([example(), example(log.num_users), example(-3)])
    assert_top_k(got["top_k_items"], got["top_k_scores"], np.tile(cold @ model.item_embeddings().T, (3, 1)))

    # the ANN signatures
    emb = serve(export_dir, "user_embedding")([example(u) for u in users] + [example()])["user_embedding"]
    np.testing.assert_allclose(emb, np.vstack([model.user_embeddings(users), cold]), atol=1e-6)
    table = serve(export_dir, "item_embeddings")([b""])
    np.testing.assert_allclose(table["item_embeddings"], model.item_embeddings(), atol=1e-6)
    np.testing.assert_array_equal(table["item_ids"].astype(str), item_ids)


def test_vbpr_exports_its_features_as_a_fixed_item_table_and_cold_items_score_by_features(vbpr, tmp_path):
    assert vbpr.warm_items.numpy()[50:].sum() == 0 and vbpr.warm_items.numpy()[:50].sum() > 0  # cold items exist
    users = np.arange(vbpr.num_users)
    got = serve(export_topk_model(vbpr, str(tmp_path / "1"), k=K), "scores")([example(u) for u in users])["scores"]
    np.testing.assert_allclose(got, vbpr.score(users), atol=1e-5)
    # a cold item's served score is the content part θ_u·(E f_i) + β'·f_i alone (cold_start="features")
    f = vbpr.item_features.numpy()[50:]
    content = vbpr.theta_user.numpy() @ (f @ vbpr.projection.numpy()).T + f @ vbpr.feature_bias.numpy()
    np.testing.assert_allclose(got[:, 50:], content, atol=1e-5)


def test_bm3_exports_predicted_tables_and_cold_items_score_by_their_modality_view(bm3, tmp_path):
    assert bm3.warm_items.numpy()[50:].sum() == 0 and bm3.warm_items.numpy()[:50].sum() > 0  # cold items exist
    users = np.arange(bm3.num_users)
    got = serve(export_topk_model(bm3, str(tmp_path / "1"), k=K), "scores")([example(u) for u in users])["scores"]
    np.testing.assert_allclose(got, bm3.score(users), atol=1e-5)
    q = bm3.alignment.predictor
    predict = lambda x: x @ q.kernel.numpy() + q.bias.numpy()  # noqa: E731
    modality = bm3.item_features.numpy()[50:] @ bm3.projection.kernel.numpy() + bm3.projection.bias.numpy()
    np.testing.assert_allclose(got[:, 50:], predict(bm3.propagated_users.numpy()) @ predict(modality).T, atol=1e-4)


def test_lightgcn_exports_the_propagated_tables(lightgcn, tmp_path):
    ego = lightgcn.item_embedding.embeddings.numpy()
    assert np.abs(lightgcn.item_embeddings() - ego).max() > 1e-3  # the mutation would be visible
    table = serve(export_topk_model(lightgcn, str(tmp_path / "1")), "item_embeddings")([b""])["item_embeddings"]
    np.testing.assert_allclose(table, lightgcn.item_embeddings(), atol=1e-6)


def test_sasrec_encodes_recent_items_in_the_graph(sasrec, log, tmp_path):
    export_dir = export_topk_model(sasrec, str(tmp_path / "1"), k=K, item_ids=np.arange(100, 100 + log.num_items))
    users = np.array([0, 5, 21])
    recents = [recent_items(log, u) for u in users]
    assert all(len(r) > sasrec.max_len for r in recents)  # the export must truncate
    scores = sasrec.score(users, history=log)
    got = serve(export_dir)([example(recent=r) for r in recents])
    assert_top_k(got["top_k_items"], got["top_k_scores"], scores)
    np.testing.assert_array_equal(got["top_k_item_ids"], got["top_k_items"] + 100)
    emb = serve(export_dir, "user_embedding")([example(recent=r) for r in recents])["user_embedding"]
    np.testing.assert_allclose(emb, sasrec.user_embeddings(users, history=log), atol=1e-5)
    table = serve(export_dir, "item_embeddings")([b""])["item_embeddings"]
    np.testing.assert_allclose(table, sasrec.item_embeddings(), atol=1e-6)

    # exclusion, and a user with no recent items = a user absent from the history
    exclude = got["top_k_items"][:, :2]
    got = serve(export_dir)([example(recent=r, exclude=e) for r, e in zip(recents, exclude)])
    masked = scores.copy()
    np.put_along_axis(masked, exclude, -np.inf, axis=1)
    assert_top_k(got["top_k_items"], got["top_k_scores"], masked)
    empty = log.select(np.zeros(len(log), bool))
    got = serve(export_dir)([example(), example(user=3)])
    assert_top_k(got["top_k_items"], got["top_k_scores"], sasrec.score(np.array([0, 3]), history=empty))

    # sequence_length reads fewer of the latest items
    short = serve(export_topk_model(sasrec, str(tmp_path / "2"), k=K, sequence_length=1))
    got = short([example(recent=r) for r in recents])
    want = serve(export_dir)([example(recent=r[-1:]) for r in recents])
    np.testing.assert_array_equal(got["top_k_items"], want["top_k_items"])


def test_nova_exports_its_candidate_table_with_cold_items_scored_by_features(log, tmp_path):
    from tfjoint.layers.multi_modal import NoninvasiveSelfAttention

    features = np.random.default_rng(0).standard_normal((log.num_items, 6)).astype(np.float32)
    model = NoninvasiveSelfAttention(log.num_items, item_features=features, max_len=3, hidden_dim=8, num_blocks=1, seed=0)
    model.fit(log.select(log.items < 50), epochs=1, batch_size=64)  # items 50.. are cold
    export_dir = export_topk_model(model, str(tmp_path / "1"), k=K)
    table = serve(export_dir, "item_embeddings")([b""])["item_embeddings"]
    np.testing.assert_allclose(table, model.item_embeddings(), atol=1e-5)
    np.testing.assert_allclose(table[50:], features[50:] @ model.content_projection.kernel.numpy(), atol=1e-5)
    users = np.array([0, 5])
    got = serve(export_dir)([example(recent=recent_items(log, u)) for u in users])
    assert_top_k(got["top_k_items"], got["top_k_scores"], model.score(users, history=log))


def test_mmmlp_exports_its_mixers_and_candidate_table_with_cold_items_scored_by_features(log, tmp_path):
    from tfjoint.layers.multi_modal import MultiModalMultilayerPerceptron

    features = np.random.default_rng(0).standard_normal((log.num_items, 6)).astype(np.float32)
    model = MultiModalMultilayerPerceptron(log.num_items, item_features=features, modality_dims=[2, 4], max_len=3,
                                           hidden_dim=8, num_blocks=1, expansion=2, seed=0)
    model.fit(log.select(log.items < 50), epochs=1, batch_size=64)  # items 50.. are cold
    export_dir = export_topk_model(model, str(tmp_path / "1"), k=K)
    table = serve(export_dir, "item_embeddings")([b""])["item_embeddings"]
    np.testing.assert_allclose(table[50:], features[50:] @ model.content_projection.kernel.numpy(), atol=1e-5)
    users = np.array([0, 5])
    got = serve(export_dir)([example(recent=recent_items(log, u)) for u in users])
    assert_top_k(got["top_k_items"], got["top_k_scores"], model.score(users, history=log))


def test_mbstr_encodes_recent_items_with_their_behaviors_in_the_graph(log, tmp_path):
    model = MultiBehaviorSequentialTransformer(log.num_items, max_len=6, hidden_dim=8, num_blocks=1, seed=0)
    model.fit(log, epochs=1, batch_size=16)
    export_dir = export_topk_model(model, str(tmp_path / "1"), k=K)
    users = np.array([0, 5, 21])
    rows = log.sorted()
    events = [(rows.items[rows.users == u], rows.behaviors[rows.users == u]) for u in users]
    assert all(len(i) > model.max_len for i, _ in events)  # the export must truncate
    got = serve(export_dir)([example(recent=i, behaviors=b) for i, b in events])
    assert_top_k(got["top_k_items"], got["top_k_scores"], model.score(users, history=log))
    # without recent_behaviors every item counts as the target behavior
    as_target = type(log)(log.spec, log.users, log.items, np.full(len(log), log.spec.target_index), log.timestamps, log.num_users, log.num_items)
    got = serve(export_dir)([example(recent=i) for i, _ in events])
    assert_top_k(got["top_k_items"], got["top_k_scores"], model.score(users, history=as_target))
    # an out-of-range pair is dropped, the rest kept in order
    items, behaviors = events[0]
    got = serve(export_dir)([example(recent=[*items, 10**6], behaviors=[*behaviors, 0]), example(recent=[*items, 1], behaviors=[*behaviors, 9])])
    assert_top_k(got["top_k_items"], got["top_k_scores"], model.score(users[[0, 0]], history=log))


def test_item_pop_and_ease(log, tmp_path):
    pop = ItemPopularity(log.num_items)
    pop.fit(log)
    best = int(np.argmax(pop.counts))
    got = serve(export_topk_model(pop, str(tmp_path / "pop"), k=K))([example(0), example(), example(1, exclude=[best])])
    scores = pop.score(np.arange(3))
    scores[2, best] = -np.inf
    np.testing.assert_array_equal(got["top_k_items"], np.argsort(-scores, axis=1, kind="stable")[:, :K])

    for max_items in (None, 20):
        ease = EmbarrassinglyShallowAutoencoder(log.num_items, l2_reg=10.0, max_items=max_items)
        ease.fit(log)
        export_dir = export_topk_model(ease, str(tmp_path / f"ease{max_items}"), k=K)
        assert set(tf.saved_model.load(export_dir).signatures) == {"serving_default", "scores"}
        users = np.array([2, 30])
        rows = log.select(log.behaviors == log.spec.target_index)
        recents = [rows.items[rows.users == u] for u in users]  # repeats count once: X is binary
        got = serve(export_dir)([example(recent=np.concatenate([r, r[:2], [-1, 99]])) for r in recents])
        assert_top_k(got["top_k_items"], got["top_k_scores"], ease.score(users))


def test_arguments_and_unsupported_models(bpr, tmp_path):
    with pytest.raises(ValueError, match="k must be <= num_items=60"):
        export_topk_model(bpr, str(tmp_path / "a"), k=61)
    with pytest.raises(ValueError, match="sequence_length is for sequence models"):
        export_topk_model(bpr, str(tmp_path / "b"), sequence_length=3)
    with pytest.raises(ValueError, match=r"item_ids must have shape \(60,\)"):
        export_topk_model(bpr, str(tmp_path / "c"), item_ids=np.arange(3))
    with pytest.raises(ValueError, match="Received: str"):
        export_topk_model("not a model", str(tmp_path / "d"))
    with pytest.raises(ValueError, match="exports after fit"):
        export_topk_model(EmbarrassinglyShallowAutoencoder(60), str(tmp_path / "e"))


def test_push_picks_a_new_integer_version(bpr, tmp_path):
    first = push(bpr, str(tmp_path), "topk", version=3)
    assert first == str(tmp_path / "topk" / "3") and os.path.exists(os.path.join(first, "saved_model.pb"))
    second = push(bpr, str(tmp_path), "topk")
    assert int(os.path.basename(second)) > 3
    assert sorted(os.listdir(tmp_path / "topk")) == sorted(["3", os.path.basename(second)])
    with pytest.raises(ValueError, match="version must be a new"):
        push(bpr, str(tmp_path), "topk", version=3)


def test_original_user_ids_are_looked_up_in_the_graph_and_scores_cover_every_item(log, tmp_path):
    model = BPRMatrixFactorization(log.num_users, log.num_items, embedding_dim=8, seed=0)
    model.fit(log, epochs=1, batch_size=64)
    user_ids = np.array([f"user-{u}" for u in range(log.num_users)])
    loaded = tf.saved_model.load(export_topk_model(model, str(tmp_path / "m"), k=K, user_ids=user_ids))

    def by_id(user_id):
        ex = tf.train.Example()
        ex.features.feature["user_id"].bytes_list.value.append(user_id.encode())
        return ex.SerializeToString()

    users = [3, 17, 0]
    named = loaded.signatures["scores"](examples=tf.constant([by_id(f"user-{u}") for u in users]))["scores"]
    np.testing.assert_allclose(named.numpy(), model.score(np.array(users)), atol=1e-5)
    # An id outside the vocabulary is a cold user: the mean user vector, as a request without a user.
    cold = loaded.signatures["scores"](examples=tf.constant([by_id("nobody"), example()]))["scores"].numpy()
    np.testing.assert_allclose(cold[0], cold[1], atol=1e-6)
    assert not np.allclose(cold[0], named.numpy()[0])
    top = loaded.signatures["serving_default"](examples=tf.constant([by_id("user-3"), example(3)]))
    np.testing.assert_array_equal(top["top_k_items"].numpy()[0], top["top_k_items"].numpy()[1])
    with pytest.raises(ValueError, match="user_ids must be unique"):
        export_topk_model(model, str(tmp_path / "bad"), user_ids=np.array(["a"] * log.num_users))
