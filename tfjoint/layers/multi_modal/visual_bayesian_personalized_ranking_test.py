import keras
import numpy as np
import pytest

from tfjoint import catalog
from tfjoint.layers.multi_modal import VisualBayesianPersonalizedRanking
from tfjoint.layers.retrieval.conftest import make_log

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(6, 3)).astype(np.float32)
LOG = make_log([0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 3, 0], num_users=4, num_items=6)  # items 4, 5 cold


def set_random_weights(model, rng):
    for w in (model.gamma_user, model.gamma_item, model.theta_user, model.projection, model.feature_bias, model.item_bias):
        w.assign(rng.normal(size=w.shape).astype(np.float32))


def numpy_scores(model, gamma_item=None, item_bias=None):
    """x_ui = β_i + γ_u·γ_i + θ_u·(E f_i) + β'·f_i, with E f_i = f_i @ projection."""
    g_u, t_u = model.gamma_user.numpy(), model.theta_user.numpy()
    g_i = model.gamma_item.numpy() if gamma_item is None else gamma_item
    b_i = model.item_bias.numpy() if item_bias is None else item_bias
    f, e, b_p = model.item_features.numpy(), model.projection.numpy(), model.feature_bias.numpy()
    return b_i[None, :] + g_u @ g_i.T + t_u @ (f @ e).T + (f @ b_p)[None, :]


def test_score_is_the_papers_predictor():
    model = VisualBayesianPersonalizedRanking(4, 6, item_features=FEATURES, embedding_dim=2, content_dim=3, cold_start="none", seed=0)
    set_random_weights(model, np.random.default_rng(1))
    expected = numpy_scores(model)
    np.testing.assert_allclose(model.score(np.arange(4)), expected, rtol=1e-5, atol=1e-5)
    users, items = np.array([0, 3, 2]), np.array([5, 1, 1])
    np.testing.assert_allclose(model.pair_scores(users, items), expected[users, items], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.user_embeddings(np.arange(4)) @ model.item_embeddings().T, expected, rtol=1e-5, atol=1e-5)


def test_batch_loss_is_bpr_plus_the_three_l2_terms_per_example():
    model = VisualBayesianPersonalizedRanking(
        4, 6, item_features=FEATURES, embedding_dim=2, content_dim=3, l2_reg=0.1, bias_reg=0.2, projection_reg=0.3, seed=0
    )
    set_random_weights(model, np.random.default_rng(2))
    u, i, j = np.array([0, 2]), np.array([1, 3]), np.array([4, 4])
    x = numpy_scores(model)
    bpr = np.mean(np.log1p(np.exp(x[u, j] - x[u, i])))
    g_u, g_i, t_u = model.gamma_user.numpy(), model.gamma_item.numpy(), model.theta_user.numpy()
    b_i = model.item_bias.numpy()
    factors = (g_u[u] ** 2).sum() + (g_i[i] ** 2).sum() + (g_i[j] ** 2).sum() + (t_u[u] ** 2).sum()
    biases = (b_i[i] ** 2).sum() + (b_i[j] ** 2).sum()
    projection = (model.projection.numpy() ** 2).sum() + (model.feature_bias.numpy() ** 2).sum()
    expected = bpr + 0.5 * (0.1 * factors + 0.2 * biases + 0.3 * projection) / 2
    assert float(model.batch_loss(u, i, j)) == pytest.approx(expected, rel=1e-5)


def test_cold_items_are_scored_as_cold_start_says():
    scores = {}
    for mode in ("features", "mean", "none"):
        model = VisualBayesianPersonalizedRanking(4, 6, item_features=FEATURES, embedding_dim=2, content_dim=3, cold_start=mode, seed=0)
        model.fit(LOG, epochs=2, batch_size=4)
        np.testing.assert_array_equal(model.warm_items.numpy(), [1, 1, 1, 1, 0, 0])
        g, b = model.gamma_item.numpy().copy(), model.item_bias.numpy().copy()
        if mode == "features":
            g[4:], b[4:] = 0.0, 0.0
        elif mode == "mean":
            g[4:], b[4:] = g[:4].mean(0), b[:4].mean()
        scores[mode] = model.score(np.arange(4))
        np.testing.assert_allclose(scores[mode], numpy_scores(model, g, b), rtol=1e-5, atol=1e-5)
    # warm items score the same whatever the mode: only cold rows are replaced
    np.testing.assert_allclose(scores["features"][:, :4], scores["none"][:, :4], rtol=1e-5)


def test_cold_rows_are_never_trained_and_negatives_are_warm():
    model = VisualBayesianPersonalizedRanking(4, 6, item_features=FEATURES, embedding_dim=2, content_dim=3, seed=0)
    before = model.gamma_item.numpy().copy()
    model.fit(LOG, epochs=3, batch_size=2, learning_rate=0.05)
    after = model.gamma_item.numpy()
    np.testing.assert_array_equal(after[4:], before[4:])
    assert not np.allclose(after[:4], before[:4])


