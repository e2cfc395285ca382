"""TensorProto <-> numpy conversion and TF's dtype names, as TF Serving reports them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tfjoint.serving.errors import invalid

# TF's DataTypeString names, used in its "Expects arg[i] to be X but Y is provided" message.
_DT_NAMES = {
    types_pb2.DT_FLOAT: "float",
    types_pb2.DT_DOUBLE: "double",
    types_pb2.DT_INT32: "int32",
    types_pb2.DT_INT64: "int64",
    types_pb2.DT_STRING: "string",
    types_pb2.DT_BOOL: "bool",
    types_pb2.DT_HALF: "half",
    types_pb2.DT_UINT8: "uint8",
    types_pb2.DT_INT8: "int8",
    types_pb2.DT_INT16: "int16",
    types_pb2.DT_INVALID: "invalid",
}


def dtype_name(dt: int) -> str:
    return _DT_NAMES.get(dt, types_pb2.DataType.Name(dt).lower().replace("dt_", ""))


def tensor_proto_to_ndarray(proto, alias: str) -> np.ndarray:
    """TensorProto -> ndarray; a malformed proto is TF Serving's "tensor parsing error"."""
    try:
        if proto.dtype == types_pb2.DT_INVALID:
            raise ValueError("invalid dtype")
        shape = [d.size for d in proto.tensor_shape.dim]
        if any(s < 0 for s in shape):
            raise ValueError("negative dimension")
        n = int(np.prod(shape)) if shape else 1
        if proto.dtype == types_pb2.DT_STRING and len(proto.string_val) > n:
            raise ValueError("too many values")
        arr = tf.make_ndarray(proto)
        if list(arr.shape) != shape:
            raise ValueError("shape mismatch")
        return arr
    except Exception:  # noqa: BLE001 - any failure to decode is a parsing error
        raise invalid(f"tensor parsing error: {alias}") from None


def ndarray_to_tensor_proto(value) -> tf.make_tensor_proto:
    return tf.make_tensor_proto(value)


__all__ = ["dtype_name", "ndarray_to_tensor_proto", "tensor_proto_to_ndarray"]
