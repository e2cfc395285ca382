"""A user's CSV, Parquet or TFRecord files, checked against their dataset spec and written as
the raw ``tf.Example`` TFRecords (split into train and eval) that the pipeline's
ImportExampleGen reads.

Every value is typed by the :class:`~tfjoint.features.DatasetSpec` (not guessed from the
file, as TFX's CsvExampleGen would: a numeric id column would become ``int64`` where the
schema wants ``bytes``, and a list cell one string): categorical cells are strings, dense
cells and labels numbers, the scenario cell a scenario name (or its index), the sequence
and token cells ``|``-separated lists (token features listed in ``source.text`` are free
text, lowercased and split on whitespace). How the file's columns map onto the spec's keys
is the spec file's :class:`~tfjoint.features.spec_file.SourceSpec`. TFRecord files of
``tf.Example`` already carry the spec's keys and types; they get the same checks.

Data that does not match the spec fails here, before any pipeline component runs, in one
line that names the file, the column, the row and the value, e.g.::

    shop.csv: column 'price' (dense) has 2 values that are not finite numbers: first at row 17 (line 18), 'abc'

Rows are numbered from 1 (the first data row; line 2 of a CSV with its header line). A
child task's empty label on a row whose parent label is 0 is 0 (undefined there, see
:meth:`~tfjoint.features.TaskSpec.defined_rows`). The eval split is ``source.eval_fraction``
of the rows, drawn with a fixed seed, so a rerun splits identically.
"""

from __future__ import annotations

import glob
import os
import pathlib

import numpy as np
import pandas as pd

from tfjoint import features
from tfjoint.datasets.examples import write_tfrecords
from tfjoint.features.spec_file import SourceSpec

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz")
SPLIT_SEED = 0


def input_files(pattern: str) -> list[str]:
    """The files ``pattern`` (a glob) matches, all CSV, Parquet or TFRecord; a one-line error otherwise."""
    files = sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
    if not files:
        raise FileNotFoundError(f"--data {pattern} matches no file")
    odd = [p for p in files if not p.endswith(TABLE_SUFFIXES + RECORD_SUFFIXES)]
    if odd:
        raise ValueError(f"--data {pattern}: {odd[0]} is not CSV, Parquet or TFRecord "
                         f"(the names must end in {list(TABLE_SUFFIXES + RECORD_SUFFIXES)})")
    return files


def read_table(path: str) -> pd.DataFrame:
    """Every cell of a CSV file as a string (``""`` when empty); a Parquet file as stored."""
    try:
        if path.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except Exception as e:  # pandas' parser errors, pyarrow's, OSError
        raise ValueError(f"{path}: cannot be read as {'Parquet' if path.endswith(('.parquet', '.pq')) else 'CSV'}: "
                         f"{' '.join(str(e).split())}") from None


