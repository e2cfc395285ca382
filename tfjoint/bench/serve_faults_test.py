"""``tfjoint bench serve-faults``: no request fails while a complete version exists, and the
bench sees it when a manager drops the serving version before the next one loads."""

from __future__ import annotations

import faulthandler
import json

import pytest
from tensorflow_serving.apis import get_model_status_pb2

from tfjoint import cli
from tfjoint.serving import manager as manager_module

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
CASE_LIMIT_S = 90  # a hung run dumps every thread's stack and ends the test session
SMALL = ["--clients", "2", "--rest-clients", "1", "--requests-per-step", "30", "--poll-seconds", "0.05",
         "--step-timeout", "20"]


@pytest.fixture(autouse=True)
def _bounded():
    faulthandler.dump_traceback_later(CASE_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _run(tmp_path, capsys) -> tuple[int, dict, str]:
    out = tmp_path / "faults.json"
    code = cli.main(["bench", "serve-faults", *SMALL, "--json", str(out)])
    return code, json.loads(out.read_text()), capsys.readouterr().out


def test_no_request_fails_while_a_complete_version_exists(tmp_path, capsys):
    code, r, printed = _run(tmp_path, capsys)
    assert code == 0, printed
    assert r["failed_while_a_complete_version_existed"] == 0 and r["failure_reasons"] == {}
    assert r["steps_timed_out"] == []
    assert set(r["served_by_version"]) == {"1", "2", "3"}  # every version the script made serve
    assert [s["expected_version"] for s in r["steps"]] == [1, 2, 2, 3, 2, 1, 2, None]
    assert all(s["requests"] >= 30 for s in r["steps"][:-1])  # load during and after every step
    # once every version is gone, requests fail with NOT_FOUND and are counted apart
    assert r["failed_after_the_last_version_was_deleted"] > 0
    assert all(k.startswith(("gRPC NOT_FOUND", "REST HTTP 404"))
               for k in r["failure_reasons_after_the_last_version_was_deleted"])
    assert set(r["requests_sent_by_protocol"]) == {"gRPC", "REST"}
    assert r["requests_sent"] == r["requests_ok"] + r["failed_after_the_last_version_was_deleted"]
    assert "failed while a complete version existed: 0" in printed
    assert f"requests sent: {r['requests_sent']}" in printed


def test_a_manager_that_unloads_before_it_loads_fails_the_bench(tmp_path, capsys, monkeypatch):
    real_load = manager_module.ModelManager._load

    def unload_first(self, model, version, path, previous=None):  # not availability preserving
        for e in list(model.versions.values()):
            if e.state == AVAILABLE:
                self._unload(model, e)
        return real_load(self, model, version, path, previous)

    monkeypatch.setattr(manager_module.ModelManager, "_load", unload_first)
    code, r, printed = _run(tmp_path, capsys)
    assert code == 1
    assert r["failed_while_a_complete_version_existed"] > 0
    assert any(k.startswith("gRPC NOT_FOUND") for k in r["failure_reasons"])
    failed = r["failed_while_a_complete_version_existed"]
    assert f"failed while a complete version existed: {failed}" in printed


@pytest.mark.parametrize("flag, value, says", [
    ("--clients", "0", "--clients must be >= 1"),
    ("--requests-per-step", "0", "--requests-per-step must be >= 1"),
    ("--poll-seconds", "0", "--poll-seconds must be > 0"),
])
def test_an_out_of_range_flag_is_one_line(capsys, flag, value, says):
    code = cli.main(["bench", "serve-faults", flag, value])
    err = capsys.readouterr().err
    assert code != 0 and says in err and len(err.strip().splitlines()) == 1, err
