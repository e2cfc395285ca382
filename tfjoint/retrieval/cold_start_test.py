import numpy as np
import pytest

from tfjoint.datasets.multimodal import SYNTHETIC_MULTIMODAL, MultiModalLog
from tfjoint.features.interactions import InteractionLog
from tfjoint.retrieval.cold_start import cold_start_split, evaluate_cold_start


def tiny():
    """3 users, 8 items; items 6 and 7 are cold. User 2 never buys a cold item."""
    users = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    items = [0, 6, 1, 7, 2, 3, 7, 4, 5, 0, 1, 2]
    times = [1, 2, 3, 4, 5, 1, 2, 3, 4, 1, 2, 3]
    log = InteractionLog(SYNTHETIC_MULTIMODAL, np.array(users), np.array(items), np.zeros(12, np.int64), np.array(times), 3, 8)
    features = np.arange(16, dtype=np.float32).reshape(8, 2)
    return cold_start_split(MultiModalLog(log, features, np.array([7, 6])))


def test_cold_items_leave_training_and_the_last_cold_buy_is_the_cold_test_item():
    split = tiny()
    assert not np.isin(split.train.items, [6, 7]).any()
    np.testing.assert_array_equal(split.cold_test_items, [7, 7, -1])
    # warm leave-one-out: last warm buy is the test item, the one before it validation
    np.testing.assert_array_equal(split.warm.test_items, [2, 5, 2])
    np.testing.assert_array_equal(split.warm.valid_items, [1, 4, 1])
    np.testing.assert_array_equal(split.cold_items, [6, 7])


def test_each_part_ranks_within_its_own_sub_catalog():
    split = tiny()
    # warm items 0-5 score 5..0 (item 0 best), cold items score above every warm item
    scores = np.array([5, 4, 3, 2, 1, 0, 10, 9], np.float32)
    result = evaluate_cold_start(lambda u: np.tile(scores, (len(u), 1)), split, ks=(1, 2))
    # cold: item 7 ranks 2nd among {6, 7} for users 0 and 1 (user 2 has none)
    assert result["cold"]["users"] == 2 and result["cold"]["HR@1"] == 0.0 and result["cold"]["HR@2"] == 1.0
    assert result["cold"]["NDCG@2"] == pytest.approx(1 / np.log2(3))
    # warm, cold items excluded, training and validation items masked at test: user 0
    # (train 0, valid 1) ranks item 2 first among 2..5; user 1 (train 3, valid 4) ranks
    # item 5 4th among 0, 1, 2, 5; user 2 as user 0
    assert result["warm"]["users"] == 3
    assert result["warm"]["HR@1"] == pytest.approx(2 / 3) and result["warm"]["MRR"] == pytest.approx((1 + 1 / 4 + 1) / 3)
    # mixed: item 7 against every item; user 0's training item 0 is masked, cold item 6 still
    # scores above it: 2nd for users 0 and 1
    assert result["mixed"]["users"] == 2 and result["mixed"]["MRR"] == pytest.approx(0.5)
    result = evaluate_cold_start(lambda u: -np.tile(scores, (len(u), 1)), split, parts=("mixed",), ks=(1,))
    # reversed scores: item 7 (-9) is below every warm item but above item 6 (-10); user 0 has
    # training item 0 masked (5 warm items above), user 1 item 3 (5 above): rank 6
    assert set(result) == {"mixed"} and result["mixed"]["MRR"] == pytest.approx(1 / 6)


def test_cold_items_have_no_validation_stage():
    with pytest.raises(ValueError, match="cold items have no validation stage"):
        evaluate_cold_start(lambda u: np.zeros((len(u), 8), np.float32), tiny(), stage="valid")
    with pytest.raises(ValueError, match="parts must be"):
        evaluate_cold_start(lambda u: np.zeros((len(u), 8), np.float32), tiny(), parts=("hot",))
