"""Hand-computed splits, masks and ranks of tfjoint.retrieval.protocols."""

import math

import numpy as np
import pandas as pd
import pytest

from tfjoint.datasets import interactions
from tfjoint.features.interactions import InteractionLog, InteractionSpec
from tfjoint.retrieval import protocols

SPEC = InteractionSpec("toy", ("view", "buy"), "buy")
V, B = 0, 1
# (user, item, behavior, timestamp), deliberately unsorted.
ROWS = [
    (0, 4, V, 7), (0, 1, V, 1), (0, 2, B, 2), (0, 3, V, 3), (0, 3, B, 4), (0, 4, V, 5), (0, 4, B, 6),
    (0, 4, V, 6),
    (1, 5, B, 3), (1, 0, B, 1), (1, 5, V, 2),
    (2, 0, V, 1),
]
# Test (last buy): user 0 item 4 at t=6 (the views of 4 at t=6 and t=7 leak it and go; the
# view at t=5 stays), user 1 item 5 at t=3 (its view at t=2 stays). Validation (last buy left):
# user 0 item 3 at t=4, user 1 item 0 at t=1. User 2 never buys.
SCORES = np.array(
    [
        [0.9, 0.55, 0.8, 0.7, 0.5, 0.6],
        [0.9, 0.2, 0.3, 0.1, 0.3, 0.3],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ]
)


def toy_log() -> InteractionLog:
    u, i, b, t = (np.array(c) for c in zip(*ROWS))
    return InteractionLog(SPEC, u, i, b, t, num_users=3, num_items=6)


def score_fn(users):
    return SCORES[users]


def rows_of(log):
    columns = (log.users, log.items, log.behaviors, log.timestamps)
    return sorted(zip(*(c.tolist() for c in columns)))


def test_leave_one_out_by_time_on_a_hand_split():
    split = protocols.leave_one_out(toy_log())
    np.testing.assert_array_equal(split.test_items, [4, 5, -1])
    np.testing.assert_array_equal(split.test_timestamps, [6, 3, -1])
    np.testing.assert_array_equal(split.valid_items, [3, 0, -1])
    np.testing.assert_array_equal(split.valid_timestamps, [4, 1, -1])
    kept = [(0, 1, V, 1), (0, 2, B, 2), (0, 3, V, 3), (0, 4, V, 5), (1, 5, V, 2), (2, 0, V, 1)]
    assert rows_of(split.train) == kept
    assert split.spec == SPEC
    test_rows = rows_of(protocols.history(split, "test"))
    assert test_rows == sorted(rows_of(split.train) + [(0, 3, B, 4), (1, 0, B, 1)])
    assert protocols.history(split, "valid") is split.train


def test_given_test_items_drop_every_event_of_their_pair():
    split = protocols.leave_one_out(toy_log(), test_items=np.array([1, -1, 0]))
    np.testing.assert_array_equal(split.test_items, [1, -1, 0])
    np.testing.assert_array_equal(split.test_timestamps, [-1, -1, -1])
    np.testing.assert_array_equal(split.valid_items, [4, 5, -1])  # the last buys
    pairs = set(zip(split.train.users.tolist(), split.train.items.tolist()))
    assert (0, 1) not in pairs and (2, 0) not in pairs
    # The validation pairs are cut like the test pairs: every event goes, also the views of
    # item 4 (t=5) and of item 5 (t=2) before the validation buys.
    assert (0, 4) not in pairs and (1, 5) not in pairs


