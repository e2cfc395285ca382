"""A leave-one-out split as TFRecords of ``tf.Example``, and back from transformed examples.

Raw examples (what ImportExampleGen ingests and the schema ``tfjoint/schemas/interactions.pbtxt``
describes), one per event:

- ``user_id``, ``item_id``: bytes, the original ids (the log's ``user_ids``/``item_ids``, or
  the index as a decimal string when the log has none);
- ``behavior``: bytes, the behavior name;
- ``timestamp``: int64;
- ``stage``: int64, :data:`TRAIN` for every event a model may learn from (``train/``),
  :data:`VALID` or :data:`TEST` for each user's held-out target event (``eval/``).

After Transform, ``user`` and ``item`` are vocabulary indices (-1: not in the training
vocabulary) and ``behavior`` indexes the spec's behaviors; :func:`split_from_arrays` rebuilds
the :class:`~tfjoint.retrieval.LeaveOneOut` that the trainer fits and the evaluator judges.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tfjoint.features.interactions import InteractionLog, InteractionSpec
from tfjoint.retrieval import LeaveOneOut

USER_ID, ITEM_ID, BEHAVIOR, TIMESTAMP, STAGE = "user_id", "item_id", "behavior", "timestamp", "stage"
USER, ITEM = "user", "item"  # the transformed indices
TRAIN, VALID, TEST = 0, 1, 2


def _ids(ids: np.ndarray | None, indices: np.ndarray) -> list[bytes]:
    values = indices if ids is None else np.asarray(ids)[indices]
    return [v if isinstance(v, bytes) else str(v).encode() for v in values.tolist()]


def _write(path: str, columns: dict[str, Any]) -> int:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = len(columns[STAGE])
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(n):
            ex = tf.train.Example()
            for key in (USER_ID, ITEM_ID, BEHAVIOR):
                ex.features.feature[key].bytes_list.value.append(columns[key][i])
            for key in (TIMESTAMP, STAGE):
                ex.features.feature[key].int64_list.value.append(int(columns[key][i]))
            writer.write(ex.SerializeToString())
    return n


def write_split(split: LeaveOneOut, data_root: str) -> str:
    """Writes ``train/data.tfrecord`` (training events) and ``eval/data.tfrecord`` (held-out
    validation and test events) under ``data_root``; returns ``data_root``."""
    log, names = split.train, [b.encode() for b in split.spec.behaviors]
    train = {
        USER_ID: _ids(log.user_ids, log.users),
        ITEM_ID: _ids(log.item_ids, log.items),
        BEHAVIOR: [names[b] for b in log.behaviors],
        TIMESTAMP: log.timestamps,
        STAGE: np.full(len(log), TRAIN),
    }
    _write(os.path.join(data_root, "train", "data.tfrecord"), train)
    held: dict[str, list[Any]] = {USER_ID: [], ITEM_ID: [], BEHAVIOR: [], TIMESTAMP: [], STAGE: []}
    for stage, items, times in ((VALID, split.valid_items, split.valid_timestamps), (TEST, split.test_items, split.test_timestamps)):
        users = np.flatnonzero(items >= 0)
        held[USER_ID] += _ids(log.user_ids, users)
        held[ITEM_ID] += _ids(log.item_ids, items[users])
        held[BEHAVIOR] += [names[split.spec.target_index]] * len(users)
        held[TIMESTAMP] += times[users].tolist()
        held[STAGE] += [stage] * len(users)
    _write(os.path.join(data_root, "eval", "data.tfrecord"), held)
    return data_root


def split_from_arrays(
    spec: InteractionSpec, train: dict[str, np.ndarray], held_out: dict[str, np.ndarray],
    num_users: int, num_items: int, user_ids: Any = None, item_ids: Any = None,
) -> tuple[LeaveOneOut, int]:
    """The split of transformed columns (``user``, ``item``, ``behavior``, ``timestamp``,
    ``stage``); returns it and the number of held-out events dropped because their user or
    item is outside the training vocabulary (they cannot be ranked)."""
    flat = {k: np.asarray(v).reshape(-1) for k, v in train.items()}
    known = (flat[USER] >= 0) & (flat[ITEM] >= 0)
    log = InteractionLog(
        spec, flat[USER][known], flat[ITEM][known], flat[BEHAVIOR][known], flat[TIMESTAMP][known],
        num_users, num_items, user_ids=user_ids, item_ids=item_ids,
    )
    held = {k: np.asarray(v).reshape(-1) for k, v in held_out.items()}
    items = {VALID: np.full(num_users, -1, np.int64), TEST: np.full(num_users, -1, np.int64)}
    times = {VALID: np.full(num_users, -1, np.int64), TEST: np.full(num_users, -1, np.int64)}
    rankable = (held[USER] >= 0) & (held[ITEM] >= 0)
    for stage in (VALID, TEST):
        rows = rankable & (held[STAGE] == stage)
        items[stage][held[USER][rows]] = held[ITEM][rows]
        times[stage][held[USER][rows]] = held[TIMESTAMP][rows]
    split = LeaveOneOut(log, items[VALID], items[TEST], valid_timestamps=times[VALID], test_timestamps=times[TEST])
    return split, int((~rankable).sum())
