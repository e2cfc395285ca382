"""The model manager: loads, versions, labels and routes the servables of a ModelServerConfig.

Mirrors TensorFlow Serving (ServerCore + AspiredVersionsManager with the availability-preserving
policy, get_model_status_impl.cc): the same routing, status codes and error messages. The
version policy lives in versions.py, the per-servable API logic in inference.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
    status_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tfjoint.serving.batching import BatchingOptions
from tfjoint.serving.errors import ServingError, invalid
from tfjoint.serving.inference import (
    check_metadata_request,
    classify_on,
    model_metadata_on,
    multi_inference_on,
    predict_on,
    regress_on,
    replay_warmup,
    require_spec,
)
from tfjoint.serving.metrics import Metrics, metered
from tfjoint.serving.servable import Servable
from tfjoint.serving.versions import aspired_versions, dir_signature, list_versions

log = logging.getLogger("tfjoint.serving")

_State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class VersionEntry:
    version: int
    state: int = _State.START
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""
    servable: Servable | None = None
    path: str = ""
    attempts: int = 0  # failed load attempts since the directory last changed
    retry_at: float = 0.0  # monotonic time of the next retry of a failed load
    signature: tuple = ()  # dir_signature(path) when the last load failed


class _Model:
    def __init__(self, config: model_server_config_pb2.ModelConfig):
        self.config = config
        self.versions: dict[int, VersionEntry] = {}
        self.labels: dict[str, int] = {}  # set once the labelled versions are AVAILABLE

    @property
    def name(self) -> str:
        return self.config.name


class ModelManager:
    """Loads, versions and routes the servables of a ``ModelServerConfig``."""

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        *,
        poll_wait_seconds: float = 1.0,
        batching: BatchingOptions | None = None,
        allow_version_labels_for_unavailable_models: bool = False,
        max_num_load_retries: int = 5,
        load_retry_interval_micros: int = 60_000_000,
        enable_model_warmup: bool = True,
    ):
        self._validate_config(config)
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._config = config
        self.poll_wait_seconds = poll_wait_seconds
        self.batching = batching
        self.allow_labels_for_unavailable = allow_version_labels_for_unavailable_models
        # TF Serving's --max_num_load_retries / --load_retry_interval_micros (BasicManager).
        if max_num_load_retries < 0 or load_retry_interval_micros < 0:
            raise ValueError("--max_num_load_retries and --load_retry_interval_micros must be >= 0")
        self.max_num_load_retries = max_num_load_retries
        self.load_retry_interval = load_retry_interval_micros / 1e6
        self.enable_model_warmup = enable_model_warmup  # --enable_model_warmup=false: no replay
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
                raise invalid("Illegal setting of empty model name")
            if mc.name in names:
                raise invalid(f"Illegal to list model {mc.name} multiple times in config list")
            if mc.model_platform and mc.model_platform != "tensorflow":
                raise invalid(f"Model {mc.name} has unsupported model_platform {mc.model_platform}")
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

    def stop(self, timeout: float = 30.0) -> None:
        """Stops polling (a load in progress is the last one) and closes every servable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        with self._lock:
            for m in self._models.values():
                for e in m.versions.values():
                    if e.servable is not None:
                        e.servable.close()
                        e.servable = None
                        e.state = _State.END

    def polling(self) -> bool:
        """Whether the file system poller thread still runs (e.g. a load it began after stop())."""
        return self._thread is not None and self._thread.is_alive()

    def poll_once(self) -> None:
        """One pass of FileSystemStoragePathSource + AspiredVersionsManager."""
        with self._load_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                if self._stop.is_set():
                    return
                self._reconcile(model)

    def _reconcile(self, model: _Model) -> None:
        base = model.config.base_path
        on_disk = list_versions(base)
        if not on_disk:  # TF Serving's FileSystemStoragePathSource logs this on every poll
            if not os.path.isdir(base):
                log.warning("Could not find base path %s for servable %s", base, model.name)
            else:
                log.warning(
                    "No versions of servable %s found under base path %s. Did you forget to name your"
                    " leaf directory as a number (eg. '/1/')?", model.name, base,
                )
        # A failed version that left the disk is forgotten: copying it back loads it afresh.
        # A deleted version that serves is not aspired any more and is unloaded below.
        with self._lock:
            for v, e in list(model.versions.items()):
                if v not in on_disk and e.servable is None and e.state != _State.LOADING:
                    if e.error_code != grpc.StatusCode.OK:
                        del model.versions[v]
        aspired = aspired_versions(model.config, on_disk)
        # Load first (availability preserving): the old version keeps serving meanwhile.
        for v in sorted(aspired, reverse=True):
            if self._stop.is_set():
                return
            e = model.versions.get(v)
            if e is not None and (e.state == _State.AVAILABLE or not self._should_retry(e, on_disk[v])):
                continue
            self._load(model, v, on_disk[v], previous=e)
        # Unaspired versions go only once an aspired one serves (or nothing is aspired any more),
        # so a version that fails to load leaves the previous one serving.
        aspired_serving = any(
            model.versions.get(v) is not None and model.versions[v].state == _State.AVAILABLE for v in aspired
        )
        # A version whose directory was deleted goes in any case: its files are gone.
        for v, e in list(model.versions.items()):
            if v not in aspired and e.state == _State.AVAILABLE and (aspired_serving or v not in on_disk):
                self._unload(model, e)

    def _should_retry(self, e: VersionEntry, path: str) -> bool:
        """A failed version is retried max_num_load_retries times, load_retry_interval apart,
        and afresh whenever its directory changes (a copy that completed)."""
        if e.error_code == grpc.StatusCode.OK:
            return True  # unloaded earlier (END without error): aspired again
        if dir_signature(path) != e.signature:
            e.attempts = 0
            return True
        return e.attempts <= self.max_num_load_retries and time.monotonic() >= e.retry_at

    def _load(self, model: _Model, version: int, path: str, previous: VersionEntry | None = None) -> None:
        e = VersionEntry(version=version, state=_State.LOADING, path=path)
        if previous is not None and previous.error_code != grpc.StatusCode.OK:
            e.attempts = previous.attempts
        signature = dir_signature(path)
        with self._lock:
            model.versions[version] = e
        log.info("Loading servable: {name: %s version: %d} from %s", model.name, version, path)
        try:
            servable = Servable(model.name, version, path)
            if self.enable_model_warmup:
                replay_warmup(servable)
        except Exception as exc:  # noqa: BLE001 - a broken version takes nothing else down
            code = exc.code if isinstance(exc, ServingError) else grpc.StatusCode.UNKNOWN
            msg = exc.message if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
            e.attempts += 1
            left = self.max_num_load_retries - e.attempts + 1
            log.error(
                "Loading servable: {name: %s version: %d} failed: %s (%s)", model.name, version, msg,
                f"retrying in {self.load_retry_interval:g} s, {left} retries left" if left > 0
                else "no retries left; it is re-read when its directory changes",
            )
            with self._lock:
                e.state, e.error_code, e.error_message = _State.END, code, msg
                e.retry_at, e.signature = time.monotonic() + self.load_retry_interval, signature
            return
        with self._lock:
            if self._stop.is_set():  # stopped during the load: nothing may serve any more
                servable.close()
                e.state = _State.END
                return
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
                    raise invalid(f"Unrecognized servable version label: {label}")
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

    @metered("Predict")
    def predict(self, request: predict_pb2.PredictRequest, deadline: float | None = None):
        require_spec(request)
        servable = self.get_servable(request.model_spec)
        response = predict_on(servable, request, batching=self.batching, deadline=deadline)
        self.metrics.record_scenario_fallback(request.model_spec.name, response)
        return response

    @metered("Classify")
    def classify(self, request: classification_pb2.ClassificationRequest):
        require_spec(request)
        return classify_on(self.get_servable(request.model_spec), request)

    @metered("Regress")
    def regress(self, request: regression_pb2.RegressionRequest):
        require_spec(request)
        return regress_on(self.get_servable(request.model_spec), request)

    @metered("MultiInference")
    def multi_inference(self, request: inference_pb2.MultiInferenceRequest):
        if not request.tasks:
            raise invalid("Expected at least one task")
        name = request.tasks[0].model_spec.name
        for task in request.tasks:
            if task.model_spec.name != name:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        return multi_inference_on(self.get_servable(request.tasks[0].model_spec), request)

    def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        """get_model_metadata_impl.cc."""
        check_metadata_request(request)
        return model_metadata_on(self.get_servable(request.model_spec), request)

    def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest):
        """get_model_status_impl.cc."""
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
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


__all__ = ["ModelManager", "VersionEntry"]
