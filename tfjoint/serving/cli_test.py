"""CLI pieces, the client's retries, TLS, and a clean stop on SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.serving.cli import add_predict_parser, add_serve_parser, options_from_args
from tfjoint.serving.client import ServingClient, make_example
from tfjoint.serving.conftest import add_version, raw_examples, serialized
from tfjoint.serving.flags import free_ports
from tfjoint.serving.server import serve_in_background

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _parser():
    p = argparse.ArgumentParser(prog="tfjoint")
    sub = p.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_predict_parser(sub)
    return p


def test_serve_flags_have_tf_serving_names_and_safe_defaults():
    args = _parser().parse_args(["serve", "--model_config_file", "serving/models.config"])
    o = options_from_args(args)
    assert (o.port, o.rest_api_port, o.host) == (8500, 8501, "127.0.0.1")
    assert o.enable_batching is False and o.file_system_poll_wait_seconds == 1.0
    args = _parser().parse_args(
        ["serve", "--model_name", "m", "--model_base_path", "/x", "--enable_batching",
         "--batching_parameters_file", "serving/batching_parameters.txt", "--rest_api_port", "0",
         "--max_message_size", "1024", "--host", "0.0.0.0"]
    )
    o = options_from_args(args)
    assert o.rest_api_port is None and o.max_message_size == 1024 and o.host == "0.0.0.0"
    assert o.resolve_config().model_config_list.config[0].name == "m"
    assert o.resolve_batching().max_batch_size == 128


def test_make_example_types():
    ex = make_example({"s": "a", "b": b"\x00", "i": 3, "f": 0.5, "l": [1, 2], "lf": [1, 2.5], "ls": ["x", "y"]})
    f = ex.features.feature
    assert f["s"].bytes_list.value == [b"a"] and f["b"].bytes_list.value == [b"\x00"]
    assert f["i"].int64_list.value == [3] and f["f"].float_list.value == [0.5]
    assert f["l"].int64_list.value == [1, 2] and f["lf"].float_list.value == [1.0, 2.5]
    assert f["ls"].bytes_list.value == [b"x", b"y"]
    with pytest.raises(TypeError):
        make_example({"bad": ["a", 1]})


def test_client_retries_only_unavailable():
    c = ServingClient("127.0.0.1:1", "toy", timeout=2, retries=2, backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        c.status()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - t0 >= 0.15  # two backoffs: 0.05 + 0.1
    c.close()


def test_predict_command(tmp_path, toy_export, capsys):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    rec = tmp_path / "ex.tfrecord"
    with tf.io.TFRecordWriter(str(rec)) as w:
        for e in serialized(5):
            w.write(e)
    js = tmp_path / "ex.json"
    js.write_text(json.dumps(raw_examples(2)))
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0) as s:
        for src in (["--examples", str(rec), "--limit", "3"], ["--json", str(js)]):
            args = _parser().parse_args(["predict", "--target", s.grpc_target, "--model_name", "toy", *src])
            assert args.func(args) == 0
            out = json.loads(capsys.readouterr().out)
            assert out["model_spec"]["version"] == 1
            assert np.array(out["outputs"]["click"]).shape == (3 if "--limit" in src else 2, 1)
        args = _parser().parse_args(["predict", "--target", s.grpc_target, "--model_name", "nope",
                                     "--json", str(js)])
        assert args.func(args) == 1
        assert "NOT_FOUND" in capsys.readouterr().err


def test_tls(tmp_path, toy_export):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    ssl = tmp_path / "ssl.config"
    ssl.write_text(f"server_key: {json.dumps(key.read_text())}\nserver_cert: {json.dumps(cert.read_text())}\n")
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0, ssl_config_file=str(ssl)) as s:
        target = f"localhost:{s.grpc_port}"
        c = ServingClient(target, "toy", timeout=10, tls={"root_certificates": cert.read_bytes()})
        assert c.predict(serialized(2))["click"].shape == (2, 1)
        c.close()
        plain = ServingClient(target, "toy", timeout=3, retries=0)
        with pytest.raises(grpc.RpcError):
            plain.status()
        plain.close()


def test_serve_stops_cleanly_on_sigterm(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    grpc_port, rest_port = free_ports(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfjoint.serving.cli", "serve", "--model_name", "toy", "--model_base_path", bp,
         "--port", str(grpc_port), "--rest_api_port", str(rest_port), "--log_level", "WARNING"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not line.startswith("serving"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith(f"serving toy: gRPC 127.0.0.1:{grpc_port}, REST http://127.0.0.1:{rest_port}"), line
        target = line.split("gRPC ", 1)[1].split(",", 1)[0]
        c = ServingClient(target, "toy", timeout=10)
        assert c.predict(serialized(1))["score"].shape == (1, 1)
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
