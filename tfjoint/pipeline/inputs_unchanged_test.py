"""The check every pipeline test runs (conftest ``_inputs_unchanged``): it sees a modified,
an added and a removed input file, and the data roots a test gives the pipeline."""

from __future__ import annotations

import os

from tfjoint.pipeline import runners
from tfjoint.pipeline.conftest import InputWatch, fingerprint


def test_a_modified_added_or_removed_input_file_is_reported(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.tfrecord").write_bytes(b"mine")
    (data / "eval.csv").write_bytes(b"x")
    watch = InputWatch()
    watch.watch(data)
    watch.watch(tmp_path / "misspelt")  # absent: anything written there is reported
    assert watch.changes() == []
    st = os.stat(data / "train" / "a.tfrecord")
    (data / "train" / "a.tfrecord").write_bytes(b"MINE")  # same size,
    os.utime(data / "train" / "a.tfrecord", ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    (data / "eval.csv").unlink()
    (data / "eval").mkdir()
    (data / "eval" / "b.tfrecord").write_bytes(b"new")
    (tmp_path / "misspelt").mkdir()
    (tmp_path / "misspelt" / "c").write_bytes(b"")
    assert watch.changes() == [
        f"modified {data / 'train' / 'a.tfrecord'}",
        f"added {data / 'eval' / 'b.tfrecord'}",
        f"removed {data / 'eval.csv'}",
        f"added {tmp_path / 'misspelt' / 'c'}",
    ]
    assert fingerprint(str(data / "eval" / "b.tfrecord"))[str(data / "eval" / "b.tfrecord")][0] == 3


def test_every_data_root_given_to_the_pipeline_is_watched(tmp_path, _inputs_unchanged):
    user = tmp_path / "user"
    for split in ("train", "eval"):
        (user / split).mkdir(parents=True)
        (user / split / "data.tfrecord").write_bytes(split.encode())
    assert runners.check_data_root(str(user)) == str(user)
    assert str(user) in _inputs_unchanged.before
    (user / "train" / "data.tfrecord").write_bytes(b"overwritten")
    assert _inputs_unchanged.changes() == [f"modified {user / 'train' / 'data.tfrecord'}"]
    (user / "train" / "data.tfrecord").write_bytes(b"train")  # restored, or this test's own check fails
    os.utime(user / "train" / "data.tfrecord", ns=_mtime(_inputs_unchanged, user / "train" / "data.tfrecord"))


def _mtime(watch: InputWatch, path) -> tuple[int, int]:
    for before in watch.before.values():
        if str(path) in before:
            mtime = before[str(path)][1]
            return mtime, mtime
    raise KeyError(path)
