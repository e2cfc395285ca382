"""Warmup files: TF Serving's format, replayed on load before the version is AVAILABLE."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2

from tfjoint.serving.client import ServingClient
from tfjoint.serving.conftest import add_version, serialized
from tfjoint.serving.server import serve_in_background
from tfjoint.serving.warmup import read_warmup_requests, warmup_path, write_warmup_requests


def test_warmup_file_is_prediction_logs(tmp_path):
    examples = serialized(5)
    path = write_warmup_requests(str(tmp_path), examples, "toy")
    assert path == os.path.join(str(tmp_path), "assets.extra", "tf_serving_warmup_requests")
    logs = read_warmup_requests(str(tmp_path))
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log", "predict_log"]
    sizes = []
    for log in logs:
        req = log.predict_log.request
        assert req.model_spec.name == "toy" and req.model_spec.signature_name == "serving_default"
        arr = tf.make_ndarray(req.inputs["examples"])
        assert req.inputs["examples"].dtype == tf.string.as_datatype_enum
        assert list(arr) == examples[: len(arr)]
        sizes.append(len(arr))
    assert sizes == [1, 5]
    # The raw file is a plain TFRecord of serialized PredictionLog, as TF Serving reads it.
    assert sum(1 for _ in tf.data.TFRecordDataset(warmup_path(str(tmp_path)))) == 2
    with pytest.raises(ValueError):
        write_warmup_requests(str(tmp_path), [], "toy")


def test_server_replays_warmup_before_available(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    v1 = add_version(bp, 1, toy_export)
    write_warmup_requests(v1, serialized(4), "toy")
    v2 = add_version(bp, 2, toy_export)
    write_warmup_requests(v2, serialized(4), "toy", input_name="not_an_input")  # broken warmup
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0, model_config=None) as s:
        c = ServingClient(s.grpc_target, "toy", timeout=30)
        st = {x["version"]: x for x in c.status()}
        # latest{1} aspires v2 only; its warmup fails, so the load fails (as in TF Serving).
        assert st[2]["state"] == "END" and "Signature input alias: examples" in st[2]["error_message"]
        c.close()
    shutil.rmtree(v2)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0) as s:
        servable = s.manager.get_servable(model_pb2.ModelSpec(name="toy"))
        assert servable.version == 1 and servable.warmup_records == 2
        assert servable.calls_by_signature["serving_default"] == 2  # replayed before AVAILABLE
        c = ServingClient(s.grpc_target, "toy", timeout=30)
        out = c.predict(serialized(3))
        assert np.all(np.isfinite(out["click"]))
        c.close()
