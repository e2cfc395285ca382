import numpy as np
import pytest

from tfjoint.datasets.multimodal import MultiModalLog, synthetic_multimodal


def test_same_seed_same_log_and_the_sizes_asked_for():
    a = synthetic_multimodal(30, 50, signal=0.5, seed=3, feature_dim=6, buys_per_user=4, cold_fraction=0.2)
    b = synthetic_multimodal(30, 50, signal=0.5, seed=3, feature_dim=6, buys_per_user=4, cold_fraction=0.2)
    np.testing.assert_array_equal(a.log.items, b.log.items)
    np.testing.assert_array_equal(a.item_features, b.item_features)
    assert a.item_features.shape == (50, 6) and a.item_features.dtype == np.float32
    assert len(a.cold_items) == 10 and len(np.unique(a.cold_items)) == 10
    assert len(a.log) == 30 * 4 and a.log.spec.behaviors == ("buy",)
    # each user buys distinct items
    assert len(np.unique(a.log.users * 50 + a.log.items)) == len(a.log)


def _co_buy_feature_correlation(signal):
    """Correlation, over item pairs, of how often two items are bought by the same user and
    the cosine similarity of their features: items with close preferences q_i are co-bought."""
    data = synthetic_multimodal(2000, 200, signal=signal, seed=0, feature_dim=16, buys_per_user=10, cold_fraction=0.0)
    r = np.zeros((2000, 200))
    r[data.log.users, data.log.items] = 1.0
    co = r.T @ r
    f = data.item_features / np.linalg.norm(data.item_features, axis=1, keepdims=True)
    upper = np.triu_indices(200, k=1)
    return np.corrcoef(co[upper], (f @ f.T)[upper])[0, 1]


def test_features_carry_the_signal_at_one_and_nothing_at_zero():
    assert _co_buy_feature_correlation(1.0) > 0.3
    assert abs(_co_buy_feature_correlation(0.0)) < 0.05


def test_features_have_unit_variance_at_every_signal():
    for signal in (0.0, 0.6, 1.0):
        f = synthetic_multimodal(10, 4000, signal=signal, seed=1, buys_per_user=1).item_features
        assert f.var() == pytest.approx(1.0, abs=0.1)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="signal must lie in"):
        synthetic_multimodal(5, 5, signal=1.5, seed=0)
    with pytest.raises(ValueError, match="cold_fraction must lie in"):
        synthetic_multimodal(5, 5, signal=1.0, seed=0, cold_fraction=1.0)
    with pytest.raises(ValueError, match="buys_per_user must lie in"):
        synthetic_multimodal(5, 5, signal=1.0, seed=0, buys_per_user=6)
    log = synthetic_multimodal(5, 5, signal=1.0, seed=0, buys_per_user=2).log
    with pytest.raises(ValueError, match=r"item_features must have shape \(num_items=5"):
        MultiModalLog(log, np.zeros((4, 2)), np.array([0]))
    with pytest.raises(ValueError, match=r"cold_items must lie in \[0, 5\)"):
        MultiModalLog(log, np.zeros((5, 2)), np.array([5]))


def test_movielens_features_are_genres_and_a_standardized_year():
    from tfjoint.datasets.multimodal import movielens_multimodal

    try:
        data = movielens_multimodal(cold_fraction=0.2, seed=0)
    except RuntimeError as e:
        pytest.skip(f"MovieLens-100K is unreachable: {e}")
    assert data.item_features.shape == (1682, 20) and len(data.cold_items) == 336
    # item 1 (index 0) is Toy Story (1995): Animation, Children's, Comedy
    assert np.flatnonzero(data.item_features[0, :19]).tolist() == [3, 4, 5]
    years = data.item_features[:, 19]
    assert abs(years.mean()) < 1e-4 and years.std() == pytest.approx(1.0, rel=1e-4)