def test_full_ranking_masks_history_items_but_never_the_target():
    split = protocols.leave_one_out(toy_log())
    result = protocols.evaluate(score_fn, split, stage="test", protocol="full", ks=(1, 3, 5))
    # User 0, target 4 (0.5): buys 2 and 3 (3 is the validation buy, history at test time)
    # masked; 0.9, 0.6, 0.55 above it: rank 4. User 1, target 5 (0.3): buy 0 masked, ties
    # with items 2 and 4: rank 3.
    assert result["protocol"] == "full ranking, training items of the target behavior masked"
    assert (result["stage"], result["behavior"], result["users"]) == ("test", "buy", 2)
    assert result["HR@1"] == 0 and result["HR@3"] == 0.5 and result["HR@5"] == 1
    assert result["Recall@3"] == 0.5
    assert result["NDCG@3"] == pytest.approx(0.5 * 0.5)
    assert result["NDCG@5"] == pytest.approx((1 / math.log2(5) + 0.5) / 2)
    assert result["MRR"] == pytest.approx((1 / 4 + 1 / 3) / 2)
    # Every behavior masked: user 0's viewed item 1 (0.55) goes too, so rank 3; the viewed
    # test item 4 stays a candidate.
    every = protocols.evaluate(score_fn, split, stage="test", protocol="full", ks=(3,), mask="all_behaviors")
    assert every["protocol"] == "full ranking, training items of every behavior masked"
    assert every["HR@3"] == 1 and every["MRR"] == pytest.approx(1 / 3)


def test_full_ranking_on_validation_uses_the_training_history():
    split = protocols.leave_one_out(toy_log())
    result = protocols.evaluate(score_fn, split, stage="valid", protocol="full", ks=(1,))
    # User 0, target 3 (0.7): buy 2 masked, 0.9 above: rank 2. User 1, target 0: rank 1.
    assert result["HR@1"] == 0.5 and result["MRR"] == pytest.approx(0.75)


def test_sampled_protocol_on_a_hand_case():
    split = protocols.leave_one_out(toy_log())
    # User 0 interacted with 1, 2, 3, 4: the only free items are 0 and 5, both drawn:
    # 0.9 and 0.6 beat 0.5, rank 3. User 1 interacted with 0 and 5: free 1, 2, 3, 4, all
    # drawn: ties 2 and 4, rank 3.
    result = protocols.evaluate(score_fn, split, stage="test", protocol="sampled", num_negatives=2, ks=(2, 3))
    assert result["protocol"].startswith("2 sampled negatives (uniform over items the user never")
    assert result["protocol"].endswith("seed 0)")
    np.testing.assert_array_equal(np.sort(protocols.sample_negatives(split, np.array([0]), 2)), [[0, 5]])
    assert np.sort(protocols.sample_negatives(split, np.array([1]), 4)).tolist() == [[1, 2, 3, 4]]
    assert result["HR@2"] == 0 and result["HR@3"] == 1
    assert result["MRR"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="user 0 has 2 items never interacted with"):
        protocols.evaluate(score_fn, split, stage="test", protocol="sampled", num_negatives=3)


def synthetic_split():
    log = interactions.synthetic_behaviors(40, 300, signal=0.5, seed=3, views_per_user=15, buys_per_user=3)
    return log, protocols.leave_one_out(log)


def test_perfect_scorer_hits_and_constant_scorer_is_worst():
    _, split = synthetic_split()
    n = split.train.num_items
    for protocol in protocols.PROTOCOLS:
        for stage in protocols.STAGES:
            targets = split.held_out(stage)
            perfect = lambda users: np.eye(n)[targets[users]]  # noqa: E731
            result = protocols.evaluate(perfect, split, stage=stage, protocol=protocol)
            assert result["users"] == 40
            assert result["HR@5"] == result["NDCG@5"] == result["MRR"] == 1.0
    constant = lambda users: np.zeros((len(users), n))  # noqa: E731
    sampled = protocols.evaluate(constant, split, stage="test", protocol="sampled")
    assert sampled["MRR"] == pytest.approx(1 / 100) and sampled["HR@20"] == 0
    full = protocols.evaluate(constant, split, stage="test", protocol="full", ks=(n,))
    # Worst rank = 1 + every unmasked other item; history buys are 1 per user here
    # (3 buys: one is the test, one the validation, which history("test") masks too).
    assert full["MRR"] == pytest.approx(1 / (n - 2))


