"""Inference on one servable: model-spec resolution, Predict, Classify, Regress, MultiInference,
GetModelMetadata and the warmup replay.

Mirrors TensorFlow Serving's predict_util.cc, classifier.cc, regressor.cc, multi_inference.cc,
get_model_metadata_impl.cc and saved_model_warmup.cc: the same validation order, status codes
and error messages.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tfjoint.serving.batching import BatchingOptions
from tfjoint.serving.errors import ServingError, invalid
from tfjoint.serving.servable import Servable
from tfjoint.serving.tensors import dtype_name, ndarray_to_tensor_proto, tensor_proto_to_ndarray

log = logging.getLogger("tfjoint.serving")

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


def model_spec(name: str, signature_name: str | None, version: int | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)
    if signature_name is not None:
        spec.signature_name = signature_name
    if version is not None:
        spec.version.value = version
    return spec


def resolved_signature_name(spec: model_pb2.ModelSpec) -> str:
    return spec.signature_name or DEFAULT_SIGNATURE


def require_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")


def predict_on(
    servable: Servable,
    request: predict_pb2.PredictRequest,
    *,
    batching: BatchingOptions | None = None,
    deadline: float | None = None,
) -> predict_pb2.PredictResponse:
    """predict_util.cc RunPredict: validation order and messages as TF Serving's."""
    signature_name = resolved_signature_name(request.model_spec)
    sig = servable.signature_defs.get(signature_name) if signature_name in servable.signature_defs else None
    if sig is None:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.'
        )
    if sig.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        raise ServingError(
            grpc.StatusCode.INTERNAL,
            f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, {CLASSIFY_METHOD}, "
            f"{REGRESS_METHOD}}}. Was: {sig.method_name}",
        )
    req_inputs = set(request.inputs)
    sig_inputs = set(sig.inputs)
    if len(req_inputs) > len(sig_inputs) or (len(req_inputs) < len(sig_inputs) and not sig.defaults):
        raise invalid(
            f"input size does not match signature: {len(req_inputs)}!={len(sig_inputs)} "
            f"len({{{','.join(sorted(req_inputs))}}}) != len({{{','.join(sorted(sig_inputs))}}}). "
            f"Sent extra: {{{','.join(sorted(req_inputs - sig_inputs))}}}. "
            f"Missing but required: {{{','.join(sorted(sig_inputs - req_inputs))}}}."
        )
    inputs: dict[str, np.ndarray] = {}
    seen = set()
    for i, alias in enumerate(sorted(sig.inputs)):
        info = sig.inputs[alias]
        if alias in request.inputs:
            proto = request.inputs[alias]
            seen.add(alias)
        elif alias in sig.defaults:
            proto = sig.defaults[alias]
        else:
            raise invalid(
                f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no default "
                f"value provided. Inputs expected to be in the request {{{','.join(sorted(req_inputs))}}}, or "
                f"default input alias set: {','.join(sorted(sig.defaults))}"
            )
        arr = tensor_proto_to_ndarray(proto, alias)
        if proto.dtype != info.dtype:
            raise invalid(f"Expects arg[{i}] to be {dtype_name(info.dtype)} but {dtype_name(proto.dtype)} is provided")
        inputs[alias] = arr
    if req_inputs and len(seen) != len(req_inputs):
        raise invalid(
            f"Inputs contains invalid name. Used request inputs: {','.join(sorted(seen))}, "
            f"request input: {','.join(sorted(req_inputs))}"
        )
    aliases: list[str] = []
    for alias in request.output_filter:
        if alias not in sig.outputs:
            raise invalid(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(sig.outputs))}}}."
            )
        if alias in aliases:
            raise invalid(f"duplicate output tensor alias: {alias}")
        aliases.append(alias)
    if not aliases:
        aliases = sorted(sig.outputs)
    if deadline is not None and time.monotonic() >= deadline:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    batcher = servable.batcher(signature_name, batching) if batching is not None else None
    if batcher is not None and not batcher.stopped:
        fut = batcher.submit(inputs, deadline)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            full = fut.result(timeout=timeout)
        except futures.TimeoutError:
            fut.cancel()
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        outputs = {a: full[a] for a in aliases}
    else:
        outputs = servable.run(signature_name, inputs, aliases)

    resp = predict_pb2.PredictResponse()
    resp.model_spec.CopyFrom(model_spec(request.model_spec.name, signature_name, servable.version))
    for alias, value in outputs.items():
        resp.outputs[alias].CopyFrom(ndarray_to_tensor_proto(value))
    return resp


