"""The large synthetic log is data a user would bring: CSV parts and a spec that accepts them."""

import glob
import os

import pytest

from tfjoint.bench.scale_data import impressions, write
from tfjoint.datasets.tabular import write_user_data
from tfjoint.features import VocabularyBudget
from tfjoint.features.spec_file import load_spec_file


def test_the_parts_and_the_spec_go_through_the_pipeline_data_check(tmp_path):
    spec_path, pattern = write(str(tmp_path / "log"), rows=900, files=3, users=300, items=50, top_k=40, buckets=5)
    assert len(glob.glob(pattern)) == 3
    spec, source = load_spec_file(spec_path)
    assert spec.vocabulary_budgets == {"user_id": VocabularyBudget(top_k=40, num_oov_buckets=5)}
    root = write_user_data(pattern, spec, source, str(tmp_path / "out"))  # checked row by row
    assert sorted(os.listdir(root)) == ["eval", "train"]


def test_purchases_follow_clicks_and_ids_have_a_long_tail():
    frame = impressions(20_000, users=5_000, items=500, seed=1)
    assert frame["purchase"].isna().equals(frame["click"] == 0)  # observed after a click only
    counts = frame["user_id"].value_counts()
    assert counts.iloc[0] > 20 * counts.median()  # Zipf: a head user far above the median one
    assert frame.equals(impressions(20_000, users=5_000, items=500, seed=1))


def test_bad_sizes_fail_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"--rows must be an integer >= 1\. Received: 0"):
        write(str(tmp_path / "x"), rows=0)
    assert not (tmp_path / "x").exists()
