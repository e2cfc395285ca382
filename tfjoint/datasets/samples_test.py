"""Tests of tfjoint.datasets.samples on the real samples in ../shared/data."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfjoint import features
from tfjoint.datasets import examples, samples, write_dataset

try:
    DATA = samples.shared_data_dir()
except FileNotFoundError as e:
    pytest.skip(f"shared real-data samples are absent: {e}", allow_module_level=True)

CASES = {
    "ali-ccp-sample": (samples.load_ali_ccp_frames, {"train": 100, "eval": 100}),
    "aliexpress-sample": (samples.load_aliexpress_frames, {"train": 100, "eval": 20}),
    "census-sample": (samples.load_census_frames, {"train": 80, "eval": 40}),
    "douban-sample": (samples.load_douban_frames, {"train": 2400, "eval": 600}),
}
# Raw columns that no key of the spec takes.
UNUSED_COLUMNS = {"aliexpress-sample": {"search_id"}}
RAW_FILES = {
    "ali-ccp-sample": samples.SCENARIO_WISE_REC_DIR + "/ali_ccp_train_sample.csv",
    "aliexpress-sample": samples.TORCH_RECHUB_DIR + "/aliexpress_train_sample.csv",
    "census-sample": samples.TORCH_RECHUB_DIR + "/census_income_train_sample.csv",
    "douban-sample": samples.SCENARIO_WISE_REC_DIR + "/douban_sample.csv",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_frames_have_every_key(name):
    loader, sizes = CASES[name]
    spec = features.get_dataset_spec(name)
    frames = loader()
    assert {split: len(frame) for split, frame in frames.items()} == sizes
    for frame in frames.values():
        assert sorted(frame.columns) == sorted(spec.feature_keys + spec.label_keys)
        assert frame[features.SCENARIO_KEY].between(0, spec.num_scenarios - 1).all()
        for task in spec.tasks:
            if task.parent:
                assert (frame[task.name] <= frame[task.parent]).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_spec_covers_the_real_header_exactly(name):
    """Every raw column maps to one key of the spec (or is known to be unused)."""
    spec = features.get_dataset_spec(name)
    header = pd.read_csv(DATA / RAW_FILES[name], nrows=0).columns
    keys = set(spec.categorical + spec.dense + spec.label_keys)
    if name == "ali-ccp-sample":
        mapped = {c if c.startswith("D") or c in spec.label_keys else "f" + c for c in header}
        mapped.discard("f" + samples.ALI_CCP_SCENARIO_COLUMN)
    elif name == "douban-sample":
        mapped = (set(header) - {samples.DOUBAN_SCENARIO_COLUMN, "join_time"}) | {"join_year"}
    elif name == "census-sample":
        mapped = {samples.CENSUS_LABEL_COLUMNS.get(c, samples.census_key(c)) for c in header}
    else:
        mapped = set(header) - UNUSED_COLUMNS[name]
    assert mapped == keys


def test_ali_ccp_scenario_is_field_301_minus_one():
    raw = pd.read_csv(DATA / RAW_FILES["ali-ccp-sample"], dtype=str)
    frame = samples.load_ali_ccp_frames()["train"]
    assert frame[features.SCENARIO_KEY].tolist() == (raw["301"].astype(int) - 1).tolist()
    assert frame["f101"].tolist() == raw["101"].tolist()


@pytest.mark.parametrize("name", sorted(CASES))
def test_write_dataset_round_trip(name, tmp_path):
    spec = features.get_dataset_spec(name)
    frame = CASES[name][0]()["eval"]
    out = write_dataset(name, tmp_path)
    records = list(tf.data.TFRecordDataset(str(out / "eval" / "data.tfrecord")))
    assert len(records) == len(frame)
    parsed = tf.io.parse_example(tf.stack(records), examples.parse_feature_spec(spec))
    row = 3
    for key in spec.categorical:
        assert parsed[key].numpy()[row].decode() == frame[key].iloc[row], key
    for key in spec.dense + spec.label_keys:
        assert parsed[key].numpy()[row] == pytest.approx(frame[key].iloc[row], rel=1e-6), key
    assert parsed[features.SCENARIO_KEY].numpy()[row] == frame[features.SCENARIO_KEY].iloc[row]


def test_shared_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(samples.SHARED_DATA_ENV, str(tmp_path))
    assert samples.shared_data_dir() == tmp_path
    monkeypatch.delenv(samples.SHARED_DATA_ENV)
    repo_root = pathlib.Path(samples.__file__).resolve().parents[2]
    assert samples.shared_data_dir() == repo_root.parent / "shared" / "data"
    monkeypatch.setattr(samples, "__file__", str(tmp_path / "a" / "b" / "c" / "samples.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=samples.SHARED_DATA_ENV):
        samples.shared_data_dir()


def test_census_key():
    assert samples.census_key("migration code-change in msa") == "migration_code_change_in_msa"
    assert np.all([samples.census_key(k) == k for k in features.CENSUS_SAMPLE.categorical])


def test_douban_domain_is_the_scenario_and_every_domain_is_evaluated():
    raw = pd.read_csv(DATA / RAW_FILES["douban-sample"], dtype=str, keep_default_na=False)
    frames = samples.load_douban_frames()
    both = pd.concat([frames["train"], frames["eval"]])
    spec = features.DOUBAN_SAMPLE
    counts = both[features.SCENARIO_KEY].map(lambda p: spec.scenarios[p]).value_counts().to_dict()
    assert counts == raw["domain"].value_counts().to_dict()
    assert set(frames["eval"][features.SCENARIO_KEY]) == {0, 1, 2}
    # Each raw row keeps its own domain: match rows by (user, item) pairs.
    raw_pairs = {(u, i): d for u, i, d in zip(raw["user_id"], raw["item_id"], raw["domain"])}
    for u, i, p in zip(both["user_id"], both["item_id"], both[features.SCENARIO_KEY]):
        assert raw_pairs[(u, i)] == spec.scenarios[p]
    assert set(both["join_year"]) <= {float(y) for y in range(1990, 2030)}
