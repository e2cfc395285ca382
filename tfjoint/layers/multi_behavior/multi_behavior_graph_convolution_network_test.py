import keras
import numpy as np
import pytest

from tfjoint.features.interactions import InteractionLog, InteractionSpec
from tfjoint.layers.multi_behavior import MultiBehaviorGraphConvolutionNetwork
from tfjoint.layers.multi_behavior.multi_behavior_graph_convolution_network import behavior_importance

SPEC = InteractionSpec("toy", ("view", "cart", "buy"), "buy")
# (user, item, behavior): user 0 views item 1 twice (one distinct pair), user 3 only buys.
EVENTS = [
    (0, 0, 0), (0, 1, 0), (0, 1, 0), (0, 2, 0), (1, 1, 0), (1, 3, 0), (2, 0, 0), (2, 4, 0), (2, 1, 0),
    (0, 1, 1), (0, 2, 1), (1, 3, 1), (2, 0, 1), (2, 1, 1),
    (0, 1, 2), (1, 3, 2), (2, 0, 2), (3, 2, 2), (0, 2, 2),
]


def toy_log() -> InteractionLog:
    u, i, b = (np.array(c) for c in zip(*EVENTS))
    return InteractionLog(SPEC, u, i, b, np.arange(len(u)), num_users=4, num_items=5)


def toy_model(item_graph="binary", lamb=0.3, **kwargs):
    model = MultiBehaviorGraphConvolutionNetwork(
        num_users=4, num_items=5, embedding_dim=3, lamb=lamb, item_graph=item_graph, seed=0, **kwargs
    )
    model.behavior_weights.assign([1.0, 2.0, 0.5])  # non-uniform: α differs from n_ut / Σ n
    model.set_graph(toy_log())
    return model


def dense_reference(model, item_graph):
    """p*, q*, [z_t], [s_t] and the scores, from dense matrices and the paper's equations."""
    e_u, e_i = model.user_embedding.embeddings.numpy(), model.item_embedding.embeddings.numpy()
    w = model.behavior_weights.numpy()
    r = np.zeros((3, 4, 5))
    for u, i, b in EVENTS:
        r[b, u, i] = 1.0
    n = r.sum(2).T  # (users, T)
    alpha = w * n / ((w * n).sum(1, keepdims=True) + 1e-8)
    inv_n = np.where(n > 0, 1 / np.maximum(n, 1), 0)
    p, z, s = 0.0, [], []
    for t in range(3):
        c = r[t].T @ r[t]
        np.fill_diagonal(c, 0)
        if item_graph == "binary":
            c = (c > 0).astype(float)
        degree = c.sum(1, keepdims=True)
        a = np.where(degree > 0, c / np.maximum(degree, 1), 0)
        s_t = np.concatenate([e_i, a @ e_i @ model.item_item_kernels[t].numpy()], 1)
        p = p + alpha[:, t : t + 1] * inv_n[:, t : t + 1] * (r[t] @ e_i)
        z.append(inv_n[:, t : t + 1] * (r[t] @ s_t) @ model.behavior_kernels[t].numpy())
        s.append(s_t)
    kernel = model.user_item_kernel.numpy()
    user = np.concatenate([e_u, p @ kernel], 1)
    item = np.concatenate([e_i, r[2].T @ e_u @ kernel], 1)  # q_i sums the buyers of i
    lamb = model.lamb
    scores = lamb * user @ item.T + (1 - lamb) / 3 * sum(z_t @ s_t.T for z_t, s_t in zip(z, s))
    return user, item, z, s, scores


def test_behavior_importance_by_hand():
    # user 0: counts (3, 1, 2), w (1, 2, 0.5): w n = (3, 2, 1) / 6; user 1 has no event: zeros
    alpha = np.asarray(behavior_importance(np.array([[3, 1, 2], [0, 0, 0]]), np.array([1.0, 2.0, 0.5])))
    np.testing.assert_allclose(alpha, [[0.5, 1 / 3, 1 / 6], [0, 0, 0]], rtol=1e-6)


