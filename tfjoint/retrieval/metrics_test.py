"""Hand-computed ranks and metrics of tfjoint.retrieval.metrics."""

import math

import numpy as np
import pytest

from tfjoint.retrieval import metrics


def test_rank_counts_ties_against_the_target_and_skips_masked_items():
    inf = np.inf
    scores = np.array(
        [
            [0.1, 0.5, 0.3, 0.2],  # target 1 is the best: rank 1
            [0.3, 0.3, 0.3, 0.1],  # target 0 ties with 1 and 2: rank 1 + 0 + 2 = 3
            [0.9, -inf, 0.2, -inf],  # target 2: 0.9 above, -inf items masked: rank 2
            [7.0, 7.0, 7.0, 7.0],  # constant scorer: the worst rank
            [-inf, 0.0, -inf, -inf],  # a masked target: the worst rank
        ]
    )
    ranks = metrics.target_ranks(scores, np.array([1, 0, 2, 3, 0]))
    np.testing.assert_array_equal(ranks, [1, 3, 2, 4, 4])


def test_rank_rejects_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        metrics.target_ranks(np.array([[np.nan, 1.0]]), np.array([1]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\)"):
        metrics.target_ranks(np.zeros((1, 2)), np.array([2]))
    with pytest.raises(ValueError, match="scores must be"):
        metrics.target_ranks(np.zeros(3), np.array([0]))


def test_metrics_from_hand_computed_ranks():
    m = metrics.metrics_from_ranks(np.array([1, 2, 5, 11]), ks=(1, 5, 10))
    assert m["HR@1"] == m["Recall@1"] == 0.25
    assert m["HR@5"] == m["Recall@5"] == 0.75
    assert m["HR@10"] == 0.75
    assert m["NDCG@1"] == pytest.approx(0.25)
    # ranks 1, 2, 5 -> 1/log2(2) = 1, 1/log2(3), 1/log2(6); rank 11 is past every cutoff.
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    assert m["NDCG@10"] == m["NDCG@5"]
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11) / 4)  # no cutoff
    assert set(m) == {"HR@1", "HR@5", "HR@10", "Recall@1", "Recall@5", "Recall@10",
                      "NDCG@1", "NDCG@5", "NDCG@10", "MRR"}


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="ranks must be >= 1"):
        metrics.metrics_from_ranks(np.array([0, 1]))
    with pytest.raises(ValueError, match="non-empty"):
        metrics.metrics_from_ranks(np.array([], np.int64))
    with pytest.raises(ValueError, match="ks must be"):
        metrics.metrics_from_ranks(np.array([1]), ks=(0,))