def test_no_held_out_event_leaks_into_train():
    log, split = synthetic_split()
    train = set(rows_of(split.train))
    held = [(u, split.test_items[u], split.test_timestamps[u]) for u in range(40)]
    held += [(u, split.valid_items[u], split.valid_timestamps[u]) for u in range(40)]
    # Train is exactly the log minus every event of a held-out pair at or after its time.
    expected = [r for r in rows_of(log) if not any(r[0] == u and r[1] == i and r[3] >= t for u, i, t in held)]
    assert sorted(train) == expected
    assert len(expected) < len(log) - 80  # views of held-out items after them were dropped
    # Validation precedes test; both are the user's last buys.
    assert (split.valid_timestamps <= split.test_timestamps).all()
    buys = log.target_rows()
    for u in range(40):
        times = np.sort(buys.timestamps[buys.users == u])
        assert (split.test_timestamps[u], split.valid_timestamps[u]) == (times[-1], times[-2])


def test_sampler_is_seeded_and_excludes_interacted_items():
    log, split = synthetic_split()
    users = np.arange(40)
    a = protocols.sample_negatives(split, users, 99, seed=5)
    np.testing.assert_array_equal(a, protocols.sample_negatives(split, users, 99, seed=5))
    assert not np.array_equal(a, protocols.sample_negatives(split, users, 99, seed=6))
    for u in users:
        interacted = set(log.items[log.users == u].tolist())  # the whole log, held-out items too
        assert not interacted & set(a[u].tolist())
        assert len(set(a[u].tolist())) == 99
    # The evaluation does not depend on the batch size.
    table = np.random.default_rng(0).random((40, 300))
    score = lambda users: table[users]  # noqa: E731
    one = protocols.evaluate(score, split, stage="test", protocol="sampled", batch_size=7)
    other = protocols.evaluate(score, split, stage="test", protocol="sampled", batch_size=512)
    assert one == other


def test_per_behavior_evaluation():
    split = protocols.leave_one_out(toy_log(), test_behaviors=("view",))
    # Views left after the buys are held out: user 0 view 4 (t=5), user 1 view 5 (t=2),
    # user 2 view 0 (t=1).
    np.testing.assert_array_equal(split.held_out("test", "view"), [4, 5, 0])
    result = protocols.evaluate(score_fn, split, stage="test", protocol="full", behavior="view", ks=(1,))
    assert result["behavior"] == "view" and result["users"] == 3
    with pytest.raises(ValueError, match="only the target has a validation item"):
        protocols.evaluate(score_fn, split, stage="valid", protocol="full", behavior="view")


def test_bad_arguments():
    split = protocols.leave_one_out(toy_log())
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocols.evaluate(score_fn, split, stage="test", protocol="ndcg")
    with pytest.raises(ValueError, match="stage must be one of"):
        protocols.evaluate(score_fn, split, stage="train", protocol="full")
    with pytest.raises(ValueError, match="mask must be one of"):
        protocols.evaluate(score_fn, split, stage="test", protocol="full", mask="none")
    with pytest.raises(ValueError, match=r"score_fn must return float scores of shape \(2, 6\)"):
        protocols.evaluate(lambda u: np.zeros((len(u), 5)), split, stage="test", protocol="full")
    with pytest.raises(ValueError, match=r"test_items must have shape \(3,\)"):
        protocols.leave_one_out(toy_log(), test_items=np.array([0]))
    with pytest.raises(ValueError, match="test_behaviors must be non-target"):
        protocols.leave_one_out(toy_log(), test_behaviors=("buy",))


def test_retailrocket_split():
    try:
        train, test_items = interactions.load_retailrocket()
    except FileNotFoundError as e:
        pytest.skip(f"shared data absent: {e}")
    split = protocols.leave_one_out(train, test_items)
    np.testing.assert_array_equal(split.test_items, test_items)
    # Every user has a training buy, so every user gets a validation buy: 9,551 - 2,174 left.
    assert (split.valid_items >= 0).sum() == 2174
    # Independently: every event of a validation pair goes, as no event of a test pair is in
    # the training file.
    frame = pd.DataFrame({"user": train.users, "item": train.items})
    held = pd.DataFrame({"user": np.arange(2174), "item": split.valid_items})
    assert len(split.train) == len(train) - len(frame.merge(held, on=["user", "item"]))
    assert np.bincount(split.train.behaviors, minlength=3)[2] == 9551 - 2174
    assert (split.valid_timestamps > 0).all()
