"""A loaded SavedModel version: its MetaGraphDef, signatures and per-signature batch schedulers."""

from __future__ import annotations

import collections
import functools
import os
import threading
from collections.abc import Iterable

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from tfjoint.serving.batching import BatchingOptions, BatchScheduler
from tfjoint.serving.errors import ServingError, grpc_code, invalid


def read_meta_graph(export_dir: str) -> meta_graph_pb2.MetaGraphDef:
    sm = saved_model_pb2.SavedModel()
    pb = os.path.join(export_dir, "saved_model.pb")
    pbtxt = os.path.join(export_dir, "saved_model.pbtxt")
    if os.path.exists(pb):
        with open(pb, "rb") as fh:
            sm.ParseFromString(fh.read())
    else:
        with open(pbtxt, encoding="utf-8") as fh:
            text_format.Parse(fh.read(), sm)
    for mg in sm.meta_graphs:
        if "serve" in mg.meta_info_def.tags:
            return mg
    raise ValueError(f"No 'serve' MetaGraphDef in SavedModel at {export_dir}")


class Servable:
    """One loaded version of a model."""

    def __init__(self, name: str, version: int, path: str):
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph = read_meta_graph(path)
        self.signature_defs = self.meta_graph.signature_def
        self._obj = tf.saved_model.load(path, tags=["serve"])
        self._fns = dict(self._obj.signatures)
        self._lock = threading.Lock()
        self.calls = 0  # underlying signature calls, per signature in calls_by_signature
        self.calls_by_signature: collections.Counter = collections.Counter()
        self.warmup_records = 0
        self.batchers: dict[str, BatchScheduler] = {}
        self._closed = False

    def run(self, signature_name: str, inputs: dict[str, np.ndarray], output_aliases: Iterable[str]):
        """Calls the signature once; errors are mapped to TF Serving status codes."""
        fn = self._fns.get(signature_name)
        if fn is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.'
            )
        sig = self.signature_defs[signature_name]
        feeds = {}
        for i, alias in enumerate(sorted(sig.inputs)):
            info = sig.inputs[alias]
            feeds[alias] = tf.constant(inputs[alias], dtype=tf.dtypes.as_dtype(info.dtype))
        with self._lock:
            self.calls += 1
            self.calls_by_signature[signature_name] += 1
        try:
            out = fn(**feeds)
        except tf.errors.OpError as e:
            raise ServingError(grpc_code(e.error_code), e.message) from None
        except UnicodeDecodeError:
            # TF echoes the offending bytes (e.g. a corrupt serialized tf.Example) in its message.
            raise invalid("Could not parse the input (TensorFlow's error message held non-UTF-8 bytes)") from None
        except (ValueError, TypeError) as e:
            raise invalid(str(e)) from None
        return {alias: out[alias].numpy() for alias in output_aliases}

    def batcher(self, signature_name: str, options: BatchingOptions) -> BatchScheduler | None:
        """The signature's batch scheduler, created on first use (None once the servable closed)."""
        with self._lock:
            if self._closed:
                return None
            b = self.batchers.get(signature_name)
            if b is None:
                sig = self.signature_defs[signature_name]
                b = self.batchers[signature_name] = BatchScheduler(
                    functools.partial(self.run, signature_name),
                    sorted(sig.inputs),
                    sorted(sig.outputs),
                    options,
                    name=self.name,
                )
            return b

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batchers = list(self.batchers.values())
        for b in batchers:
            b.stop()


__all__ = ["Servable", "read_meta_graph"]
