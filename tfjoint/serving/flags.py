"""Flag values as TF Serving reads them (``tensorflow_serving/model_servers/main.cc`` and
``server.cc``), shared by ``tfjoint serve`` and :class:`tfjoint.serving.server.ServerOptions`."""

from __future__ import annotations

import argparse
import os
import socket

DEFAULT_REST_THREADS = 4 * (os.cpu_count() or 1)  # --rest_api_num_threads: 4 x schedulable CPUs


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """``--grpc_channel_arguments`` as TF Serving parses it (server.cc): comma-separated
    ``key=value``; a value that is an int32 is passed as an int, any other as a string."""
    out: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--grpc_channel_arguments needs comma-separated key=value pairs. Received: {text!r}")
        try:
            number = int(value)
        except ValueError:
            number = None
        out.append((key, number if number is not None and -(2**31) <= number < 2**31 else value))
    return out


def free_ports(count: int = 2, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (bound to 0 together, read, closed):
    for a ``tfjoint serve`` process, whose ``--port 0`` turns gRPC off. In-process, give
    :class:`~tfjoint.serving.server.ServerOptions` ``port=0`` instead (any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = [socket.socket(family, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def parse_bool(text: str) -> bool:
    """A boolean flag value as TensorFlow's flag parser takes it (``true``/``false``, ``1``/``0``)."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (true or false)")
