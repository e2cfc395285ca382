"""The local ImportExampleGen executor writes what TFX's Beam executor writes."""

import glob
import os

import tensorflow as tf
from google.protobuf import json_format
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs as specs

from tfjoint.pipeline.local_import import LocalImportExecutor


def _write(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def _run(executor_class, data_root, out):
    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    splits = [example_gen_pb2.Input.Split(name=n, pattern=f"{n}/*") for n in ("train", "eval")]
    properties = {
        specs.INPUT_BASE_KEY: str(data_root),
        specs.INPUT_CONFIG_KEY: json_format.MessageToJson(example_gen_pb2.Input(splits=splits)),
        specs.OUTPUT_CONFIG_KEY: json_format.MessageToJson(example_gen_pb2.Output()),
        specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
    }
    executor_class().Do({}, {specs.EXAMPLES_KEY: [examples]}, properties)
    return examples


def _records(uri, split):
    files = sorted(glob.glob(os.path.join(uri, f"Split-{split}", "*")))
    return [os.path.basename(f) for f in files], [
        tf.train.Example.FromString(r).features.feature["id"].bytes_list.value[0]
        for f in files for r in tf.data.TFRecordDataset(f, compression_type="GZIP").as_numpy_iterator()]


def _example(name):
    return tf.train.Example(features=tf.train.Features(feature={
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5]))})).SerializeToString()


def test_local_import_writes_the_records_files_and_properties_of_the_beam_executor(tmp_path):
    data = {"train": [f"train-{i}".encode() for i in range(50)], "eval": [f"eval-{i}".encode() for i in range(7)]}
    _write(str(tmp_path / "data" / "train" / "part-0"), [_example(r.decode()) for r in data["train"][:30]])
    _write(str(tmp_path / "data" / "train" / "part-1"), [_example(r.decode()) for r in data["train"][30:]])
    _write(str(tmp_path / "data" / "eval" / "part-0"), [_example(r.decode()) for r in data["eval"]])
    beam = _run(import_executor.Executor, tmp_path / "data", tmp_path / "beam")
    local = _run(LocalImportExecutor, tmp_path / "data", tmp_path / "local")
    assert local.split_names == beam.split_names
    assert local.get_string_custom_property("payload_format") == beam.get_string_custom_property("payload_format")
    for split, records in data.items():
        beam_files, beam_records = _records(beam.uri, split)
        local_files, local_records = _records(local.uri, split)
        assert local_files == beam_files
        # The same records in the same order: on the local runner Beam's reshuffle keeps it.
        assert local_records == beam_records == records


def test_local_import_refuses_records_that_are_not_examples(tmp_path):
    import pytest
    from google.protobuf.message import DecodeError

    from tfjoint.pipeline.local_import import copy_split

    _write(str(tmp_path / "bad"), [b"\xff\xff not an example"])
    with pytest.raises(DecodeError):
        copy_split([str(tmp_path / "bad")], str(tmp_path / "out.gz"))


def test_only_a_local_pipeline_swaps_the_executor(tmp_path):
    from tfjoint.pipeline.pipeline import create_pipeline

    for local in (False, True):
        pipeline = create_pipeline(pipeline_name="p", pipeline_root=str(tmp_path), data_root=str(tmp_path),
                                   dataset="synthetic", model="mmoe", serving_dir=str(tmp_path), local_import=local)
        (example_gen,) = [c for c in pipeline.components if c.id == "ImportExampleGen"]
        assert (example_gen.executor_spec.executor_class is LocalImportExecutor) == local
