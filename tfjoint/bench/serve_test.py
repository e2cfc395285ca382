"""``tfjoint bench serve`` on a tiny SavedModel with the pipeline's serving signature."""

from __future__ import annotations

import json
import math
import os

import pytest
import tensorflow as tf

from tfjoint.bench import serve

FEATURES = {"x": tf.io.FixedLenFeature([2], tf.float32, default_value=[0.0, 0.0])}


class _Tiny(tf.Module):
    """Serialized tf.Example ``examples`` in, a dict of (batch, 1) float heads out."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable([[0.5], [-1.0]], dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        z = tf.matmul(tf.io.parse_example(examples, FEATURES)["x"], self.w)
        return {"click": tf.sigmoid(z), "rating": z * 2.0 + 3.0}


def _example(i: int) -> bytes:
    feat = tf.train.Feature(float_list=tf.train.FloatList(value=[i * 0.1, 1.0 - i * 0.05]))
    return tf.train.Example(features=tf.train.Features(feature={"x": feat})).SerializeToString()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_serve")
    base = root / "models" / "tiny"
    m = _Tiny()
    tf.saved_model.save(m, str(base / "3"), signatures={"serving_default": m.serve.get_concrete_function()})
    data = root / "examples.tfrecord"
    with tf.io.TFRecordWriter(str(data)) as w:
        for i in range(20):
            w.write(_example(i))
    return str(base), str(data)


def test_closed_loop_honours_max_requests():
    calls = []
    cell = serve.closed_loop(
        lambda: calls.append, [[b"a"], [b"b"]], clients=3, seconds=10.0, max_requests=17, warmup=1
    )
    assert cell["requests"] == 17 and cell["failed_requests"] == 0 and cell["stopped_by"] == "max_requests"
    assert len(calls) == 17 + 3  # plus one warmup call per client
    assert cell["seconds"] < 5.0


def test_closed_loop_stops_on_time_and_counts_failures():
    def factory():
        def call(batch):
            raise RuntimeError("boom")

        return call

    cell = serve.closed_loop(factory, [[b"a"]], clients=2, seconds=0.2, max_requests=10**9, warmup=0)
    assert cell["requests"] == 0 and cell["failed_requests"] > 0 and cell["stopped_by"] == "time"
    assert cell["errors"] and "boom" in cell["errors"][0]


def test_run_serve_bench_tiny_model(tiny, tmp_path):
    base, data = tiny
    max_requests = 40
    results = serve.run_serve_bench(
        model_base_path=base,
        model_name="tiny",
        examples=data,
        clients=2,
        seconds=1.0,
        max_requests=max_requests,
        batch_sizes=(1, 64),
    )
    assert results["version"] == 3 and results["distinct_examples"] == 20
    assert set(results["cells"]) == {"in-process", "gRPC", "gRPC+batching", "REST"}
    for mode, per in results["cells"].items():
        assert set(per) == {"1", "64"}, mode
        for bs, cell in per.items():
            where = f"{mode} b={bs}: {cell['errors']}"
            assert cell["batch_size"] == int(bs)
            assert cell["failed_requests"] == 0, where
            assert 0 < cell["requests"] <= max_requests, where
            assert cell["issued_requests"] <= max_requests
            assert cell["seconds"] < 1.0 + 5.0, where  # stopped by itself (time limit + one in-flight call)
            assert cell["requests_per_s"] > 0 and cell["examples_per_s"] == pytest.approx(
                cell["requests_per_s"] * int(bs)
            )
            lat = cell["latency_ms"]
            assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"], where
            ratio = results["ratio_to_in_process"][mode][bs]
            assert ratio > 0 and math.isfinite(ratio)
    assert results["ratio_to_in_process"]["in-process"]["1"] == pytest.approx(1.0)
    table = serve.format_table(results)
    assert table.count("\n| ") >= 4 and "gRPC+batching" in table and "b=64 p50/p95/p99 ms" in table
    json.dumps(results)  # JSON-serializable (the CLI's --json)


def test_missing_model_says_make_demo(tmp_path):
    with pytest.raises(FileNotFoundError, match="make demo"):
        serve.run_serve_bench(model_base_path=str(tmp_path / "nope"), examples=[b""])
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="make demo"):
        serve.latest_version_dir(str(tmp_path / "empty"))


def test_cli_parses_serve():
    import argparse

    from tfjoint.bench.cli import add_bench_parser, cmd_serve

    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "serve", "--clients", "2", "--seconds", "1", "--max-requests", "10"])
    assert args.func is cmd_serve and args.clients == 2 and args.seconds == 1.0 and args.max_requests == 10
    assert args.model_base_path == serve.DEFAULT_MODEL_BASE_PATH and args.rest
