"""Version loading follows TF Serving (issue 19, finding 3): failed loads are retried, a failed
directory that changes is re-read, a deleted version is unloaded, a missing base path is logged."""

from __future__ import annotations

import logging
import os
import shutil
import time

import pytest

from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

from tfjoint.serving.conftest import add_version
from tfjoint.serving.manager import ModelManager
from tfjoint.serving.versions import single_model_config

AVAILABLE, END = ModelVersionStatus.AVAILABLE, ModelVersionStatus.END


def _manager(bp: str, **kw) -> ModelManager:
    m = ModelManager(single_model_config("toy", bp), poll_wait_seconds=0, **kw)
    m.start()
    return m


def _partial_copy(bp: str, version: int, template: str) -> str:
    """saved_model.pb arrived, variables/ not yet."""
    dst = os.path.join(bp, str(version))
    os.makedirs(dst)
    shutil.copy(os.path.join(template, "saved_model.pb"), dst)
    return dst


def test_a_failed_version_is_retried_max_num_load_retries_times_then_left(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    _partial_copy(bp, 1, toy_export)
    m = _manager(bp, max_num_load_retries=2, load_retry_interval_micros=50_000)
    try:
        for _ in range(8):
            time.sleep(0.06)
            m.poll_once()
        e = m.version_entries("toy")[1]
        assert e.state == END and e.error_message
        assert e.attempts == 3  # the first load and two retries, no more
    finally:
        m.stop()


@pytest.mark.parametrize("fix", ["complete the copy", "delete and copy again"])
def test_a_failed_version_whose_directory_changes_is_loaded(tmp_path, toy_export, fix):
    bp = str(tmp_path / "toy")
    dst = _partial_copy(bp, 1, toy_export)
    m = _manager(bp, max_num_load_retries=0, load_retry_interval_micros=10**9)
    try:
        assert m.version_entries("toy")[1].state == END
        if fix == "complete the copy":
            shutil.copytree(os.path.join(toy_export, "variables"), os.path.join(dst, "variables"))
        else:
            shutil.rmtree(dst)
            m.poll_once()
            add_version(bp, 1, toy_export)
        m.poll_once()  # no retries are left and the interval is long: only the change triggers it
        assert m.version_entries("toy")[1].state == AVAILABLE
    finally:
        m.stop()


@pytest.mark.parametrize("older", ["complete", "partial"])
def test_a_deleted_serving_version_is_unloaded_and_reported_end(tmp_path, toy_export, older):
    bp = str(tmp_path / "toy")
    (add_version if older == "complete" else _partial_copy)(bp, 1, toy_export)
    add_version(bp, 2, toy_export)
    m = _manager(bp, max_num_load_retries=0)
    try:
        assert m.version_entries("toy")[2].state == AVAILABLE
        shutil.rmtree(os.path.join(bp, "2"))  # roll back; its files are gone: it cannot keep serving
        m.poll_once()
        entries = m.version_entries("toy")
        assert entries[2].state == END and entries[2].servable is None
        assert entries[1].state == (AVAILABLE if older == "complete" else END)
        shutil.rmtree(os.path.join(bp, "1"))  # nothing left: the last version goes too
        m.poll_once()
        assert all(e.state == END and e.servable is None for e in m.version_entries("toy").values())
    finally:
        m.stop()


def test_a_missing_or_empty_base_path_is_logged_on_every_poll(tmp_path, caplog):
    bp = str(tmp_path / "nope")
    m = _manager(bp)
    try:
        with caplog.at_level(logging.WARNING, logger="tfjoint.serving"):
            caplog.clear()  # start() polled once already
            m.poll_once()
            m.poll_once()
            os.makedirs(bp)
            m.poll_once()
        msgs = [r.getMessage() for r in caplog.records]
        assert sum(f"Could not find base path {bp} for servable toy" in x for x in msgs) == 2
        assert sum(f"No versions of servable toy found under base path {bp}" in x for x in msgs) == 1
    finally:
        m.stop()
