"""TF Serving's flag meanings (main.cc, server.cc): --port 0 and --rest_api_port 0 turn a
server off, --grpc_socket_path, --grpc_channel_arguments, --enable_model_warmup and
--rest_api_num_threads."""

from __future__ import annotations

import argparse
import logging
import socket
import urllib.request

import grpc
import pytest
from tensorflow_serving.apis import model_pb2

from tfjoint.serving import manager as manager_module
from tfjoint.serving.cli import add_serve_parser, cmd_serve, options_from_args
from tfjoint.serving.client import ServingClient
from tfjoint.serving.conftest import add_version, serialized
from tfjoint.serving.flags import free_ports, parse_channel_arguments
from tfjoint.serving.server import ModelServer, serve_in_background
from tfjoint.serving.warmup import write_warmup_requests


def _options(*argv: str):
    parser = argparse.ArgumentParser(prog="tfjoint")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    return options_from_args(parser.parse_args(["serve", *argv]))


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tfjoint")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


def test_port_0_without_a_socket_is_one_line_before_any_model_loads(tmp_path, monkeypatch):
    """TF Serving: 'At least one of server_options.grpc_port or server_options.grpc_socket_path
    must be set.' (also with a REST port: TF Serving has no REST-only server)."""
    monkeypatch.setattr(manager_module, "Servable", lambda *a: pytest.fail("loaded a model"))
    for ports in (["--port", "0"], ["--port", "0", "--rest_api_port", "0"]):
        with pytest.raises(SystemExit) as e:
            cmd_serve(_parse("--model_name", "toy", "--model_base_path", str(tmp_path), *ports))
        message = str(e.value)
        assert "--port 0" in message and "--grpc_socket_path" in message and "\n" not in message


def test_port_0_turns_tcp_grpc_off_and_rest_api_port_0_turns_rest_off(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    sock = str(tmp_path / "grpc.sock")
    options = _options("--model_name", "toy", "--model_base_path", bp, "--port", "0", "--rest_api_port", "0",
                       "--grpc_socket_path", sock, "--file_system_poll_wait_seconds", "0")
    assert (options.port, options.rest_api_port) == (None, None)
    with serve_in_background(options) as server:
        assert server.grpc_port is None and server.rest_port is None and server.grpc_target == f"unix:{sock}"
        with ServingClient(server.grpc_target, "toy", timeout=20) as client:
            assert client.predict(serialized(2))["click"].shape == (2, 1)


def test_the_default_ports_are_the_tf_serving_images(tmp_path):
    options = _options("--model_name", "m", "--model_base_path", str(tmp_path))
    assert (options.port, options.rest_api_port, options.enable_model_warmup) == (8500, 8501, True)


def test_rest_api_port_equal_to_port_skips_rest_as_tf_serving_does(tmp_path, toy_export, caplog):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    (port,) = free_ports(1)
    options = _options("--model_name", "toy", "--model_base_path", bp, "--port", str(port),
                       "--rest_api_port", str(port), "--file_system_poll_wait_seconds", "0")
    with caplog.at_level(logging.ERROR), serve_in_background(options) as server:
        assert server.grpc_port == port and server.rest_port is None
    assert "--rest_api_port cannot be same as --port" in caplog.text


def test_grpc_channel_arguments_are_parsed_as_tf_serving_does_and_reach_the_server(tmp_path, toy_export):
    assert parse_channel_arguments("grpc.max_connection_age_ms=2000,grpc.primary_user_agent=tfjoint") == [
        ("grpc.max_connection_age_ms", 2000), ("grpc.primary_user_agent", "tfjoint")]
    assert parse_channel_arguments("") == []
    assert parse_channel_arguments("big=4294967296") == [("big", "4294967296")]  # not an int32: a string
    with pytest.raises(ValueError, match="key=value pairs. Received: 'grpc.max_connection_age_ms'"):
        parse_channel_arguments("grpc.max_connection_age_ms")
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    # The user's argument wins over the server's own message limit.
    options = _options("--model_name", "toy", "--model_base_path", bp, "--port", "0", "--rest_api_port", "0",
                       "--grpc_socket_path", str(tmp_path / "s"), "--file_system_poll_wait_seconds", "0",
                       "--grpc_channel_arguments", "grpc.max_receive_message_length=64")
    with serve_in_background(options) as server, ServingClient(server.grpc_target, "toy", timeout=20) as client:
        with pytest.raises(grpc.RpcError) as e:
            client.predict(serialized(4))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("argv, replayed", [([], True), (["--enable_model_warmup"], True),
                                            (["--enable_model_warmup=false"], False),
                                            (["--enable_model_warmup", "false"], False)])
def test_enable_model_warmup(tmp_path, toy_export, argv, replayed):
    bp = str(tmp_path / "toy")
    write_warmup_requests(add_version(bp, 1, toy_export), serialized(3), "toy")
    options = _options("--model_name", "toy", "--model_base_path", bp, "--port", "0", "--rest_api_port", "0",
                       "--grpc_socket_path", str(tmp_path / "s"), "--file_system_poll_wait_seconds", "0", *argv)
    with serve_in_background(options) as server:
        servable = server.manager.get_servable(model_pb2.ModelSpec(name="toy"))
        calls = servable.calls_by_signature.get("serving_default", 0)
        assert (servable.warmup_records > 0, calls > 0) == (replayed, replayed)


def test_rest_api_num_threads_bounds_the_requests_handled_at_once(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    server = ModelServer(model_name="toy", model_base_path=bp, port=0, rest_api_port=0, rest_api_num_threads=1,
                         file_system_poll_wait_seconds=0)
    with server.start():
        url = f"{server.rest_url}/v1/models/toy"
        assert urllib.request.urlopen(url, timeout=10).status == 200
        idle = socket.create_connection(("127.0.0.1", server.rest_port))  # holds the only thread
        try:
            with pytest.raises(OSError):  # TimeoutError: waits in the queue
                urllib.request.urlopen(url, timeout=1)
        finally:
            idle.close()
        assert urllib.request.urlopen(url, timeout=10).status == 200
