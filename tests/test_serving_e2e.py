"""The pipeline's real pushed model behind tfjoint's TF Serving-compatible server."""

from __future__ import annotations

import base64
import glob
import json
import os
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from tfjoint.serving.client import ServingClient
from tfjoint.serving.server import serve_in_background


def _eval_examples(data_root: str, n: int) -> list[bytes]:
    files = sorted(glob.glob(os.path.join(data_root, "eval", "*.tfrecord"))) or sorted(
        glob.glob(os.path.join(data_root, "eval", "*"))
    )
    return list(tf.data.TFRecordDataset(files).take(n).as_numpy_iterator())


def test_pushed_model_over_grpc_and_rest_equals_the_signature(synthetic_run):
    if synthetic_run.pushed_dir is None:
        pytest.fail("the synthetic run pushed no model (not blessed)")
    pushed = synthetic_run.pushed_dir
    base_path, version = os.path.dirname(pushed), int(os.path.basename(pushed))
    name = os.path.basename(base_path)
    signature = tf.saved_model.load(pushed).signatures["serving_default"]
    examples = _eval_examples(synthetic_run.data_root, 64)
    assert len(examples) == 64

    with serve_in_background(model_name=name, model_base_path=base_path, port=0, rest_api_port=0,
                             file_system_poll_wait_seconds=0) as server:
        client = ServingClient(server.grpc_target, name, timeout=60)
        assert client.status() == [{"version": version, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]
        for n in (1, 64):
            batch = examples[:n]
            want = {k: v.numpy() for k, v in signature(examples=tf.constant(batch)).items()}
            assert want and all(v.shape == (n, 1) for v in want.values())

            resp = client.predict_full(batch)
            assert resp.model_spec.version.value == version
            got = {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}
            assert set(got) == set(want)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], atol=1e-6, rtol=0)

            body = json.dumps({"instances": [{"b64": base64.b64encode(e).decode()} for e in batch]}).encode()
            req = urllib.request.Request(f"{server.rest_url}/v1/models/{name}:predict", data=body)
            with urllib.request.urlopen(req, timeout=60) as r:
                rows = json.loads(r.read())["predictions"]
            assert len(rows) == n
            for k in want:
                np.testing.assert_allclose(np.array([row[k] for row in rows]), want[k], atol=1e-6, rtol=0)
        client.close()
