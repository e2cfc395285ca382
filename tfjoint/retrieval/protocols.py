"""Leave-one-out splits by time and the two ranking protocols, labelled on every result.

Split (:func:`leave_one_out`), per user, on the log sorted by ``(user, timestamp)`` (ties
keep the row order, so "last" is the last row among equal timestamps):

1. test: the user's last target event (or the given ``test_items``, as for Retailrocket
   whose test buys come in a separate file);
2. validation: the last target event left after step 1 (it may be the same item as the
   test one when a user bought an item twice);
3. optional extra test behaviors: the last event of each left after steps 1-2.

Each held-out event is removed from the training log, and so is every other event of the
same ``(user, item)`` pair, of any behavior, at or after its timestamp (a view of the
item right after its purchase would leak it). Events of the pair *before* it stay: a model
in production knows that the user viewed the item before buying it. A given ``test_items``
entry has no timestamp, so every event of its pair is removed, and then the validation
pairs (and per-behavior test pairs) lose every event too: on Retailrocket, whose test buys
never occur in training in any behavior, a validation buy whose earlier views stayed in
training would be far easier to rank than a test buy (BPR-MF on every behavior: validation
NDCG@10 0.49, test 0.012), and epochs chosen on it would mislead. Users with no target event
left for a step get -1. The validation item exists to choose epochs and hyperparameters;
test numbers must come from the validation-selected model.

Protocols (:func:`evaluate`), for the users whose held-out item is not -1:

- ``"full"``: the held-out item is ranked against every item. Items of the user's input
  history (:func:`history`) are masked (score ``-inf``), the held-out item itself never.
  ``mask="history"`` masks the items of the held-out behavior (the target: training buys),
  as SSLRec does for Retailrocket: ``AllRankTstData(tst_mat, trn_mat)`` with ``trn_mat =
  train_mat_buy`` (HKUDS/SSLRec ``data_utils/data_handler_multi_behavior.py``,
  ``data_utils/datasets_multi_behavior.py``) and ``BaseModel._mask_predict``
  (``models/base_model.py``); ``mask="all_behaviors"`` masks the items of every behavior.
- ``"sampled"``: the held-out item is ranked among itself and ``num_negatives`` (99)
  negatives drawn uniformly without replacement from the items the user never
  interacted with in any behavior (training events and every held-out item), with
  ``numpy.random.default_rng(seed)``, users in increasing order (He et al., "Neural
  Collaborative Filtering", WWW 2017, Sec. 4.1).

Ranks count ties against the target (:mod:`tfjoint.retrieval.metrics`); the two protocols
give numbers that differ about tenfold, hence the ``"protocol"`` label on every result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tfjoint.features.interactions import InteractionLog, InteractionSpec
from tfjoint.retrieval.metrics import DEFAULT_KS, metrics_from_ranks, target_ranks

STAGES = ("valid", "test")
PROTOCOLS = ("full", "sampled")
MASKS = ("history", "all_behaviors")


@dataclasses.dataclass(frozen=True, eq=False)
class LeaveOneOut:
    """A leave-one-out split: the training log and one held-out item per user and stage.

    Args:
        train: every behavior's events a model may learn from.
        valid_items: ``(num_users,)`` int64, the validation target item (-1: none).
        test_items: ``(num_users,)`` int64, the test target item (-1: none).
        spec: the log's spec; defaults to ``train.spec`` and must equal it.
        valid_timestamps, test_timestamps: ``(num_users,)`` int64 times of the held-out
            events (-1: none or unknown); default all -1.
        behavior_test_items: non-target behavior name -> ``(num_users,)`` held-out test
            items of that behavior, for per-behavior evaluation.
    """

    train: InteractionLog
    valid_items: np.ndarray
    test_items: np.ndarray
    spec: InteractionSpec | None = None
    valid_timestamps: np.ndarray | None = None
    test_timestamps: np.ndarray | None = None
    behavior_test_items: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spec is None:
            object.__setattr__(self, "spec", self.train.spec)
        if self.spec != self.train.spec:
            raise ValueError(f"spec must equal train.spec. Received: {self.spec} vs {self.train.spec}")
        n = self.train.num_users
        for name in ("valid_items", "test_items", "valid_timestamps", "test_timestamps"):
            value = getattr(self, name)
            value = np.full(n, -1, np.int64) if value is None else np.asarray(value, np.int64)
            _check_per_user(value, n, self.train.num_items if name.endswith("items") else None, name)
            object.__setattr__(self, name, value)
        for behavior, items in self.behavior_test_items.items():
            if behavior not in self.spec.behaviors or behavior == self.spec.target:
                raise ValueError(
                    f"behavior_test_items keys must be non-target behaviors of {self.spec.behaviors}. "
                    f"Received: {behavior!r}"
                )
            name = f"behavior_test_items[{behavior!r}]"
            _check_per_user(np.asarray(items, np.int64), n, self.train.num_items, name)

    def held_out(self, stage: str, behavior: str | None = None) -> np.ndarray:
        """``(num_users,)`` held-out items of ``stage`` and ``behavior`` (default the target)."""
        _check_choice(stage, STAGES, "stage")
        if behavior is None or behavior == self.spec.target:
            return self.valid_items if stage == "valid" else self.test_items
        if stage != "test" or behavior not in self.behavior_test_items:
            raise ValueError(
                "only the target has a validation item; test behaviors: "
                f"{(self.spec.target, *self.behavior_test_items)}. "
                f"Received: stage={stage!r}, behavior={behavior!r}"
            )
        return np.asarray(self.behavior_test_items[behavior], np.int64)


def _check_per_user(value: np.ndarray, num_users: int, num_items: int | None, name: str) -> None:
    if value.shape != (num_users,):
        raise ValueError(f"{name} must have shape ({num_users},). Received: shape={value.shape}")
    if num_items is not None and len(value) and (value.min() < -1 or value.max() >= num_items):
        raise ValueError(f"{name} must lie in [-1, {num_items}). Received: [{value.min()}, {value.max()}]")


def _check_choice(value: str, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}. Received: {name}={value!r}")


def _last_per_user(log: InteractionLog, rows: np.ndarray) -> np.ndarray:
    """Indices of the last row of each user among ``rows`` (``log`` sorted by user, time)."""
    index = np.flatnonzero(rows)
    users = log.users[index]
    return index[np.r_[users[1:] != users[:-1], True]] if len(index) else index


def _drop_pairs_after(log: InteractionLog, keep: np.ndarray, users, items, times) -> None:
    """Clear ``keep`` for rows of each ``(users[k], items[k])`` pair with time >= ``times[k]``."""
    keys = users * log.num_items + items
    order = np.lexsort((times, keys))
    keys, times = keys[order], times[order]
    first = np.r_[True, keys[1:] != keys[:-1]]  # earliest held-out time of each pair
    keys, times = keys[first], times[first]
    row_keys = log.users * log.num_items + log.items
    at = np.clip(np.searchsorted(keys, row_keys), 0, max(len(keys) - 1, 0))
    if len(keys):
        keep &= ~((keys[at] == row_keys) & (log.timestamps >= times[at]))


def leave_one_out(
    log: InteractionLog,
    test_items: np.ndarray | None = None,
    *,
    test_behaviors: Sequence[str] = (),
) -> LeaveOneOut:
    """Split ``log`` by time: per user, the last target event is the test item and the last
    remaining one the validation item (see the module docstring for the exact rules).

    Args:
        log: the whole interaction log.
        test_items: ``(num_users,)`` given test items (-1: none), e.g. Retailrocket's
            ``test.csv``; then the validation item is the user's last target event.
        test_behaviors: non-target behaviors whose last remaining event per user is also
            held out, for per-behavior test evaluation (``evaluate(..., behavior=b)``).

    Returns:
        A :class:`LeaveOneOut` whose ``train`` is sorted by ``(user, timestamp)``.
    """
    spec = log.spec
    for b in test_behaviors:
        if b not in spec.behaviors or b == spec.target:
            raise ValueError(
                f"test_behaviors must be non-target behaviors of {spec.behaviors}. Received: {b!r}"
            )
    log = log.sorted()
    n = log.num_users
    keep = np.ones(len(log), bool)
    is_target = log.behaviors == spec.target_index

    # With given test items (no timestamps: every event of their pairs is dropped), the
    # validation pairs are cut the same way, so that validation measures what test measures.
    whole_pairs = test_items is not None

    def hold_out(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = _last_per_user(log, rows & keep)
        items, times = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        items[log.users[last]], times[log.users[last]] = log.items[last], log.timestamps[last]
        keep[last] = False
        since = np.full(len(last), np.iinfo(np.int64).min) if whole_pairs else log.timestamps[last]
        _drop_pairs_after(log, keep, log.users[last], log.items[last], since)
        return items, times

    if test_items is None:
        test, test_times = hold_out(is_target)
    else:
        test = np.asarray(test_items, np.int64)
        _check_per_user(test, n, log.num_items, "test_items")
        test_times = np.full(n, -1, np.int64)
        given = np.flatnonzero(test >= 0)
        # No timestamp is known, so no event of the pair may stay.
        lowest = np.full(len(given), np.iinfo(np.int64).min)
        _drop_pairs_after(log, keep, given, test[given], lowest)
    valid, valid_times = hold_out(is_target)
    others = {b: hold_out(log.behaviors == spec.behaviors.index(b))[0] for b in test_behaviors}
    return LeaveOneOut(
        train=log.select(keep),
        valid_items=valid,
        test_items=test,
        valid_timestamps=valid_times,
        test_timestamps=test_times,
        behavior_test_items=others,
    )


def history(split: LeaveOneOut, stage: str) -> InteractionLog:
    """The events a model may take as input when scoring ``stage``.

    ``"valid"``: ``split.train``. ``"test"``: ``split.train`` plus each validation event as a
    target-behavior row at its timestamp, sorted by ``(user, timestamp)``, so that sequence
    models see the validation item when predicting the test one. (Events of the validation
    pair that :func:`leave_one_out` dropped after it are not restored.)
    """
    _check_choice(stage, STAGES, "stage")
    if stage == "valid":
        return split.train
    train = split.train
    users = np.flatnonzero(split.valid_items >= 0)
    return dataclasses.replace(
        train,
        users=np.concatenate([train.users, users]),
        items=np.concatenate([train.items, split.valid_items[users]]),
        behaviors=np.concatenate([train.behaviors, np.full(len(users), split.spec.target_index, np.int64)]),
        timestamps=np.concatenate([train.timestamps, split.valid_timestamps[users]]),
    ).sorted()


def _items_by_user(log: InteractionLog, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(offsets, items)``: the unique items of user ``u`` are ``items[offsets[u]:offsets[u+1]]``."""
    users, items = (log.users, log.items) if rows is None else (log.users[rows], log.items[rows])
    keys = np.unique(users * log.num_items + items)
    offsets = np.searchsorted(keys // log.num_items, np.arange(log.num_users + 1))
    return offsets, keys % log.num_items


def sample_negatives(
    split: LeaveOneOut, users: np.ndarray, num_negatives: int = 99, seed: int = 0
) -> np.ndarray:
    """``(len(users), num_negatives)`` negatives: per user, distinct items drawn uniformly from
    those the user never interacted with (no training event of any behavior, not a held-out
    item), with ``numpy.random.default_rng(seed)``, one draw per user in the given order.

    Raises:
        ValueError: a user has fewer than ``num_negatives`` items never interacted with.
    """
    train = split.train
    held = [split.valid_items, split.test_items, *split.behavior_test_items.values()]
    every_user = np.arange(train.num_users)
    known = dataclasses.replace(
        train,
        users=np.concatenate([train.users, *(every_user[h >= 0] for h in held)]),
        items=np.concatenate([train.items, *(h[h >= 0] for h in held)]),
        behaviors=np.zeros(len(train) + sum(int((h >= 0).sum()) for h in held), np.int64),
        timestamps=np.zeros(len(train) + sum(int((h >= 0).sum()) for h in held), np.int64),
    )
    offsets, items = _items_by_user(known)
    rng = np.random.default_rng(seed)
    out = np.empty((len(users), num_negatives), np.int64)
    for row, u in enumerate(np.asarray(users, np.int64)):
        forbidden = items[offsets[u] : offsets[u + 1]]  # sorted, unique
        free = train.num_items - len(forbidden)
        if free < num_negatives:
            raise ValueError(
                f"user {u} has {free} items never interacted with, fewer than num_negatives={num_negatives}"
            )
        picks = rng.choice(free, size=num_negatives, replace=False)
        # The r-th free item is r + #{forbidden f <= it}; f_j - j is non-decreasing.
        out[row] = picks + np.searchsorted(forbidden - np.arange(len(forbidden)), picks, side="right")
    return out


def evaluate(
    score_fn: Callable[[np.ndarray], np.ndarray],
    split: LeaveOneOut,
    *,
    stage: str,
    protocol: str,
    ks: Sequence[int] = DEFAULT_KS,
    num_negatives: int = 99,
    seed: int = 0,
    batch_size: int = 512,
    mask: str = "history",
    behavior: str | None = None,
) -> dict[str, float | int | str]:
    """Rank each user's held-out item of ``stage`` under ``protocol`` and average the metrics.

    Args:
        score_fn: ``users (b,) int64 -> scores (b, num_items)``; higher ranks first,
            ``-inf`` marks an item the model excludes.
        split: from :func:`leave_one_out`.
        stage: ``"valid"`` (choose epochs and hyperparameters here) or ``"test"``.
        protocol: ``"full"`` or ``"sampled"`` (see the module docstring).
        ks: cutoffs of HR, Recall and NDCG.
        num_negatives, seed: the sampled protocol's sampler.
        batch_size: users per ``score_fn`` call.
        mask: full ranking only: ``"history"`` masks the held-out behavior's history items
            (SSLRec's choice), ``"all_behaviors"`` every behavior's.
        behavior: the held-out behavior to rank (default the target); another behavior
            needs ``leave_one_out(..., test_behaviors=...)`` and ``stage="test"``.

    Returns:
        ``{"protocol", "stage", "behavior", "users", "HR@K", "Recall@K", "NDCG@K", ..., "MRR"}``.
    """
    _check_choice(protocol, PROTOCOLS, "protocol")
    _check_choice(mask, MASKS, "mask")
    if batch_size < 1 or num_negatives < 1:
        raise ValueError(
            f"batch_size and num_negatives must be >= 1. Received: {batch_size}, {num_negatives}"
        )
    behavior = split.spec.target if behavior is None else behavior
    targets = split.held_out(stage, behavior)
    users = np.flatnonzero(targets >= 0)
    if not len(users):
        raise ValueError(f"no user has a held-out {behavior!r} item for stage={stage!r}")
    num_items = split.train.num_items
    if protocol == "full":
        seen = history(split, stage)
        rows = None if mask == "all_behaviors" else seen.behaviors == split.spec.behaviors.index(behavior)
        offsets, seen_items = _items_by_user(seen, rows)
        label = "full ranking, training items of the target behavior masked"
        if mask == "all_behaviors":
            label = "full ranking, training items of every behavior masked"
    else:
        negatives = sample_negatives(split, users, num_negatives, seed)
        label = (
            f"{num_negatives} sampled negatives "
            f"(uniform over items the user never interacted with, seed {seed})"
        )
    ranks = np.empty(len(users), np.int64)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.asarray(score_fn(batch))
        if scores.shape != (len(batch), num_items) or not np.issubdtype(scores.dtype, np.floating):
            raise ValueError(
                f"score_fn must return float scores of shape ({len(batch)}, {num_items}). "
                f"Received: shape={scores.shape}, dtype={scores.dtype}"
            )
        target = targets[batch]
        if protocol == "full":
            scores = scores.copy()
            counts = offsets[batch + 1] - offsets[batch]
            row = np.repeat(np.arange(len(batch)), counts)
            col = np.concatenate([seen_items[offsets[u] : offsets[u + 1]] for u in batch])
            kept = scores[np.arange(len(batch)), target]
            scores[row, col] = -np.inf
            scores[np.arange(len(batch)), target] = kept  # the held-out item is never masked
            ranks[start : start + len(batch)] = target_ranks(scores, target)
        else:
            candidates = np.concatenate([target[:, None], negatives[start : start + len(batch)]], axis=1)
            picked = np.take_along_axis(scores, candidates, axis=1)
            ranks[start : start + len(batch)] = target_ranks(picked, np.zeros(len(batch), np.int64))
    return {"protocol": label, "stage": stage, "behavior": behavior, "users": int(len(users)),
            **metrics_from_ranks(ranks, ks)}
