"""Tests of the tfjoint.datasets entry points: load_frames and write_dataset."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tfjoint import datasets, features


def test_every_dataset_has_a_loader():
    assert set(datasets.LOADERS) == set(features.DATASETS)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="movielens-100k") as info:
        datasets.load_frames("no-such-data")
    assert "synthetic" in str(info.value)


def test_write_dataset_synthetic(tmp_path):
    spec = features.SYNTHETIC
    frames = datasets.load_frames(spec.name, n=500, seed=4)
    out = datasets.write_dataset(spec.name, tmp_path / "out", n=500, seed=4)
    records = list(tf.data.TFRecordDataset(str(out / "train" / "data.tfrecord")))
    assert len(records) == len(frames["train"])
    parsed = tf.io.parse_example(tf.stack(records), datasets.parse_feature_spec(spec))
    row = frames["train"].iloc[7]
    assert parsed[spec.categorical[0]].numpy()[7].decode() == row[spec.categorical[0]]
    assert parsed[spec.label_keys[0]].numpy()[7] == row[spec.label_keys[0]]
    items = tf.sparse.to_dense(parsed[features.SEQUENCE_ITEMS_KEY], default_value=b"").numpy()[7]
    assert [i.decode() for i in items if i] == list(row[features.SEQUENCE_ITEMS_KEY])
    tags = tf.sparse.to_dense(parsed[spec.tokens[0].name], default_value=b"").numpy()[7]
    assert [t.decode() for t in tags if t] == list(row[spec.tokens[0].name])
