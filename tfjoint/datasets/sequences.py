"""Behavior-sequence extraction shared by the MovieLens and synthetic loaders."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Histories:
    """One behavior sequence per query, oldest first, as lists of numpy arrays."""

    items: list[np.ndarray]
    behaviors: list[np.ndarray]
    timestamps: list[np.ndarray]


def strict_histories(
    event_users: np.ndarray,
    event_times: np.ndarray,
    event_items: np.ndarray,
    event_behaviors: np.ndarray,
    query_users: np.ndarray,
    query_times: np.ndarray,
    max_len: int,
) -> Histories:
    """For each query ``(user, t)``, the user's last ``max_len`` events with time ``< t``.

    Events at exactly ``t`` are excluded: an example must never see an event that is not
    strictly in its past (the rating it predicts, or one given in the same second).

    Args:
        event_users, event_times, event_items, event_behaviors: one entry per event;
            users are non-negative integer codes, times integers.
        query_users, query_times: one entry per query, same user codes and time unit.
        max_len: keep at most this many most recent events.

    Returns:
        :class:`Histories` whose arrays are slices (views) of the time-sorted events.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1; Received: max_len={max_len}")
    all_times = np.concatenate([event_times, query_times]).astype(np.int64)
    t_min = int(all_times.min()) if len(all_times) else 0
    span = int(all_times.max()) - t_min + 1 if len(all_times) else 1
    # One int64 key orders by (user, time), so one searchsorted finds, for every query,
    # the first event of its user and the first event at or after its time.
    event_keys = event_users.astype(np.int64) * span + (event_times.astype(np.int64) - t_min)
    order = np.argsort(event_keys, kind="stable")
    event_keys = event_keys[order]
    items, behaviors, times = event_items[order], event_behaviors[order], event_times[order]
    user_base = query_users.astype(np.int64) * span
    starts = np.searchsorted(event_keys, user_base, side="left")
    ends = np.searchsorted(event_keys, user_base + (query_times.astype(np.int64) - t_min), side="left")
    starts = np.maximum(starts, ends - max_len)
    return Histories(
        items=[items[s:e] for s, e in zip(starts.tolist(), ends.tolist())],
        behaviors=[behaviors[s:e] for s, e in zip(starts.tolist(), ends.tolist())],
        timestamps=[times[s:e] for s, e in zip(starts.tolist(), ends.tolist())],
    )


def time_split_mask(times: np.ndarray, eval_fraction: float) -> tuple[np.ndarray, float]:
    """Boolean "is train" mask from one global time cutoff, and the cutoff.

    The cutoff is the ``1 - eval_fraction`` quantile of ``times``; rows strictly before it
    are train and rows at or after it are eval, so every train row precedes every eval row.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(
            f"eval_fraction must be in (0, 1); Received: eval_fraction={eval_fraction}"
        )
    cutoff = float(np.quantile(times, 1.0 - eval_fraction))
    is_train = times < cutoff
    if is_train.all() or not is_train.any():
        raise ValueError(
            f"eval_fraction={eval_fraction} leaves an empty split (cutoff={cutoff})"
        )
    return is_train, cutoff


def object_array(values: list) -> np.ndarray:
    """A 1-D object array of lists (one list column of a frame)."""
    # np.array(list_of_arrays) would stack equal-length arrays into a 2-D array.
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out
