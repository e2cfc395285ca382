"""The server against a toy SavedModel: numbers, TF Serving status codes, versions, batching."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tfjoint.features import SCENARIO_FALLBACK_KEY
from tfjoint.serving.client import ServingClient, make_example
from tfjoint.serving.conftest import add_version, raw_examples, serialized
from tfjoint.serving.errors import ServingError
from tfjoint.serving.versions import aspired_versions
from tfjoint.serving.server import serve_in_background

C = grpc.StatusCode


def _config(base_path: str, policy: str = "all {}", labels: dict | None = None):
    labels_txt = "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items())
    return text_format.Parse(
        f'model_config_list {{ config {{ name: "toy" base_path: "{base_path}" model_platform: "tensorflow" '
        f"model_version_policy {{ {policy} }}{labels_txt} }} }}",
        model_server_config_pb2.ModelServerConfig(),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory, toy_export):
    bp = str(tmp_path_factory.mktemp("srv") / "toy")
    add_version(bp, 1, toy_export)
    add_version(bp, 2, toy_export)
    with serve_in_background(
        model_config=_config(bp, labels={"stable": 1, "canary": 2}),
        port=0,
        rest_api_port=0,
        file_system_poll_wait_seconds=0,
        max_message_size=1 << 20,
        monitoring_config_file=os.path.join(os.path.dirname(__file__), "..", "..", "serving", "monitoring.config"),
    ) as s:
        s.toy_path = os.path.join(bp, "2")
        yield s


@pytest.fixture(scope="module")
def stubs(server):
    c = ServingClient(server.grpc_target, "toy", timeout=20, max_message_size=8 << 20)
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(toy_export):
    return tf.saved_model.load(toy_export).signatures


def _rest(server, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(server.rest_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("n", [1, 64])
def test_predict_grpc_and_rest_equal_the_signature(server, stubs, reference, n):
    examples = serialized(n, seed=n)
    want = {k: v.numpy() for k, v in reference["serving_default"](examples=tf.constant(examples)).items()}

    got = stubs.predict(examples)  # bytes
    assert set(got) == {"click", "score"}
    for k in want:
        assert got[k].shape == (n, 1)
        np.testing.assert_allclose(got[k], want[k], atol=1e-6)
    got_dicts = stubs.predict(raw_examples(n, seed=n))  # raw feature dicts -> tf.Example
    for k in want:
        np.testing.assert_allclose(got_dicts[k], want[k], atol=1e-6)

    b64 = [{"b64": base64.b64encode(e).decode()} for e in examples]
    status, rows = _rest(server, "POST", "/v1/models/toy:predict", {"instances": b64})
    assert status == 200, rows
    assert len(rows["predictions"]) == n
    for k in want:
        np.testing.assert_allclose(np.array([r[k] for r in rows["predictions"]]), want[k], atol=1e-6)
    status, cols = _rest(server, "POST", "/v1/models/toy/versions/2:predict", {"inputs": {"examples": b64}})
    assert status == 200, cols
    for k in want:
        np.testing.assert_allclose(np.array(cols["outputs"][k]), want[k], atol=1e-6)


def _predict_req(name="toy", sig="", version=None, label=None, examples=None, alias="examples", filt=()):
    req = predict_pb2.PredictRequest(output_filter=list(filt))
    req.model_spec.name = name
    req.model_spec.signature_name = sig
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    ex = serialized(2) if examples is None else examples
    req.inputs[alias].CopyFrom(tf.make_tensor_proto(ex, dtype=tf.string))
    return req


def _bad_tensor():
    req = _predict_req()
    req.inputs["examples"].string_val.extend([b"x", b"y"])  # 4 values for a shape of [2]
    return req


def _wrong_dtype():
    req = _predict_req()
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
    return req


def _extra_input():
    req = _predict_req()
    req.inputs["foo"].CopyFrom(tf.make_tensor_proto([b"a"], dtype=tf.string))
    return req


def _classify(sig=""):
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name, req.model_spec.signature_name = "toy", sig
    req.input.example_list.examples.add().CopyFrom(make_example(raw_examples(1)[0]))
    return req


def _regress(sig=""):
    req = regression_pb2.RegressionRequest()
    req.model_spec.name, req.model_spec.signature_name = "toy", sig
    req.input.example_list.examples.add().CopyFrom(make_example(raw_examples(1)[0]))
    return req


ERROR_CASES = [
    ("Predict", lambda: _predict_req(name="nope"), C.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("Predict", lambda: _predict_req(version=7), C.NOT_FOUND, "Servable not found for request: Specific(toy, 7)"),
    ("Predict", lambda: _predict_req(label="nope"), C.INVALID_ARGUMENT, "Unrecognized servable version label: nope"),
    ("Predict", lambda: _predict_req(sig="nope"), C.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    ("Predict", lambda: _predict_req(alias="foo"), C.INVALID_ARGUMENT, "Signature input alias: examples(feed name:"),
    ("Predict", _extra_input, C.INVALID_ARGUMENT, "input size does not match signature: 2!=1"),
    ("Predict", _bad_tensor, C.INVALID_ARGUMENT, "tensor parsing error: examples"),
    ("Predict", _wrong_dtype, C.INVALID_ARGUMENT, "Expects arg[0] to be string but float is provided"),
    ("Predict", lambda: _predict_req(examples=[b"\xff\xfe garbage"]), C.INVALID_ARGUMENT, "parse"),
    ("Predict", lambda: _predict_req(filt=["nope"]), C.INVALID_ARGUMENT, "output tensor alias not found in signature: nope"),
    ("Predict", lambda: _predict_req(filt=["click", "click"]), C.INVALID_ARGUMENT, "duplicate output tensor alias: click"),
    ("Predict", lambda: predict_pb2.PredictRequest(), C.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("Classify", _classify, C.INVALID_ARGUMENT,
     "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    ("Regress", _regress, C.INVALID_ARGUMENT,
     "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/predict"),
    ("Classify", lambda: _classify("nope"), C.INVALID_ARGUMENT, "No signature was found with the name: nope"),
    ("GetModelMetadata", lambda: get_model_metadata_pb2.GetModelMetadataRequest(model_spec=model_pb2.ModelSpec(name="toy")),
     C.INVALID_ARGUMENT, "must specify at least one metadata_field"),
    ("GetModelMetadata", lambda: get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="toy"), metadata_field=["foo"]), C.INVALID_ARGUMENT,
     "Metadata field foo is not supported"),
    ("GetModelStatus", lambda: get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="nope")),
     C.NOT_FOUND, "Could not find any versions of model nope"),
]


@pytest.mark.parametrize("rpc,make,code,message", ERROR_CASES, ids=[c[3][:40] for c in ERROR_CASES])
def test_errors_have_tf_serving_codes(server, stubs, rpc, make, code, message):
    stub = stubs.models if rpc == "GetModelStatus" else stubs.prediction
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, rpc)(make(), timeout=20)
    assert err.value.code() == code, err.value.details()
    assert message in err.value.details()
    assert stubs.predict(serialized(1))["click"].shape == (1, 1)  # still serving


def test_oversized_message(server, stubs):
    big = [b"x" * (2 << 20)]
    with pytest.raises(grpc.RpcError) as err:
        stubs.predict(big)
    assert err.value.code() == C.RESOURCE_EXHAUSTED
    assert stubs.predict(serialized(1))["click"].shape == (1, 1)


def test_rest_errors_and_status(server):
    b64 = [{"b64": base64.b64encode(serialized(1)[0]).decode()}]
    cases = [
        ("POST", "/v1/models/nope:predict", {"instances": b64}, 404, "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/toy/versions/9:predict", {"instances": b64}, 404, "Specific(toy, 9)"),
        ("POST", "/v1/models/toy/labels/nope:predict", {"instances": b64}, 400, "Unrecognized servable version label"),
        ("POST", "/v1/models/toy:predict", {"signature_name": "nope", "instances": b64}, 400, "not found"),
        ("POST", "/v1/models/toy:predict", b"{not json", 400, "JSON Parse error"),
        ("POST", "/v1/models/toy:predict", {"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/toy:predict", {"inputs": {"bad": b64}}, 400, "Missing named input: examples"),
        ("POST", "/v1/models/toy:predict", {"instances": [[1, 2], [3]]}, 400, ""),
        ("POST", "/v1/models/toy:classify", {"examples": [{"x": [1.0, 2.0]}]}, 400,
         "Expected classification signature method_name"),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/toy/versions/5", None, 404, "Could not find version 5 of model toy"),
        ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ]
    for method, path, body, http, msg in cases:
        status, doc = _rest(server, method, path, body)
        assert status == http, (path, doc)
        assert msg in doc["error"], (path, doc)
    status, doc = _rest(server, "GET", "/v1/models/toy")
    assert status == 200
    assert doc == {
        "model_version_status": [
            {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in ("2", "1")
        ]
    }
    status, doc = _rest(server, "GET", "/v1/models/toy/labels/stable/metadata")
    assert status == 200 and doc["model_spec"]["version"] == "1"
    sd = doc["metadata"]["signature_def"]["signature_def"]
    assert sd["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert sd["serving_default"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert set(sd["serving_default"]["outputs"]) == {"click", "score"}
    assert set(sd["serving_auxiliary"]["outputs"]) == {"click", "score", SCENARIO_FALLBACK_KEY}
    status, doc = _rest(
        server, "POST", "/v1/models/toy:regress", {"signature_name": "regress", "examples": raw_examples(2)}
    )
    assert status == 200 and len(doc["results"]) == 2


def test_prometheus_metrics(server, stubs):
    def fallback_count(text: str) -> int:
        for line in text.splitlines():
            if line.startswith(':tfjoint:serving:scenario_fallback_count{model_name="toy"}'):
                return int(line.split()[-1])
        return 0

    def scrape() -> str:
        with urllib.request.urlopen(server.rest_url + "/monitoring/prometheus/metrics", timeout=30) as r:
            return r.read().decode()

    before = fallback_count(scrape())
    batch = [make_example(e).SerializeToString() for e in raw_examples(40, seed=3)]
    stubs.predict(batch)  # serving_default has no scenario_fallback output: nothing to count
    assert fallback_count(scrape()) == before
    stubs.predict(batch, signature_name="serving_auxiliary")
    assert fallback_count(scrape()) - before == sum(e["c"] >= 5 for e in raw_examples(40, seed=3)) > 0
    stubs.predict(serialized(1))
    with pytest.raises(grpc.RpcError):
        stubs.prediction.Predict(_predict_req(name="nope"), timeout=20)
    with urllib.request.urlopen(server.rest_url + "/monitoring/prometheus/metrics", timeout=30) as r:
        text = r.read().decode()
    assert ':tensorflow:serving:request_count{model_name="toy",api="Predict",status="OK"}' in text
    assert 'model_name="nope",api="Predict",status="NOT_FOUND"' in text


def test_versions_and_labels(server, stubs):
    def version_of(**kw):
        return stubs.predict_full(serialized(1), **kw).model_spec.version.value

    assert version_of() == 2
    assert version_of(version=1) == 1
    assert version_of(label="stable") == 1
    assert version_of(label="canary") == 2
    resp = stubs.predict_full(serialized(1), signature_name="")
    assert resp.model_spec.signature_name == "serving_default" and resp.model_spec.name == "toy"
    md = stubs.metadata(label="stable")
    assert md["version"] == 1 and {"serving_default", "transform_features"} <= set(md["signature_def"])
    assert [(s["version"], s["state"]) for s in stubs.status()] == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    assert stubs.status(version=1)[0]["state"] == "AVAILABLE"


def test_aspired_versions_policies():
    def cfg(policy):
        return _config("/x", policy).model_config_list.config[0]

    assert aspired_versions(cfg("latest { }"), [3, 1, 2]) == {3}
    assert aspired_versions(cfg("latest { num_versions: 2 }"), [3, 1, 2]) == {2, 3}
    assert aspired_versions(cfg("all { }"), [3, 1, 2]) == {1, 2, 3}
    assert aspired_versions(cfg("specific { versions: 1 versions: 5 }"), [3, 1, 2]) == {1}
    assert aspired_versions(model_server_config_pb2.ModelConfig(), [4, 9]) == {9}  # default: latest 1


def test_classify_regress_multi_inference_contracts(server, stubs, reference):
    ex = [make_example(e) for e in raw_examples(3)]
    ser = tf.constant([e.SerializeToString() for e in ex])
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name, req.model_spec.signature_name = "toy", "classify"
    req.input.example_list.examples.extend(ex)
    resp = stubs.prediction.Classify(req, timeout=20)
    want = reference["classify"](inputs=ser)["scores"].numpy()
    got = np.array([[c.score for c in cl.classes] for cl in resp.result.classifications])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert [c.label for c in resp.result.classifications[0].classes] == ["no", "yes"]

    rreq = regression_pb2.RegressionRequest()
    rreq.model_spec.name, rreq.model_spec.signature_name = "toy", "regress"
    rreq.input.example_list.examples.extend(ex)
    rresp = stubs.prediction.Regress(rreq, timeout=20)
    np.testing.assert_allclose(
        [r.value for r in rresp.result.regressions], reference["regress"](inputs=ser)["outputs"].numpy()[:, 0],
        atol=1e-5,
    )
    mreq = inference_pb2.MultiInferenceRequest()
    mreq.input.example_list.examples.extend(ex)
    for sig, method in (("classify", "tensorflow/serving/classify"), ("regress", "tensorflow/serving/regress")):
        t = mreq.tasks.add(method_name=method)
        t.model_spec.name, t.model_spec.signature_name = "toy", sig
    mresp = stubs.prediction.MultiInference(mreq, timeout=20)
    assert len(mresp.results) == 2 and len(mresp.results[1].regression_result.regressions) == 3
    t = mreq.tasks.add(method_name="tensorflow/serving/predict")
    t.model_spec.name, t.model_spec.signature_name = "toy", "serving_default"
    with pytest.raises(grpc.RpcError) as err:
        stubs.prediction.MultiInference(mreq, timeout=20)
    assert err.value.code() == C.INVALID_ARGUMENT and "Unsupported signature method_name" in err.value.details()


def test_reload_config_policy_and_labels(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    for v in (1, 2):
        add_version(bp, v, toy_export)
    with serve_in_background(model_config=_config(bp), port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0) as s:
        c = ServingClient(s.grpc_target, "toy", timeout=30)
        req = model_management_pb2.ReloadConfigRequest(config=_config(bp, "specific { versions: 1 }"))
        assert c.models.HandleReloadConfigRequest(req, timeout=30).status.error_code == 0
        assert {(x["version"], x["state"]) for x in c.status()} == {(1, "AVAILABLE"), (2, "END")}
        with pytest.raises(grpc.RpcError) as err:
            c.predict(serialized(1), version=2)
        assert err.value.code() == C.NOT_FOUND
        bad = model_management_pb2.ReloadConfigRequest(config=_config(bp, "specific { versions: 1 }", {"x": 2}))
        with pytest.raises(grpc.RpcError) as err:
            c.models.HandleReloadConfigRequest(bad, timeout=30)
        assert err.value.code() == C.FAILED_PRECONDITION and "not currently available" in err.value.details()
        ok = model_management_pb2.ReloadConfigRequest(config=_config(bp, "specific { versions: 1 }", {"x": 1}))
        c.models.HandleReloadConfigRequest(ok, timeout=30)
        assert c.predict_full(serialized(1), label="x").model_spec.version.value == 1
        c.close()


def test_labels_must_name_available_versions_at_startup(base_path):
    cfg = _config(base_path, "latest { }", {"old": 1})
    with pytest.raises(ServingError) as err:
        with serve_in_background(model_config=cfg, port=0, rest_api_port=None, file_system_poll_wait_seconds=0):
            pass
    assert err.value.code == C.FAILED_PRECONDITION
    assert "assign label to version 1 of model toy, which is not currently available" in err.value.message
    with serve_in_background(model_config=cfg, port=0, rest_api_port=None, file_system_poll_wait_seconds=0,
                             allow_version_labels_for_unavailable_models=True) as s:
        c = ServingClient(s.grpc_target, "toy", timeout=30)
        with pytest.raises(grpc.RpcError) as rpc_err:
            c.predict(serialized(1), label="old")
        assert rpc_err.value.code() == C.NOT_FOUND
        assert "Servable not found for request: Specific(toy, 1)" in rpc_err.value.details()
        c.close()


def test_new_version_becomes_latest_without_failed_requests(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0.1) as s:
        c = ServingClient(s.grpc_target, "toy", timeout=30, retries=0)
        examples = serialized(4)
        versions, failures, stop = [], [], threading.Event()

        def hammer():
            end = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < end:
                try:
                    versions.append(c.predict_full(examples).model_spec.version.value)
                except grpc.RpcError as e:  # pragma: no cover - the assertion below reports it
                    failures.append(e)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        add_version(bp, 2, toy_export)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and (not versions or versions[-1] != 2):
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        c2 = [x["state"] for x in sorted(c.status(), key=lambda x: x["version"])]
        c.close()
    assert not failures, failures[:3]
    assert 1 in versions and versions[-1] == 2
    assert c2 == ["END", "AVAILABLE"]


def test_failed_version_is_reported_and_others_keep_serving(tmp_path, toy_export):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=0,
                             file_system_poll_wait_seconds=0.1) as s:
        c = ServingClient(s.grpc_target, "toy", timeout=30)
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"definitely not a SavedModel")
        os.rename(broken, os.path.join(bp, "3"))  # newest version, latest{1} aspires it alone
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 3 not in {x["version"] for x in c.status()
                                                        if x["state"] == "END"}:
            time.sleep(0.05)
        st = {x["version"]: x for x in c.status()}
        assert st[3]["state"] == "END" and st[3]["error_code"] != 0 and st[3]["error_message"]
        assert st[1]["state"] == "AVAILABLE"
        assert c.predict_full(serialized(2)).model_spec.version.value == 1
        status, doc = _rest(s, "GET", "/v1/models/toy/versions/3")
        assert status == 200 and doc["model_version_status"][0]["state"] == "END"
        assert doc["model_version_status"][0]["status"]["error_code"] != "OK"
        add_version(bp, 4, toy_export)  # a good newer version still replaces v1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and c.predict_full(serialized(1)).model_spec.version.value != 4:
            time.sleep(0.05)
        assert c.predict_full(serialized(1)).model_spec.version.value == 4
        c.close()


def test_batching_merges_concurrent_requests(tmp_path, toy_export, reference):
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    params = tmp_path / "batching.txt"
    params.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 300000 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 8 }\n"
    )
    with serve_in_background(model_name="toy", model_base_path=bp, port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0, enable_batching=True,
                             batching_parameters_file=str(params)) as s:
        servable = s.manager.get_servable(model_pb2.ModelSpec(name="toy"))
        before = servable.calls_by_signature["serving_default"]
        c = ServingClient(s.grpc_target, "toy", timeout=30)
        inputs = [serialized(3, seed=i) for i in range(8)]
        results = [None] * 8

        def call(i):
            results[i] = c.predict(inputs[i])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        calls = servable.calls_by_signature["serving_default"] - before
        # A request whose deadline passes while it waits for its batch is dropped, not run.
        before = servable.calls_by_signature["serving_default"]
        with pytest.raises(grpc.RpcError) as err:
            c.predict(inputs[0], timeout=0.1)
        assert err.value.code() == C.DEADLINE_EXCEEDED
        time.sleep(0.5)
        assert servable.calls_by_signature["serving_default"] == before
        c.close()
    assert all(r is not None for r in results)
    assert 1 <= calls < 8, calls
    for i in range(8):
        want = reference["serving_default"](examples=tf.constant(inputs[i]))
        for k in ("click", "score"):
            np.testing.assert_allclose(results[i][k], want[k].numpy(), atol=1e-6)
