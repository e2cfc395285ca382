"""The model manager and the inference logic behind the gRPC and REST front ends.

Mirrors TensorFlow Serving (ServerCore + AspiredVersionsManager with the
availability-preserving policy, predict_util.cc, classifier.cc, regressor.cc,
multi_inference.cc, get_model_metadata_impl.cc, get_model_status_impl.cc):
the same version policies, routing, status codes and error messages.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
    status_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tfjoint.features import SCENARIO_FALLBACK_KEY

log = logging.getLogger("tfjoint.serving")

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000

_State = get_model_status_pb2.ModelVersionStatus.State


class ServingError(Exception):
    """An error carrying the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def _invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


_GRPC_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(value: int) -> grpc.StatusCode:
    return _GRPC_BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)


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


# --------------------------------------------------------------------------- tensors


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
        raise _invalid(f"tensor parsing error: {alias}") from None


def ndarray_to_tensor_proto(value) -> tf.make_tensor_proto:
    return tf.make_tensor_proto(value)


# --------------------------------------------------------------------------- servable


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
            raise _invalid("Could not parse the input (TensorFlow's error message held non-UTF-8 bytes)") from None
        except (ValueError, TypeError) as e:
            raise _invalid(str(e)) from None
        return {alias: out[alias].numpy() for alias in output_aliases}

    def batcher(self, signature_name: str, options: BatchingOptions) -> BatchScheduler | None:
        """The signature's batch scheduler, created on first use (None once the servable closed)."""
        with self._lock:
            if self._closed:
                return None
            b = self.batchers.get(signature_name)
            if b is None:
                b = self.batchers[signature_name] = BatchScheduler(self, signature_name, options)
            return b

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batchers = list(self.batchers.values())
        for b in batchers:
            b.stop()


# --------------------------------------------------------------------------- batching


