"""TF Serving config protos that the ``tensorflow-serving-api`` wheel does not ship.

The wheel carries ``ModelServerConfig`` but not ``SSLConfig``
(tensorflow_serving/config/ssl_config.proto), ``BatchingParameters``
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto) nor
``MonitoringConfig`` (tensorflow_serving/config/monitoring_config.proto). They are
rebuilt here with the same package, message names, field names and field numbers,
in a private descriptor pool, so the text protos written for the real
``tensorflow_model_server`` parse unchanged (and files that the real server would
reject are rejected here too).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2

try:  # protobuf >= 4.21
    from google.protobuf.message_factory import GetMessageClass as _get_class
except ImportError:  # pragma: no cover - protobuf 3.20
    from google.protobuf import message_factory as _mf

    _factory = _mf.MessageFactory()

    def _get_class(desc):
        return _factory.GetPrototype(desc)


_F = descriptor_pb2.FieldDescriptorProto


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    f = descriptor_pb2.FileDescriptorProto(
        name="tfjoint/serving/tf_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def message(name, fields):
        m = f.message_type.add(name=name)
        for fname, number, ftype, type_name, repeated in fields:
            fd = m.field.add(
                name=fname,
                number=number,
                type=ftype,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name:
                fd.type_name = type_name

    i64 = ".google.protobuf.Int64Value"
    message(
        "SSLConfig",
        [
            ("server_key", 1, _F.TYPE_STRING, None, False),
            ("server_cert", 2, _F.TYPE_STRING, None, False),
            ("custom_ca", 3, _F.TYPE_STRING, None, False),
            ("client_verify", 4, _F.TYPE_BOOL, None, False),
        ],
    )
    message(
        "BatchingParameters",
        [
            ("max_batch_size", 1, _F.TYPE_MESSAGE, i64, False),
            ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, i64, False),
            ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, i64, False),
            ("num_batch_threads", 4, _F.TYPE_MESSAGE, i64, False),
            ("thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue", False),
            ("allowed_batch_sizes", 6, _F.TYPE_INT64, None, True),
            ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, None, False),
        ],
    )
    message(
        "PrometheusConfig",
        [
            ("enable", 1, _F.TYPE_BOOL, None, False),
            ("path", 2, _F.TYPE_STRING, None, False),
        ],
    )
    message(
        "MonitoringConfig",
        [("prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", False)],
    )
    pool.Add(f)
    return pool


_POOL = _build_pool()
SSLConfig = _get_class(_POOL.FindMessageTypeByName("tensorflow.serving.SSLConfig"))
BatchingParameters = _get_class(_POOL.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
PrometheusConfig = _get_class(_POOL.FindMessageTypeByName("tensorflow.serving.PrometheusConfig"))
MonitoringConfig = _get_class(_POOL.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def parse_text_file(path: str, message_cls):
    """Parses a text-format proto file into a new ``message_cls`` (ValueError on bad input)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    msg = message_cls()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        raise ValueError(f"{path}: not a valid {msg.DESCRIPTOR.full_name} text proto: {e}") from None
    return msg
