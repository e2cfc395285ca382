"""ItemPop: every user gets the items ranked by their training count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.retrieval.base import Recommender, behavior_names, check_catalog, check_users, training_rows, validate_once
from tfjoint.registry import register


@register("item_pop", slot="retrieval_model", family="retrieval", reference="Popularity baseline (non-personalized)")
class ItemPopularity(Recommender):
    """``score(u, i) = count of training events of item i`` in the trained behaviors.

    Counts events (rows), not distinct users: a log with repeated purchases ranks an item
    bought twice by one user like one bought once by two users. The same row for every
    user; ``history`` is ignored.

    Args:
        num_items: size of the item index space.
        behaviors: behaviors counted (default: the log's target behavior).

    Example:
    >>> import numpy as np
    >>> from tfjoint.features.interactions import InteractionLog, InteractionSpec
    >>> spec = InteractionSpec("toy", ("view", "buy"), "buy")
    >>> log = InteractionLog(spec, np.array([0, 1, 1]), np.array([2, 2, 0]), np.array([1, 1, 1]),
    ...                      np.zeros(3), num_users=2, num_items=3)
    >>> model = ItemPopularity(num_items=3); _ = model.fit(log)
    >>> model.score(np.array([0])).tolist()
    [[1.0, 0.0, 2.0]]
    """

    def __init__(self, num_items: int, behaviors: list[str] | None = None) -> None:
        self.num_items = positive_int("num_items", num_items)
        self.behaviors = None if behaviors is None else list(behaviors)
        self.counts = np.zeros(self.num_items, np.float32)

    def fit(
        self, train: InteractionLog, *, validate: Callable[[Any], float] | None = None, **unused: Any
    ) -> dict[str, Any]:
        """Counts the training events; ``epochs``, ``batch_size``, ``seed`` are accepted and unused."""
        check_catalog(train, self.num_items)
        behavior_names(train, self.behaviors)
        rows = training_rows(train, self.behaviors)
        self.counts = np.bincount(rows.items, minlength=self.num_items).astype(np.float32)
        return validate_once(self, validate)

    def score(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        users = check_users(users)
        return np.broadcast_to(self.counts, (len(users), self.num_items)).copy()

    def get_config(self) -> dict[str, Any]:
        return {"num_items": self.num_items, "behaviors": self.behaviors}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ItemPopularity":
        return cls(**config)
