"""Multi-worker training of a joint model over loopback: N local worker processes, one
``TF_CONFIG`` each, under the Trainer's strategy choice
(:func:`tfjoint.pipeline.distribute.pick_strategy`, so ``MultiWorkerMirroredStrategy``
when ``TF_CONFIG`` names more than one worker). Synchronous data parallelism (Goyal et al.,
Accurate, Large Minibatch SGD, 2017, eq. 3, see :mod:`tfjoint.pipeline.distribute`) gives
every worker the update of one worker training on the whole global batch, up to float
summation order.

::

    python -m tfjoint.bench.multi_worker --workers 2 --rows 20000 --batch-size 256 --output runs/mw

Each worker writes ``worker<i>.npz`` (its initial and final weights) and ``worker<i>.json``
(fit seconds, examples per second). ``--workers 1`` runs one plain process (no
``TF_CONFIG``): the single-worker reference.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np

from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.serving.flags import free_ports

SPEC = DatasetSpec(
    name="multi-worker-check",
    categorical=("user_id", "item_id"),
    dense=("x0", "x1", "x2", "x3"),
    tasks=(TaskSpec("click", "binary"), TaskSpec("score", "regression", weight=0.5)),
)
VOCABULARY = 50


def synthetic_rows(rows: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(x, y)`` of ``rows`` transformed rows of :data:`SPEC`: ids in ``1..VOCABULARY``,
    normal dense features, a click logit and a score linear in the dense features."""
    rng = np.random.default_rng(seed)
    x = {k: rng.integers(1, VOCABULARY + 1, (rows, 1)) for k in SPEC.categorical}
    x.update({k: rng.normal(size=(rows, 1)).astype("float32") for k in SPEC.dense})
    x["scenario"] = np.zeros((rows, 1), "int64")
    dense = np.concatenate([x[k] for k in SPEC.dense], axis=1)
    logit = dense @ np.array([1.0, -1.0, 0.5, 0.0]) + 0.3 * (x["user_id"][:, 0] % 3 - 1)
    y = {
        "click": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("float32")[:, None],
        "score": (dense @ np.array([0.5, 0.2, 0.0, -0.3]) + rng.normal(scale=0.1, size=rows)).astype("float32")[:, None],
    }
    return x, y


def _weights(model: Any) -> dict[str, np.ndarray]:
    return {f"{i:03d}:{w.path}": np.asarray(w.numpy()) for i, w in enumerate(model.weights)}


def train(output: str, rows: int, batch_size: int, epochs: int, learning_rate: float, balancer: str,
          optimizer: str = "adam") -> dict[str, Any]:
    """Trains the joint model of :data:`SPEC` in this process under
    :func:`~tfjoint.pipeline.trainer.pick_strategy` and writes its weights and timing."""
    from tfjoint.pipeline.distribute import cluster_workers, is_chief, pick_strategy, shard_policy

    strategy = pick_strategy()  # first: configures collective ops before any other op
    import keras
    import tensorflow as tf

    from tfjoint.joint import build_joint_model

    keras.utils.set_random_seed(0)
    x, y = synthetic_rows(rows)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy(1, cluster_workers())
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).with_options(options)
    with strategy.scope():
        model = build_joint_model(
            SPEC, {k: VOCABULARY for k in SPEC.categorical}, task_architecture="shared_bottom",
            sequence_encoder=None, modality_encoder=None, balancer=balancer, unknown_scenario_rate=0.0,
        )
        model.compile(optimizer=keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": learning_rate}}))
        model({k: v[:1] for k, v in x.items()})  # builds the weights before the snapshot
    initial = _weights(model)
    start = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    resolver = getattr(strategy, "cluster_resolver", None)
    index = getattr(resolver, "task_id", None) or 0
    out = pathlib.Path(output)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"worker{index}.npz", **{f"initial/{k}": v for k, v in initial.items()},
             **{f"final/{k}": v for k, v in _weights(model).items()})
    report = {
        "strategy": type(strategy).__name__, "worker": index, "chief": is_chief(strategy),
        "replicas": int(strategy.num_replicas_in_sync), "rows": rows, "epochs": epochs,
        "batch_size": batch_size, "fit_seconds": seconds, "examples_per_second": rows * epochs / seconds,
        "loss": [float(v) for v in history.history["loss"]],
    }
    (out / f"worker{index}.json").write_text(json.dumps(report, indent=1))
    return report


def tf_config(ports: list[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` of a loopback cluster on ``ports``."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def start(workers: int, args: list[str]) -> list[subprocess.Popen]:
    """Starts ``python -m tfjoint.bench.multi_worker --in-process *args`` as ``workers``
    local processes, each with its ``TF_CONFIG`` when ``workers > 1`` (none for one)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1. Received: {workers}")
    ports = free_ports(workers) if workers > 1 else []
    procs = []
    for i in range(workers):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_CONFIG", None)
        if workers > 1:
            env["TF_CONFIG"] = tf_config(ports, i)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tfjoint.bench.multi_worker", "--in-process", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    return procs


def wait(procs: list[subprocess.Popen], timeout: float = 600) -> None:
    """Waits for every process of :func:`start`; kills the rest and raises RuntimeError
    with the output tail of the first that fails or times out."""
    try:
        for i, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode:
                raise RuntimeError(f"worker {i} exited with {proc.returncode}:\n{out[-3000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tfjoint.bench.multi_worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch, split across workers")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--balancer", default="fixed")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    parser.add_argument("--output", default="runs/multi_worker")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows % args.batch_size or args.batch_size % max(args.workers, 1):
        parser.error(f"--rows must be a multiple of --batch-size, and --batch-size of --workers. "
                     f"Received: rows={args.rows} batch_size={args.batch_size} workers={args.workers}")
    train_args = ["--rows", str(args.rows), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
                  "--learning-rate", str(args.learning_rate), "--balancer", args.balancer, "--optimizer", args.optimizer, "--output", args.output]
    if args.in_process:
        train(args.output, args.rows, args.batch_size, args.epochs, args.learning_rate, args.balancer, args.optimizer)
        return
    began = time.perf_counter()
    wait(start(args.workers, train_args))
    wall = time.perf_counter() - began
    reports = [json.loads((pathlib.Path(args.output) / f"worker{i}.json").read_text()) for i in range(args.workers)]
    fit = max(r["fit_seconds"] for r in reports)
    print(json.dumps({"workers": args.workers, "strategy": reports[0]["strategy"], "wall_seconds": round(wall, 1),
                      "fit_seconds": round(fit, 2), "examples_per_second": round(args.rows * args.epochs / fit),
                      "final_loss": reports[0]["loss"][-1]}))


if __name__ == "__main__":
    main()
