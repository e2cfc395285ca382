"""TF Serving's REST API (http_rest_api_handler.cc, util/json_tensor.cc) over the model manager.

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict|:classify|:regress
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tfjoint.serving.errors import ServingError
from tfjoint.serving.http_server import READ_TIMEOUT_S, BodyError, PooledHTTPServer, read_body
from tfjoint.serving.inference import DEFAULT_SIGNATURE
from tfjoint.serving.manager import ModelManager
from tfjoint.serving.tensors import ndarray_to_tensor_proto

log = logging.getLogger("tfjoint.serving")

_INFER_RE = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_GET_RE = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?")

# http_server.cc ToHTTPStatusCode
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def _invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def _spec(name: str, version: str | None, label: str | None, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    if version:
        spec.version.value = int(version)
    elif label:
        spec.version_label = label
    return spec


# --------------------------------------------------------------------------- JSON <-> tensors


def _decode_leaf_bytes(v, where: str):
    if isinstance(v, dict):
        if set(v) == {"b64"} and isinstance(v["b64"], str):
            try:
                return base64.b64decode(v["b64"], validate=True)
            except ValueError:
                raise _invalid(f"Unable to base64 decode {where}") from None
        raise _invalid(f"JSON Value: {json.dumps(v)} not formatted correctly for base64 data")
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, list):
        return [_decode_leaf_bytes(x, where) for x in v]
    raise _invalid(f"JSON Value: {json.dumps(v)} Type: {type(v).__name__} is not of expected type: string")


_NP = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_HALF: np.float16,
}


def json_to_array(value, dtype: int, where: str) -> np.ndarray:
    """A JSON value for one input -> ndarray of the signature's dtype (ragged lists are errors)."""
    try:
        if dtype == types_pb2.DT_STRING:
            arr = np.array(_decode_leaf_bytes(value, where), dtype=object)
            if any(isinstance(x, list) for x in arr.flat):
                raise ValueError("ragged nested lists")
            return arr
        np_dtype = _NP.get(dtype)
        if np_dtype is None:
            raise _invalid(f"Unsupported input type for {where}: {types_pb2.DataType.Name(dtype)}")

        def check(v):
            if isinstance(v, list):
                for x in v:
                    check(x)
            elif isinstance(v, bool) and dtype != types_pb2.DT_BOOL:
                raise _invalid(f"JSON Value: {json.dumps(v)} Type: Bool is not of expected type: {np.dtype(np_dtype).name}")
            elif not isinstance(v, (int, float, bool)):
                raise _invalid(
                    f"JSON Value: {json.dumps(v)} is not of expected type: {np.dtype(np_dtype).name}"
                )
            elif isinstance(v, float) and np.issubdtype(np_dtype, np.integer):
                raise _invalid(f"JSON Value: {json.dumps(v)} Type: Number is not of expected type: integer")

        check(value)
        return np.array(value, dtype=np_dtype)
    except ValueError as e:  # ragged nested lists
        raise _invalid(f"Unable to convert {where} to a tensor: {e}") from None


def _to_jsonable(arr: np.ndarray, alias: str):
    if arr.dtype == object or arr.dtype.kind in "SU":
        def conv(x):
            if isinstance(x, list):
                return [conv(y) for y in x]
            if isinstance(x, bytes):
                if alias.endswith("_bytes"):
                    return {"b64": base64.b64encode(x).decode("ascii")}
                try:
                    return x.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(x).decode("ascii")}
            return x
        return conv(arr.tolist())
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)  # float32 -> exact python floats
    return arr.tolist()


def _row_inputs(instances, sig) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise _invalid("'instances' must be a non-empty JSON list")
    aliases = sorted(sig.inputs)
    named = all(
        isinstance(i, dict) and set(i) != {"b64"} for i in instances
    )
    if not named:
        if len(aliases) != 1:
            raise _invalid(
                f"instances is not a list of JSON objects, but the signature has {len(aliases)} named inputs"
            )
        alias = aliases[0]
        return {alias: json_to_array(instances, sig.inputs[alias].dtype, alias)}
    per_alias = {a: [] for a in aliases}
    for n, inst in enumerate(instances):
        for a in aliases:
            if a not in inst:
                raise _invalid(
                    f"Failed to process element: {n} of 'instances' list. JSON object: {json.dumps(inst)[:200]} "
                    f"does not have named input: {a}"
                )
            per_alias[a].append(inst[a])
        extra = set(inst) - set(aliases)
        if extra:
            raise _invalid(
                f"Failed to process element: {n} of 'instances' list. JSON object has unexpected named input: "
                f"{min(extra)}"
            )
    out = {a: json_to_array(v, sig.inputs[a].dtype, a) for a, v in per_alias.items()}
    return out