def test_without_gamma_and_item_bias_the_model_ranks_by_features_alone():
    features = FEATURES.copy()
    features[3] = features[0]  # warm item 0 and warm item 3 share their features
    features[5] = features[1]  # and so do warm item 1 and cold item 5
    model = VisualBayesianPersonalizedRanking(
        4, 6, item_features=features, embedding_dim=0, content_dim=3, use_item_bias=False, seed=0
    )
    model.fit(LOG, epochs=5, batch_size=2, learning_rate=0.05)
    scores = model.score(np.arange(4))
    np.testing.assert_allclose(scores[:, 3], scores[:, 0], rtol=1e-6)
    np.testing.assert_allclose(scores[:, 5], scores[:, 1], rtol=1e-6)
    t_u, e, b_p = model.theta_user.numpy(), model.projection.numpy(), model.feature_bias.numpy()
    np.testing.assert_allclose(scores, t_u @ (features @ e).T + features @ b_p, rtol=1e-5, atol=1e-5)


def test_keras_save_and_reload_restore_features_warm_items_and_scores(tmp_path):
    model = VisualBayesianPersonalizedRanking(4, 6, item_features=FEATURES, embedding_dim=2, content_dim=3, cold_start="mean", seed=0)
    model.fit(LOG, epochs=2, batch_size=4)
    path = tmp_path / "vbpr.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is VisualBayesianPersonalizedRanking and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.item_features.numpy(), FEATURES)
    np.testing.assert_array_equal(loaded.warm_items.numpy(), [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-6)


def test_registered_as_a_multi_modal_retrieval_model():
    entry = catalog.get("vbpr", slot="retrieval_model")
    assert entry.cls is VisualBayesianPersonalizedRanking and entry.family == "multi_modal"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "VBPR needs item_features or feature_dim"),
        ({"item_features": np.zeros((5, 3))}, r"item_features must have shape \(num_items=6"),
        ({"item_features": np.full((6, 2), np.nan)}, "item_features must be finite"),
        ({"item_features": FEATURES, "feature_dim": 4}, "feature_dim must equal item_features.shape"),
        ({"feature_dim": 0}, "feature_dim must be >= 1"),
        ({"feature_dim": 3, "embedding_dim": -1}, "embedding_dim must be >= 0"),
        ({"feature_dim": 3, "content_dim": 0}, "content_dim must be >= 1"),
        ({"feature_dim": 3, "bias_reg": -1.0}, "bias_reg must be >= 0"),
        ({"feature_dim": 3, "cold_start": "zero"}, "cold_start must be one of"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        VisualBayesianPersonalizedRanking(4, 6, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_fit_arguments_raise_before_training():
    model = VisualBayesianPersonalizedRanking(4, 6, feature_dim=3)
    with pytest.raises(ValueError, match="num_items=7"):
        model.fit(make_log([0, 1], [0, 6], num_users=4))
    with pytest.raises(ValueError, match=r"feature_dim must equal item_features.shape\[1\]=4"):
        model.fit(LOG, item_features=np.zeros((6, 4)))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.fit(LOG, batch_size=0)


def clustered(num_users=40, num_items=60, num_cold=12, noise=0.3, seed=0):
    """Two user groups; group g buys items whose feature 0 has sign (-1)^g. The last
    ``num_cold`` items get no training rows. Returns (train log, features, cold items)."""
    rng = np.random.default_rng(seed)
    side = np.where(np.arange(num_items) % 2 == 0, 1.0, -1.0)
    features = np.concatenate([side[:, None], rng.normal(size=(num_items, 3))], axis=1) + noise * rng.normal(size=(num_items, 4))
    warm = np.arange(num_items - num_cold)
    users, items = [], []
    for u in range(num_users):
        liked = warm[side[warm] == (1.0 if u % 2 == 0 else -1.0)]
        users += [u] * 8
        items += list(rng.choice(liked, size=8, replace=False))
    return make_log(users, items, num_users=num_users, num_items=num_items), features.astype(np.float32), np.arange(num_items - num_cold, num_items), side


def cold_auc(scores, cold, side):
    """Per user, the fraction of (liked cold item, other cold item) pairs ranked in order."""
    wins = []
    for u in range(len(scores)):
        mine = side[cold] == (1.0 if u % 2 == 0 else -1.0)
        s = scores[u, cold]
        wins.append((s[mine][:, None] > s[~mine][None, :]).mean())
    return float(np.mean(wins))


def test_learns_to_rank_cold_items_from_the_features_that_carry_the_signal():
    train, features, cold, side = clustered()
    model = VisualBayesianPersonalizedRanking(40, 60, item_features=features, embedding_dim=4, content_dim=4, seed=0)
    before = cold_auc(model.score(np.arange(40)), cold, side)
    model.fit(train, epochs=30, batch_size=32, learning_rate=0.05, seed=0)
    after = cold_auc(model.score(np.arange(40)), cold, side)
    assert after > 0.95 and after > before + 0.2
    # the same log with features that carry nothing: cold items are ranked at chance
    noise = np.random.default_rng(1).normal(size=features.shape).astype(np.float32)
    model = VisualBayesianPersonalizedRanking(40, 60, item_features=noise, embedding_dim=4, content_dim=4, seed=0)
    model.fit(train, epochs=30, batch_size=32, learning_rate=0.05, seed=0)
    assert abs(cold_auc(model.score(np.arange(40)), cold, side) - 0.5) < 0.2