@dataclasses.dataclass
class BatchingOptions:
    """TF Serving's BatchingParameters (defaults of its SharedBatchScheduler)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = max(1, os.cpu_count() or 1)
    allowed_batch_sizes: tuple = ()

    @classmethod
    def from_proto(cls, p) -> BatchingOptions:
        o = cls()
        if p.HasField("max_batch_size"):
            o.max_batch_size = p.max_batch_size.value
        if p.HasField("batch_timeout_micros"):
            o.batch_timeout_micros = p.batch_timeout_micros.value
        if p.HasField("max_enqueued_batches"):
            o.max_enqueued_batches = p.max_enqueued_batches.value
        if p.HasField("num_batch_threads"):
            o.num_batch_threads = p.num_batch_threads.value
        o.allowed_batch_sizes = tuple(p.allowed_batch_sizes)
        if o.max_batch_size <= 0 or o.num_batch_threads <= 0 or o.max_enqueued_batches <= 0:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be positive")
        if o.allowed_batch_sizes:
            if list(o.allowed_batch_sizes) != sorted(o.allowed_batch_sizes):
                raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
            if o.allowed_batch_sizes[-1] != o.max_batch_size:
                raise ValueError("Last entry in allowed_batch_sizes must match max_batch_size")
        return o


class _Task:
    __slots__ = ("deadline", "future", "inputs", "size")

    def __init__(self, inputs, size, deadline):
        self.inputs = inputs
        self.size = size
        self.deadline = deadline
        self.future: futures.Future = futures.Future()


class BatchScheduler:
    """Concatenates concurrent calls of one signature along dim 0, runs once, splits back."""

    def __init__(self, servable: Servable, signature_name: str, options: BatchingOptions):
        self.servable = servable
        self.signature_name = signature_name
        self.options = options
        sig = servable.signature_defs[signature_name]
        self._input_aliases = sorted(sig.inputs)
        self._output_aliases = sorted(sig.outputs)
        self._cond = threading.Condition()
        self._open: list[_Task] = []
        self._open_size = 0
        self._open_since = 0.0
        self._ready: collections.deque = collections.deque()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{servable.name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    @property
    def stopped(self) -> bool:
        return self._stopping

    def _close_open(self) -> None:
        if self._open:
            self._ready.append(self._open)
            self._open, self._open_size = [], 0

    def submit(self, inputs: dict[str, np.ndarray], deadline: float | None) -> futures.Future:
        sizes = set()
        for a in self._input_aliases:
            if inputs[a].ndim == 0:
                raise _invalid("Batching Run() input tensors must have at least one dimension")
            sizes.add(inputs[a].shape[0])
        if len(sizes) > 1:
            raise _invalid("Batching Run() input tensors must have equal 0th-dimension size")
        size = sizes.pop() if sizes else 0
        if size > self.options.max_batch_size:
            raise _invalid(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        task = _Task(inputs, size, deadline)
        with self._cond:
            if self._stopping:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "Batch scheduler is shutting down")
            if self._open_size + size > self.options.max_batch_size:
                self._close_open()
            if len(self._ready) >= self.options.max_enqueued_batches:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            if not self._open:
                self._open_since = time.monotonic()
            self._open.append(task)
            self._open_size += size
            if self._open_size >= self.options.max_batch_size:
                self._close_open()
            self._cond.notify()
        return task.future

    def _next_batch(self):
        timeout = self.options.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                if self._ready:
                    return self._ready.popleft()
                if self._open:
                    wait = self._open_since + timeout - time.monotonic()
                    if wait <= 0 or self._stopping:
                        batch = self._open
                        self._open, self._open_size = [], 0
                        return batch
                    self._cond.wait(wait)
                elif self._stopping:
                    return None
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._process(batch)

    def _process(self, batch: list[_Task]) -> None:
        now = time.monotonic()
        live = []
        for t in batch:
            if t.deadline is not None and now >= t.deadline:
                t.future.set_exception(ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            elif t.future.set_running_or_notify_cancel():
                live.append(t)
        if not live:
            return
        try:
            merged = {
                a: np.concatenate([t.inputs[a] for t in live], axis=0) if len(live) > 1 else live[0].inputs[a]
                for a in self._input_aliases
            }
            total = sum(t.size for t in live)
            out = self.servable.run(self.signature_name, merged, self._output_aliases)
            for v in out.values():
                if v.ndim == 0 or v.shape[0] != total:
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
                        "sizes of the input tensors",
                    )
            offset = 0
            for t in live:
                t.future.set_result({a: v[offset : offset + t.size] for a, v in out.items()})
                offset += t.size
        except Exception as e:  # noqa: BLE001 - every task of the batch gets the error
            for t in live:
                if not t.future.done():
                    t.future.set_exception(e)

    def stop(self) -> None:
        """Drains the queue, then lets the batch threads exit."""
        with self._cond:
            self._stopping = True
            self._close_open()
            self._cond.notify_all()


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Request counters in TF Serving's Prometheus naming (``:tensorflow:serving:request_count``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count: collections.Counter = collections.Counter()  # (model, api, status) -> n
        self.latency_sum: collections.Counter = collections.Counter()  # (model, api) -> seconds
        self.scenario_fallback: collections.Counter = collections.Counter()  # model -> rows

    def record(self, model: str, api: str, code: grpc.StatusCode, seconds: float) -> None:
        with self._lock:
            self.count[(model, api, code.name)] += 1
            self.latency_sum[(model, api)] += seconds

    def record_scenario_fallback(self, model: str, response: predict_pb2.PredictResponse) -> None:
        """Counts the rows a tfjoint model served through its shared path (unknown scenario)."""
        if SCENARIO_FALLBACK_KEY not in response.outputs:
            return
        rows = int(tf.make_ndarray(response.outputs[SCENARIO_FALLBACK_KEY]).sum())
        if rows:
            with self._lock:
                self.scenario_fallback[model] += rows

    def prometheus_text(self) -> str:
        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        with self._lock:
            lines = ["# TYPE :tensorflow:serving:request_count counter"]
            for (model, api, status), n in sorted(self.count.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{esc(model)}",api="{api}",status="{status}"}} {n}'
                )
            lines.append("# TYPE :tensorflow:serving:request_latency_seconds_sum counter")
            for (model, api), t in sorted(self.latency_sum.items()):
                lines.append(
                    f':tensorflow:serving:request_latency_seconds_sum{{model_name="{esc(model)}",api="{api}"}} {t:.6f}'
                )
            lines.append("# TYPE :tfjoint:serving:scenario_fallback_count counter")
            for model, n in sorted(self.scenario_fallback.items()):
                lines.append(f':tfjoint:serving:scenario_fallback_count{{model_name="{esc(model)}"}} {n}')
        return "\n".join(lines) + "\n"


def _metered(api: str):
    def deco(fn):
        def wrapper(self, request, *args, **kwargs):
            if api == "MultiInference":
                model = request.tasks[0].model_spec.name if request.tasks else ""
            else:
                model = request.model_spec.name
            start = time.monotonic()
            code = grpc.StatusCode.OK
            try:
                return fn(self, request, *args, **kwargs)
            except ServingError as e:
                code = e.code
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                raise
            finally:
                self.metrics.record(model, api, code, time.monotonic() - start)

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return deco


# --------------------------------------------------------------------------- models


@dataclasses.dataclass
class VersionEntry:
    version: int
    state: int = _State.START
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""
    servable: Servable | None = None
    path: str = ""


class _Model:
    def __init__(self, config: model_server_config_pb2.ModelConfig):
        self.config = config
        self.versions: dict[int, VersionEntry] = {}
        self.labels: dict[str, int] = {}  # set once the labelled versions are AVAILABLE

    @property
    def name(self) -> str:
        return self.config.name


def _list_versions(base_path: str) -> dict[int, str]:
    """Integer-named children of base_path holding a SavedModel (partial copies are skipped)."""
    found = {}
    try:
        children = os.listdir(base_path)
    except OSError:
        return found
    for child in children:
        if not child.isdigit():
            continue
        path = os.path.join(base_path, child)
        if not os.path.isdir(path):
            continue
        if not (
            os.path.exists(os.path.join(path, "saved_model.pb"))
            or os.path.exists(os.path.join(path, "saved_model.pbtxt"))
        ):
            continue
        found[int(child)] = path
    return found


def aspired_versions(policy: model_server_config_pb2.ModelConfig, available: Iterable[int]) -> set[int]:
    """TF Serving's ServableVersionPolicy: latest{num_versions} (default 1), all, specific{versions}."""
    versions = sorted(set(available))
    p = policy.model_version_policy
    which = p.WhichOneof("policy_choice")
    if which == "all":
        return set(versions)
    if which == "specific":
        return set(versions) & set(p.specific.versions)
    n = p.latest.num_versions if which == "latest" and p.latest.num_versions > 0 else 1
    return set(versions[-n:])