def serialize_input(inp: input_pb2.Input) -> np.ndarray:
    """util.cc InputToSerializedExampleTensor: context features merged into each example."""
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        serialized = [ex.SerializeToString() for ex in inp.example_list.examples]
    elif kind == "example_list_with_context":
        ctx = inp.example_list_with_context.context.SerializeToString()
        # Proto merge semantics: parsing ctx + example merges the feature maps (example wins).
        serialized = [ctx + ex.SerializeToString() for ex in inp.example_list_with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise invalid("Input is empty.")
    return np.array(serialized, dtype=object)


def _single_string_input(sig) -> str:
    if len(sig.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    alias = next(iter(sig.inputs))
    if sig.inputs[alias].dtype != types_pb2.DT_STRING:
        raise invalid(
            f"Expected input Tensor of DT_STRING. Got: {types_pb2.DataType.Name(sig.inputs[alias].dtype)}"
        )
    return alias


def _get_signature(servable: Servable, spec, expected_method: str, kind: str):
    name = resolved_signature_name(spec)
    if name not in servable.signature_defs:
        raise invalid(f"No signature was found with the name: {name}")
    sig = servable.signature_defs[name]
    if sig.method_name != expected_method:
        raise invalid(f"Expected {kind} signature method_name to be {expected_method}. Was: {sig.method_name}")
    return name, sig


def _classification_result(servable: Servable, sig_name: str, sig, inp) -> classification_pb2.ClassificationResult:
    in_alias = _single_string_input(sig)
    if len(sig.outputs) not in (1, 2):
        raise invalid(f"Expected one or two output Tensors, found {len(sig.outputs)}")
    want = [a for a in ("classes", "scores") if a in sig.outputs]
    if not want or len(want) != len(sig.outputs):
        raise invalid(
            "Expected classification signature outputs to contain only 'classes' and/or 'scores', found "
            f"{{{','.join(sorted(sig.outputs))}}}"
        )
    examples = serialize_input(inp)
    out = servable.run(sig_name, {in_alias: examples}, want)
    n = len(examples)
    classes, scores = out.get("classes"), out.get("scores")
    for name, t in (("classes", classes), ("scores", scores)):
        if t is not None and (t.ndim != 2 or t.shape[0] != n):
            raise invalid(
                f"Expected Tensor shape: [{n} num_classes] but got {list(t.shape)} for output {name}"
            )
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise invalid(f"Tensors class and score should match in shape. Found {list(classes.shape)} vs. {list(scores.shape)}")
    result = classification_pb2.ClassificationResult()
    k = (classes if classes is not None else scores).shape[1]
    for i in range(n):
        c = result.classifications.add()
        for j in range(k):
            cls = c.classes.add()
            if classes is not None:
                label = classes[i, j]
                cls.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                cls.score = float(scores[i, j])
    return result


def _regression_result(servable: Servable, sig_name: str, sig, inp) -> regression_pb2.RegressionResult:
    in_alias = _single_string_input(sig)
    if len(sig.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if "outputs" not in sig.outputs:
        raise invalid("No output tensor with name outputs in signature")
    if sig.outputs["outputs"].dtype != types_pb2.DT_FLOAT:
        raise invalid(
            f"Expected output Tensor of DT_FLOAT. Got: {types_pb2.DataType.Name(sig.outputs['outputs'].dtype)}"
        )
    examples = serialize_input(inp)
    out = servable.run(sig_name, {in_alias: examples}, ["outputs"])["outputs"]
    n = len(examples)
    if not (out.shape == (n,) or out.shape == (n, 1)):
        raise invalid(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(out.shape)}"
        )
    result = regression_pb2.RegressionResult()
    for v in out.reshape(n):
        result.regressions.add(value=float(v))
    return result


def classify_on(servable: Servable, request: classification_pb2.ClassificationRequest):
    name, sig = _get_signature(servable, request.model_spec, CLASSIFY_METHOD, "classification")
    resp = classification_pb2.ClassificationResponse()
    resp.result.CopyFrom(_classification_result(servable, name, sig, request.input))
    resp.model_spec.CopyFrom(model_spec(request.model_spec.name, name, servable.version))
    return resp


def regress_on(servable: Servable, request: regression_pb2.RegressionRequest):
    name, sig = _get_signature(servable, request.model_spec, REGRESS_METHOD, "regression")
    resp = regression_pb2.RegressionResponse()
    resp.result.CopyFrom(_regression_result(servable, name, sig, request.input))
    resp.model_spec.CopyFrom(model_spec(request.model_spec.name, name, servable.version))
    return resp


def multi_inference_on(servable: Servable, request: inference_pb2.MultiInferenceRequest):
    """multi_inference.cc: classify/regress tasks over one Input on one servable."""
    if not request.tasks:
        raise invalid("Expected at least one task")
    seen = set()
    resp = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        name = resolved_signature_name(task.model_spec)
        if name in seen:
            raise invalid(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        if task.method_name == CLASSIFY_METHOD:
            sig_name, sig = _get_signature(servable, task.model_spec, CLASSIFY_METHOD, "classification")
            r = resp.results.add()
            r.classification_result.CopyFrom(_classification_result(servable, sig_name, sig, request.input))
        elif task.method_name == REGRESS_METHOD:
            sig_name, sig = _get_signature(servable, task.model_spec, REGRESS_METHOD, "regression")
            r = resp.results.add()
            r.regression_result.CopyFrom(_regression_result(servable, sig_name, sig, request.input))
        else:
            raise invalid(f"Unsupported signature method_name: {task.method_name}")
        r.model_spec.CopyFrom(model_spec(task.model_spec.name, sig_name, servable.version))
    return resp


def check_metadata_request(request: get_model_metadata_pb2.GetModelMetadataRequest) -> None:
    """get_model_metadata_impl.cc: the request's checks, made before the servable is looked up."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    if not request.metadata_field:
        raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != "signature_def":
            raise invalid(f"Metadata field {field} is not supported")


def model_metadata_on(
    servable: Servable, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """get_model_metadata_impl.cc: the signature_def metadata of the servable."""
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    resp.model_spec.CopyFrom(model_spec(request.model_spec.name, None, servable.version))
    sdm = get_model_metadata_pb2.SignatureDefMap()
    for k, v in servable.signature_defs.items():
        sdm.signature_def[k].CopyFrom(v)
    resp.metadata["signature_def"].Pack(sdm)
    return resp


def replay_warmup(servable: Servable) -> None:
    """Replays assets.extra/tf_serving_warmup_requests as TF Serving does (saved_model_warmup.cc)."""
    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.exists(path):
        return
    n = 0
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        n += 1
        if n > MAX_WARMUP_RECORDS:
            raise invalid(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        plog = prediction_log_pb2.PredictionLog()
        plog.ParseFromString(raw)
        kind = plog.WhichOneof("log_type")
        if kind == "predict_log":
            predict_on(servable, plog.predict_log.request)
        elif kind == "classify_log":
            classify_on(servable, plog.classify_log.request)
        elif kind == "regress_log":
            regress_on(servable, plog.regress_log.request)
        elif kind == "multi_inference_log":
            multi_inference_on(servable, plog.multi_inference_log.request)
        else:
            raise invalid(f"Unsupported log_type for warmup: {kind}")
    servable.warmup_records = n
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.", path, n)


__all__ = [
    "DEFAULT_SIGNATURE",
    "check_metadata_request",
    "classify_on",
    "model_metadata_on",
    "model_spec",
    "multi_inference_on",
    "predict_on",
    "regress_on",
    "replay_warmup",
    "require_spec",
    "resolved_signature_name",
    "serialize_input",
]