def read_records(path: str, spec: features.DatasetSpec) -> pd.DataFrame:
    """The spec's keys of every ``tf.Example`` in a TFRecord file (``.gz``: GZIP) as a table
    that :func:`table_to_frame` checks: one value per scalar cell, a list per list cell; a key
    that no record has is no column."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    keys = list(spec.feature_keys) + list(spec.label_keys)
    lists = {features.SEQUENCE_ITEMS_KEY, features.SEQUENCE_BEHAVIORS_KEY, *(t.name for t in spec.tokens)}
    columns: dict[str, list] = {k: [] for k in keys}
    try:
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "").as_numpy_iterator():
            feature = example_pb2.Example.FromString(record).features.feature
            for key in keys:
                kind = feature[key].WhichOneof("kind") if key in feature else None
                values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                          for v in (getattr(feature[key], kind).value if kind else [])]
                columns[key].append(values if key in lists else ("|".join(map(str, values)) if values else None))
    except Exception as e:  # tf.errors.OpError, DecodeError: not a TFRecord file of tf.Example
        raise ValueError(f"{path}: is not a readable TFRecord file of tf.Example ({' '.join(str(e).split())[:200]})") from None
    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items() if any(x is not None for x in v)})


class _Cells:
    """One file's cells by spec key, and the one-line errors that name column and row."""

    def __init__(self, table: pd.DataFrame, path: str, spec: features.DatasetSpec, source: SourceSpec):
        self.table, self.path, self.spec, self.source = table, path, spec, source
        self.line_offset = 2 if path.endswith((".csv", ".csv.gz")) else None  # a CSV's header is line 1

    def row(self, index: int) -> str:
        line = f" (line {index + self.line_offset})" if self.line_offset else ""
        return f"row {index + 1}{line}"

    def fail(self, key: str, role: str, mask: np.ndarray, what: str, values: list) -> ValueError:
        first = int(np.argmax(mask))
        return ValueError(f"{self.path}: column {self.source.column(key)!r} ({role}) has {int(mask.sum())} "
                          f"{what}: first at {self.row(first)}, {values[first]!r}")

    def strings(self, key: str) -> list[str]:
        column = self.table[self.source.column(key)]
        if pd.api.types.is_float_dtype(column):  # Parquet floats: an integral id 12.0 is "12"
            return ["" if pd.isna(v) else (str(int(v)) if float(v).is_integer() else str(v)) for v in column]
        return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip() for v in column]

    def categorical(self, key: str) -> list[str]:
        values = self.strings(key)
        empty = np.array([v == "" for v in values])
        if empty.any():
            raise self.fail(key, "categorical", empty, "empty or missing values", values)
        return values

    def numbers(self, key: str, role: str, allow_empty: bool = False) -> np.ndarray:
        values = self.strings(key)
        parsed = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype="float64")
        empty = np.array([v == "" for v in values], dtype=bool)
        if empty.any() and not allow_empty:
            raise self.fail(key, role, empty, "empty or missing values", values)
        bad = ~np.isfinite(parsed) & ~empty
        if bad.any():
            raise self.fail(key, role, bad, "values that are not finite numbers", values)
        return parsed

    def scenarios(self) -> list[int]:
        key, names = features.SCENARIO_KEY, self.spec.scenarios
        if self.source.column(key) not in self.table.columns and names == ("all",):
            return [0] * len(self.table)  # one scenario: the column may be left out
        index = {name: i for i, name in enumerate(names)} | {str(i): i for i in range(len(names))}
        values = self.strings(key)
        bad = np.array([v not in index for v in values], dtype=bool)
        if bad.any():
            raise self.fail(key, f"scenario: one of {list(names)} or its index 0..{len(names) - 1}", bad,
                            "values that are not scenarios", values)
        return [index[v] for v in values]

    def lists(self, key: str, text: bool = False) -> list[list[str]]:
        column = self.table[self.source.column(key)]
        out = []
        for value in column:
            if isinstance(value, (list, tuple, np.ndarray)):  # a Parquet list column
                out.append([str(v) for v in value])
            elif value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
                out.append([])
            elif text:
                out.append(str(value).lower().split())
            else:
                out.append([v.strip() for v in str(value).split(self.source.list_separator) if v.strip()])
        return out

    def behaviors(self, items: list[list[str]]) -> list[list[int]]:
        key, names = features.SEQUENCE_BEHAVIORS_KEY, self.spec.sequence.behaviors
        index = {name: i + 1 for i, name in enumerate(names)} | {str(i + 1): i + 1 for i in range(len(names))}
        cells = self.lists(key)
        bad = np.array([any(v not in index for v in row) for row in cells], dtype=bool)
        if bad.any():
            raise self.fail(key, f"behaviors: names in {list(names)} or ids 1..{len(names)}", bad,
                            "rows with an unknown behavior", cells)
        unequal = np.array([len(b) != len(i) for b, i in zip(cells, items)], dtype=bool)
        if unequal.any():
            first = int(np.argmax(unequal))
            raise ValueError(f"{self.path}: columns {self.source.column(features.SEQUENCE_ITEMS_KEY)!r} and "
                             f"{self.source.column(key)!r} differ in length on {int(unequal.sum())} rows: first at "
                             f"{self.row(first)}, {len(items[first])} items and {len(cells[first])} behaviors")
        return [[index[v] for v in row] for row in cells]


