"""Interaction-log loaders: CSV/Parquet files, Retailrocket, MovieLens-100K as behaviors, synthetic.

Every loader returns a :class:`tfjoint.features.interactions.InteractionLog` (users and items
indexed ``0 .. n - 1``, behaviors indexing ``spec.behaviors``, int64 timestamps); the
ranking protocols of :mod:`tfjoint.retrieval` consume it.

- :func:`read_interactions`: any CSV or Parquet table with user, item, behavior and
  timestamp columns.
- :func:`load_retailrocket`: the Retailrocket cut of SSLRec (HKUDS/SSLRec @7597c31,
  ``datasets/retail_rocket``: ``train_mat_{view,cart,buy}.pkl``, ``test_mat.pkl``), stored as
  CSV in the read-only ``../shared/data/sslrec_retailrocket`` (see its README): 2,174 users,
  30,113 items, behaviors view, cart, buy (target), one held-out buy per user.
- :func:`movielens_behaviors`: MovieLens-100K ratings as three behaviors, dislike
  (rating <= 2), neutral (3), like (>= 4, the target).
- :func:`synthetic_behaviors`: a seeded view / cart / buy generator whose auxiliary
  behaviors carry a tunable amount of signal about the target.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd

from tfjoint.datasets import movielens, samples
from tfjoint.features.interactions import InteractionLog, InteractionSpec

RETAILROCKET = InteractionSpec("retailrocket", ("view", "cart", "buy"), "buy")
MOVIELENS_BEHAVIORS = InteractionSpec("movielens-100k", ("dislike", "neutral", "like"), "like")
SYNTHETIC_BEHAVIORS = InteractionSpec("synthetic", ("view", "cart", "buy"), "buy")
RETAILROCKET_DIR = "sslrec_retailrocket"
RETAILROCKET_NUM_USERS = 2174
RETAILROCKET_NUM_ITEMS = 30113
"""Sizes of SSLRec's matrices (``train_mat_buy.pkl`` is 2,174 x 30,113); 208 items occur in
no training event."""
_READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def read_interactions(
    path: str | os.PathLike,
    spec: InteractionSpec,
    *,
    user: str = "user",
    item: str = "item",
    behavior: str | None = "behavior",
    timestamp: str | None = "timestamp",
    num_users: int | None = None,
    num_items: int | None = None,
) -> InteractionLog:
    """Read an interaction log from a CSV or Parquet file (chosen by the file extension).

    Raw ids are indexed in sorted order, ``user_ids[u]`` being the raw id of index ``u``
    (likewise ``item_ids``), unless ``num_users`` / ``num_items`` is given: then the ids are
    taken as already 0-based indices in ``[0, num_users)`` (resp. ``[0, num_items)``) and kept
    as they are, so that items that occur in no row still have an index.

    Args:
        path: a ``.csv``, ``.parquet`` or ``.pq`` file.
        spec: behavior names and the target; ``behavior`` column values must be names in
            ``spec.behaviors``.
        user, item, behavior, timestamp: column names. ``behavior=None``: every row is a
            target event. ``timestamp=None``: the row order is the time (0, 1, 2, ...).
        num_users, num_items: keep integer ids as indices of index spaces of these sizes.

    Raises:
        ValueError: the file cannot be read, a column is missing, a behavior is unknown, or
            an id lies outside a given index space.
    """
    path = pathlib.Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"interactions must be a .csv or .parquet file. Received: path={str(path)!r}")
    try:
        frame = reader(path)
    except (OSError, ValueError, UnicodeDecodeError, ImportError) as e:
        detail = " ".join(str(e).split())
        message = f"cannot read interactions from {str(path)!r}: {type(e).__name__}: {detail}"
        raise ValueError(message) from None
    columns = [c for c in (user, item, behavior, timestamp) if c is not None]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{str(path)!r} has no column {missing[0]!r}; columns: {list(frame.columns)}")
    if behavior is None:
        behaviors = np.full(len(frame), spec.target_index, np.int64)
    else:
        names = frame[behavior].astype(str)
        unknown = sorted(set(names.unique()) - set(spec.behaviors))
        if unknown:
            raise ValueError(
                f"unknown behavior {unknown[0]!r} in column {behavior!r}; {spec.name} knows {spec.behaviors}"
            )
        behaviors = names.map({b: i for i, b in enumerate(spec.behaviors)}).to_numpy(np.int64)
    if timestamp is None:
        times = np.arange(len(frame), dtype=np.int64)
    else:
        times = frame[timestamp].to_numpy(np.int64)
    users, user_ids, n_users = _index(frame[user].to_numpy(), num_users, "users")
    items, item_ids, n_items = _index(frame[item].to_numpy(), num_items, "items")
    return InteractionLog(spec, users, items, behaviors, times, n_users, n_items, user_ids, item_ids)


def _index(raw: np.ndarray, size: int | None, what: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(indices, raw ids per index, index-space size) of one id column."""
    if size is None:
        ids, indices = np.unique(raw, return_inverse=True)
        return indices.astype(np.int64), ids, len(ids)
    indices = np.asarray(raw, np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= size):
        raise ValueError(f"{what} ids must lie in [0, {size}). Received: [{indices.min()}, {indices.max()}]")
    return indices, np.arange(size, dtype=np.int64), size


