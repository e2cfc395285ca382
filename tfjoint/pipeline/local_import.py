"""ImportExampleGen's executor for a local run: the same Examples artifact, written without Beam.

TFX's ImportExampleGen reads each split's TFRecords with Beam, reshuffles them (a group-by on
a random key) and writes them gzipped: on MovieLens-100K about 20 CPU seconds for 200k
records, nearly all of it Beam's per-record Python (issue 17). On one machine the copy needs
none of it. :class:`LocalImportExecutor` reads each split with TensorFlow's native reader,
parses every record as a ``tf.Example`` (as the Beam executor does) and writes them with
TensorFlow's native gzip writer, in the order read, to the file name, split folders and
artifact properties the Beam executor writes. The order is the one the Beam executor leaves
on the local runner too: its reshuffle there keeps the input order (checked on MovieLens-100K
and in ``local_import_test.py``), so the Trainer sees the data as before. Any other
configuration (output splits made by hashing, Parquet, a non-default payload) runs TFX's
executor unchanged. Only :func:`tfjoint.pipeline.runners.run_local` uses it: a compiled
(Kubeflow) pipeline keeps Beam, which a large data set on a distributed runner needs.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from tfx.components.example_gen import utils, write_split
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs as specs
from tfx.utils import proto_utils

OUTPUT_FILE = f"{write_split.DEFAULT_FILE_NAME}-00000-of-00001.gz"


def copy_split(files: list[str], output_path: str) -> int:
    """Writes the serialized ``tf.Example`` records of ``files`` (TFRecord, gzipped when named
    ``*.gz``), in order, to the gzipped TFRecord ``output_path``; returns how many
    it wrote. Each record is parsed first, so a file of anything else fails as in TFX."""
    records: list[bytes] = []
    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        # Batched: a record at a time, the iterator's per-element cost would be most of the copy.
        for batch in tf.data.TFRecordDataset(path, compression_type=compression).batch(8192).as_numpy_iterator():
            records.extend(batch)
    for record in records:  # as the Beam executor does: a record that is no tf.Example fails here
        tf.train.Example.FromString(record)
    tf.io.gfile.makedirs(os.path.dirname(output_path))
    with tf.io.TFRecordWriter(output_path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return len(records)


class LocalImportExecutor(import_executor.Executor):
    """ImportExampleGen's executor: native TensorFlow I/O for input splits given by pattern."""

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        input_config = proto_utils.json_to_proto(exec_properties[specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(exec_properties[specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
        payload = exec_properties.get(specs.OUTPUT_DATA_FORMAT_KEY)
        if (output_config.split_config.splits or len(input_config.splits) < 2
                or payload not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE)):
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[specs.EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config))
        for split in input_config.splits:
            files = sorted(tf.io.gfile.glob(os.path.join(exec_properties[specs.INPUT_BASE_KEY], split.pattern)))
            uri = artifact_utils.get_split_uri(output_dict[specs.EXAMPLES_KEY], split.name)
            copy_split(files, os.path.join(uri, OUTPUT_FILE))
        # The artifact properties exactly as the Beam executor sets them.
        file_format = exec_properties.get(specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED)
        for artifact in output_dict[specs.EXAMPLES_KEY]:
            if payload:
                examples_utils.set_payload_format(artifact, payload)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))
