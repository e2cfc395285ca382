"""A model server speaking TensorFlow Serving's gRPC and REST APIs.

It serves the SavedModels a TFX Pusher writes (``<base_path>/<integer version>/``)
with TF Serving's semantics, so any TF Serving client works against it and the real
``tensorflow_model_server`` can replace it unchanged (same config files and flags)::

    with serve_in_background(model_name="movielens", model_base_path="runs/demo/serving/movielens",
                             port=0, rest_api_port=0) as server:   # 0 here: any free port
        ServingClient(server.grpc_target, "movielens").predict([...])

The flags' 0 (``--port 0``: no gRPC over TCP; ``--rest_api_port 0``: no REST) is ``None`` in
:class:`ServerOptions`; ``0`` there binds any free port, which the command line never asks for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfjoint.serving import protos
from tfjoint.serving.batching import BatchingOptions
from tfjoint.serving.errors import ServingError
from tfjoint.serving.flags import DEFAULT_REST_THREADS, parse_channel_arguments
from tfjoint.serving.manager import ModelManager
from tfjoint.serving.versions import single_model_config
from tfjoint.serving.grpc_service import add_services
from tfjoint.serving.rest import RestServer

log = logging.getLogger("tfjoint.serving")

DEFAULT_MAX_MESSAGE_SIZE = 64 << 20


@dataclasses.dataclass
class ServerOptions:
    """TF Serving's flags (model_servers/main.cc) that apply here, same names and meanings,
    except the ports: ``None`` is the flag's 0 (that server off) and 0 binds any free port."""

    port: int | None = 8500  # None: no gRPC over TCP (then grpc_socket_path is required)
    rest_api_port: int | None = 8501  # None: no REST server
    host: str = "127.0.0.1"
    grpc_socket_path: str | None = None  # gRPC also (or only) on this UNIX socket
    grpc_channel_arguments: str = ""  # "key=value,key=value", as --grpc_channel_arguments
    rest_api_num_threads: int = DEFAULT_REST_THREADS
    enable_model_warmup: bool = True
    model_config_file: str | None = None
    model_name: str | None = None
    model_base_path: str | None = None
    model_config: model_server_config_pb2.ModelServerConfig | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    batching: BatchingOptions | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    grpc_max_threads: int = 32
    rest_api_timeout_in_ms: int = 30000
    ssl_config_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_ca_file: str | None = None
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5  # TF Serving's defaults
    load_retry_interval_micros: int = 60_000_000
    monitoring_config_file: str | None = None

    def metrics_path(self) -> str | None:
        """The Prometheus path of --monitoring_config_file (TF Serving's default path if unset)."""
        if not self.monitoring_config_file:
            return None
        cfg = protos.parse_text_file(self.monitoring_config_file, protos.MonitoringConfig)
        if not cfg.prometheus_config.enable:
            return None
        return cfg.prometheus_config.path or "/monitoring/prometheus/metrics"

    def check_servers(self) -> None:
        """TF Serving's rules (server.cc): gRPC needs a TCP port or a UNIX socket; a REST port
        equal to the gRPC port is logged as an error and REST is not exported."""
        if self.port is None and not self.grpc_socket_path:
            raise ValueError("--port 0 turns gRPC over TCP off and no --grpc_socket_path was given: "
                             "at least one of them must be set (as in TF Serving)")
        if self.rest_api_num_threads < 1:
            raise ValueError(f"--rest_api_num_threads must be >= 1. Received: {self.rest_api_num_threads}")
        parse_channel_arguments(self.grpc_channel_arguments)
        if self.port and self.rest_api_port == self.port:
            log.error("--rest_api_port cannot be same as --port. Please use a different port for "
                      "HTTP/REST API. Skipped exporting HTTP/REST API.")
            self.rest_api_port = None

    def resolve_config(self) -> model_server_config_pb2.ModelServerConfig:
        given = [self.model_config is not None, bool(self.model_config_file), bool(self.model_base_path)]
        if sum(given) != 1:
            raise ValueError(
                "Exactly one of --model_config_file, --model_base_path (with --model_name) or model_config "
                "must be given"
            )
        if self.model_config is not None:
            return self.model_config
        if self.model_config_file:
            return read_model_config(self.model_config_file)
        return single_model_config(self.model_name or "default", os.path.abspath(self.model_base_path))

    def resolve_batching(self) -> BatchingOptions | None:
        if self.batching is not None:
            return self.batching
        if not self.enable_batching:
            if self.batching_parameters_file:
                raise ValueError("--batching_parameters_file requires --enable_batching")
            return None
        if self.batching_parameters_file:
            return BatchingOptions.from_proto(
                protos.parse_text_file(self.batching_parameters_file, protos.BatchingParameters)
            )
        return BatchingOptions()

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if self.ssl_config_file:
            cfg = protos.parse_text_file(self.ssl_config_file, protos.SSLConfig)
            key, cert, ca, verify = cfg.server_key, cfg.server_cert, cfg.custom_ca, cfg.client_verify
        elif self.ssl_cert_file or self.ssl_key_file:
            if not (self.ssl_cert_file and self.ssl_key_file):
                raise ValueError("--ssl_cert_file and --ssl_key_file go together")
            key, cert = _read(self.ssl_key_file), _read(self.ssl_cert_file)
            ca = _read(self.ssl_ca_file) if self.ssl_ca_file else ""
            verify = bool(self.ssl_ca_file)
        else:
            return None
        if not key or not cert:
            raise ValueError("SSL config needs server_key and server_cert (PEM contents)")
        return grpc.ssl_server_credentials(
            [(key.encode(), cert.encode())],
            root_certificates=ca.encode() if ca else None,
            require_client_auth=bool(verify),
        )


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def read_model_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a ModelServerConfig text proto (relative base_paths resolve against the cwd)."""
    cfg = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(_read(path), cfg)
    except text_format.ParseError as e:
        raise ValueError(f"{path}: invalid ModelServerConfig: {e}") from None
    for mc in cfg.model_config_list.config:
        if mc.base_path and "://" not in mc.base_path:
            mc.base_path = os.path.abspath(mc.base_path)
    return cfg


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class BindError(OSError):
    """A port that cannot be bound; the message names the flag (``--port 8500: ...``)."""


def check_port_free(flag: str, host: str, port: int) -> None:
    """Raises BindError when ``host:port`` cannot be bound (in use, or not a local address).

    Probed with a plain socket (SO_REUSEADDR, as gRPC and the REST server bind), so a port in
    use is one clear error before gRPC's C core logs its own."""
    if port == 0:
        return
    where = _bind_address(host, port)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise BindError(f"--host {host!r} is not an address to bind: {e.strerror}") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise BindError(f"{flag} {port}: {where} is already in use (another server?); "
                                    "pick a free port") from None
                raise BindError(f"{flag} {port}: cannot bind {where}: {e.strerror or e}") from None


