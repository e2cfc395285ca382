"""A client for TF Serving's gRPC API (works against ``tfjoint serve`` and the real server)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

DEFAULT_MAX_MESSAGE_SIZE = 64 << 20


def make_example(features: Mapping[str, Any]) -> example_pb2.Example:
    """Raw feature dict -> tf.Example: str/bytes -> bytes_list, int -> int64_list, float -> float_list.

    List (or 1-D array) values become multi-valued features; an empty list an empty feature.
    """
    ex = example_pb2.Example()
    for key, value in features.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        feat = ex.features.feature[key]
        if not values:
            feat.float_list.SetInParent()
            continue
        kinds = set()
        for v in values:
            if isinstance(v, (bytes, str)):
                kinds.add("bytes")
            elif isinstance(v, (bool, np.bool_, int, np.integer)):
                kinds.add("int")
            elif isinstance(v, (float, np.floating)):
                kinds.add("float")
            else:
                raise TypeError(f"feature {key!r}: unsupported value {v!r} ({type(v).__name__})")
        if kinds == {"bytes"}:
            feat.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else v for v in values)
        elif kinds == {"int"}:
            feat.int64_list.value.extend(int(v) for v in values)
        elif kinds <= {"int", "float"}:
            feat.float_list.value.extend(float(v) for v in values)
        else:
            raise TypeError(f"feature {key!r}: mixes strings and numbers")
    return ex


def serialize_examples(examples: Sequence[Any]) -> list[bytes]:
    """dicts of raw features, tf.train.Example messages or serialized bytes -> list of bytes."""
    out = []
    for e in examples:
        if isinstance(e, (bytes, bytearray)):
            out.append(bytes(e))
        elif isinstance(e, Mapping):
            out.append(make_example(e).SerializeToString())
        elif hasattr(e, "SerializeToString"):
            out.append(e.SerializeToString())
        else:
            raise TypeError(f"cannot turn {type(e).__name__} into a serialized tf.Example")
    return out


class ServingClient:
    """``ServingClient("localhost:8500", "movielens").predict([{...}, ...])``.

    timeout: the deadline of each call in seconds. retries: extra attempts, with
    exponential backoff, for UNAVAILABLE only (other errors are raised at once).
    tls: None/False for plaintext, True for TLS with the system roots, or a dict of
    ``grpc.ssl_channel_credentials`` arguments (root_certificates, private_key,
    certificate_chain), plus optional ``server_name`` overriding the target name.
    """

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        tls: bool | Mapping[str, Any] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ):
        self.target = target
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        options = [
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.max_receive_message_length", max_message_size),
        ]
        if tls:
            kw = dict(tls) if isinstance(tls, Mapping) else {}
            server_name = kw.pop("server_name", None)
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            creds = grpc.ssl_channel_credentials(**kw)
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, timeout: float | None):
        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout if timeout is None else timeout)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
                    raise
                time.sleep(self.backoff * (2**attempt))
                attempt += 1

    def model_spec(self, signature_name: str = "", version: int | None = None, label: str | None = None):
        if version is not None and label is not None:
            raise ValueError("give version or label, not both")
        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name)
        if version is not None:
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = label
        return spec

    def predict_request(
        self,
        examples: Sequence[Any],
        signature_name: str = "serving_default",
        version: int | None = None,
        label: str | None = None,
        input_name: str = "examples",
        output_filter: Sequence[str] = (),
    ) -> predict_pb2.PredictRequest:
        serialized = serialize_examples(examples)
        req = predict_pb2.PredictRequest(
            model_spec=self.model_spec(signature_name, version, label), output_filter=list(output_filter)
        )
        req.inputs[input_name].CopyFrom(tf.make_tensor_proto(serialized, dtype=tf.string, shape=[len(serialized)]))
        return req

    def predict_full(self, examples, *, timeout: float | None = None, **kw) -> predict_pb2.PredictResponse:
        return self._call(self.prediction.Predict, self.predict_request(examples, **kw), timeout)

    def predict(
        self,
        examples: Sequence[Any],
        signature_name: str = "serving_default",
        version: int | None = None,
        label: str | None = None,
        *,
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        resp = self.predict_full(
            examples,
            timeout=timeout,
            signature_name=signature_name,
            version=version,
            label=label,
            output_filter=output_filter,
        )
        return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}

    def metadata(self, version: int | None = None, label: str | None = None, *, timeout: float | None = None):
        req = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec("", version, label), metadata_field=["signature_def"]
        )
        resp = self._call(self.prediction.GetModelMetadata, req, timeout)
        sdm = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sdm)
        return {"version": resp.model_spec.version.value, "signature_def": dict(sdm.signature_def)}

    def status(self, version: int | None = None, *, timeout: float | None = None) -> list[dict]:
        req = get_model_status_pb2.GetModelStatusRequest(model_spec=self.model_spec("", version, None))
        resp = self._call(self.models.GetModelStatus, req, timeout)
        state = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            {
                "version": s.version,
                "state": state(s.state),
                "error_code": s.status.error_code,
                "error_message": s.status.error_message,
            }
            for s in resp.model_version_status
        ]

    def wait_until_available(self, timeout: float = 60.0, version: int | None = None) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                if any(s["state"] == "AVAILABLE" for s in self.status(version, timeout=2.0)):
                    return
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                    raise
            if time.monotonic() > end:
                raise TimeoutError(f"{self.model_name} not AVAILABLE at {self.target} after {timeout}s")
            time.sleep(0.2)
