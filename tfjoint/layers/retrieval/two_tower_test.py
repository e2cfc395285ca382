import math

import keras
import numpy as np
import pytest

from tfjoint.layers.retrieval import BPRMatrixFactorization, LightGraphConvolutionNetwork
from tfjoint.layers.retrieval.conftest import in_cluster_auc, make_log
from tfjoint.layers.retrieval.two_tower import bpr_loss, sample_negatives


def softplus(x):
    return math.log1p(math.exp(x))


def test_bpr_loss_is_minus_log_sigmoid_of_the_margin():
    # margins s_ui - s_uj = 1 and 0.5: -mean log σ(margin)
    expected = (softplus(-1.0) + softplus(-0.5)) / 2
    assert float(bpr_loss(np.array([2.0, 0.5]), np.array([1.0, 0.0]))) == pytest.approx(expected, rel=1e-6)


def test_batch_loss_adds_half_the_squared_ego_norms_per_example():
    model = BPRMatrixFactorization(num_users=1, num_items=2, embedding_dim=1, l2_reg=0.1)
    model.user_embedding.embeddings.assign([[1.0]])
    model.item_embedding.embeddings.assign([[2.0], [1.0]])
    loss = model.batch_loss(np.array([0]), np.array([0]), np.array([1]), None)
    # s_ui = 2, s_uj = 1; reg = 0.5 * (1 + 4 + 1) / 1
    assert float(loss) == pytest.approx(softplus(-1.0) + 0.1 * 3.0, rel=1e-6)


def test_in_batch_softmax_with_logq_subtracts_log_frequency():
    model = BPRMatrixFactorization(num_users=2, num_items=2, embedding_dim=1, loss="in_batch_softmax", l2_reg=0.0, logq_correction=True)
    model.user_embedding.embeddings.assign([[1.0], [-0.5]])
    model.item_embedding.embeddings.assign([[1.0], [2.0]])
    log_q = np.log(np.array([0.25, 0.75], np.float32))
    loss = model.batch_loss(np.array([0, 1]), np.array([0, 1]), None, log_q)
    logits = np.array([[1.0, 2.0], [-0.5, -1.0]]) - log_q[None, :]  # 1.2139; plain 1.1437, + log q 1.3261
    expected = -np.mean([logits[r, r] - np.log(np.exp(logits[r]).sum()) for r in range(2)])
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_negatives_avoid_the_users_training_items():
    seen = np.sort(np.array([0 * 5 + 0, 0 * 5 + 1, 0 * 5 + 2, 0 * 5 + 3]))  # user 0 saw items 0-3
    negatives = sample_negatives(np.random.default_rng(0), np.zeros(200, np.int64), 5, seen)
    assert set(negatives.tolist()) == {4}


def mean_margin(model, log):
    scores = model.score(np.arange(20))
    positives = scores[log.users, log.items]
    return float(positives.mean() - scores.mean())


@pytest.mark.parametrize("cls", [BPRMatrixFactorization, LightGraphConvolutionNetwork])
def test_training_ranks_held_out_in_cluster_items_first(cls, clusters):
    train, held_out = clusters
    model = cls(num_users=20, num_items=20, embedding_dim=8, l2_reg=1e-4, seed=0)
    before = mean_margin(model, train)
    model.fit(train, epochs=30, batch_size=32, learning_rate=0.05, seed=0)
    assert mean_margin(model, train) > before + 0.5
    assert in_cluster_auc(model.score(np.arange(20)), held_out) > 0.95


def test_validation_keeps_the_weights_of_the_best_epoch(clusters):
    train, _ = clusters
    model = BPRMatrixFactorization(num_users=20, num_items=20, embedding_dim=4, seed=0)
    seen = []

    def validate(m):
        seen.append([w.copy() for w in m.get_weights()])
        return [0.1, 0.7, 0.4, 0.2][len(seen) - 1]

    history = model.fit(train, validate=validate, epochs=4, batch_size=16, learning_rate=0.05)
    assert history["best_epoch"] == 2 and history["validation"] == pytest.approx([0.1, 0.7, 0.4, 0.2])
    for kept, best, last in zip(model.get_weights(), seen[1], seen[3]):
        np.testing.assert_array_equal(kept, best)
        assert not np.array_equal(best, last)


@pytest.mark.parametrize("cls", [BPRMatrixFactorization, LightGraphConvolutionNetwork])
def test_keras_save_and_reload_give_the_same_scores(cls, clusters, tmp_path):
    train, _ = clusters
    model = cls(num_users=20, num_items=20, embedding_dim=4, loss="sampled_softmax", num_negatives=5, seed=0)
    model.fit(train, epochs=1, batch_size=64)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is cls and loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.score(np.arange(20)), model.score(np.arange(20)), rtol=1e-6)
    np.testing.assert_allclose(loaded.user_embeddings(np.arange(3)) @ loaded.item_embeddings().T, model.score(np.arange(3)), rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="loss must be one of"):
        BPRMatrixFactorization(num_users=2, num_items=2, loss="hinge")
    with pytest.raises(ValueError, match="num_items=3"):
        BPRMatrixFactorization(num_users=2, num_items=2).fit(make_log([0, 1], [0, 2]))
