"""Tests of tfjoint.datasets.interactions: the file reader, Retailrocket, MovieLens, synthetic."""

import numpy as np
import pandas as pd
import pytest

from tfjoint.datasets import interactions, samples
from tfjoint.features.interactions import InteractionSpec

SPEC = InteractionSpec("toy", ("view", "buy"), "buy")
FRAME = pd.DataFrame(
    {"u": ["b", "a", "b"], "i": [30, 10, 20], "act": ["view", "buy", "buy"], "t": [5, 7, 6]}
)
COLUMNS = {"user": "u", "item": "i", "behavior": "act", "timestamp": "t"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_interactions_indexes_raw_ids(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    FRAME.to_csv(path, index=False) if suffix == ".csv" else FRAME.to_parquet(path, index=False)
    log = interactions.read_interactions(path, SPEC, **COLUMNS)
    assert (log.num_users, log.num_items) == (2, 3)
    assert list(log.user_ids) == ["a", "b"] and list(log.item_ids) == [10, 20, 30]
    np.testing.assert_array_equal(log.users, [1, 0, 1])
    np.testing.assert_array_equal(log.items, [2, 0, 1])
    np.testing.assert_array_equal(log.behaviors, [0, 1, 1])
    np.testing.assert_array_equal(log.timestamps, [5, 7, 6])


def test_read_interactions_keeps_given_index_spaces(tmp_path):
    path = tmp_path / "log.csv"
    FRAME.assign(u=[1, 0, 1]).to_csv(path, index=False)
    log = interactions.read_interactions(path, SPEC, **COLUMNS, num_users=4, num_items=31)
    assert (log.num_users, log.num_items) == (4, 31)
    np.testing.assert_array_equal(log.items, [30, 10, 20])
    with pytest.raises(ValueError, match=r"items ids must lie in \[0, 25\)"):
        interactions.read_interactions(path, SPEC, **COLUMNS, num_users=4, num_items=25)


def test_read_interactions_without_behavior_or_timestamp(tmp_path):
    path = tmp_path / "log.csv"
    FRAME.to_csv(path, index=False)
    log = interactions.read_interactions(path, SPEC, user="u", item="i", behavior=None, timestamp=None)
    np.testing.assert_array_equal(log.behaviors, [1, 1, 1])
    np.testing.assert_array_equal(log.timestamps, [0, 1, 2])


def test_read_interactions_errors_are_one_line(tmp_path):
    path = tmp_path / "log.csv"
    FRAME.to_csv(path, index=False)
    with pytest.raises(ValueError, match="has no column 'user'"):
        interactions.read_interactions(path, SPEC, item="i", behavior="act", timestamp="t")
    with pytest.raises(ValueError, match="unknown behavior 'view'"):
        interactions.read_interactions(path, InteractionSpec("x", ("cart", "buy"), "buy"), **COLUMNS)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    for bad in (broken, tmp_path / "absent.csv", tmp_path / "log.json"):
        with pytest.raises(ValueError) as e:
            interactions.read_interactions(bad, SPEC, **COLUMNS)
        assert "\n" not in str(e.value)


def _retailrocket():
    try:
        folder = samples.shared_data_dir() / interactions.RETAILROCKET_DIR
    except FileNotFoundError as e:
        pytest.skip(f"shared data absent: {e}")
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return interactions.load_retailrocket()


def test_load_retailrocket_counts():
    train, test_items = _retailrocket()
    assert (train.num_users, train.num_items, len(train)) == (2174, 30113, 97381)
    assert train.spec == interactions.RETAILROCKET
    counts = np.bincount(train.behaviors, minlength=3)
    assert dict(zip(train.spec.behaviors, counts.tolist())) == {"view": 75374, "cart": 12456, "buy": 9551}
    assert test_items.shape == (2174,) and (test_items >= 0).all()
    assert len(np.unique(train.of_behavior("buy").users)) == 2174
    # SSLRec's test buys are never in the training log, in any behavior.
    train_pairs = set(zip(train.users.tolist(), train.items.tolist()))
    assert not any((u, i) in train_pairs for u, i in enumerate(test_items.tolist()))


def test_movielens_behaviors_counts():
    try:
        log = interactions.movielens_behaviors()
    except RuntimeError as e:
        pytest.skip(f"MovieLens-100K is unreachable: {e}")
    assert (len(log), log.num_users, log.num_items) == (100_000, 943, 1682)
    assert np.bincount(log.behaviors).tolist() == [17_480, 27_145, 55_375]
    assert log.spec.target == "like" and log.user_ids[0] == 1 and log.item_ids[-1] == 1682


def _aux_hit_rate(log):
    """Share of buy events whose (user, item) also has a view or a cart."""
    aux = log.select(log.behaviors != log.spec.target_index)
    buys = log.target_rows()
    aux_pairs = set(zip(aux.users.tolist(), aux.items.tolist()))
    return np.mean([(u, i) in aux_pairs for u, i in zip(buys.users.tolist(), buys.items.tolist())])


def test_synthetic_signal_controls_what_auxiliary_behaviors_say_about_buys():
    logs = {s: interactions.synthetic_behaviors(200, 100, signal=s, seed=0) for s in (0.0, 0.5, 1.0)}
    rates = {s: _aux_hit_rate(log) for s, log in logs.items()}
    # signal 0: independent draws, so a buy meets its own views/carts by chance only:
    # P(item among ~25 distinct of 100) ~ 0.2-0.25 (the logits concentrate both a little).
    assert rates[0.0] < 0.35
    assert rates[0.0] + 0.1 < rates[0.5] < rates[1.0]
    assert rates[1.0] > 0.6


SMALL = {"views_per_user": 4, "carts_per_user": 2, "buys_per_user": 1}


def test_synthetic_is_seeded_and_shaped():
    a = interactions.synthetic_behaviors(5, 30, signal=0.3, seed=1, **SMALL)
    b = interactions.synthetic_behaviors(5, 30, signal=0.3, seed=1, **SMALL)
    c = interactions.synthetic_behaviors(5, 30, signal=0.3, seed=2, **SMALL)
    for name in ("users", "items", "behaviors", "timestamps"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.items, c.items)
    assert np.bincount(a.behaviors).tolist() == [20, 10, 5]
    for b_ in range(3):  # distinct items per (user, behavior)
        rows = a.select(a.behaviors == b_)
        assert len(set(zip(rows.users.tolist(), rows.items.tolist()))) == len(rows)
    with pytest.raises(ValueError, match="signal must lie in"):
        interactions.synthetic_behaviors(5, 30, signal=1.5, seed=0)
    with pytest.raises(ValueError, match="events per user"):
        interactions.synthetic_behaviors(5, 3, signal=0.5, seed=0)
