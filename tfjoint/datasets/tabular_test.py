"""A user's CSV, checked against their spec: bad data fails in one line naming the column and
the row, good data becomes the raw tf.Example records of the spec."""

import csv
import glob
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tfjoint.datasets.examples import parse_feature_spec
from tfjoint.datasets.tabular import write_user_data
from tfjoint.features.spec_file import load_spec_file

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data"
SPEC, SOURCE = load_spec_file(str(DATA / "shop.yaml"))
HEADER = ["user_id", "item_id", "device", "price", "page", "history_items", "history_behaviors", "title",
          "click", "purchase", "dwell"]
GOOD = ["u1", "i1", "ios", "10.5", "search", "i2|i3", "view|buy", "Red Wool Scarf", "1", "0", "12.5"]


def _csv(tmp_path, rows, header=HEADER, name="data.csv"):
    path = tmp_path / name
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)
    return str(path)


def _row(**changes):
    row = dict(zip(HEADER, GOOD))
    row.update(changes)
    return [row[k] for k in HEADER]


BAD = [
    (dict(price="abc"), r"column 'price' \(dense\) has 1 values that are not finite numbers: first at row 3 \(line 4\), 'abc'"),
    (dict(price=""), r"column 'price' \(dense\) has 1 empty or missing values: first at row 3 \(line 4\), ''"),
    (dict(click="7"), r"column 'click' \(binary label: 0 or 1\) has 1 values outside the task's domain: first at row 3 \(line 4\), 7\.0"),
    (dict(dwell="inf"), r"column 'dwell' \(regression label\) .* row 3 \(line 4\), 'inf'"),
    (dict(page="cart"), r"column 'page' \(scenario: one of \['home', 'search', 'detail'\] or its index 0\.\.2\) .* row 3 \(line 4\), 'cart'"),
    (dict(history_behaviors="view|like"), r"column 'history_behaviors' \(behaviors: .*\) has 1 rows with an unknown behavior: first at row 3"),
    (dict(history_behaviors="view"), r"columns 'history_items' and 'history_behaviors' differ in length on 1 rows: first at row 3 \(line 4\), 2 items and 1 behaviors"),
    (dict(user_id=""), r"column 'user_id' \(categorical\) has 1 empty or missing values: first at row 3"),
    (dict(purchase=""), r"column 'purchase' \(label of a child of 'click'\) has 1 empty values where 'click' is not 0: first at row 3"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[next(iter(c)) + "=" + next(iter(c.values())) for c, _ in BAD])
def test_data_that_does_not_match_the_spec_names_column_and_row(tmp_path, change, message):
    path = _csv(tmp_path, [_row(), _row(), _row(**change), _row()])
    with pytest.raises(ValueError, match=rf"^{path}: {message}") as info:
        write_user_data(path, SPEC, SOURCE, str(tmp_path / "out"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written before the data is clean


def test_a_missing_column_is_named_with_its_role(tmp_path):
    header = [h for h in HEADER if h != "price"]
    path = _csv(tmp_path, [[v for h, v in zip(HEADER, GOOD) if h != "price"]], header=header)
    with pytest.raises(ValueError, match=r"lacks column 'price' \(dense of spec 'shop'\); missing: \['price'\]"):
        write_user_data(path, SPEC, SOURCE, str(tmp_path / "out"))


def test_no_file_and_a_foreign_file_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data .*\*\.csv matches no file"):
        write_user_data(str(tmp_path / "*.csv"), SPEC, SOURCE, str(tmp_path / "out"))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"x\.json is not CSV, Parquet or TFRecord"):
        write_user_data(str(tmp_path / "*"), SPEC, SOURCE, str(tmp_path / "out"))


def _records(root, split):
    files = glob.glob(os.path.join(root, split, "*"))
    batch = next(iter(tf.data.TFRecordDataset(files).batch(10_000)))
    return tf.io.parse_example(batch, parse_feature_spec(SPEC))


def test_the_shipped_csv_becomes_typed_examples_split_the_same_way_each_time(tmp_path):
    first = write_user_data(str(DATA / "shop.csv"), SPEC, SOURCE, str(tmp_path / "a"))
    again = write_user_data(str(DATA / "shop.csv"), SPEC, SOURCE, str(tmp_path / "b"))
    train, held = _records(first, "train"), _records(first, "eval")
    rows = int(train["click"].shape[0]) + int(held["click"].shape[0])
    with open(DATA / "shop.csv") as f:
        table = list(csv.DictReader(f))
    assert rows == len(table)
    assert 0.15 < held["click"].shape[0] / rows < 0.35  # eval_fraction 0.25
    for split in ("train", "eval"):  # the same rows in the same order (map order in a proto may differ)
        a, b = _records(first, split), _records(again, split)
        for key in ("user_id", "price", "dwell"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    # Row by row, the first training record is the first CSV row drawn into train.
    in_train = np.random.default_rng(0).random(len(table)) >= 0.25
    source_row = table[int(np.argmax(in_train))]
    assert train["user_id"][0].numpy().decode() == source_row["user_id"]
    assert train["scenario"][0].numpy() == SPEC.scenarios.index(source_row["page"])
    assert train["price"][0].numpy() == pytest.approx(float(source_row["price"]))
    items = tf.sparse.to_dense(train["seq_items"], default_value=b"")[0].numpy().tolist()
    assert [i.decode() for i in items if i] == [i for i in source_row["history_items"].split("|") if i]
    title = tf.sparse.to_dense(train["title"], default_value=b"")[0].numpy().tolist()
    assert [t.decode() for t in title if t] == source_row["title"].lower().split()
    # A purchase left empty where there was no click is 0: undefined there, and never a positive.
    clicks, purchases = np.concatenate([train["click"], held["click"]]), np.concatenate([train["purchase"], held["purchase"]])
    assert np.all(purchases[clicks == 0] == 0) and purchases.sum() > 0


def test_a_parquet_file_reads_like_the_csv_with_typed_columns(tmp_path):
    import pandas as pd

    frame = pd.read_csv(DATA / "shop.csv", keep_default_na=False)  # ids as strings, prices and labels as numbers
    frame["purchase"] = pd.to_numeric(frame["purchase"])  # the empty child labels are NaN in Parquet
    frame.to_parquet(tmp_path / "shop.parquet")
    from_csv = _records(write_user_data(str(DATA / "shop.csv"), SPEC, SOURCE, str(tmp_path / "a")), "train")
    from_parquet = _records(write_user_data(str(tmp_path / "shop.parquet"), SPEC, SOURCE, str(tmp_path / "b")), "train")
    for key in ("user_id", "scenario", "price", "click", "purchase", "dwell"):
        np.testing.assert_array_equal(from_csv[key].numpy(), from_parquet[key].numpy())


def test_tfrecords_of_tf_example_get_the_same_checks_and_the_same_rows(tmp_path):
    from tensorflow.core.example import example_pb2

    root = write_user_data(str(DATA / "shop.csv"), SPEC, SOURCE, str(tmp_path / "csv"))
    records = os.path.join(root, "train", "data.tfrecord")
    again = _records(write_user_data(records, SPEC, SOURCE, str(tmp_path / "again")), "train")
    first = _records(root, "train")
    in_train = np.random.default_rng(0).random(int(first["click"].shape[0])) >= 0.25
    for key in ("user_id", "scenario", "price", "purchase", "dwell"):
        np.testing.assert_array_equal(again[key].numpy(), first[key].numpy()[in_train])
    # A record without a price, and one with a click of 7: named by row.
    examples = [example_pb2.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(records).take(4)]
    del examples[2].features.feature["price"]
    with tf.io.TFRecordWriter(str(tmp_path / "bad.tfrecord")) as writer:
        for e in examples:
            writer.write(e.SerializeToString())
    with pytest.raises(ValueError, match=r"bad\.tfrecord: column 'price' \(dense\) has 1 empty or missing values: first at row 3, ''"):
        write_user_data(str(tmp_path / "bad.tfrecord"), SPEC, SOURCE, str(tmp_path / "out"))
    examples[2].features.feature["price"].float_list.value.append(1.0)
    examples[1].features.feature["click"].float_list.value[:] = [7.0]
    with tf.io.TFRecordWriter(str(tmp_path / "bad.tfrecord")) as writer:
        for e in examples:
            writer.write(e.SerializeToString())
    with pytest.raises(ValueError, match=r"column 'click' \(binary label: 0 or 1\) .* first at row 2, 7\.0"):
        write_user_data(str(tmp_path / "bad.tfrecord"), SPEC, SOURCE, str(tmp_path / "out"))
