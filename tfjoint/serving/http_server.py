"""Reading an HTTP/1.1 request body for the REST API: Content-Length or chunked, bounded in size
and in time (issue 19, finding 6).

TF Serving's REST server (net_http) accepts both framings and answers a malformed length with 400.
The size limit is our extension: TF Serving's own limit is INT32_MAX bytes; ours defaults to
64 MiB (``--max_message_size``). A client that stops sending is cut off by the socket timeout
the handler sets (``READ_TIMEOUT_S``), so it cannot hold a handler thread forever.
:class:`PooledHTTPServer` bounds the handler threads (``--rest_api_num_threads``).
"""

from __future__ import annotations

import queue
import threading
from http.server import ThreadingHTTPServer

READ_TIMEOUT_S = 30.0
_MAX_LINE = 65536


class BodyError(Exception):
    """A request body that cannot be read: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _too_large(n: int, max_body: int) -> BodyError:
    return BodyError(413, f"Request body of {n} bytes exceeds the limit of {max_body} (--max_message_size)")


def _read_exactly(rfile, n: int) -> bytes:
    data = rfile.read(n)
    if len(data) != n:
        raise BodyError(400, f"Request body ended after {len(data)} of {n} bytes")
    return data


def _read_chunked(rfile, max_body: int) -> bytes:
    parts, total = [], 0
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError(400, f"Malformed chunk size line: {line[:40]!r}") from None
        if size < 0:
            raise BodyError(400, f"Malformed chunk size line: {line[:40]!r}")
        if size == 0:
            while rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                pass  # trailers are ignored
            return b"".join(parts)
        total += size
        if total > max_body:
            raise _too_large(total, max_body)
        parts.append(_read_exactly(rfile, size))
        if rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise BodyError(400, "Chunk not followed by CRLF")


def read_body(headers, rfile, max_body: int) -> bytes:
    """The request body, from Content-Length or Transfer-Encoding: chunked."""
    encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
    if encoding:
        if encoding != "chunked":
            raise BodyError(501, f"Transfer-Encoding {encoding} is not supported")
        return _read_chunked(rfile, max_body)
    raw = headers.get("Content-Length")
    if raw is None or not raw.strip():
        return b""
    raw = raw.strip()
    if not raw.isdigit():  # also rejects a sign: "-5", "+5"
        raise BodyError(400, f"Malformed Content-Length: {raw[:40]!r}")
    length = int(raw)
    if length > max_body:
        raise _too_large(length, max_body)
    return _read_exactly(rfile, length) if length else b""


class PooledHTTPServer(ThreadingHTTPServer):
    """Requests are handled by ``num_threads`` daemon threads (TF Serving's
    ``--rest_api_num_threads``); more connections wait in a queue."""

    def __init__(self, address, handler, num_threads: int):
        super().__init__(address, handler)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = [threading.Thread(target=self._work, name=f"rest-{i}", daemon=True)
                         for i in range(num_threads)]
        for worker in self._workers:
            worker.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            self.process_request_thread(*item)

    def process_request(self, request, client_address) -> None:
        self._queue.put((request, client_address))

    def server_close(self) -> None:
        super().server_close()
        for _ in self._workers:
            self._queue.put(None)


__all__ = ["READ_TIMEOUT_S", "BodyError", "PooledHTTPServer", "read_body"]
