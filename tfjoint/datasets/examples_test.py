"""Tests of tfjoint.datasets.examples: the raw tf.Example encoding and the TFRecord layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2

from tfjoint import features
from tfjoint.datasets import examples

SPEC = features.SYNTHETIC


def _frame(rows: int = 3) -> pd.DataFrame:
    """A tiny frame with every key of SYNTHETIC, one empty sequence and an extra column."""
    data = {key: [str(i + 10) for i in range(rows)] for key in SPEC.categorical}
    data.update({key: np.arange(rows, dtype=float) + 0.5 for key in SPEC.dense})
    data[features.SCENARIO_KEY] = np.arange(rows) % SPEC.num_scenarios
    data[features.SEQUENCE_ITEMS_KEY] = [[], ["7", "8"], np.array(["9"], dtype=object)][:rows]
    data[features.SEQUENCE_BEHAVIORS_KEY] = [[], [1, 3], np.array([2])][:rows]
    data.update({t.name: [["a", "b"], [], ["c"]][:rows] for t in SPEC.tokens})
    data.update({key: np.ones(rows) for key in SPEC.label_keys})
    data[features.TIMESTAMP_KEY] = np.arange(rows)
    return pd.DataFrame(data)


def test_examples_have_exactly_the_spec_keys():
    records = list(examples.frame_to_examples(_frame(), SPEC))
    assert len(records) == 3
    for record in records:
        example = example_pb2.Example.FromString(record)
        assert set(example.features.feature) == set(SPEC.feature_keys) | set(SPEC.label_keys)
    second = example_pb2.Example.FromString(records[1]).features.feature
    assert list(second[features.SEQUENCE_ITEMS_KEY].bytes_list.value) == [b"7", b"8"]
    assert list(second[features.SEQUENCE_BEHAVIORS_KEY].int64_list.value) == [1, 3]
    assert list(second[features.SCENARIO_KEY].int64_list.value) == [1]
    assert list(second[SPEC.categorical[0]].bytes_list.value) == [b"11"]


def test_missing_column_is_named():
    frame = _frame().drop(columns=[SPEC.dense[3]])
    with pytest.raises(ValueError, match=SPEC.dense[3]):
        list(examples.frame_to_examples(frame, SPEC))


@pytest.mark.parametrize(
    "column, value, message",
    [
        (SPEC.categorical[0], [1.0, 2.0, 3.0], "strings or integers"),
        (features.SCENARIO_KEY, [0, 1, SPEC.num_scenarios], r"\[0, 3\)"),
        (SPEC.dense[0], [0.0, np.nan, 1.0], "finite"),
        (features.SEQUENCE_BEHAVIORS_KEY, [[], [1], [2]], "same length"),
        (SPEC.tokens[0].name, ["a", "b", "c"], "list or array"),
    ],
)
def test_invalid_values_raise(column, value, message):
    frame = _frame()
    frame[column] = value
    with pytest.raises(ValueError, match=message):
        list(examples.frame_to_examples(frame, SPEC))


def test_write_tfrecords_round_trip(tmp_path):
    frames = {"train": _frame(), "eval": _frame(2)}
    out = examples.write_tfrecords(frames, SPEC, tmp_path / "data")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "eval/data.tfrecord",
        "train/data.tfrecord",
    ]
    records = list(tf.data.TFRecordDataset(str(out / "train" / "data.tfrecord")))
    parsed = tf.io.parse_example(tf.stack(records), examples.parse_feature_spec(SPEC))
    assert parsed[SPEC.dense[0]].numpy().tolist() == [0.5, 1.5, 2.5]
    assert parsed[features.SCENARIO_KEY].numpy().tolist() == [0, 1, 2]
    items = tf.sparse.to_dense(parsed[features.SEQUENCE_ITEMS_KEY], default_value=b"").numpy()
    assert items.tolist() == [[b"", b""], [b"7", b"8"], [b"9", b""]]
    assert len(list(tf.data.TFRecordDataset(str(out / "eval" / "data.tfrecord")))) == 2


def test_write_tfrecords_needs_both_splits(tmp_path):
    with pytest.raises(ValueError, match="splits"):
        examples.write_tfrecords({"train": _frame()}, SPEC, tmp_path)


def test_failed_write_leaves_no_split(tmp_path):
    bad = _frame()
    bad[SPEC.dense[0]] = np.nan
    with pytest.raises(ValueError):
        examples.write_tfrecords({"train": _frame(), "eval": bad}, SPEC, tmp_path)
    assert list(tmp_path.iterdir()) == []
