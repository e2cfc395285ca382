"""Labels outside their task's domain, found before any pipeline component runs.

A binary task's label must be 0 or 1 and a regression label finite. ExampleValidator flags an
out-of-range label as one anomaly among others, after ExampleGen and StatisticsGen have run;
:func:`check_labels` reads the user's TFRecords first and refuses them in one line with the
count and the first offending row, e.g.::

    --data-root D: train/ has 412 labels outside their task's domain (binary: 0 or 1;
    regression: finite): first at row 17 of train/data.tfrecord, watch=7.0

It reads at most ``max_rows`` rows per split (stated in the message when it stops early), so
a very large data root costs a bounded scan; ExampleValidator still sees every row.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from tfjoint.features import DatasetSpec

MAX_ROWS = 1_000_000
BATCH = 8192


def _files(data_root: str, split: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(data_root, split, "*")) if os.path.isfile(p))


def bad_labels(path: str, spec: DatasetSpec, max_rows: int = MAX_ROWS) -> tuple[int, int, str, int]:
    """``(bad, rows read, first offending "task=value" or "", its row)`` of one TFRecord file
    (``.gz``: GZIP). A row without a task's label is not counted (a child task's label may be
    undefined)."""
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else ""
    keys = {t.name: t for t in spec.tasks}
    parse = {k: tf.io.VarLenFeature(tf.float32) for k in keys}
    bad, rows, first, first_row = 0, 0, "", -1
    for records in tf.data.TFRecordDataset(path, compression_type=compression).batch(BATCH).take(-(-max_rows // BATCH)):
        parsed = tf.io.parse_example(records, parse)
        for key, task in keys.items():
            sparse = parsed[key]
            values, row_ids = sparse.values.numpy(), sparse.indices.numpy()[:, 0]
            wrong = task.outside_domain(values)
            if wrong.any():
                bad += int(wrong.sum())
                at = int(row_ids[np.argmax(wrong)]) + rows
                if first_row < 0 or at < first_row:
                    first, first_row = f"{key}={values[np.argmax(wrong)]!r}", at
        rows += int(records.shape[0])
    return bad, rows, first, first_row


def check_labels(data_root: str, spec: DatasetSpec, max_rows: int = MAX_ROWS) -> None:
    """Raises a one-line ValueError naming the split, the count and the first offending row
    when a label of ``data_root``'s ``train/`` or ``eval/`` files lies outside its task's
    domain; reads at most ``max_rows`` rows per split."""
    for split in ("train", "eval"):
        total_bad, total_rows, example = 0, 0, ""
        for path in _files(data_root, split):
            if total_rows >= max_rows:
                break
            try:
                bad, rows, first, row = bad_labels(path, spec, max_rows - total_rows)
            except Exception as e:  # tf.errors.OpError: not a TFRecord file, corrupt, unreadable
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ValueError(f"--data-root {data_root}: {split}/{os.path.basename(path)} is not a readable TFRecord file of tf.Example ({reason})") from None
            if bad and not example:
                example = f"first at row {row} of {split}/{os.path.basename(path)}, {first}"
            total_bad, total_rows = total_bad + bad, total_rows + rows
        if total_bad:
            scanned = f" (in its first {total_rows} rows)" if total_rows >= max_rows else ""
            raise ValueError(
                f"--data-root {data_root}: {split}/ has {total_bad} labels outside their task's domain{scanned} "
                f"(binary: 0 or 1; regression: finite): {example}"
            )
