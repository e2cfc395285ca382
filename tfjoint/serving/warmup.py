"""SavedModel warmup data in TF Serving's format.

TF Serving replays ``<export_dir>/assets.extra/tf_serving_warmup_requests`` (a TFRecord
file of ``tensorflow.serving.PredictionLog``) when it loads a version, before the
version becomes AVAILABLE, so the first real requests don't pay for graph
initialisation. ``tfjoint.serving`` replays the same file the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_DIR = "assets.extra"
WARMUP_FILENAME = "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving refuses files with more records


def warmup_path(export_dir: str) -> str:
    return os.path.join(export_dir, WARMUP_DIR, WARMUP_FILENAME)


def _string_tensor(values: Sequence[bytes]):
    return tf.make_tensor_proto(list(values), dtype=tf.string, shape=[len(values)])


def write_warmup_requests(
    export_dir: str,
    serialized_examples: list[bytes],
    model_name: str,
    signature_name: str = "serving_default",
    *,
    input_name: str = "examples",
    batch_sizes: Iterable[int] | None = None,
) -> str:
    """Writes ``<export_dir>/assets.extra/tf_serving_warmup_requests``; returns its path.

    One ``PredictionLog(predict_log=PredictLog(request=PredictRequest))`` record per batch
    size (default: 1 and ``len(serialized_examples)``), each feeding the first
    ``batch_size`` serialized tf.Examples to ``input_name`` of ``signature_name``.
    """
    examples = [bytes(e) for e in serialized_examples]
    if not examples:
        raise ValueError("write_warmup_requests needs at least one serialized example")
    sizes = sorted({1, len(examples)} if batch_sizes is None else set(batch_sizes))
    if not sizes or sizes[0] < 1 or sizes[-1] > len(examples):
        raise ValueError(f"batch_sizes must lie in [1, {len(examples)}], got {sizes}")
    if len(sizes) > MAX_RECORDS:
        raise ValueError(f"at most {MAX_RECORDS} warmup records")
    path = warmup_path(export_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for n in sizes:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
            )
            request.inputs[input_name].CopyFrom(_string_tensor(examples[:n]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir_or_file: str) -> list[prediction_log_pb2.PredictionLog]:
    """Parses a warmup file (or the one of an export dir) into PredictionLog messages."""
    path = export_dir_or_file
    if tf.io.gfile.isdir(path):
        path = warmup_path(path)
    logs = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw)
        logs.append(log)
    return logs
