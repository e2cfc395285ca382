import numpy as np
import pytest

from tfjoint.layers.retrieval import EmbarrassinglyShallowAutoencoder
from tfjoint.layers.retrieval.conftest import make_log
from tfjoint.layers.retrieval.embarrassingly_shallow_autoencoder import symmetric_inverse

X = np.array([[1, 1, 0, 0, 1], [0, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 1]])


def log_of(matrix, behaviors=None):
    users, items = np.nonzero(matrix)
    return make_log(users, items, behaviors=behaviors, num_users=matrix.shape[0], num_items=matrix.shape[1])


def closed_form(x, lam):
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p @ np.diag(1 / np.diag(p))
    return b


def test_weights_are_the_closed_form_with_a_zero_diagonal():
    model = EmbarrassinglyShallowAutoencoder(num_items=5, l2_reg=2.0)
    model.fit(log_of(X))
    b = closed_form(X.astype(np.float64), 2.0)
    np.testing.assert_allclose(np.diag(b), 0.0, atol=1e-12)
    np.testing.assert_allclose(model.weights, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.score(np.arange(6)), X @ b, rtol=1e-4, atol=1e-6)


def test_symmetric_inverse_mirrors_every_block():
    a = np.random.default_rng(0).normal(size=(7, 7))
    spd = (a @ a.T + 7 * np.eye(7)).astype(np.float32)
    np.testing.assert_allclose(symmetric_inverse(spd.copy(), block=3), np.linalg.inv(spd.astype(np.float64)), rtol=1e-4, atol=1e-6)


def test_max_items_solves_on_the_popular_items_and_ranks_the_others_last():
    model = EmbarrassinglyShallowAutoencoder(num_items=5, l2_reg=2.0, max_items=3)
    model.fit(log_of(X))
    kept = [0, 1, 2]  # 3, 3 and 4 users; item 4 has 3 users too but a later index; item 3 has 2
    np.testing.assert_array_equal(model.kept, kept)
    scores = model.score(np.arange(6))
    np.testing.assert_allclose(scores[:, kept], X[:, kept] @ closed_form(X[:, kept].astype(np.float64), 2.0), rtol=1e-4, atol=1e-6)
    assert (scores[:, [3, 4]].max(1) < scores[:, kept].min(1)).all()
    assert (scores[:, 4] > scores[:, 3]).all()  # among the others: by popularity


def test_score_reads_the_rows_of_history_and_the_trained_behaviors_only():
    views = np.zeros_like(X)
    views[0, 3] = 1
    train = log_of(X)
    model = EmbarrassinglyShallowAutoencoder(num_items=5, l2_reg=2.0)
    model.fit(train)
    both = make_log(
        np.concatenate([train.users, [0]]), np.concatenate([train.items, [3]]), behaviors=np.r_[train.behaviors, 0],
        num_users=6, num_items=5,
    )
    np.testing.assert_allclose(model.score(np.arange(6), history=both), model.score(np.arange(6)))
    more = X.copy()
    more[5, 0] = 1
    np.testing.assert_allclose(model.score(np.array([5]), history=log_of(more))[0], more[5] @ model.weights, rtol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="l2_reg must be >= 0"):
        EmbarrassinglyShallowAutoencoder(num_items=3, l2_reg=-1.0)
    with pytest.raises(ValueError, match="after fit"):
        EmbarrassinglyShallowAutoencoder(num_items=3).score(np.array([0]))
