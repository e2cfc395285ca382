"""Ranking metrics from the 1-based rank of one held-out item per user.

Rank (ties counted against the target, so a constant scorer gets the worst rank; a
candidate scored ``-inf`` is masked and never outranks a finite target):

    rank = 1 + #{j != t : s_j > s_t} + #{j != t : s_j == s_t}

Metrics, averaged over users, for a cutoff ``K``:

    HR@K     = 1[rank <= K]
    Recall@K = HR@K                                   (one held-out item per user)
    NDCG@K   = 1[rank <= K] / log2(rank + 1)          (the ideal DCG is 1 / log2(2) = 1)
    MRR      = 1 / rank                               (no cutoff)

These are the definitions of He et al., "Neural Collaborative Filtering" (WWW 2017,
Sec. 4.1, leave-one-out HR and NDCG) and of SSLRec's ``trainer/metrics.py`` (Recall and
NDCG with one ground-truth item reduce to the formulas above). The pessimistic tie rule
follows Krichene and Rendle, "On Sampled Metrics for Item Recommendation" (KDD 2020), who
warn that optimistic ties reward degenerate scorers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS = (5, 10, 20)


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The 1-based rank of ``scores[u, targets[u]]`` in row ``u``, ties counted against it.

    Args:
        scores: ``(users, candidates)`` float scores; ``-inf`` marks a masked candidate.
        targets: ``(users,)`` column of the held-out item in each row.

    Returns:
        ``(users,)`` int64 ranks in ``[1, candidates]``. A target scored ``-inf`` ties with
        every masked candidate, so it gets the worst rank ``candidates``.

    Raises:
        ValueError: shapes disagree, a target is out of range, or a score is NaN.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(
            "scores must be (users, candidates) and targets (users,). "
            f"Received: {scores.shape}, {targets.shape}"
        )
    if len(targets) and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(
            f"targets must lie in [0, {scores.shape[1]}). Received: [{targets.min()}, {targets.max()}]"
        )
    if np.isnan(scores).any():
        raise ValueError("scores must not contain NaN")
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    # ">=" counts the target itself once; that is the "1 +" of the rank.
    return (scores >= target_scores).sum(axis=1).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"HR@K", "Recall@K", "NDCG@K" for K in ks, "MRR"}`` averaged over users.

    Args:
        ranks: ``(users,)`` 1-based ranks (at least one user).
        ks: cutoffs, each >= 1.

    Example:
        >>> m = metrics_from_ranks(np.array([1, 3, 30]), ks=(5,))
        >>> round(m["HR@5"], 4), round(m["NDCG@5"], 4), round(m["MRR"], 4)
        (0.6667, 0.5, 0.4556)
    """
    ranks = np.asarray(ranks, np.int64)
    if ranks.ndim != 1 or not len(ranks):
        raise ValueError(f"ranks must be a non-empty 1-D array. Received: shape={ranks.shape}")
    if ranks.min() < 1:
        raise ValueError(f"ranks must be >= 1. Received: min={ranks.min()}")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be non-empty cutoffs >= 1. Received: ks={tuple(ks)}")
    result = {}
    for k in ks:
        hit = ranks <= k
        hr = float(hit.mean())
        result[f"HR@{k}"] = hr
        result[f"Recall@{k}"] = hr
        result[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    result["MRR"] = float((1.0 / ranks).mean())
    return result