def table_to_frame(table: pd.DataFrame, path: str, spec: features.DatasetSpec, source: SourceSpec) -> pd.DataFrame:
    """The rows of one file in the raw format of :func:`~tfjoint.datasets.examples.write_tfrecords`
    (one column per key of ``spec``), or a one-line ValueError naming column and row."""
    roles = {**{k: "categorical" for k in spec.categorical}, **{k: "dense" for k in spec.dense},
             **{t.name: "token" for t in spec.tokens}, **{k: "label" for k in spec.label_keys}}
    if spec.sequence:
        roles.update({features.SEQUENCE_ITEMS_KEY: "sequence items", features.SEQUENCE_BEHAVIORS_KEY: "sequence behaviors"})
    if spec.scenarios != ("all",):
        roles[features.SCENARIO_KEY] = "scenario"
    missing = [k for k in roles if source.column(k) not in table.columns]
    if missing:
        raise ValueError(f"{path}: lacks column {source.column(missing[0])!r} ({roles[missing[0]]} of spec {spec.name!r}); "
                         f"missing: {[source.column(k) for k in missing]}; the file has {list(table.columns)}")
    cells = _Cells(table, path, spec, source)
    frame = pd.DataFrame(index=range(len(table)))
    for key in spec.categorical:
        frame[key] = cells.categorical(key)
    for key in spec.dense:
        frame[key] = cells.numbers(key, "dense")
    frame[features.SCENARIO_KEY] = np.asarray(cells.scenarios(), dtype="int64")
    if spec.sequence:
        items = cells.lists(features.SEQUENCE_ITEMS_KEY)
        frame[features.SEQUENCE_BEHAVIORS_KEY] = pd.Series(cells.behaviors(items), dtype=object)
        frame[features.SEQUENCE_ITEMS_KEY] = pd.Series(items, dtype=object)
    for token in spec.tokens:
        frame[token.name] = pd.Series(cells.lists(token.name, text=token.name in source.text), dtype=object)
    depth = {t.name: 0 for t in spec.tasks}
    for t in spec.tasks:
        node = t
        while node.parent is not None:
            depth[t.name] += 1
            node = spec.task(node.parent)
    for task in sorted(spec.tasks, key=lambda t: depth[t.name]):  # a child's empty label reads its parent's
        labels = cells.numbers(task.name, f"{task.type} label", allow_empty=task.parent is not None)
        if task.parent is not None:
            undefined = np.isnan(labels)
            wrong = undefined & (frame[task.parent].to_numpy() != 0)
            if wrong.any():
                raise cells.fail(task.name, f"label of a child of {task.parent!r}", wrong,
                                 f"empty values where {task.parent!r} is not 0", cells.strings(task.name))
            labels = np.where(undefined, 0.0, labels)
        outside = task.outside_domain(labels)
        if outside.any():
            domain = "0 or 1" if task.type == "binary" else "finite"
            raise cells.fail(task.name, f"{task.type} label: {domain}", outside, "values outside the task's domain",
                             labels.tolist())
        frame[task.name] = labels
    return frame


def write_user_data(pattern: str, spec: features.DatasetSpec, source: SourceSpec, output_dir: str) -> str:
    """Reads every file of ``pattern``, checks it against ``spec`` and writes
    ``output_dir/{train,eval}/data.tfrecord``; returns ``output_dir``."""
    frames = [
        table_to_frame(read_records(path, spec), path, spec, SourceSpec(eval_fraction=source.eval_fraction))
        if path.endswith(RECORD_SUFFIXES) else table_to_frame(read_table(path), path, spec, source)
        for path in input_files(pattern)
    ]
    frame = pd.concat(frames, ignore_index=True)
    held_out = np.random.default_rng(SPLIT_SEED).random(len(frame)) < source.eval_fraction
    if held_out.all() or not held_out.any():
        raise ValueError(f"--data {pattern}: {len(frame)} rows cannot be split into train and eval "
                         f"(eval_fraction {source.eval_fraction}); give more rows")
    splits = {"train": frame[~held_out].reset_index(drop=True), "eval": frame[held_out].reset_index(drop=True)}
    return str(write_tfrecords(splits, spec, pathlib.Path(output_dir)))