def _model_spec(name: str, signature_name: str | None, version: int | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)
    if signature_name is not None:
        spec.signature_name = signature_name
    if version is not None:
        spec.version.value = version
    return spec


class ModelManager:
    """Loads, versions and routes the servables of a ``ModelServerConfig``."""

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        *,
        poll_wait_seconds: float = 1.0,
        batching: BatchingOptions | None = None,
        allow_version_labels_for_unavailable_models: bool = False,
    ):
        self._validate_config(config)
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._config = config
        self.poll_wait_seconds = poll_wait_seconds
        self.batching = batching
        self.allow_labels_for_unavailable = allow_version_labels_for_unavailable_models
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.metrics = Metrics()
        for mc in config.model_config_list.config:
            self._models[mc.name] = _Model(mc)

    @staticmethod
    def _validate_config(config) -> None:
        if config.WhichOneof("config") not in (None, "model_config_list"):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "ServerModelConfig type not supported by HandleReloadConfigRequest."
                " Only ModelConfigList is currently supported",
            )
        names = set()
        for mc in config.model_config_list.config:
            if not mc.name:
                raise _invalid("Illegal setting of empty model name")
            if mc.name in names:
                raise _invalid(f"Illegal to list model {mc.name} multiple times in config list")
            if mc.model_platform and mc.model_platform != "tensorflow":
                raise _invalid(f"Model {mc.name} has unsupported model_platform {mc.model_platform}")
            names.add(mc.name)

    # ---- lifecycle

    def start(self) -> None:
        """Loads the initial versions synchronously, then polls in the background."""
        self.poll_once()
        with self._lock:
            models = list(self._models.values())
        self._apply_labels(models)
        if self.poll_wait_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="fs-poller", daemon=True)
            self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            try:
                self.poll_once()
            except Exception:
                log.exception("file system poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for m in self._models.values():
                for e in m.versions.values():
                    if e.servable is not None:
                        e.servable.close()
                        e.servable = None
                        e.state = _State.END

    def poll_once(self) -> None:
        """One pass of FileSystemStoragePathSource + AspiredVersionsManager."""
        with self._load_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._reconcile(model)

    def _reconcile(self, model: _Model) -> None:
        on_disk = _list_versions(model.config.base_path)
        aspired = aspired_versions(model.config, on_disk)
        # Load first (availability preserving): the old version keeps serving meanwhile.
        for v in sorted(aspired, reverse=True):
            e = model.versions.get(v)
            if e is not None and (e.state == _State.AVAILABLE or e.error_code != grpc.StatusCode.OK):
                continue
            self._load(model, v, on_disk[v])
        # Unaspired versions go only once an aspired one serves (or nothing is aspired any more),
        # so a version that fails to load leaves the previous one serving.
        aspired_serving = any(
            model.versions.get(v) is not None and model.versions[v].state == _State.AVAILABLE for v in aspired
        )
        if aspired_serving or not aspired:
            for v, e in list(model.versions.items()):
                if v not in aspired and e.state == _State.AVAILABLE:
                    self._unload(model, e)

    def _load(self, model: _Model, version: int, path: str) -> None:
        e = VersionEntry(version=version, state=_State.LOADING, path=path)
        with self._lock:
            model.versions[version] = e
        log.info("Loading servable: {name: %s version: %d} from %s", model.name, version, path)
        try:
            servable = Servable(model.name, version, path)
            self._warmup(servable)
        except Exception as exc:  # noqa: BLE001 - a broken version takes nothing else down
            code = exc.code if isinstance(exc, ServingError) else grpc.StatusCode.UNKNOWN
            msg = exc.message if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
            log.error("Loading servable: {name: %s version: %d} failed: %s", model.name, version, msg)
            with self._lock:
                e.state, e.error_code, e.error_message = _State.END, code, msg
            return
        with self._lock:
            e.servable = servable
            e.state = _State.AVAILABLE
        log.info("Successfully loaded servable version {name: %s version: %d}", model.name, version)

    def _unload(self, model: _Model, e: VersionEntry) -> None:
        with self._lock:
            e.state = _State.UNLOADING
            servable, e.servable = e.servable, None
        if servable is not None:
            servable.close()  # in-flight requests keep their reference and finish
        with self._lock:
            e.state = _State.END
        log.info("Unloaded servable version {name: %s version: %d}", model.name, e.version)

    def _warmup(self, servable: Servable) -> None:
        """Replays assets.extra/tf_serving_warmup_requests as TF Serving does (saved_model_warmup.cc)."""
        path = os.path.join(servable.path, WARMUP_FILE)
        if not os.path.exists(path):
            return
        n = 0
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            n += 1
            if n > MAX_WARMUP_RECORDS:
                raise _invalid(
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
                raise _invalid(f"Unsupported log_type for warmup: {kind}")
        servable.warmup_records = n
        log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.", path, n)

    # ---- config

    @property
    def config(self) -> model_server_config_pb2.ModelServerConfig:
        return self._config

    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """HandleReloadConfigRequest: add/remove models, change policies and labels; waits for loads."""
        self._validate_config(config)
        with self._load_lock:
            with self._lock:
                new = {}
                for mc in config.model_config_list.config:
                    m = self._models.get(mc.name) or _Model(mc)
                    old_labels = dict(m.labels)
                    m.config = mc
                    m.labels = old_labels  # applied after the loads below
                    new[mc.name] = m
                removed = [m for n, m in self._models.items() if n not in new]
                self._models = new
                self._config = config
            for m in new.values():
                self._reconcile(m)
            for m in removed:
                for e in list(m.versions.values()):
                    if e.state == _State.AVAILABLE:
                        self._unload(m, e)
            self._apply_labels(new.values())

    def _apply_labels(self, models) -> None:
        """ServerCore::UpdateModelVersionLabelMap: labels may only name AVAILABLE versions."""
        with self._lock:
            for m in models:
                if self.allow_labels_for_unavailable:
                    continue
                for label, v in sorted(m.config.version_labels.items()):
                    e = m.versions.get(v)
                    if e is None or e.state != _State.AVAILABLE:
                        raise ServingError(
                            grpc.StatusCode.FAILED_PRECONDITION,
                            f"Request to assign label to version {v} of model {m.name}, which is not "
                            "currently available for inference",
                        )
            for m in models:
                m.labels = dict(m.config.version_labels)

    # ---- routing

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def get_servable(self, spec: model_pb2.ModelSpec) -> Servable:
        """ServerCore::GetServableHandle semantics."""
        with self._lock:
            model = self._models.get(spec.name)
            choice = spec.WhichOneof("version_choice")
            if choice == "version_label":
                label = spec.version_label
                if model is None or label not in model.labels:
                    raise _invalid(f"Unrecognized servable version label: {label}")
                version = model.labels[label]
            elif choice == "version":
                version = spec.version.value
            else:
                version = None
            if version is None:
                available = [] if model is None else [
                    e for e in model.versions.values() if e.state == _State.AVAILABLE and e.servable
                ]
                if not available:
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})"
                    )
                return max(available, key=lambda e: e.version).servable
            e = None if model is None else model.versions.get(version)
            if e is None or e.state != _State.AVAILABLE or e.servable is None:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Specific({spec.name}, {version})",
                )
            return e.servable

    def version_entries(self, name: str) -> dict[int, VersionEntry]:
        with self._lock:
            m = self._models.get(name)
            return {} if m is None else {v: dataclasses.replace(e) for v, e in m.versions.items()}

    # ---- APIs

    @_metered("Predict")
    def predict(self, request: predict_pb2.PredictRequest, deadline: float | None = None):
        _require_spec(request)
        servable = self.get_servable(request.model_spec)
        response = predict_on(servable, request, batching=self.batching, deadline=deadline)
        self.metrics.record_scenario_fallback(request.model_spec.name, response)
        return response

    @_metered("Classify")
    def classify(self, request: classification_pb2.ClassificationRequest):
        _require_spec(request)
        return classify_on(self.get_servable(request.model_spec), request)

    @_metered("Regress")
    def regress(self, request: regression_pb2.RegressionRequest):
        _require_spec(request)
        return regress_on(self.get_servable(request.model_spec), request)

    @_metered("MultiInference")
    def multi_inference(self, request: inference_pb2.MultiInferenceRequest):
        if not request.tasks:
            raise _invalid("Expected at least one task")
        name = request.tasks[0].model_spec.name
        for task in request.tasks:
            if task.model_spec.name != name:
                raise _invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        return multi_inference_on(self.get_servable(request.tasks[0].model_spec), request)

    def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        """get_model_metadata_impl.cc."""
        if not request.HasField("model_spec"):
            raise _invalid("Missing ModelSpec")
        if not request.metadata_field:
            raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise _invalid(f"Metadata field {field} is not supported")
        servable = self.get_servable(request.model_spec)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.CopyFrom(_model_spec(request.model_spec.name, None, servable.version))
        sdm = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            sdm.signature_def[k].CopyFrom(v)
        resp.metadata["signature_def"].Pack(sdm)
        return resp

    def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest):
        """get_model_status_impl.cc."""
        if not request.HasField("model_spec"):
            raise _invalid("Missing ModelSpec")
        name = request.model_spec.name
        entries = self.version_entries(name)
        resp = get_model_status_pb2.GetModelStatusResponse()
        if request.model_spec.HasField("version"):
            v = request.model_spec.version.value
            if v not in entries:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {v} of model {name}")
            selected = [entries[v]]
        else:
            if not entries:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
            selected = [entries[v] for v in sorted(entries, reverse=True)]
        for e in selected:
            s = resp.model_version_status.add(version=e.version, state=e.state)
            s.status.CopyFrom(
                status_pb2.StatusProto(error_code=e.error_code.value[0], error_message=e.error_message)
            )
        return resp