class ModelServer:
    """gRPC + REST front ends over one ModelManager."""

    def __init__(self, options: ServerOptions | None = None, **kwargs):
        self.options = options or ServerOptions(**kwargs)
        if options is not None and kwargs:
            self.options = dataclasses.replace(options, **kwargs)
        o = self.options
        o.check_servers()
        self.manager = ModelManager(
            o.resolve_config(),
            poll_wait_seconds=o.file_system_poll_wait_seconds,
            batching=o.resolve_batching(),
            allow_version_labels_for_unavailable_models=o.allow_version_labels_for_unavailable_models,
            max_num_load_retries=o.max_num_load_retries,
            load_retry_interval_micros=o.load_retry_interval_micros,
            enable_model_warmup=o.enable_model_warmup,
        )
        self._credentials = o.server_credentials()
        self._metrics_path = o.metrics_path()
        self._grpc: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._rest: RestServer | None = None
        self._stopped = threading.Event()
        self._config_poller: threading.Thread | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None

    @property
    def grpc_target(self) -> str:
        if self.grpc_port is None:
            return f"unix:{self.options.grpc_socket_path}"
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        if host == "::":
            host = "::1"
        return _bind_address(host, self.grpc_port)

    @property
    def rest_url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        if host == "::":
            host = "::1"
        return f"http://{_bind_address(host, self.rest_port)}"

    def bind(self) -> ModelServer:
        """Binds the gRPC and REST ports (checked first): a port in use fails here, before any
        model loads. Nothing is answered until :meth:`serve`."""
        o = self.options
        if self._grpc is not None:
            return self
        try:
            if o.port is not None:
                check_port_free("--port", o.host, o.port)
            if o.rest_api_port is not None:
                check_port_free("--rest_api_port", o.host, o.rest_api_port)
            self._executor = futures.ThreadPoolExecutor(o.grpc_max_threads, thread_name_prefix="grpc")
            options = {
                "grpc.max_receive_message_length": o.max_message_size,
                "grpc.max_send_message_length": o.max_message_size,
                "grpc.so_reuseport": 0,
                **dict(parse_channel_arguments(o.grpc_channel_arguments)),  # the user's win
            }
            self._grpc = grpc.server(self._executor, options=list(options.items()))
            add_services(self._grpc, self.manager)
            if o.port is not None:
                addr = _bind_address(o.host, o.port)
                self.grpc_port = self._add_port(addr)
                if not self.grpc_port:
                    raise BindError(f"--port {o.port}: could not bind gRPC to {addr}")
            if o.grpc_socket_path and not self._add_port(f"unix:{o.grpc_socket_path}"):
                raise BindError(f"--grpc_socket_path {o.grpc_socket_path}: could not listen on the UNIX socket")
            if o.rest_api_port is not None:
                try:
                    self._rest = RestServer(
                        self.manager,
                        o.host,
                        o.rest_api_port,
                        timeout_s=o.rest_api_timeout_in_ms / 1000 if o.rest_api_timeout_in_ms > 0 else None,
                        max_body=o.max_message_size,
                        metrics_path=self._metrics_path,
                        num_threads=o.rest_api_num_threads,
                    )
                except OSError as e:
                    raise BindError(f"--rest_api_port {o.rest_api_port}: cannot bind "
                                    f"{_bind_address(o.host, o.rest_api_port)}: {e.strerror or e}") from None
                self.rest_port = self._rest.port
        except BaseException:
            self.stop()
            raise
        return self

    def _add_port(self, address: str) -> int:
        """The bound port (1 for a UNIX socket), 0 when gRPC cannot listen there."""
        try:
            if self._credentials is not None:
                return self._grpc.add_secure_port(address, self._credentials)
            return self._grpc.add_insecure_port(address)
        except RuntimeError:  # gRPC >= 1.5x raises where older ones return 0
            return 0

    def load(self) -> ModelServer:
        """Loads the initial versions (synchronously) and starts the file system poller."""
        try:
            self.manager.start()
        except BaseException:
            self.stop()
            raise
        return self

    def serve(self) -> ModelServer:
        """Starts answering on the bound ports."""
        o = self.options
        try:
            self._grpc.start()
            if self.grpc_port is not None:
                log.info("Running gRPC ModelServer at %s ...", _bind_address(o.host, self.grpc_port))
            if o.grpc_socket_path:
                log.info("Running gRPC ModelServer at UNIX socket %s ...", o.grpc_socket_path)
            if self._rest is not None:
                self._rest.start()
                log.info("Exporting HTTP/REST API at:%s ...", _bind_address(o.host, self.rest_port))
            if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
                self._config_poller = threading.Thread(target=self._poll_config, daemon=True, name="config-poller")
                self._config_poller.start()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> ModelServer:
        """bind(), load(), serve(): ports are checked and bound before any model loads."""
        return self.bind().load().serve()

    def _poll_config(self) -> None:
        last = self.manager.config
        while not self._stopped.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                cfg = read_model_config(self.options.model_config_file)
                if cfg != last:
                    self.manager.reload_config(cfg)
                    last = cfg
            except (ValueError, OSError, ServingError) as e:
                log.error("model config reload failed: %s", e)

    def stop(self, grace: float = 5.0, load_wait: float | None = None) -> None:
        """Closes the ports (in-flight RPCs get ``grace`` seconds), the threads and the servables;
        a version load in progress gets ``load_wait`` seconds (default ``grace + 1``) to finish."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._rest is not None:
            self._rest.stop()
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 1)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._config_poller is not None:
            self._config_poller.join(timeout=grace + 1)
        self.manager.stop(timeout=grace + 1 if load_wait is None else load_wait)

    def wait(self) -> None:
        self._stopped.wait()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serve_in_background(options: ServerOptions | None = None, **kwargs) -> Iterator[ModelServer]:
    """Starts a ModelServer in this process (ports 0 pick free ports, ``None`` turns a server
    off) and stops it on exit."""
    server = ModelServer(options, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


LOAD_ABORT_GRACE_S = 1.0  # a load interrupted by a signal may finish within this, else the process exits


def _exit_now(code: int) -> None:
    """Exits at once (a model load in a thread cannot be interrupted), after flushing the logs."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_until_signalled(options: ServerOptions) -> int:
    """Runs the server in the foreground until SIGINT or SIGTERM, then stops it and returns 0.

    The ports are bound first (a port in use raises BindError before any model loads), then
    the models load in a thread while this one waits for a signal. A signal during the load
    logs one line, closes the ports and exits with 0 (at once if the load does not finish
    within LOAD_ABORT_GRACE_S: TensorFlow cannot interrupt it); a signal while serving stops
    the server cleanly (in-flight RPCs get 5 s, a new version's load LOAD_ABORT_GRACE_S) and
    returns 0.
    """
    stop = threading.Event()
    received: list[int] = []

    def handler(signum, _frame):
        if received:  # a second signal: stop waiting for the clean stop
            _exit_now(0)
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = ModelServer(options).bind()
        failed: list[BaseException] = []

        def load() -> None:
            try:
                server.manager.start()
            except BaseException as e:  # noqa: BLE001 - raised again in the main thread
                failed.append(e)

        loader = threading.Thread(target=load, name="model-loader", daemon=True)
        loader.start()
        while loader.is_alive() and not stop.wait(0.1):
            pass
        if received:
            name = signal.Signals(received[0]).name
            log.info("Received %s during model load, exiting without serving", name)
            server.manager.stop(timeout=0)  # loads no further version
            loader.join(LOAD_ABORT_GRACE_S)
            server.stop(grace=0)
            if loader.is_alive():
                _exit_now(0)
            return 0
        if failed:
            server.stop(grace=0)
            raise failed[0]
        server.serve()
        print(
            f"serving {', '.join(server.manager.model_names())}: gRPC {server.grpc_target}"
            + (f", REST {server.rest_url}" if server.rest_port else ""),
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        log.info("Received %s, shutting down", signal.Signals(received[0]).name)
        server.stop(load_wait=LOAD_ABORT_GRACE_S)
        if server.manager.polling():  # a new version is still loading: TensorFlow cannot interrupt it
            _exit_now(0)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0
