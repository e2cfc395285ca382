"""Warm and cold-item evaluation of top-K models on logs with item features.

Split (:func:`cold_start_split`) of a :class:`~tfjoint.datasets.multimodal.MultiModalLog`:

1. every event of a cold item is removed from the log; the rest is split by
   :func:`~tfjoint.retrieval.protocols.leave_one_out` (per user, the last target event is
   the warm test item, the one before it the validation item);
2. each user's last target event on a cold item (by time, in the whole log) is the user's
   cold test item (-1 where the user has none).

No model sees a cold item in training; it knows the item only by its features.

Protocol (:func:`evaluate_cold_start`): full ranking within each sub-catalog, so that the
first two numbers answer two questions -- *which known item next* and *which new item* --
and the third how the new items fare in the whole catalog:

- ``"warm"``: the warm held-out item against every warm item (cold items excluded), the
  user's training items masked, as :func:`~tfjoint.retrieval.protocols.evaluate`;
- ``"cold"``: the cold test item against every cold item (warm items excluded). A model
  that cannot tell cold items apart (equal scores) ranks the item last (ties count against
  it); ranking at random gives ``HR@K = K / #cold items`` in expectation;
- ``"mixed"``: the cold test item against every item, warm and cold, the user's training
  items masked: here cold scores must also be on the warm items' scale.

Epochs are chosen on the warm validation items only: cold test numbers never select.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tfjoint.datasets.multimodal import MultiModalLog
from tfjoint.retrieval.protocols import STAGES, LeaveOneOut, evaluate, leave_one_out

PARTS = ("warm", "cold", "mixed")
DATASETS = ("synthetic", "movielens-100k")


@dataclasses.dataclass(frozen=True, eq=False)
class ColdStartSplit:
    """A warm leave-one-out split, one cold test item per user, and the item features.

    Args:
        warm: the split of the log without cold items (its ``train`` is every model's input).
        cold_test_items: ``(num_users,)`` int64 cold test item per user (-1: none).
        item_features: ``(num_items, F)`` float32, cold items included.
        cold_items: sorted cold item indices.
    """

    warm: LeaveOneOut
    cold_test_items: np.ndarray
    item_features: np.ndarray
    cold_items: np.ndarray

    @property
    def train(self) -> Any:
        return self.warm.train

    def cold_split(self) -> LeaveOneOut:
        """The cold test items as a :class:`LeaveOneOut` over the same training log."""
        none = np.full(self.warm.train.num_users, -1, np.int64)
        return LeaveOneOut(train=self.warm.train, valid_items=none, test_items=self.cold_test_items)


def cold_start_split(data: MultiModalLog) -> ColdStartSplit:
    """Split ``data`` into warm leave-one-out items and cold test items (module docstring)."""
    log = data.log
    is_cold = np.isin(log.items, data.cold_items)
    warm = leave_one_out(log.select(~is_cold))
    ordered = log.sorted()
    rows = np.flatnonzero(np.isin(ordered.items, data.cold_items) & (ordered.behaviors == log.spec.target_index))
    users = ordered.users[rows]
    last = rows[np.r_[users[1:] != users[:-1], True]] if len(rows) else rows
    cold_test = np.full(log.num_users, -1, np.int64)
    cold_test[ordered.users[last]] = ordered.items[last]
    return ColdStartSplit(warm, cold_test, data.item_features, data.cold_items)


def _within(score_fn: Callable[[np.ndarray], np.ndarray], excluded: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``score_fn`` with the ``excluded`` items scored ``-inf`` (outside the sub-catalog)."""

    def scores(users: np.ndarray) -> np.ndarray:
        out = np.array(score_fn(users), dtype=np.float32, copy=True)
        out[:, excluded] = -np.inf
        return out

    return scores


def evaluate_cold_start(
    score_fn: Callable[[np.ndarray], np.ndarray],
    split: ColdStartSplit,
    *,
    stage: str = "test",
    parts: Sequence[str] = PARTS,
    ks: Sequence[int] = (10,),
) -> dict[str, dict[str, Any]]:
    """``{part: metrics}`` for ``parts`` of :data:`PARTS` (module docstring);
    ``stage="valid"`` exists for the warm part only."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}. Received: stage={stage!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {PARTS}. Received: parts={list(parts)}")
    if stage == "valid" and set(parts) != {"warm"}:
        raise ValueError("cold items have no validation stage: pass parts=('warm',) with stage='valid'")
    num_items = split.train.num_items
    warm_items = np.setdiff1d(np.arange(num_items), split.cold_items)
    out: dict[str, dict[str, Any]] = {}
    if "warm" in parts:
        result = evaluate(_within(score_fn, split.cold_items), split.warm, stage=stage, protocol="full", ks=ks)
        out["warm"] = result | {"protocol": "full ranking among the warm items, training items masked"}
    if "cold" in parts:
        result = evaluate(_within(score_fn, warm_items), split.cold_split(), stage="test", protocol="full", ks=ks)
        out["cold"] = result | {"protocol": f"full ranking among the {len(split.cold_items)} cold items"}
    if "mixed" in parts:
        result = evaluate(score_fn, split.cold_split(), stage="test", protocol="full", ks=ks)
        out["mixed"] = result | {"protocol": "full ranking of the cold item among all items, training items masked"}
    return out


def load_cold_start_split(dataset: str, seed: int = 0, signal: float = 1.0) -> ColdStartSplit:
    """The cold-start split of a built-in multi-modal dataset (``signal``: synthetic only).

    Synthetic: 1,000 users, 500 items (100 cold), 10 buys per user, 32 features carrying
    ``signal`` (:func:`tfjoint.datasets.multimodal.synthetic_multimodal`); MovieLens-100K:
    likes as the target, genres and release year as features, 20 % of the items cold
    (:func:`tfjoint.datasets.multimodal.movielens_multimodal`).
    """
    from tfjoint.datasets import multimodal

    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}. Received: dataset={dataset!r}")
    if dataset == "movielens-100k":
        return cold_start_split(multimodal.movielens_multimodal(seed=seed))
    return cold_start_split(multimodal.synthetic_multimodal(1000, 500, signal=signal, seed=seed))
