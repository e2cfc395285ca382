"""Fault injection (issue 19): bad data roots, non-finite and out-of-domain values, partial
version copies, deletes during load, signals during load and while serving, ports in use and
malformed HTTP. Loopback only; every case is bounded (socket and subprocess timeouts, and a
hard per-case limit that dumps the stacks and ends the run)."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from tfjoint import cli
from tfjoint.serving import manager as manager_module
from tfjoint.serving import servable as servable_module
from tfjoint.serving.client import ServingClient
from tfjoint.serving.conftest import add_version, serialized, toy_export  # noqa: F401 - a fixture
from tfjoint.serving.flags import free_ports
from tfjoint.serving.server import serve_in_background

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CASE_LIMIT_S = 90  # a hung case dumps every thread's stack and ends the run
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.fixture(autouse=True)
def _bounded():
    faulthandler.dump_traceback_later(CASE_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _failure(argv, capsys, one_line: bool = True) -> str:
    """Runs the CLI in this process: it must fail, with no traceback, and (argparse's usage
    lines aside) one line on stderr, which is returned."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # SystemExit("message"): Python prints it and exits 1
        err, code = err + code + "\n", 1
    assert code not in (0, None), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "Traceback" not in err, err
    if one_line:
        assert len(lines) == 1, err
    return lines[-1]


# ---- bad data roots and out-of-domain values: refused in one line before any work