def _columnar_inputs(inputs, sig) -> dict[str, np.ndarray]:
    aliases = sorted(sig.inputs)
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        for a in aliases:
            if a not in inputs:
                raise _invalid(f"Missing named input: {a} in 'inputs' object.")
        return {a: json_to_array(v, sig.inputs[a].dtype, a) if a in sig.inputs else None for a, v in inputs.items()}
    if len(aliases) != 1:
        raise _invalid("'inputs' is not a JSON object, but the signature has more than one named input")
    return {aliases[0]: json_to_array(inputs, sig.inputs[aliases[0]].dtype, aliases[0])}


def json_to_example(obj, where: str) -> example_pb2.Example:
    """json_tensor.cc FillClassificationRequestFromJson: a JSON object -> tf.Example."""
    if not isinstance(obj, dict):
        raise _invalid(f"{where} is not a JSON object")
    ex = example_pb2.Example()
    for key, value in obj.items():
        values = value if isinstance(value, list) else [value]
        feat = ex.features.feature[key]
        if not values:
            continue
        if all(isinstance(v, (dict, str)) for v in values):
            feat.bytes_list.value.extend(_decode_leaf_bytes(v, key) for v in values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            feat.int64_list.value.extend(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            feat.float_list.value.extend(float(v) for v in values)
        else:
            raise _invalid(f"Unsupported or mixed JSON value types for feature: {key}")
    return ex


def _input_from_json(body) -> input_pb2.Input:
    if "examples" not in body:
        raise _invalid("Missing 'examples' key")
    examples = body["examples"]
    if not isinstance(examples, list):
        raise _invalid("'examples' must be a JSON list")
    inp = input_pb2.Input()
    if "context" in body:
        lst = inp.example_list_with_context
        lst.context.CopyFrom(json_to_example(body["context"], "context"))
    else:
        lst = inp.example_list
    for i, e in enumerate(examples):
        lst.examples.add().CopyFrom(json_to_example(e, f"examples[{i}]"))
    return inp


# --------------------------------------------------------------------------- handlers


class RestApi:
    """Request processing independent of the HTTP server (returns (http_status, json_body))."""

    def __init__(self, manager: ModelManager, timeout_s: float | None = 30.0):
        self.manager = manager
        self.timeout_s = timeout_s

    def process(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        try:
            return 200, self._dispatch(method, path, body)
        except ServingError as e:
            return HTTP_STATUS.get(e.code, 500), {"error": e.message}
        except Exception as e:
            log.exception("REST internal error")
            return 500, {"error": f"{type(e).__name__}: {e}"}

    def _dispatch(self, method: str, path: str, body: bytes) -> dict:
        path = path.split("?", 1)[0]
        if method == "POST":
            m = _INFER_RE.fullmatch(path)
            if m:
                name, version, label, verb = m.groups()
                return self._infer(verb.lower(), name, version, label, body)
        elif method == "GET":
            m = _GET_RE.fullmatch(path)
            if m:
                name, version, label, metadata = m.groups()
                if not name:
                    raise _invalid("Missing model name in request.")
                if metadata:
                    return self._metadata(name, version, label)
                return self._status(name, version, label)
        raise _invalid(f"Malformed request: {method} {path}")

    def _status(self, name, version, label) -> dict:
        req = get_model_status_pb2.GetModelStatusRequest(model_spec=_spec(name, version, label))
        resp = self.manager.get_model_status(req)
        return json.loads(
            json_format.MessageToJson(resp, including_default_value_fields=True, preserving_proto_field_name=True)
        )

    def _metadata(self, name, version, label) -> dict:
        req = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=_spec(name, version, label), metadata_field=["signature_def"]
        )
        resp = self.manager.get_model_metadata(req)
        sdm = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sdm)
        fmt = {"including_default_value_fields": True, "preserving_proto_field_name": True}
        return {
            "model_spec": json.loads(json_format.MessageToJson(resp.model_spec, **fmt)),
            "metadata": {"signature_def": json.loads(json_format.MessageToJson(sdm, **fmt))},
        }

    def _parse(self, body: bytes) -> dict:
        try:
            doc = json.loads(body.decode("utf-8") if body else "")
        except (ValueError, UnicodeDecodeError) as e:
            raise _invalid(f"JSON Parse error: {e}") from None
        if not isinstance(doc, dict):
            raise _invalid("JSON Parse error: The document root must be an object.")
        sig = doc.get("signature_name", "")
        if not isinstance(sig, str):
            raise _invalid("'signature_name' key must be a string value.")
        return doc

    def _infer(self, verb, name, version, label, body) -> dict:
        doc = self._parse(body)
        spec = _spec(name, version, label, doc.get("signature_name", ""))
        if verb == "predict":
            return self._predict(spec, doc)
        inp = _input_from_json(doc)
        if verb == "classify":
            resp = self.manager.classify(classification_pb2.ClassificationRequest(model_spec=spec, input=inp))
            return {
                "results": [
                    [[c.label, c.score] for c in cl.classes] for cl in resp.result.classifications
                ]
            }
        resp = self.manager.regress(regression_pb2.RegressionRequest(model_spec=spec, input=inp))
        return {"results": [r.value for r in resp.result.regressions]}

    def _predict(self, spec: model_pb2.ModelSpec, doc: dict) -> dict:
        has_inst, has_inputs = "instances" in doc, "inputs" in doc
        if has_inst == has_inputs:
            if has_inst:
                raise _invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
            raise _invalid("Missing 'inputs' or 'instances' key")
        servable = self.manager.get_servable(spec)
        sig_name = spec.signature_name or DEFAULT_SIGNATURE
        if sig_name not in servable.signature_defs:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{sig_name}" not found.')
        sig = servable.signature_defs[sig_name]
        arrays = _row_inputs(doc["instances"], sig) if has_inst else _columnar_inputs(doc["inputs"], sig)
        req = predict_pb2.PredictRequest(model_spec=spec)
        for alias, arr in arrays.items():
            if arr is None:  # unknown alias: let predict report it with TF Serving's message
                req.inputs[alias].dtype = types_pb2.DT_INVALID
                continue
            req.inputs[alias].CopyFrom(ndarray_to_tensor_proto(arr))
            req.inputs[alias].dtype = sig.inputs[alias].dtype
        if has_inst:
            sizes = {a.shape[0] if a.ndim else None for a in arrays.values() if a is not None}
            if len(sizes) > 1:
                raise _invalid("Failed to process 'instances': all named inputs must have the same 0th dimension")
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        # Pin the version that was resolved above so the whole request runs on one servable.
        req.model_spec.ClearField("version_label")
        req.model_spec.version.value = servable.version
        resp = self.manager.predict(req, deadline=deadline)
        outputs = {a: tf.make_ndarray(t) for a, t in resp.outputs.items()}
        if has_inst:
            n = {v.shape[0] if v.ndim else None for v in outputs.values()}
            if len(n) != 1 or None in n:
                raise _invalid("Output tensors of the model do not all have the same 0th dimension")
            rows = n.pop()
            if len(outputs) == 1:
                ((alias, v),) = outputs.items()
                return {"predictions": _to_jsonable(v, alias)}
            cols = {a: _to_jsonable(v, a) for a, v in sorted(outputs.items())}
            return {"predictions": [{a: cols[a][i] for a in cols} for i in range(rows)]}
        if len(outputs) == 1:
            ((alias, v),) = outputs.items()
            return {"outputs": _to_jsonable(v, alias)}
        return {"outputs": {a: _to_jsonable(v, a) for a, v in sorted(outputs.items())}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A request line that does not parse is answered with a status line (BaseHTTPRequestHandler's
    # default, HTTP/0.9, would send a bare HTML body that no HTTP client can read).
    default_request_version = "HTTP/1.0"
    api: RestApi  # set on the subclass
    max_body: int = 64 << 20
    metrics_path: str | None = None
    timeout = READ_TIMEOUT_S  # socket timeout of every read (StreamRequestHandler.setup)

    def log_message(self, fmt, *args):  # quiet; use logging
        log.debug("REST %s - " + fmt, self.address_string(), *args)

    def _reply(self, status: int, doc: dict) -> None:
        data = json.dumps(doc, indent=1).encode("utf-8") if doc is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        if method == "GET" and self.metrics_path and self.path.split("?", 1)[0] == self.metrics_path:
            data = self.api.manager.metrics.prometheus_text().encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if not self.path.lower().startswith("/v1/"):
            self._reply(404, {"error": f"Not found: {self.path}"})
            return
        try:
            body = read_body(self.headers, self.rfile, self.max_body)
        except BodyError as e:
            self._reply(e.status, {"error": e.message})
            self.close_connection = True
            return
        except TimeoutError:  # a client that stopped sending: the socket timeout (self.timeout)
            self._reply(408, {"error": f"Request body not received within {self.timeout:g} s"})
            self.close_connection = True
            return
        status, doc = self.api.process(method, self.path, body)
        self._reply(status, doc)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class RestServer:
    """A threaded HTTP server for the REST API."""

    def __init__(self, manager: ModelManager, host: str, port: int, *, timeout_s: float | None = 30.0,
                 max_body: int = 64 << 20, metrics_path: str | None = None,
                 read_timeout_s: float = READ_TIMEOUT_S, num_threads: int | None = None):
        handler = type(
            "Handler",
            (_Handler,),
            {"api": RestApi(manager, timeout_s), "max_body": max_body, "metrics_path": metrics_path,
             "timeout": read_timeout_s},
        )
        if num_threads is None:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        else:  # --rest_api_num_threads: at most this many requests are processed at once
            self.httpd = PooledHTTPServer((host, port), handler, num_threads)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if it never ran
            self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
