"""Two Beam worker processes give the Transform output one worker gives (issue 18)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from tfjoint.datasets.examples import write_tfrecords
from tfjoint.datasets.synthetic import load_synthetic_frames
from tfjoint.features import SYNTHETIC, VocabularyBudget
from tfjoint.pipeline.runners import beam_worker_args
from tfjoint.pipeline.transform import (
    fit_transform_graph,
    materialize,
    oov_rates,
    transformed_dataset,
    vocabulary_sizes,
)


def _assets(output) -> dict[str, bytes]:
    folder = os.path.join(output.transform_savedmodel_dir, "assets")
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_two_beam_workers_write_the_vocabularies_and_statistics_of_one(tmp_path):
    # A budget on user_id adds the top-k cut and the OOV counting pass; both merge counts
    # across workers, which is where a wrong merge would show.
    spec = dataclasses.replace(SYNTHETIC, vocabulary_budgets={"user_id": VocabularyBudget(top_k=50, num_oov_buckets=8)})
    frames = load_synthetic_frames(n=3000, seed=3)
    root = write_tfrecords(frames, spec, tmp_path / "data")
    one = fit_transform_graph(str(root), spec, str(tmp_path / "one"), beam_args=beam_worker_args(1))
    two = fit_transform_graph(str(root), spec, str(tmp_path / "two"), beam_args=beam_worker_args(2))

    assert beam_worker_args(2) == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    vocabularies = _assets(one)
    assert "user_id" in vocabularies and "user_id__oov_counts" in vocabularies
    assert _assets(two) == vocabularies  # every vocabulary file, byte for byte (order and counts)
    assert vocabulary_sizes(two, spec) == vocabulary_sizes(one, spec)
    assert oov_rates(two, spec) == oov_rates(one, spec) and 0 < oov_rates(one, spec)["user_id"] < 1
    # The analysers' statistics (means, variances of the z-scores) too: the transformed eval
    # split, ids exactly, z-scores up to float32 summation order (a measured 2.4e-7; a lost
    # or doubled shard would move a mean by ~1e-2).
    files = [os.path.join(root, "eval", "data.tfrecord")]
    (x1, _), (x2, _) = (materialize(transformed_dataset(o, files, spec, batch_size=1024)) for o in (one, two))
    for key in x1:
        np.testing.assert_allclose(x2[key], x1[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_beam_workers_are_checked_before_any_work():
    assert beam_worker_args(None) == beam_worker_args(1) == ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=r"--beam-workers must be an integer >= 1\. Received: "):
            beam_worker_args(bad)
    with pytest.raises(ValueError, match=r"with --runner=DataflowRunner set that runner's own worker count"):
        beam_worker_args(4, ["--runner=DataflowRunner"])
