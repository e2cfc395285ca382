import keras
import numpy as np
import pytest

from tfjoint.datasets.interactions import synthetic_behaviors
from tfjoint.layers.multi_behavior import ContrastiveMetaLearning
from tfjoint.layers.multi_behavior.contrastive_meta_learning import info_nce
from tfjoint.layers.multi_behavior.multi_behavior_graph_convolution_network_test import EVENTS, toy_log


def toy_model(**kwargs):
    model = ContrastiveMetaLearning(num_users=4, num_items=5, embedding_dim=3, num_layers=2, seed=0, **kwargs)
    model.set_graph(toy_log())
    return model


def dense_views(model):
    """Per behavior the LightGCN view ``mean_k Â_t^k E`` from dense matrices."""
    e = np.concatenate([model.user_embedding.embeddings.numpy(), model.item_embedding.embeddings.numpy()])
    views = []
    for t in range(3):
        r = np.zeros((4, 5))
        for u, i, b in EVENTS:
            r[u, i] = r[u, i] or b == t
        a = np.block([[np.zeros((4, 4)), r], [r.T, np.zeros((5, 5))]])
        d = a.sum(1)
        inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1)), 0)
        a = inv[:, None] * a * inv[None, :]
        layers = [e, a @ e, a @ a @ e]
        final = np.mean(layers, 0)
        views.append((final[:4], final[4:]))
    return views


def numpy_info_nce(a, p, tau):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    logits = a @ p.T / tau
    return -np.log(np.exp(np.diag(logits)) / np.exp(logits).sum(1))


def numpy_meta(model, x):
    (w1, b1), (w2, b2) = [(layer.kernel.numpy(), layer.bias.numpy()) for layer in model.meta_network.layers]
    return 1 / (1 + np.exp(-(np.maximum(x @ w1 + b1, 0) @ w2 + b2)))[:, 0]


def test_info_nce_matches_numpy_with_temperature():
    rng = np.random.default_rng(0)
    a, p = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    for tau in (0.2, 1.0):
        np.testing.assert_allclose(np.asarray(info_nce(a, p, tau)), numpy_info_nce(a, p, tau), rtol=1e-5)


def test_each_behavior_view_is_lightgcn_on_that_behaviors_graph_and_scores_use_their_mean():
    model = toy_model()
    views = dense_views(model)
    got = model.views(model.user_embedding.embeddings, model.item_embedding.embeddings)
    for (u, i), (gu, gi) in zip(views, got):
        np.testing.assert_allclose(np.asarray(gu), u, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(gi), i, rtol=1e-5, atol=1e-6)
    mean_u, mean_i = np.mean([v[0] for v in views], 0), np.mean([v[1] for v in views], 0)
    np.testing.assert_allclose(model.score(np.arange(4)), mean_u @ mean_i.T, rtol=1e-5, atol=1e-6)


def test_contrast_weighs_each_auxiliary_behavior_per_distinct_user_by_the_meta_network():
    model = toy_model(temperature=0.3)
    views = dense_views(model)
    losses, weights = model.contrast(
        model.views(model.user_embedding.embeddings, model.item_embedding.embeddings), np.array([2, 0, 2, 1])
    )
    users = [2, 0, 1]  # distinct, first-seen order
    assert np.asarray(losses).shape == (3, 2)
    for k in range(2):
        anchor, target = views[k][0][users], views[2][0][users]
        loss = numpy_info_nce(anchor, target, 0.3)
        np.testing.assert_allclose(np.asarray(losses)[:, k], loss, rtol=1e-4)
        x = np.concatenate([anchor, target, loss[:, None]], 1)
        np.testing.assert_allclose(np.asarray(weights)[:, k], numpy_meta(model, x), rtol=1e-4)