def _require_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise _invalid("Missing ModelSpec")


# --------------------------------------------------------------------------- inference


def _resolved_signature_name(spec: model_pb2.ModelSpec) -> str:
    return spec.signature_name or DEFAULT_SIGNATURE


def predict_on(
    servable: Servable,
    request: predict_pb2.PredictRequest,
    *,
    batching: BatchingOptions | None = None,
    deadline: float | None = None,
) -> predict_pb2.PredictResponse:
    """predict_util.cc RunPredict: validation order and messages as TF Serving's."""
    signature_name = _resolved_signature_name(request.model_spec)
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
        raise _invalid(
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
            raise _invalid(
                f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no default "
                f"value provided. Inputs expected to be in the request {{{','.join(sorted(req_inputs))}}}, or "
                f"default input alias set: {','.join(sorted(sig.defaults))}"
            )
        arr = tensor_proto_to_ndarray(proto, alias)
        if proto.dtype != info.dtype:
            raise _invalid(f"Expects arg[{i}] to be {dtype_name(info.dtype)} but {dtype_name(proto.dtype)} is provided")
        inputs[alias] = arr
    if req_inputs and len(seen) != len(req_inputs):
        raise _invalid(
            f"Inputs contains invalid name. Used request inputs: {','.join(sorted(seen))}, "
            f"request input: {','.join(sorted(req_inputs))}"
        )
    aliases: list[str] = []
    for alias in request.output_filter:
        if alias not in sig.outputs:
            raise _invalid(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(sig.outputs))}}}."
            )
        if alias in aliases:
            raise _invalid(f"duplicate output tensor alias: {alias}")
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
    resp.model_spec.CopyFrom(_model_spec(request.model_spec.name, signature_name, servable.version))
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
        raise _invalid("Input is empty.")
    return np.array(serialized, dtype=object)


