"""Interaction logs: the input of top-K retrieval, multi-behavior and ranking evaluation.

An :class:`InteractionLog` is a table of events ``(user, item, behavior, timestamp)`` with
users and items already indexed ``0 .. num_users - 1`` and ``0 .. num_items - 1`` (the
original ids are kept in ``user_ids`` / ``item_ids``) and behaviors indexed into
``spec.behaviors``. An :class:`InteractionSpec` names the behaviors, in funnel order
(e.g. ``("view", "cart", "buy")``), and the *target* behavior that is ranked and evaluated.

This module owns that convention; loaders (:mod:`tfjoint.datasets`), protocols and models
(:mod:`tfjoint.retrieval`, :mod:`tfjoint.layers.retrieval`) only consume it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class InteractionSpec:
    """The behaviors of an interaction log and the one that is ranked.

    Args:
        name: dataset name, e.g. ``"retailrocket"``.
        behaviors: behavior names in funnel order (auxiliary first, target usually last).
        target: the target behavior, one of ``behaviors``.
    """

    name: str
    behaviors: tuple[str, ...]
    target: str

    def __post_init__(self) -> None:
        if not self.behaviors or len(set(self.behaviors)) != len(self.behaviors):
            raise ValueError(f"behaviors must be unique and non-empty. Received: behaviors={self.behaviors}")
        if self.target not in self.behaviors:
            raise ValueError(f"target must be one of {self.behaviors}. Received: target={self.target!r}")

    @property
    def target_index(self) -> int:
        return self.behaviors.index(self.target)


@dataclasses.dataclass(frozen=True, eq=False)
class InteractionLog:
    """Events ``(user, item, behavior, timestamp)``, one row each, as int64 numpy arrays.

    Rows need not be sorted; :meth:`sorted` orders them by ``(user, timestamp)`` (stable).

    Args:
        spec: the behaviors and the target.
        users, items, behaviors, timestamps: equal-length int64 arrays; ``behaviors`` index
            ``spec.behaviors``.
        num_users, num_items: sizes of the index spaces (may exceed the ids present).
        user_ids, item_ids: optional original ids, ``user_ids[u]`` for index ``u``.
    """

    spec: InteractionSpec
    users: np.ndarray
    items: np.ndarray
    behaviors: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("users", "items", "behaviors", "timestamps"):
            value = np.asarray(getattr(self, name))
            if value.ndim != 1 or len(value) != n:
                raise ValueError(f"{name} must be 1-D with {n} rows. Received: shape={value.shape}")
            object.__setattr__(self, name, value.astype(np.int64, copy=False))
        for name, size in (("users", self.num_users), ("items", self.num_items)):
            value = getattr(self, name)
            if n and (value.min() < 0 or value.max() >= size):
                raise ValueError(f"{name} must lie in [0, {size}). Received: [{value.min()}, {value.max()}]")
        if n and (self.behaviors.min() < 0 or self.behaviors.max() >= len(self.spec.behaviors)):
            raise ValueError(f"behaviors must index {self.spec.behaviors}. Received: max={self.behaviors.max()}")

    def __len__(self) -> int:
        return len(self.users)

    def select(self, mask: Any) -> "InteractionLog":
        """The rows where ``mask`` (a boolean array or an index array) holds; same index spaces."""
        return dataclasses.replace(
            self,
            users=self.users[mask],
            items=self.items[mask],
            behaviors=self.behaviors[mask],
            timestamps=self.timestamps[mask],
        )

    def of_behavior(self, behavior: str) -> "InteractionLog":
        """The rows of one behavior."""
        return self.select(self.behaviors == self.spec.behaviors.index(behavior))

    def target_rows(self) -> "InteractionLog":
        """The rows of the target behavior."""
        return self.select(self.behaviors == self.spec.target_index)

    def sorted(self) -> "InteractionLog":
        """Rows ordered by ``(user, timestamp)``, ties kept in their original order."""
        return self.select(np.lexsort((self.timestamps, self.users)))
