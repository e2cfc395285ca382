"""The Trainer's ``tf.distribute`` strategy, picked from the hardware and ``TF_CONFIG``, and
what a multi-worker run needs beside it: which worker writes the model, where the others
write, and how the input is sharded (TF's multi-worker Keras guide).

Synchronous data parallelism (``MultiWorkerMirroredStrategy``; Goyal et al., Accurate,
Large Minibatch SGD, 2017, eq. 3): each of ``N`` workers takes ``|B|/N`` rows of the global
batch ``B`` and computes ``g_i = (1/|B|) sum_{r in B_i} grad l_r`` (Keras divides each
replica's mean loss by ``N``); an all-reduce gives every worker ``sum_i g_i``, the
gradient of the mean loss over ``B``, so every worker applies the single-worker update.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import tensorflow as tf


def cluster_workers(tf_config: str | None = None) -> int:
    """How many training tasks (``chief`` and ``worker``) the ``TF_CONFIG`` cluster names.

    ``tf_config`` defaults to the ``TF_CONFIG`` environment variable; 0 when it is unset or
    names no cluster. A ``ps`` or ``evaluator`` task is not a training worker.
    """
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG must be a JSON object with a 'cluster'. Received: {raw!r}") from error
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def pick_strategy(tpu_address: str | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for the hardware this process finds.

    A TPU address (argument or ``TPU_NAME``) gives ``TPUStrategy``; a ``TF_CONFIG`` cluster
    of more than one worker gives ``MultiWorkerMirroredStrategy`` (synchronous data
    parallelism: each worker computes the gradient of its share of the global batch and
    an all-reduce sums them, so every worker applies the same update); several GPUs give
    ``MirroredStrategy``; one GPU gives ``OneDeviceStrategy`` on it; otherwise the default
    (CPU) strategy. The same module file therefore runs unchanged on any Trainer.
    """
    tpu = tpu_address or os.environ.get("TPU_NAME")
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if cluster_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the model: the ``chief`` task, else ``worker`` 0, and
    any process outside a multi-worker cluster (TF's multi-worker Keras guide)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None)
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and not _has_chief(resolver))


def _has_chief(resolver: Any) -> bool:
    return "chief" in resolver.cluster_spec().as_dict()


def write_dir(path: str, strategy: tf.distribute.Strategy) -> str:
    """``path`` on the chief; on any other worker a fresh temporary directory, which the
    caller deletes after saving (every worker must save: saving a distributed variable
    may run collective ops that the chief waits on)."""
    return path if is_chief(strategy) else tempfile.mkdtemp(prefix="tfjoint_worker_")


def shard_policy(num_files: int, num_workers: int) -> tf.data.experimental.AutoShardPolicy:
    """How a multi-worker Trainer splits its input: ``FILE`` when every worker gets at least
    one file, else ``DATA`` (each worker reads everything and keeps its share of each global
    batch, so the workers together see exactly the single-worker batches)."""
    if num_workers > 1 and num_files >= num_workers:
        return tf.data.experimental.AutoShardPolicy.FILE
    return tf.data.experimental.AutoShardPolicy.DATA
