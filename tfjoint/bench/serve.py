"""``tfjoint bench serve``: closed-loop load on the model server, against in-process inference.

For each request batch size (1 and 64 examples by default) it drives N concurrent client
threads on loopback (127.0.0.1), each sending its next request as soon as the previous one
returns, against

* ``in-process``: ``tf.saved_model.load(dir).signatures["serving_default"]`` called directly
  with the same concurrency (the reference: no RPC, no serialization);
* ``gRPC``: ``tfjoint serve``'s gRPC API without batching;
* ``gRPC+batching``: the same with server-side batching (TF Serving's BatchingParameters);
* ``REST``: the REST ``:predict`` API (``{"instances": [{"b64": ...}]}``) without batching.

Every loop is bounded by both a request count and a time limit. Per cell it reports requests,
failed requests, requests/s, examples/s and p50/p95/p99 latency (ms), and the ratio of each
throughput to the in-process throughput measured in the same run::

    tfjoint bench serve [--model-base-path runs/demo/serving/movielens] [--model-name movielens]
        [--examples runs/demo/pipeline/data/movielens-100k/eval/data.tfrecord]
        [--clients 4] [--seconds 5] [--max-requests 2000] [--json FILE]
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

DEFAULT_MODEL_BASE_PATH = "runs/demo/serving/movielens"
DEFAULT_MODEL_NAME = "movielens"
DEFAULT_EXAMPLES = "runs/demo/pipeline/data/movielens-100k/eval/data.tfrecord"
DEFAULT_BATCH_SIZES = (1, 64)
# Server-side batching for the gRPC+batching row (TF Serving's BatchingParameters fields).
DEFAULT_BATCHING = {"max_batch_size": 128, "batch_timeout_micros": 2000, "num_batch_threads": 2}
MODES = ("in-process", "gRPC", "gRPC+batching", "REST")
MAX_EXAMPLES = 1024  # distinct held-out examples cycled through the requests
WARMUP_CALLS = 3
REQUEST_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- inputs


def latest_version_dir(model_base_path: str) -> str:
    """``<base>/<largest integer version>/`` (what the server loads), or an error naming ``make demo``."""
    if not os.path.isdir(model_base_path):
        raise FileNotFoundError(
            f"no model at {model_base_path}: run `make demo` first (it pushes the demo model there), "
            "or pass --model-base-path"
        )
    versions = [int(d) for d in os.listdir(model_base_path) if d.isdigit()]
    versions = [
        v for v in versions if os.path.isfile(os.path.join(model_base_path, str(v), "saved_model.pb"))
    ]
    if not versions:
        raise FileNotFoundError(
            f"no SavedModel version under {model_base_path}: run `make demo` first, or pass --model-base-path"
        )
    return os.path.join(model_base_path, str(max(versions)))


def read_examples(path: str, limit: int = MAX_EXAMPLES) -> list[bytes]:
    """Up to ``limit`` serialized tf.Examples from a TFRecord file (plain or GZIP)."""
    import tensorflow as tf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no examples at {path}: run `make demo` first, or pass --examples")
    compression = "GZIP" if path.endswith(".gz") else ""
    records = tf.data.TFRecordDataset(path, compression_type=compression).take(limit)
    out = [bytes(r) for r in records.as_numpy_iterator()]
    if not out:
        raise ValueError(f"{path}: no records")
    return out


def make_batches(examples: Sequence[bytes], batch_size: int, count: int = 16) -> list[list[bytes]]:
    """``count`` request batches of ``batch_size`` examples, cycling through ``examples``."""
    n = len(examples)
    return [[examples[(i * batch_size + j) % n] for j in range(batch_size)] for i in range(count)]


# --------------------------------------------------------------------------- closed loop


def closed_loop(
    call_factory: Callable[[], Callable[[list[bytes]], Any]],
    batches: Sequence[list[bytes]],
    *,
    clients: int,
    seconds: float,
    max_requests: int,
    warmup: int = WARMUP_CALLS,
) -> dict[str, Any]:
    """N threads, each issuing its next request when the previous one returns.

    ``call_factory()`` is called once per thread (e.g. one channel per client). The loop stops
    by itself once ``max_requests`` requests were issued or ``seconds`` have passed, whichever
    comes first (an in-flight request is allowed to finish). Each thread first makes ``warmup``
    uncounted calls.
    """
    if clients < 1 or max_requests < 1 or seconds <= 0:
        raise ValueError("clients and max_requests must be >= 1 and seconds > 0")
    batch_size = len(batches[0])
    lock = threading.Lock()
    state: dict[str, float] = {"issued": 0}

    def begin() -> None:  # runs once all clients are warmed up, before any is released
        state["start"] = time.perf_counter()
        state["deadline"] = state["start"] + seconds

    ready = threading.Barrier(clients + 1, action=begin)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    errors: list[str] = []

    def take() -> bool:
        with lock:
            if state["issued"] >= max_requests or time.perf_counter() >= state["deadline"]:
                return False
            state["issued"] += 1
            return True

    def worker(k: int) -> None:
        call = None
        try:
            call = call_factory()
            for i in range(warmup):
                call(batches[(k + i) % len(batches)])
        except Exception as e:  # noqa: BLE001 - reported, the loop still runs
            with lock:
                errors.append(f"setup/warmup: {type(e).__name__}: {e}"[:500])
        finally:
            ready.wait()
        i = k
        while take():
            batch = batches[i % len(batches)]
            i += clients
            t0 = time.perf_counter()
            try:
                if call is None:
                    raise RuntimeError("client setup failed")
                call(batch)
            except Exception as e:  # noqa: BLE001
                failures[k] += 1
                with lock:
                    if len(errors) < 5:
                        errors.append(f"{type(e).__name__}: {e}"[:500])
                continue
            latencies[k].append(time.perf_counter() - t0)

    threads = [
        threading.Thread(target=worker, args=(k,), daemon=True, name=f"bench-client-{k}")
        for k in range(clients)
    ]
    for t in threads:
        t.start()
    ready.wait()  # all clients warmed up; begin() has set the deadline
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - state["start"]
    lat = np.array([x for per in latencies for x in per]) * 1000.0
    ok = int(lat.size)
    failed = int(sum(failures))
    pct = np.percentile(lat, [50, 95, 99]) if ok else [float("nan")] * 3
    return {
        "batch_size": batch_size,
        "requests": ok,
        "failed_requests": failed,
        "issued_requests": ok + failed,
        "seconds": elapsed,
        "stopped_by": "max_requests" if ok + failed >= max_requests else "time",
        "requests_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "examples_per_s": ok * batch_size / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": float(pct[0]),
            "p95": float(pct[1]),
            "p99": float(pct[2]),
            "mean": float(lat.mean()) if ok else float("nan"),
        },
        "errors": errors,
    }


# --------------------------------------------------------------------------- targets


def in_process_factory(version_dir: str) -> Callable[[], Callable[[list[bytes]], Any]]:
    """One loaded ``serving_default`` shared by the threads (as a server shares its session)."""
    import tensorflow as tf

    fn = tf.saved_model.load(version_dir).signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    (input_name,) = kwargs  # the pipeline's exports take one string input, "examples"

    def call(batch: list[bytes]):
        out = fn(**{input_name: tf.constant(batch, dtype=tf.string)})
        return {k: v.numpy() for k, v in out.items()}

    return lambda: call


def grpc_factory(target: str, model_name: str) -> Callable[[], Callable[[list[bytes]], Any]]:
    """One ServingClient (own channel) per client thread."""
    from tfjoint.serving.client import ServingClient

    def factory():
        client = ServingClient(target, model_name, timeout=REQUEST_TIMEOUT_S, retries=0)
        return client.predict

    return factory


def rest_factory(url: str, model_name: str) -> Callable[[], Callable[[list[bytes]], Any]]:
    endpoint = f"{url}/v1/models/{model_name}:predict"
    cache: dict[int, bytes] = {}

    def factory():
        def call(batch: list[bytes]):
            key = id(batch)
            body = cache.get(key)
            if body is None:  # a real client encodes once per request; we cache the constant bodies
                doc = {
                    "signature_name": "serving_default",
                    "instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in batch],
                }
                body = cache[key] = json.dumps(doc).encode("utf-8")
            req = urllib.request.Request(endpoint, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                return json.loads(resp.read())

        return call

    return factory


# --------------------------------------------------------------------------- the benchmark


def run_serve_bench(
    model_base_path: str = DEFAULT_MODEL_BASE_PATH,
    model_name: str = DEFAULT_MODEL_NAME,
    examples: str | Sequence[bytes] = DEFAULT_EXAMPLES,
    *,
    clients: int = 4,
    seconds: float = 5.0,
    max_requests: int = 2000,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    batching: dict[str, int] | None = None,
    rest: bool = True,
    verbose: bool = False,
) -> dict[str, Any]:
    """Runs every (mode, batch size) cell.

    Returns ``{"cells": {mode: {str(batch_size): cell}}, "ratio_to_in_process": {mode: {str(bs): x}}, ...}``.
    """
    from tfjoint.serving.client import ServingClient
    from tfjoint.serving.batching import BatchingOptions
    from tfjoint.serving.server import serve_in_background

    version_dir = latest_version_dir(model_base_path)
    if isinstance(examples, (str, os.PathLike)):
        serialized = read_examples(examples)
    else:
        serialized = [bytes(e) for e in examples]
    if not serialized:
        raise ValueError("no examples")
    batching = dict(DEFAULT_BATCHING if batching is None else batching)
    batches = {bs: make_batches(serialized, bs) for bs in batch_sizes}
    loop = {"clients": clients, "seconds": seconds, "max_requests": max_requests}
    cells: dict[str, dict[str, Any]] = {}
    wall0 = time.perf_counter()

    def measure(mode: str, factory) -> None:
        for bs in batch_sizes:
            cell = closed_loop(factory, batches[bs], **loop)
            cells.setdefault(mode, {})[str(bs)] = cell
            if verbose:
                lat = cell["latency_ms"]
                print(
                    f"  {mode:<14} batch {bs:>3}: {cell['requests']} ok, {cell['failed_requests']} failed, "
                    f"{cell['requests_per_s']:.1f} req/s, {cell['examples_per_s']:.0f} ex/s, "
                    f"p50/p95/p99 {lat['p50']:.2f}/{lat['p95']:.2f}/{lat['p99']:.2f} ms",
                    flush=True,
                )

    measure("in-process", in_process_factory(version_dir))

    servers = [("gRPC", None)] + [("gRPC+batching", BatchingOptions(**batching))]
    for mode, batch_opts in servers:
        with serve_in_background(
            model_name=model_name,
            model_base_path=model_base_path,
            host="127.0.0.1",
            port=0,
            rest_api_port=0 if (rest and batch_opts is None) else None,
            batching=batch_opts,
        ) as server:
            target = f"127.0.0.1:{server.grpc_port}"
            with ServingClient(target, model_name) as probe:
                probe.wait_until_available(timeout=120)
            measure(mode, grpc_factory(target, model_name))
            if rest and batch_opts is None:
                measure("REST", rest_factory(f"http://127.0.0.1:{server.rest_port}", model_name))

    ratios = {
        mode: {
            bs: (c["requests_per_s"] / cells["in-process"][bs]["requests_per_s"])
            if cells["in-process"][bs]["requests_per_s"] > 0
            else float("nan")
            for bs, c in per.items()
        }
        for mode, per in cells.items()
    }
    return {
        "model_base_path": os.path.abspath(model_base_path),
        "model_name": model_name,
        "version": int(os.path.basename(version_dir)),
        "examples": os.path.abspath(examples) if isinstance(examples, (str, os.PathLike)) else "<in memory>",
        "distinct_examples": len(serialized),
        "clients": clients,
        "seconds": seconds,
        "max_requests": max_requests,
        "batch_sizes": [int(b) for b in batch_sizes],
        "batching": batching,
        "host": "127.0.0.1",
        "cells": cells,
        "ratio_to_in_process": ratios,
        "wall_seconds": time.perf_counter() - wall0,
    }


def format_table(results: dict[str, Any]) -> str:
    """Markdown: one row per mode, per batch size req/s, ex/s, p50/p95/p99 ms, x in-process."""
    sizes = [str(b) for b in results["batch_sizes"]]
    head = ["mode"]
    for bs in sizes:
        head += [f"b={bs} {h}" for h in ("req/s", "ex/s", "p50/p95/p99 ms", "ok/failed", "vs in-proc")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
    for mode in MODES:
        per = results["cells"].get(mode)
        if not per:
            continue
        row = [mode]
        for bs in sizes:
            c = per[bs]
            lat = c["latency_ms"]
            row += [
                f"{c['requests_per_s']:.1f}",
                f"{c['examples_per_s']:.0f}",
                f"{lat['p50']:.2f} / {lat['p95']:.2f} / {lat['p99']:.2f}",
                f"{c['requests']}/{c['failed_requests']}",
                f"{results['ratio_to_in_process'][mode][bs]:.2f}x",
            ]
        lines.append("| " + " | ".join(row) + " |")
    b = results["batching"]
    lines.append("")
    lines.append(
        f"{results['clients']} closed-loop clients on 127.0.0.1, each cell bounded by "
        f"{results['seconds']:g} s "
        f"and {results['max_requests']} requests; model {results['model_name']} v{results['version']}; "
        f"batching: max_batch_size {b.get('max_batch_size')}, batch_timeout_micros "
        f"{b.get('batch_timeout_micros')}, num_batch_threads {b.get('num_batch_threads')}."
    )
    return "\n".join(lines)
