"""Serialize dataset frames into the raw ``tf.Example`` format of :mod:`tfjoint.features`.

Every loader in :mod:`tfjoint.datasets` returns ``{"train": DataFrame, "eval": DataFrame}``
with one column per key of its :class:`~tfjoint.features.DatasetSpec`. This module turns
those frames into ``tf.Example`` records with exactly the spec's keys (extra columns such
as ``timestamp`` stay out) and writes ``<output_dir>/train/data.tfrecord`` and
``<output_dir>/eval/data.tfrecord``, the two splits that TFX's ``ImportExampleGen`` reads
with the input patterns ``train/*`` and ``eval/*``.

The encoding follows the "Raw tf.Example format" of :mod:`tfjoint.features`; see also
https://www.tensorflow.org/tutorials/load_data/tfrecord.
"""

from __future__ import annotations

import collections.abc
import os
import pathlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import tensorflow as tf
import tqdm
from tensorflow.core.example import example_pb2

from tfjoint import features

SPLITS = ("train", "eval")
TFRECORD_NAME = "data.tfrecord"
# Frames at least this long get a progress bar; smaller ones finish before one would help.
PROGRESS_MIN_ROWS = 50_000


def _check_columns(frame: pd.DataFrame, spec: features.DatasetSpec) -> None:
    keys = list(spec.feature_keys) + list(spec.label_keys)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(
            f"frame for dataset {spec.name!r} lacks column(s) {missing}; it must have one "
            f"column per key {keys}. Received columns: {list(frame.columns)}"
        )


def _bytes_column(frame: pd.DataFrame, key: str) -> list[bytes]:
    column = frame[key]
    # A float id column means ids went through NaN-able floats ("12.0"), which would
    # silently never match the vocabulary of the same id written as "12".
    if pd.api.types.is_float_dtype(column) or column.isna().any():
        raise ValueError(
            f"categorical column {key!r} must hold strings or integers without missing "
            f"values; Received: dtype={column.dtype}, missing={int(column.isna().sum())}"
        )
    return [str(v).encode("utf-8") for v in column.tolist()]


def _float_column(frame: pd.DataFrame, key: str) -> list[float]:
    values = pd.to_numeric(frame[key], errors="raise").to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(
            f"column {key!r} must be finite floats; Received: "
            f"{int((~np.isfinite(values)).sum())} NaN or infinite value(s)"
        )
    return values.tolist()


def _list_column(frame: pd.DataFrame, key: str, as_bytes: bool) -> list[list]:
    out = []
    for value in frame[key].tolist():
        if not isinstance(value, (collections.abc.Sequence, np.ndarray)) or isinstance(
            value, (str, bytes)
        ):
            raise ValueError(
                f"column {key!r} must hold a list or array per row; Received: {value!r}"
            )
        if as_bytes:
            out.append([str(v).encode("utf-8") for v in value])
        else:
            out.append([int(v) for v in value])
    return out


def _scenario_column(frame: pd.DataFrame, spec: features.DatasetSpec) -> list[int]:
    scenario = frame[features.SCENARIO_KEY].to_numpy()
    if not np.issubdtype(scenario.dtype, np.integer):
        raise ValueError(
            f"column {features.SCENARIO_KEY!r} must be integers; Received: dtype={scenario.dtype}"
        )
    if len(scenario) and (scenario.min() < 0 or scenario.max() >= spec.num_scenarios):
        raise ValueError(
            f"column {features.SCENARIO_KEY!r} must be in [0, {spec.num_scenarios}) for "
            f"{spec.name!r}; Received: min={scenario.min()}, max={scenario.max()}"
        )
    return scenario.tolist()


