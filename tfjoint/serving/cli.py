"""``tfjoint serve`` and ``tfjoint predict``; wire with ``add_serve_parser(sub)``/``add_predict_parser(sub)``.

    tfjoint serve --model_config_file serving/models.local.config --port 8500 --rest_api_port 8501
    tfjoint serve --model_name movielens --model_base_path runs/demo/serving/movielens
    tfjoint predict --target 127.0.0.1:8500 --model_name movielens --examples eval/data.tfrecord --limit 4
    tfjoint predict --target 127.0.0.1:8500 --model_name movielens --json examples.json

Flags keep TF Serving's (underscored) names and meanings, so commands port to
``tensorflow_model_server``: ``--port 0`` turns gRPC over TCP off (then ``--grpc_socket_path``
is required), ``--rest_api_port 0`` turns REST off. Flags TF Serving lacks are in EXTENSIONS.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from tfjoint.serving.flags import DEFAULT_REST_THREADS, parse_bool

# Shown by `tfjoint serve --help`: what differs from tensorflow_model_server's flags.
EXTENSIONS = """\
extensions (flags tensorflow_model_server lacks):
  --host                 address to bind (TF Serving binds 0.0.0.0; ours: 127.0.0.1)
  --max_message_size     gRPC message and REST body limit (TF Serving: INT32_MAX, no flag)
  --ssl_cert_file, --ssl_key_file, --ssl_ca_file
                         PEM files instead of the PEM contents inside --ssl_config_file
  --log_level            Python logging level
