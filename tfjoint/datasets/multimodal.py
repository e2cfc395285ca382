"""Interaction logs with dense item features, and items held out of training (cold items).

- :func:`synthetic_multimodal`: a seeded buy log whose item feature vectors carry a tunable
  amount of the preference signal, with a known set of cold items.
- :func:`movielens_multimodal`: MovieLens-100K's likes with genre and release-year features
  and a seeded random set of cold items.

Both return a :class:`MultiModalLog`; :mod:`tfjoint.retrieval.cold_start` splits it into
warm and cold test items.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfjoint.features.interactions import InteractionLog, InteractionSpec

SYNTHETIC_MULTIMODAL = InteractionSpec("synthetic-multimodal", ("buy",), "buy")


@dataclasses.dataclass(frozen=True, eq=False)
class MultiModalLog:
    """An interaction log, a feature vector per item, and the items to keep out of training.

    Args:
        log: every event, those of cold items included.
        item_features: ``(log.num_items, F)`` float32.
        cold_items: sorted distinct item indices that no model may train on.
    """

    log: InteractionLog
    item_features: np.ndarray
    cold_items: np.ndarray

    def __post_init__(self) -> None:
        features = np.asarray(self.item_features, np.float32)
        if features.ndim != 2 or features.shape[0] != self.log.num_items:
            raise ValueError(
                f"item_features must have shape (num_items={self.log.num_items}, F). Received: shape={features.shape}"
            )
        cold = np.unique(np.asarray(self.cold_items, np.int64))
        if len(cold) and (cold[0] < 0 or cold[-1] >= self.log.num_items):
            raise ValueError(f"cold_items must lie in [0, {self.log.num_items}). Received: [{cold[0]}, {cold[-1]}]")
        object.__setattr__(self, "item_features", features)
        object.__setattr__(self, "cold_items", cold)


def synthetic_multimodal(
    num_users: int,
    num_items: int,
    *,
    signal: float,
    seed: int,
    dim: int = 8,
    feature_dim: int = 32,
    scale: float = 3.0,
    buys_per_user: int = 10,
    cold_fraction: float = 0.2,
    horizon: int = 1_000_000,
) -> MultiModalLog:
    """A seeded buy log whose item features carry ``signal`` about the preferences.

    Generative process (``rng = numpy.random.default_rng(seed)``; ``N`` standard normals):

    1. Preferences: ``p_u, q_i ~ N(0, I_dim)``, ``z_ui = scale * p_u . q_i / sqrt(dim)``.
    2. Features: ``f_i = signal * q_i A + sqrt(1 - signal^2) * q~_i A~`` with independent
       ``q~_i ~ N(0, I_dim)`` and projections ``A, A~ ~ N(0, 1 / dim)`` of shape
       ``(dim, feature_dim)``: every feature has unit variance at every signal; at
       ``signal = 1`` ``q_i`` is a linear function of ``f_i`` (``feature_dim >= dim``), at
       ``signal = 0`` the features are independent of the preferences.
    3. Each user buys ``buys_per_user`` distinct items drawn from ``softmax(z_u)`` without
       replacement (Gumbel top-k), over every item, cold ones included.
    4. ``round(cold_fraction * num_items)`` items, uniform without replacement, are cold.
    5. Every event gets a timestamp uniform in ``[0, horizon)``.

    Returns:
        A :class:`MultiModalLog` with spec :data:`SYNTHETIC_MULTIMODAL`.
    """
    if not 0.0 <= signal <= 1.0:
        raise ValueError(f"signal must lie in [0, 1]. Received: signal={signal}")
    if not 0.0 <= cold_fraction < 1.0:
        raise ValueError(f"cold_fraction must lie in [0, 1). Received: cold_fraction={cold_fraction}")
    if num_users < 1 or num_items < 1:
        raise ValueError(f"num_users and num_items must be >= 1. Received: {num_users}, {num_items}")
    if not 0 <= buys_per_user <= num_items:
        raise ValueError(f"buys_per_user must lie in [0, num_items={num_items}]. Received: {buys_per_user}")
    if dim < 1 or feature_dim < 1 or scale <= 0 or horizon < 1:
        raise ValueError(
            f"dim, feature_dim, scale and horizon must be positive. Received: {dim}, {feature_dim}, {scale}, {horizon}"
        )
    rng = np.random.default_rng(seed)
    p, q = rng.standard_normal((num_users, dim)), rng.standard_normal((num_items, dim))
    logits = scale * (p @ q.T) / np.sqrt(dim)
    noise = rng.standard_normal((num_items, dim))
    a, a_noise = (rng.standard_normal((dim, feature_dim)) / np.sqrt(dim) for _ in range(2))
    features = signal * (q @ a) + np.sqrt(1.0 - signal**2) * (noise @ a_noise)
    top = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1, kind="stable")[:, :buys_per_user]
    users = np.repeat(np.arange(num_users), buys_per_user)
    items = top.reshape(-1)
    cold = rng.choice(num_items, size=int(round(cold_fraction * num_items)), replace=False)
    timestamps = rng.integers(0, horizon, size=len(users), dtype=np.int64)
    log = InteractionLog(
        SYNTHETIC_MULTIMODAL, users, items, np.zeros(len(users), np.int64), timestamps, num_users, num_items
    )
    return MultiModalLog(log, features.astype(np.float32), cold)


def movielens_multimodal(
    cold_fraction: float = 0.2, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> MultiModalLog:
    """MovieLens-100K (behaviors dislike / neutral / like, target like) with item features
    ``[19 genre flags, standardized release year]`` and ``round(cold_fraction * 1682)``
    seeded random cold items (a missing year is the median year, i.e. 0)."""
    from tfjoint.datasets import interactions, movielens

    if not 0.0 <= cold_fraction < 1.0:
        raise ValueError(f"cold_fraction must lie in [0, 1). Received: cold_fraction={cold_fraction}")
    log = interactions.movielens_behaviors(cache_dir)
    items = movielens.load_raw_tables(cache_dir).items
    items = items.loc[[str(i) for i in log.item_ids]]
    genres = np.array([[g in row for g in movielens.GENRE_NAMES] for row in items["genres"]], np.float32)
    years = items["release_year"].to_numpy(dtype=float)
    years = np.where(np.isnan(years), np.nanmedian(years), years)
    years = (years - years.mean()) / max(years.std(), 1e-9)
    cold = np.random.default_rng(seed).choice(log.num_items, size=int(round(cold_fraction * log.num_items)), replace=False)
    return MultiModalLog(log, np.concatenate([genres, years[:, None]], axis=1), cold)