def frame_to_examples(frame: pd.DataFrame, spec: features.DatasetSpec) -> Iterator[bytes]:
    """Yield one serialized ``tf.Example`` per row of ``frame``, with exactly spec's keys.

    Args:
        frame: one column per key of ``spec`` (categorical, dense, scenario, sequence,
            token features and task labels); list-valued columns hold a python list or
            numpy array per row. Extra columns are ignored.
        spec: the dataset's :class:`~tfjoint.features.DatasetSpec`.

    Raises:
        ValueError: a key of ``spec`` has no column, or a column has values the raw
            format cannot hold (float or missing ids, non-finite floats, out-of-range
            scenarios, sequences whose items and behaviors differ in length).
    """
    _check_columns(frame, spec)
    # Columns are converted to python lists once: per-row pandas access would dominate
    # the time spent building protos.
    byte_columns = [(k, _bytes_column(frame, k)) for k in spec.categorical]
    float_columns = [(k, _float_column(frame, k)) for k in spec.dense + spec.label_keys]
    scenario = _scenario_column(frame, spec)
    list_columns: list[tuple[str, list[list], str]] = []
    if spec.sequence:
        items = _list_column(frame, features.SEQUENCE_ITEMS_KEY, as_bytes=True)
        behaviors = _list_column(frame, features.SEQUENCE_BEHAVIORS_KEY, as_bytes=False)
        for row, (i, b) in enumerate(zip(items, behaviors)):
            if len(i) != len(b):
                raise ValueError(
                    f"row {row}: {features.SEQUENCE_ITEMS_KEY!r} and "
                    f"{features.SEQUENCE_BEHAVIORS_KEY!r} must have the same length; "
                    f"Received: {len(i)} and {len(b)}"
                )
        list_columns.append((features.SEQUENCE_ITEMS_KEY, items, "bytes"))
        list_columns.append((features.SEQUENCE_BEHAVIORS_KEY, behaviors, "int64"))
    for token in spec.tokens:
        list_columns.append((token.name, _list_column(frame, token.name, as_bytes=True), "bytes"))

    for row in tqdm.trange(
        len(frame), desc=f"{spec.name} examples", disable=len(frame) < PROGRESS_MIN_ROWS
    ):
        example = example_pb2.Example()
        feature = example.features.feature
        for key, values in byte_columns:
            feature[key].bytes_list.value.append(values[row])
        for key, values in float_columns:
            feature[key].float_list.value.append(values[row])
        feature[features.SCENARIO_KEY].int64_list.value.append(scenario[row])
        for key, values, kind in list_columns:
            # Touch the list even when empty so that the key exists in every example.
            if kind == "bytes":
                feature[key].bytes_list.value.extend(values[row])
            else:
                feature[key].int64_list.value.extend(values[row])
        yield example.SerializeToString()


def write_tfrecords(
    frames: dict[str, pd.DataFrame], spec: features.DatasetSpec, output_dir: str | pathlib.Path
) -> pathlib.Path:
    """Write ``output_dir/{train,eval}/data.tfrecord`` (uncompressed) from ``frames``.

    Args:
        frames: ``{"train": DataFrame, "eval": DataFrame}`` as returned by the loaders.
        spec: the dataset's :class:`~tfjoint.features.DatasetSpec`.
        output_dir: directory to write into; created if needed.

    Returns:
        ``output_dir`` as a :class:`pathlib.Path`, the ``input_base`` of ImportExampleGen.
    """
    if sorted(frames) != sorted(SPLITS):
        raise ValueError(
            f"frames must have exactly the splits {list(SPLITS)}; Received: {sorted(frames)}"
        )
    output_dir = pathlib.Path(output_dir)
    # Fail before spending time on the train split when the eval frame lacks a column.
    for frame in frames.values():
        _check_columns(frame, spec)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Each split goes to a hidden temporary file first and is moved into place only when
    # all are written: an interrupted run must not leave `train/*` that looks complete.
    partial = {split: output_dir / f".{split}.{TFRECORD_NAME}.partial" for split in SPLITS}
    try:
        for split in SPLITS:
            with tf.io.TFRecordWriter(str(partial[split])) as writer:
                for record in frame_to_examples(frames[split], spec):
                    writer.write(record)
    except BaseException:
        for path in partial.values():
            path.unlink(missing_ok=True)
        raise
    for split in SPLITS:
        (output_dir / split).mkdir(exist_ok=True)
        os.replace(partial[split], output_dir / split / TFRECORD_NAME)
    return output_dir


def parse_feature_spec(spec: features.DatasetSpec) -> dict[str, tf.io.FixedLenFeature | tf.io.VarLenFeature]:
    """The ``tf.io.parse_example`` feature spec of the raw format written here.

    Categorical, dense, scenario and label keys are fixed-length scalars; sequence and
    token keys are variable-length and parse to ``tf.SparseTensor``.
    """
    parse_spec: dict[str, tf.io.FixedLenFeature | tf.io.VarLenFeature] = {}
    for key in spec.categorical:
        parse_spec[key] = tf.io.FixedLenFeature([], tf.string)
    for key in spec.dense + spec.label_keys:
        parse_spec[key] = tf.io.FixedLenFeature([], tf.float32)
    parse_spec[features.SCENARIO_KEY] = tf.io.FixedLenFeature([], tf.int64)
    if spec.sequence:
        parse_spec[features.SEQUENCE_ITEMS_KEY] = tf.io.VarLenFeature(tf.string)
        parse_spec[features.SEQUENCE_BEHAVIORS_KEY] = tf.io.VarLenFeature(tf.int64)
    for token in spec.tokens:
        parse_spec[token.name] = tf.io.VarLenFeature(tf.string)
    return parse_spec