def test_batch_loss_is_target_bpr_plus_beta_meta_weighted_contrast_plus_l2():
    model = toy_model(contrast_weight=0.7, l2_reg=0.1, temperature=0.5)
    views = dense_views(model)
    users, positives, negatives = np.array([0, 2, 1]), np.array([1, 0, 3]), np.array([4, 3, 0])
    u = views[2][0]
    scores = np.mean([v[0] for v in views], 0) @ np.mean([v[1] for v in views], 0).T
    bpr = np.mean(np.log1p(np.exp(scores[users, negatives] - scores[users, positives])))
    contrast = 0.0
    for k in range(2):
        loss = numpy_info_nce(views[k][0][users], u[users], 0.5)
        w = numpy_meta(model, np.concatenate([views[k][0][users], u[users], loss[:, None]], 1))
        contrast = contrast + w * loss
    e_u, e_i = model.user_embedding.embeddings.numpy(), model.item_embedding.embeddings.numpy()
    reg = 0.5 * ((e_u[users] ** 2).sum() + (e_i[positives] ** 2).sum() + (e_i[negatives] ** 2).sum()) / 3
    got = float(model.batch_loss(users, positives, negatives, None))
    assert got == pytest.approx(bpr + 0.7 * contrast.mean() + 0.1 * reg, rel=1e-4)


def test_the_meta_network_learns_only_through_the_look_ahead():
    batch = np.array([0, 2, 1]), np.array([1, 0, 3]), np.array([4, 3, 0])
    _, grads = toy_model(contrast_weight=0.5, meta_step=0.5).meta_gradients(*batch)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    assert max(float(np.abs(np.asarray(g)).max()) for g in grads) > 1e-6
    _, grads = toy_model(contrast_weight=0.5, meta_step=0.0).meta_gradients(*batch)
    assert max(float(np.abs(np.asarray(g)).max()) for g in grads) == 0.0
    model = toy_model()
    meta = {id(v) for v in model.meta_network.trainable_variables}
    assert meta and not meta & {id(v) for v in model.optimized_variables()}


def test_fit_moves_the_meta_network_and_reload_gives_the_same_scores(tmp_path):
    model = ContrastiveMetaLearning(num_users=4, num_items=5, embedding_dim=3, seed=0, meta_step=0.5)
    before = [w.copy() for w in model.meta_network.get_weights()]
    model.fit(toy_log(), epochs=2, batch_size=4, learning_rate=0.05)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.meta_network.get_weights()))
    path = tmp_path / "cml.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is ContrastiveMetaLearning and loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-6)


def test_fit_on_synthetic_behaviors_ranks_held_purchases_above_random():
    log = synthetic_behaviors(60, 40, signal=1.0, seed=0)
    buys = log.target_rows()
    held = np.zeros(len(buys.users), bool)
    held[np.unique(buys.users, return_index=True)[1]] = True  # first buy of each user held out
    train = log.select(~np.isin(np.arange(len(log.users)), np.flatnonzero(log.behaviors == log.spec.target_index)[held]))
    model = ContrastiveMetaLearning(num_users=log.num_users, num_items=log.num_items, embedding_dim=8, seed=0)
    model.fit(train, epochs=15, batch_size=64, learning_rate=0.02)
    trained = train.target_rows()
    scores = model.score(np.arange(log.num_users)).copy()
    scores[trained.users, trained.items] = -np.inf  # rank among the items not bought in training
    candidates = np.isfinite(scores).sum(1)[buys.users[held]]
    scores = scores[buys.users[held]]
    ranks = (scores > scores[np.arange(held.sum()), buys.items[held]][:, None]).sum(1)
    chance = np.mean(np.minimum(1.0, 10 / candidates))  # HR@10 of a random ranking (~0.28)
    assert np.mean(ranks < 10) > chance + 0.1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="loss='bpr'"):
        ContrastiveMetaLearning(num_users=2, num_items=2, loss="in_batch_softmax")
    with pytest.raises(ValueError, match="num_behaviors >= 2"):
        ContrastiveMetaLearning(num_users=2, num_items=2, num_behaviors=1)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveMetaLearning(num_users=2, num_items=2, temperature=0.0)
    with pytest.raises(ValueError, match="num_behaviors=2"):
        ContrastiveMetaLearning(num_users=4, num_items=5, num_behaviors=2).fit(toy_log())