def load_retailrocket(data_dir: str | os.PathLike | None = None) -> tuple[InteractionLog, np.ndarray]:
    """SSLRec's Retailrocket: the training log and the held-out test buy of every user.

    Ids are kept as in SSLRec's matrices (already 0-based): 2,174 users, 30,113 items.
    ``train.csv`` holds 97,381 events (75,374 view, 12,456 cart, 9,551 buy) from May to
    September 2015; ``test.csv`` one buy per user, never in the training log in any behavior.
    SSLRec ranks the test buy against every item with the user's training *buys* masked
    (``AllRankTstData(tst_mat, trn_mat)`` with ``trn_mat = train_mat_buy``, in
    ``data_utils/data_handler_multi_behavior.py``).

    Args:
        data_dir: the folder with ``train.csv`` and ``test.csv``; defaults to
            ``<shared data>/sslrec_retailrocket`` (see :func:`samples.shared_data_dir`).

    Returns:
        ``(train, test_items)``: the log (spec :data:`RETAILROCKET`) and a ``(2174,)`` int64
        array, the test item of each user (-1 where a user has none).

    Raises:
        FileNotFoundError: no shared data folder (when ``data_dir`` is None).
        ValueError: a file cannot be read or does not have the expected columns.
    """
    folder = pathlib.Path(data_dir) if data_dir is not None else samples.shared_data_dir() / RETAILROCKET_DIR
    sizes = {"num_users": RETAILROCKET_NUM_USERS, "num_items": RETAILROCKET_NUM_ITEMS}
    train = read_interactions(folder / "train.csv", RETAILROCKET, **sizes)
    test = read_interactions(folder / "test.csv", RETAILROCKET, behavior=None, timestamp=None, **sizes)
    if len(np.unique(test.users)) != len(test):
        raise ValueError(f"{folder / 'test.csv'} must hold at most one test item per user")
    test_items = np.full(RETAILROCKET_NUM_USERS, -1, np.int64)
    test_items[test.users] = test.items
    return train, test_items


def movielens_behaviors(cache_dir: str | os.PathLike | None = None) -> InteractionLog:
    """MovieLens-100K ratings as behaviors dislike (rating <= 2), neutral (3), like (>= 4).

    Every rating is one event with its timestamp; ``like`` is the target (spec
    :data:`MOVIELENS_BEHAVIORS`). Raw ids are indexed in numeric order (``user_ids`` holds
    1 .. 943, ``item_ids`` 1 .. 1682). Counts: 100,000 events, 17,480 dislike, 27,145
    neutral, 55,375 like.

    Args:
        cache_dir: passed to :func:`tfjoint.datasets.movielens.load_raw_tables`.

    Raises:
        RuntimeError: MovieLens-100K is neither cached nor reachable.
    """
    ratings = movielens.load_raw_tables(cache_dir).ratings
    stars = ratings["rating"].to_numpy(np.int64)
    behaviors = np.where(stars <= 2, 0, np.where(stars == 3, 1, 2)).astype(np.int64)
    users, user_ids, num_users = _index(ratings["user_id"].astype(np.int64).to_numpy(), None, "users")
    items, item_ids, num_items = _index(ratings["item_id"].astype(np.int64).to_numpy(), None, "items")
    return InteractionLog(
        MOVIELENS_BEHAVIORS, users, items, behaviors, ratings["timestamp"].to_numpy(np.int64),
        num_users, num_items, user_ids, item_ids,
    )