def _single_string_input(sig) -> str:
    if len(sig.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    alias = next(iter(sig.inputs))
    if sig.inputs[alias].dtype != types_pb2.DT_STRING:
        raise _invalid(
            f"Expected input Tensor of DT_STRING. Got: {types_pb2.DataType.Name(sig.inputs[alias].dtype)}"
        )
    return alias


def _get_signature(servable: Servable, spec, expected_method: str, kind: str):
    name = _resolved_signature_name(spec)
    if name not in servable.signature_defs:
        raise _invalid(f"No signature was found with the name: {name}")
    sig = servable.signature_defs[name]
    if sig.method_name != expected_method:
        raise _invalid(f"Expected {kind} signature method_name to be {expected_method}. Was: {sig.method_name}")
    return name, sig


def _classification_result(servable: Servable, sig_name: str, sig, inp) -> classification_pb2.ClassificationResult:
    in_alias = _single_string_input(sig)
    if len(sig.outputs) not in (1, 2):
        raise _invalid(f"Expected one or two output Tensors, found {len(sig.outputs)}")
    want = [a for a in ("classes", "scores") if a in sig.outputs]
    if not want or len(want) != len(sig.outputs):
        raise _invalid(
            "Expected classification signature outputs to contain only 'classes' and/or 'scores', found "
            f"{{{','.join(sorted(sig.outputs))}}}"
        )
    examples = serialize_input(inp)
    out = servable.run(sig_name, {in_alias: examples}, want)
    n = len(examples)
    classes, scores = out.get("classes"), out.get("scores")
    for name, t in (("classes", classes), ("scores", scores)):
        if t is not None and (t.ndim != 2 or t.shape[0] != n):
            raise _invalid(
                f"Expected Tensor shape: [{n} num_classes] but got {list(t.shape)} for output {name}"
            )
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise _invalid(f"Tensors class and score should match in shape. Found {list(classes.shape)} vs. {list(scores.shape)}")
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
        raise _invalid("Expected one output Tensor.")
    if "outputs" not in sig.outputs:
        raise _invalid("No output tensor with name outputs in signature")
    if sig.outputs["outputs"].dtype != types_pb2.DT_FLOAT:
        raise _invalid(
            f"Expected output Tensor of DT_FLOAT. Got: {types_pb2.DataType.Name(sig.outputs['outputs'].dtype)}"
        )
    examples = serialize_input(inp)
    out = servable.run(sig_name, {in_alias: examples}, ["outputs"])["outputs"]
    n = len(examples)
    if not (out.shape == (n,) or out.shape == (n, 1)):
        raise _invalid(
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
    resp.model_spec.CopyFrom(_model_spec(request.model_spec.name, name, servable.version))
    return resp


def regress_on(servable: Servable, request: regression_pb2.RegressionRequest):
    name, sig = _get_signature(servable, request.model_spec, REGRESS_METHOD, "regression")
    resp = regression_pb2.RegressionResponse()
    resp.result.CopyFrom(_regression_result(servable, name, sig, request.input))
    resp.model_spec.CopyFrom(_model_spec(request.model_spec.name, name, servable.version))
    return resp


def multi_inference_on(servable: Servable, request: inference_pb2.MultiInferenceRequest):
    """multi_inference.cc: classify/regress tasks over one Input on one servable."""
    if not request.tasks:
        raise _invalid("Expected at least one task")
    seen = set()
    resp = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        name = _resolved_signature_name(task.model_spec)
        if name in seen:
            raise _invalid(f"Duplicate evaluation of signature: {name}")
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
            raise _invalid(f"Unsupported signature method_name: {task.method_name}")
        r.model_spec.CopyFrom(_model_spec(task.model_spec.name, sig_name, servable.version))
    return resp


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config TF Serving builds from --model_name/--model_base_path."""
    cfg = model_server_config_pb2.ModelServerConfig()
    mc = cfg.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    mc.model_version_policy.latest.num_versions = 1
    return cfg


__all__ = [
    "BatchScheduler",
    "BatchingOptions",
    "ModelManager",
    "Servable",
    "ServingError",
    "aspired_versions",
    "single_model_config",
    "tensor_proto_to_ndarray",
]