@pytest.mark.parametrize("item_graph", ["binary", "counts"])
def test_one_propagation_step_matches_dense_numpy(item_graph):
    model = toy_model(item_graph)
    user, item, z, s, _ = dense_reference(model, item_graph)
    got_user, got_item, got_z, got_s = model.towers(training=False)
    np.testing.assert_allclose(np.asarray(got_user), user, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_item), item, rtol=1e-5, atol=1e-6)
    for t in range(3):
        np.testing.assert_allclose(np.asarray(got_s[t]), s[t], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(got_z[t]), z[t], rtol=1e-5, atol=1e-6)


def test_score_is_lambda_user_item_plus_one_minus_lambda_item_item():
    model = toy_model("binary", lamb=0.3)
    scores = dense_reference(model, "binary")[-1]
    got = model.score(np.array([0, 2, 3]))
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, scores[[0, 2, 3]], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="users must lie in"):
        model.score(np.array([4]))


def test_batch_loss_is_bpr_plus_the_codes_l2_on_the_final_features():
    model = toy_model("binary", lamb=0.3, l2_reg=0.1, message_dropout=0.0, node_dropout=0.0)
    user, item, _, _, scores = dense_reference(model, "binary")
    users, positives, negatives = np.array([0, 2]), np.array([1, 0]), np.array([4, 3])
    bpr = np.mean(np.log1p(np.exp(scores[users, negatives] - scores[users, positives])))
    reg = (2 * (user[users] ** 2).sum() + (item[positives] ** 2).sum() + (item[negatives] ** 2).sum()) / 2
    loss = float(model.batch_loss(users, positives, negatives, None))
    assert loss == pytest.approx(bpr + 0.1 * reg, rel=1e-5)


def test_validation_keeps_the_best_epoch_and_reload_gives_the_same_scores(tmp_path):
    model = MultiBehaviorGraphConvolutionNetwork(num_users=4, num_items=5, embedding_dim=3, seed=0)
    seen = []

    def validate(m):
        seen.append([w.copy() for w in m.get_weights()])
        return [0.1, 0.7, 0.4][len(seen) - 1]

    history = model.fit(toy_log(), validate=validate, epochs=3, batch_size=2, learning_rate=0.05)
    assert history["best_epoch"] == 2 and history["epochs_run"] == 3
    for kept, best in zip(model.get_weights(), seen[1]):
        np.testing.assert_array_equal(kept, best)
    assert not np.array_equal(seen[1][0], seen[2][0])
    path = tmp_path / "mbgcn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is MultiBehaviorGraphConvolutionNetwork and loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-6)


def test_training_raises_the_margin_of_the_bought_items():
    log = toy_log()
    model = MultiBehaviorGraphConvolutionNetwork(num_users=4, num_items=5, embedding_dim=4, seed=0)
    bought = log.target_rows()

    def margin():
        scores = model.score(np.arange(4))
        return float(scores[bought.users, bought.items].mean() - scores.mean())

    before = margin()
    model.fit(log, epochs=15, batch_size=8, learning_rate=0.05)
    assert margin() > before + 0.1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="lamb must lie in"):
        MultiBehaviorGraphConvolutionNetwork(num_users=2, num_items=2, lamb=1.5)
    with pytest.raises(ValueError, match="item_graph must be one of"):
        MultiBehaviorGraphConvolutionNetwork(num_users=2, num_items=2, item_graph="dense")
    with pytest.raises(ValueError, match="loss='bpr'"):
        MultiBehaviorGraphConvolutionNetwork(num_users=2, num_items=2, loss="in_batch_softmax")
    with pytest.raises(ValueError, match="node_dropout must lie in"):
        MultiBehaviorGraphConvolutionNetwork(num_users=2, num_items=2, node_dropout=1.0)
    with pytest.raises(ValueError, match="num_behaviors=2"):
        MultiBehaviorGraphConvolutionNetwork(num_users=4, num_items=5, num_behaviors=2).fit(toy_log())