def synthetic_behaviors(
    num_users: int,
    num_items: int,
    *,
    signal: float,
    seed: int,
    dim: int = 8,
    scale: float = 3.0,
    views_per_user: int = 20,
    carts_per_user: int = 5,
    buys_per_user: int = 5,
    horizon: int = 1_000_000,
) -> InteractionLog:
    """A seeded view / cart / buy log whose views and carts carry ``signal`` about the buys.

    Generative process (``rng = numpy.random.default_rng(seed)``; ``N`` standard normals):

    1. Target preferences: ``p_u, q_i ~ N(0, I_dim)`` and
       ``z_ui = scale * p_u . q_i / sqrt(dim)`` (so ``std(z) = scale``).
    2. Independent preferences ``p~_u, q~_i ~ N(0, I_dim)``, ``z~_ui`` alike, and the
       auxiliary logits ``a_ui = signal * z_ui + sqrt(1 - signal^2) * z~_ui``: ``a`` has the
       distribution of ``z`` and ``corr(a, z) = signal``. ``signal = 0``: views and carts
       are independent of the buy preferences; ``signal = 1``: drawn from the same ones.
    3. Each user buys ``buys_per_user`` distinct items drawn from ``softmax(z_u)`` without
       replacement, views ``views_per_user`` distinct items from ``softmax(a_u)`` and carts
       ``carts_per_user`` distinct items from ``softmax(a_u)`` (independently; a cart need
       not follow a view). Sampling without replacement uses the Gumbel top-k trick:
       the ``k`` largest ``logit + Gumbel(0, 1)``.
    4. Every event gets a timestamp uniform in ``[0, horizon)``.

    Args:
        num_users, num_items: index-space sizes; each ``*_per_user`` must be <= num_items.
        signal: in ``[0, 1]``, the correlation of auxiliary and target logits.
        seed: the only source of randomness.
        dim: latent dimension. scale: std of the logits (larger: more concentrated).

    Returns:
        An :class:`InteractionLog` with spec :data:`SYNTHETIC_BEHAVIORS`, rows by behavior
        (view, cart, buy) then user.
    """
    if not 0.0 <= signal <= 1.0:
        raise ValueError(f"signal must lie in [0, 1]. Received: signal={signal}")
    counts = (views_per_user, carts_per_user, buys_per_user)
    if num_users < 1 or num_items < 1:
        raise ValueError(f"num_users and num_items must be >= 1. Received: {num_users}, {num_items}")
    if min(counts) < 0 or max(counts) > num_items:
        raise ValueError(f"events per user must lie in [0, num_items={num_items}]. Received: {counts}")
    if dim < 1 or scale <= 0 or horizon < 1:
        raise ValueError(f"dim, scale and horizon must be positive. Received: {dim}, {scale}, {horizon}")
    rng = np.random.default_rng(seed)

    def logits() -> np.ndarray:
        p, q = rng.standard_normal((num_users, dim)), rng.standard_normal((num_items, dim))
        return scale * (p @ q.T) / np.sqrt(dim)

    target = logits()
    auxiliary = signal * target + np.sqrt(1.0 - signal**2) * logits()
    users, items, behaviors = [], [], []
    for b, (logit, k) in enumerate(zip((auxiliary, auxiliary, target), counts)):
        top = np.argsort(-(logit + rng.gumbel(size=logit.shape)), axis=1, kind="stable")[:, :k]
        users.append(np.repeat(np.arange(num_users), k))
        items.append(top.reshape(-1))
        behaviors.append(np.full(num_users * k, b))
    users, items, behaviors = (np.concatenate(x).astype(np.int64) for x in (users, items, behaviors))
    timestamps = rng.integers(0, horizon, size=len(users), dtype=np.int64)
    return InteractionLog(SYNTHETIC_BEHAVIORS, users, items, behaviors, timestamps, num_users, num_items)