def _snapshot(root) -> list:
    return sorted((p.relative_to(root), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


@pytest.mark.parametrize("make, says", [
    (lambda d: None, "is not a directory"),  # misspelt: nothing there
    (lambda d: d.write_text("x") and None, "is not a directory"),  # a file
    (lambda d: (d / "train").mkdir(parents=True), "has no train/* and no eval/* files"),
    (lambda d: ((d / "train").mkdir(parents=True), (d / "train" / "a.tfrecord").write_bytes(b"mine")),
     "has no eval/* files"),
])
def test_a_bad_data_root_is_one_line_and_nothing_is_written(tmp_path, capsys, monkeypatch, make, says):
    from tfjoint.pipeline import runners

    built = []
    monkeypatch.setattr(runners, "check_model", lambda *a: built.append(a))  # building it takes seconds
    user = tmp_path / "data"
    make(user)
    before = _snapshot(tmp_path)
    line = _failure(["pipeline", "run", "--dataset", "synthetic", "--data-root", str(user), "--pipeline-root",
                     str(tmp_path / "p"), "--serving-dir", str(tmp_path / "s")], capsys)
    assert f"--data-root {user}" in line and says in line
    assert built == []  # checked before the model is built
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("argv, says", [
    (["serve", "--model_base_path", "/nonexistent", "--port", "70000"], "70000 is outside [0, 65535]"),
    (["serve", "--model_base_path", "/nonexistent", "--rest_api_port", "-1"], "-1 is outside [0, 65535]"),
    (["serve", "--model_base_path", "/nonexistent", "--max_num_load_retries", "-1"], "must be >= 0"),
    (["pipeline", "compile", "--output", "x.json", "--epochs", "-3"], "--epochs must be an integer > 0"),
    (["pipeline", "run", "--dataset", "synthetic", "--batch-size", "0"],
     "--batch-size must be an integer > 0"),
])
def test_an_out_of_domain_argument_is_one_line(tmp_path, capsys, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    assert says in _failure(argv, capsys, one_line=argv[0] != "serve" or "retries" in argv[-2])
    assert list(tmp_path.iterdir()) == []


def test_nan_inf_and_out_of_domain_values_in_the_data_are_anomalies(tmp_path):
    """The curated schema (what ExampleValidator checks the data against) flags NaN and inf in a
    dense feature, a binary label of 7 and a scenario id outside the dataset's scenarios."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from tfjoint.features import SYNTHETIC
    from tfjoint.features.schema import build_schema

    Reason = anomalies_pb2.AnomalyInfo
    dense, label = SYNTHETIC.dense[0], SYNTHETIC.tasks[0].name
    path = str(tmp_path / "bad.tfrecord")
    rows = [(0.5, 0.0, 0), (np.nan, 1.0, 0), (np.inf, 7.0, 0), (1.0, 1.0, SYNTHETIC.num_scenarios + 3)]
    with tf.io.TFRecordWriter(path) as writer:
        for x, y, scenario in rows:
            ex = tf.train.Example()
            ex.features.feature[dense].float_list.value.append(x)
            ex.features.feature[label].float_list.value.append(y)
            ex.features.feature["scenario"].int64_list.value.append(scenario)
            writer.write(ex.SerializeToString())
    found = tfdv.validate_statistics(tfdv.generate_statistics_from_tfrecord(path), build_schema(SYNTHETIC))
    kinds = {name: {r.type for r in info.reason} for name, info in found.anomaly_info.items()}
    assert {Reason.FLOAT_TYPE_HAS_NAN, Reason.FLOAT_TYPE_HAS_INF} <= kinds[dense]
    assert Reason.FLOAT_TYPE_BIG_FLOAT in kinds[label]
    assert Reason.INT_TYPE_BIG_INT in kinds["scenario"]


def test_labels_outside_their_domain_are_refused_with_the_count_and_first_row(tmp_path, capsys, monkeypatch):
    from tfjoint.features import SYNTHETIC
    from tfjoint.pipeline import runners

    built = []
    monkeypatch.setattr(runners, "check_model", lambda *a: built.append(a))
    user = tmp_path / "data"
    for split, labels in (("train", [(1.0, 0.0, 2.5), (7.0, 1.0, 1.0), (1.0, 2.0, 0.5)]), ("eval", [(0.0, 0.0, 1.0)])):
        (user / split).mkdir(parents=True)
        with tf.io.TFRecordWriter(str(user / split / "data.tfrecord")) as writer:
            for values in labels:
                ex = tf.train.Example()
                for task, y in zip(SYNTHETIC.tasks, values):
                    ex.features.feature[task.name].float_list.value.append(y)
                writer.write(ex.SerializeToString())
    before = _snapshot(tmp_path)
    line = _failure(["pipeline", "run", "--dataset", "synthetic", "--data-root", str(user), "--pipeline-root",
                     str(tmp_path / "p"), "--serving-dir", str(tmp_path / "s")], capsys)
    assert "train/ has 2 labels outside their task's domain" in line
    assert "first at row 1 of train/data.tfrecord, click=7.0" in line
    assert built == [] and _snapshot(tmp_path) == before
    # a regression label must be finite; the eval split is read too (direct call, another root)
    import dataclasses

    score_only = dataclasses.replace(SYNTHETIC, tasks=SYNTHETIC.tasks[2:])
    runners.check_labels(str(user), score_only)
    other = tmp_path / "other"
    for split, y in (("train", 1.0), ("eval", float("nan"))):
        (other / split).mkdir(parents=True)
        with tf.io.TFRecordWriter(str(other / split / "data.tfrecord")) as writer:
            ex = tf.train.Example()
            ex.features.feature["score"].float_list.value.append(y)
            writer.write(ex.SerializeToString())
    with pytest.raises(ValueError, match="eval/ has 1 labels outside"):
        runners.check_labels(str(other), score_only)
    broken = tmp_path / "broken"
    for split in ("train", "eval"):
        (broken / split).mkdir(parents=True)
        (broken / split / "data.tfrecord").write_bytes(b"not a tfrecord at all\n" * 3)
    with pytest.raises(ValueError, match="train/data.tfrecord is not a readable TFRecord file"):
        runners.check_labels(str(broken), score_only)


# ---- versions: partial copies and deletes during load never take the serving version down


def _partial_copy(bp: str, version: int, template: str) -> str:
    dst = os.path.join(bp, str(version))
    os.makedirs(dst)
    shutil.copy(os.path.join(template, "saved_model.pb"), dst)  # variables/ not yet
    return dst


def _served_version(server) -> int:
    c = ServingClient(server.grpc_target, "toy", timeout=10, retries=0)
    try:
        resp = c.predict_full(serialized(2))
        assert tf.make_ndarray(resp.outputs["click"]).shape == (2, 1)
        return resp.model_spec.version.value
    finally:
        c.close()


def test_a_partial_copy_leaves_the_old_version_serving_until_the_copy_completes(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0, max_num_load_retries=0) as s:
        dst = _partial_copy(bp, 2, toy_export)
        s.manager.poll_once()
        entries = s.manager.version_entries("toy")
        assert entries[2].state != AVAILABLE and entries[2].error_message
        assert entries[1].state == AVAILABLE and _served_version(s) == 1
        shutil.copytree(os.path.join(toy_export, "variables"), os.path.join(dst, "variables"))
        s.manager.poll_once()
        assert _served_version(s) == 2


@pytest.mark.parametrize("when", ["before the variables are read", "after the load"])
def test_a_version_deleted_during_its_load_never_serves_and_the_old_one_stays(tmp_path, toy_export,
                                                                              monkeypatch, when):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0, max_num_load_retries=0) as s:
        add_version(bp, 2, toy_export)
        real_read, real_servable = servable_module.read_meta_graph, manager_module.Servable

        def read_then_delete(path):  # the directory goes while the version loads
            meta = real_read(path)
            shutil.rmtree(path)
            return meta

        def load_then_delete(name, version, path):
            loaded = real_servable(name, version, path)
            shutil.rmtree(path)
            return loaded

        if when == "before the variables are read":
            monkeypatch.setattr(servable_module, "read_meta_graph", read_then_delete)
        else:
            monkeypatch.setattr(manager_module, "Servable", load_then_delete)
        s.manager.poll_once()
        monkeypatch.undo()
        assert not os.path.exists(os.path.join(bp, "2"))
        s.manager.poll_once()  # the deleted version is forgotten (failed) or unloaded (loaded)
        entries = s.manager.version_entries("toy")
        assert entries[1].state == AVAILABLE and (2 not in entries or entries[2].state != AVAILABLE)
        assert _served_version(s) == 1
        add_version(bp, 2, toy_export)  # copied again: it loads afresh
        s.manager.poll_once()
        assert _served_version(s) == 2


# ---- ports in use: one line naming the port, before any model loads


@pytest.mark.parametrize("flag", ["--port", "--rest_api_port"])
def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path, toy_export, capsys, monkeypatch, flag):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    loads = []
    monkeypatch.setattr(manager_module, "Servable", lambda *a: loads.append(a) or pytest.fail("loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc_port, rest_port = free_ports(2)
        ports = {"--port": str(grpc_port), "--rest_api_port": str(rest_port), flag: str(port)}
        t0 = time.monotonic()
        line = _failure(["serve", "--model_name", "toy", "--model_base_path", bp,
                                  *[x for kv in ports.items() for x in kv]], capsys)
    assert f"{flag} {port}: 127.0.0.1:{port} is already in use" in line
    assert time.monotonic() - t0 < 5 and loads == []


# ---- signals: during the load and while serving, a log line, exit 0, no traceback

_SLOW_LOAD = """
import sys, time
from tfjoint.serving import servable
real = servable.Servable.__init__
def slow(self, name, version, path):
    if version == int(sys.argv[1]):  # this version takes a minute to load
        time.sleep(60)
    real(self, name, version, path)
servable.Servable.__init__ = slow
from tfjoint.serving.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _serve_process(bp: str, slow_version: int) -> subprocess.Popen:
    grpc_port, rest_port = free_ports(2)
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_LOAD, str(slow_version), "serve", "--model_name", "toy",
         "--model_base_path", bp, "--port", str(grpc_port), "--rest_api_port", str(rest_port),
         "--file_system_poll_wait_seconds", "0.2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


class _Output:
    """Both pipes of a process, read to the end in threads (so every wait is bounded)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines = {"out": [], "err": []}
        self._threads = [threading.Thread(target=self._read, args=(stream, self.lines[k]), daemon=True)
                         for k, stream in (("out", proc.stdout), ("err", proc.stderr))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_for(self, which: str, text: str, limit_s: float) -> str:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            for line in list(self.lines[which]):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {limit_s} s: {self.text('out')}{self.text('err')}")

    def text(self, which: str) -> str:
        return "".join(self.lines[which])

    def close(self, limit_s: float = 5.0) -> None:
        for t in self._threads:
            t.join(timeout=limit_s)


@pytest.mark.parametrize("phase, sig", [
    ("load", signal.SIGTERM),
    ("load", signal.SIGINT),
    ("serving", signal.SIGINT),
    ("serving, loading a new version", signal.SIGTERM),
])
def test_a_signal_stops_the_server_promptly_and_cleanly(tmp_path, toy_export, phase, sig):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    proc = _serve_process(bp, {"load": 1, "serving": 0}.get(phase, 2))
    output = _Output(proc)
    try:
        if phase == "load":
            output.wait_for("err", "Loading servable", 60)
        else:
            line = output.wait_for("out", "serving toy", 60)
            target = line.split("gRPC ", 1)[1].split(",", 1)[0]
            c = ServingClient(target, "toy", timeout=10)
            assert c.predict(serialized(1))["click"].shape == (1, 1)
            c.close()
            if phase != "serving":
                add_version(bp, 2, toy_export)
                output.wait_for("err", "Loading servable: {name: toy version: 2}", 30)
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        took = time.monotonic() - t0
        output.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = output.text("out"), output.text("err")
    assert proc.returncode == 0, err
    assert took < 5, f"took {took:.1f} s"
    assert "Traceback" not in err and "Exception" not in err, err
    name = signal.Signals(sig).name
    if phase == "load":
        assert f"Received {name} during model load, exiting without serving" in err
        assert "serving toy" not in out and "Successfully loaded" not in err
    else:
        assert f"Received {name}, shutting down" in err


def test_stop_leaves_no_thread_behind(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "toy" base_path: "{bp}" '
                      f'model_platform: "tensorflow" }} }}')
    before = set(threading.enumerate())
    with serve_in_background(model_config_file=str(config), model_config_file_poll_wait_seconds=0.2,
                             port=0, rest_api_port=0, file_system_poll_wait_seconds=0.2,
                             enable_batching=True) as s:
        assert _served_version(s) == 1
        assert {t.name for t in threading.enumerate()} >= {"fs-poller", "config-poller", "rest"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left:
            break
        time.sleep(0.05)
    assert left == [], [t.name for t in left]


# ---- malformed HTTP: an answer (or a closed connection), never a hung handler; the server lives on


def _exchange(port: int, raw: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            got = sock.recv(65536)  # a timeout fails the case: the server held the connection
            if not got:
                return data
            data += got


MALFORMED = {
    "not HTTP": (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
    "HTTP/9.9": (b"GET /v1/models/toy HTTP/9.9\r\n\r\n", b"505"),
    "70 kB request line": (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
    "body shorter than Content-Length": (
        b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"instances\"", b"400"),
    "body not JSON": (b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: 5\r\n\r\n{nope", b"400"),
    "bad chunk size": (
        b"POST /v1/models/toy:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n", b"400"),
    "unknown Transfer-Encoding": (
        b"POST /v1/models/toy:predict HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
    "huge Content-Length": (
        b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", b"413"),
    "unknown path": (b"GET /v1/nothing/here HTTP/1.1\r\n\r\n", b"400"),  # TF Serving: "Malformed request"
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_http_is_answered_and_the_server_lives_on(tmp_path, toy_export, case):
    raw, status = MALFORMED[case]
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=0,
                             file_system_poll_wait_seconds=0, max_message_size=1 << 20) as s:
        answer = _exchange(s.rest_port, raw)
        assert answer.split(b" ", 2)[1:2] == [status], answer[:200]
        ok = _exchange(s.rest_port, b"GET /v1/models/toy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.") and b" 200 " in ok.split(b"\r\n", 1)[0] and b"AVAILABLE" in ok


def test_a_grpc_client_with_a_broken_deadline_or_size_gets_a_status_not_a_hang(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0, max_message_size=4096) as s:
        c = ServingClient(s.grpc_target, "toy", timeout=5, retries=0)
        try:
            with pytest.raises(grpc.RpcError) as err:
                c.predict([b"x" * 8192])
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(grpc.RpcError) as err:
                c.predict([b"not a serialized example"])
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            c.close()
        assert _served_version(s) == 1
