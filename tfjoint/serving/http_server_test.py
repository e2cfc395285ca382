"""REST edge cases (issue 19, finding 6): chunked bodies, malformed and lying Content-Length,
slow clients. Raw sockets on loopback, each bounded by the server's short read timeout."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest

from tfjoint.serving.conftest import serialized
from tfjoint.serving.manager import ModelManager
from tfjoint.serving.rest import RestServer
from tfjoint.serving.versions import single_model_config

PATH = "/v1/models/toy:predict"


@pytest.fixture()
def rest(base_path):
    manager = ModelManager(single_model_config("toy", base_path), poll_wait_seconds=0)
    manager.start()
    server = RestServer(manager, "127.0.0.1", 0, max_body=4096, read_timeout_s=0.5)
    server.start()
    yield server
    server.stop()
    manager.stop()


def _exchange(port: int, head: str, body: bytes = b"", wait: float = 5.0) -> tuple[int | None, str]:
    """Sends head + body, returns (status, response text); status None when closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while True:
            try:
                got = sock.recv(65536)
            except TimeoutError:
                break
            if not got:
                break
            data += got
            if b"\r\n\r\n" in data:
                h, _, rest = data.partition(b"\r\n\r\n")
                n = [int(x.split(b":")[1]) for x in h.split(b"\r\n") if x.lower().startswith(b"content-length")]
                if n and len(rest) >= n[0]:
                    break
    if not data:
        return None, ""
    return int(data.split(b" ", 2)[1]), data.decode("latin-1")


def _predict_body() -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(e).decode()} for e in serialized(3)]}).encode()


def test_a_chunked_body_is_read_like_a_content_length_one(rest):
    body = _predict_body()
    plain = _exchange(rest.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n", body)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7))
    chunked = _exchange(rest.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n",
                        chunks + b"0\r\n\r\n")
    assert plain[0] == chunked[0] == 200
    assert plain[1].split("\r\n\r\n", 1)[1] == chunked[1].split("\r\n\r\n", 1)[1]


@pytest.mark.parametrize("value", ["abc", "-5", "1e3", "12 34"])
def test_a_malformed_content_length_gets_400(rest, value):
    status, text = _exchange(rest.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n", b"{}")
    assert status == 400 and "Malformed Content-Length" in text


def test_a_body_over_the_limit_gets_413_before_it_is_read(rest):
    status, text = _exchange(rest.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n")
    assert status == 413 and "--max_message_size" in text


@pytest.mark.parametrize("framing", ["Content-Length: 100", "Transfer-Encoding: chunked"])
def test_a_client_that_stops_sending_is_answered_408_within_the_read_timeout(rest, framing):
    t0 = time.monotonic()
    partial = b"{" if framing.startswith("Content") else b"40\r\n{"
    status, text = _exchange(rest.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{framing}\r\n", partial)
    assert status == 408 and time.monotonic() - t0 < 4.0
    # The handler thread is free again: the server still answers.
    body = _predict_body()
    assert _exchange(rest.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n", body)[0] == 200