defaults that differ: --rest_api_port 8501 (the tensorflow/serving image's entrypoint; the
binary's default 0 turns REST off), --grpc_max_threads 32.
models.config holds the container's paths (/models/...); after `make demo` use
serving/models.local.config."""


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve pushed SavedModels over TF Serving's gRPC and REST APIs",
        description="A model server with TF Serving's gRPC/REST APIs, flags and config files. "
                    "Ports are bound before the models load (a port in use: one line, exit 1); "
                    "SIGTERM or SIGINT, during the load or while serving, exits 0.",
        epilog=EXTENSIONS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("models")
    src.add_argument("--model_config_file", help="a ModelServerConfig text proto (after `make demo`: "
                     "serving/models.local.config; serving/models.config has the container's paths)")
    src.add_argument("--model_name", default="default", help="model name with --model_base_path")
    src.add_argument("--model_base_path", help="directory holding <integer version>/ SavedModels")
    src.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                     help="re-read --model_config_file every N seconds (0: never)")
    src.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                     help="poll base paths for new versions every N seconds (0: once)")
    src.add_argument("--allow_version_labels_for_unavailable_models", action="store_true")
    src.add_argument("--max_num_load_retries", type=int, default=5,
                     help="retries of a failed version load (TF Serving's flag and default)")
    src.add_argument("--load_retry_interval_micros", type=int, default=60_000_000,
                     help="wait between load retries, microseconds (TF Serving's default: 1 minute); "
                          "a failed version whose directory changes is re-read at the next poll")
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    net.add_argument("--port", type=port_number(0), default=8500,
                     help="TCP port to listen on for gRPC API. Disabled if port set to zero "
                          "(then --grpc_socket_path is required, as in TF Serving)")
    net.add_argument("--grpc_socket_path", help="if non-empty, listen to a UNIX socket for gRPC API on the given path")
    net.add_argument("--rest_api_port", type=port_number(0), default=8501,
                     help="port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be "
                          "exported. This port must be different than the one specified in --port")
    net.add_argument("--rest_api_num_threads", type=int, default=DEFAULT_REST_THREADS,
                     help="number of threads for HTTP/REST API processing (default: 4 x CPUs)")
    net.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    net.add_argument("--grpc_channel_arguments", default="",
                     help="a comma separated list of arguments to be passed to the grpc server "
                          "(e.g. grpc.max_connection_age_ms=2000)")
    net.add_argument("--max_message_size", type=int, default=64 << 20, help="gRPC message and REST body size limit, bytes (an extension: TF Serving's "
                     "limit is INT32_MAX; ours defaults to 64 MiB, REST answers 413 above it)")
    net.add_argument("--grpc_max_threads", type=int, default=32)
    net.add_argument("--ssl_config_file", help="TF Serving SSLConfig text proto (PEM contents inline)")
    net.add_argument("--ssl_cert_file", help="PEM server certificate (alternative to --ssl_config_file)")
    net.add_argument("--ssl_key_file", help="PEM server key")
    net.add_argument("--ssl_ca_file", help="PEM CA; when given, clients must present a certificate")
    net.add_argument("--monitoring_config_file", help="TF Serving MonitoringConfig (Prometheus on the REST port)")
    src.add_argument("--enable_model_warmup", type=parse_bool, nargs="?", const=True, default=True,
                     metavar="true|false", help="replay assets.extra/tf_serving_warmup_requests at load "
                     "(default: true)")
    b = p.add_argument_group("batching")
    b.add_argument("--enable_batching", action="store_true")
    b.add_argument("--batching_parameters_file", help="TF Serving BatchingParameters text proto")
    p.add_argument("--log_level", default="INFO")
    p.set_defaults(func=cmd_serve)
    return p


def options_from_args(args: argparse.Namespace):
    from tfjoint.serving.server import ServerOptions

    return ServerOptions(  # a flag's 0 turns its server off: None in ServerOptions
        port=args.port or None,
        rest_api_port=args.rest_api_port or None,
        grpc_socket_path=args.grpc_socket_path or None,
        grpc_channel_arguments=args.grpc_channel_arguments,
        rest_api_num_threads=args.rest_api_num_threads,
        enable_model_warmup=args.enable_model_warmup,
        host=args.host,
        model_config_file=args.model_config_file,
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        enable_batching=args.enable_batching,
        batching_parameters_file=args.batching_parameters_file,
        max_message_size=args.max_message_size,
        grpc_max_threads=args.grpc_max_threads,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        ssl_config_file=args.ssl_config_file,
        ssl_cert_file=args.ssl_cert_file,
        ssl_key_file=args.ssl_key_file,
        ssl_ca_file=args.ssl_ca_file,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        monitoring_config_file=args.monitoring_config_file,
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_micros=args.load_retry_interval_micros,
    )


def port_number(lowest: int) -> Any:
    """An argparse type: an integer port in ``[lowest, 65535]``, else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
        if not lowest <= value <= 65535:
            raise argparse.ArgumentTypeError(f"{value} is outside [{lowest}, 65535]")
        return value

    return parse


def cmd_serve(args: argparse.Namespace) -> int:
    """Ports are bound before the models load: a port in use is one line and exit 1 at once.
    SIGTERM or SIGINT, during the load or while serving, exits 0 after a log line."""
    from tfjoint.serving.errors import ServingError
    from tfjoint.serving.server import BindError, run_until_signalled

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = options_from_args(args)
        options.check_servers()
        options.resolve_config()
    except ValueError as e:
        raise SystemExit(f"tfjoint serve: {e}") from None
    try:
        return run_until_signalled(options)
    except BindError as e:
        raise SystemExit(f"tfjoint serve: error: {e}") from None
    except ServingError as e:  # e.g. a version label naming a version that did not load
        raise SystemExit(f"tfjoint serve: error: {e.message}") from None


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="send examples to a TF Serving-compatible server (gRPC)")
    p.add_argument("--target", default="127.0.0.1:8500", help="host:port of the gRPC API")
    p.add_argument("--model_name", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--examples", help="a TFRecord file of serialized tf.Example")
    src.add_argument("--json", help='a JSON list of raw feature dicts (or {"instances": [...]})')
    p.add_argument("--limit", type=int, default=8, help="at most N examples from --examples (0: all)")
    p.add_argument("--signature_name", default="serving_default")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--version", type=int)
    g.add_argument("--label")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
    p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
    p.add_argument("--tls_ca_file", help="PEM CA of the server (enables TLS)")
    p.set_defaults(func=cmd_predict)
    return p


def _load_examples(args: argparse.Namespace) -> list[Any]:
    source = args.json or args.examples
    try:
        return _read_examples(args)
    except (OSError, ValueError) as e:
        raise SystemExit(f"tfjoint predict: error: cannot read {source}: {e}") from None
    except Exception as e:  # tf.errors.DataLossError and the like: not a TFRecord file
        if type(e).__module__.startswith("tensorflow"):
            raise SystemExit(f"tfjoint predict: error: {source} is not a TFRecord file: {type(e).__name__}") from None
        raise


def _read_examples(args: argparse.Namespace) -> list[Any]:
    if args.json:
        with open(args.json, encoding="utf-8") as fh:
            doc = json.load(fh)
        if isinstance(doc, dict):
            doc = doc.get("instances", doc.get("examples"))
        if not isinstance(doc, list) or not all(isinstance(d, dict) for d in doc):
            raise SystemExit("--json must hold a list of feature objects")
        return doc
    import tensorflow as tf

    if not __import__("os").path.isfile(args.examples):
        raise FileNotFoundError(f"no such file: {args.examples}")
    ds = tf.data.TFRecordDataset(args.examples)
    if args.limit and args.limit > 0:
        ds = ds.take(args.limit)
    return list(ds.as_numpy_iterator())


def cmd_predict(args: argparse.Namespace) -> int:
    import grpc

    from tfjoint.serving.client import ServingClient

    examples = _load_examples(args)
    if not examples:
        raise SystemExit("no examples to send")
    tls = None
    if args.tls_ca_file:
        with open(args.tls_ca_file, "rb") as fh:
            tls = {"root_certificates": fh.read()}
    with ServingClient(args.target, args.model_name, timeout=args.timeout, retries=args.retries, tls=tls) as c:
        try:
            resp = c.predict_full(
                examples, signature_name=args.signature_name, version=args.version, label=args.label
            )
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    import tensorflow as tf

    out = {
        "model_spec": {
            "name": resp.model_spec.name,
            "version": resp.model_spec.version.value,
            "signature_name": resp.model_spec.signature_name,
        },
        "outputs": {k: tf.make_ndarray(v).tolist() for k, v in sorted(resp.outputs.items())},
    }
    print(json.dumps(out, indent=1, default=lambda x: x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)))
    return 0


def main(argv=None) -> int:
    """Standalone entry point: ``python -m tfjoint.serving.cli serve|predict ...``."""
    parser = argparse.ArgumentParser(prog="tfjoint-serving")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_predict_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
