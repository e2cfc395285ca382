"""Embedding memory and step time against the number of ids (issue 18, large vocabularies).

One embedding table of ``ids x dim`` float32 rows, mean-pooled into a small MLP with one
sigmoid output, trained with Adam (Kingma and Ba, ICLR 2015: two moments per parameter,
so the optimizer state is twice the table) on batches of uniformly drawn ids:

::

    python -m tfjoint.bench.vocab --ids 1e5 1e6 1e7 [--dim 16] [--batch-size 1024] [--steps 20] [--optimizer lazy_adam]

``--optimizer lazy_adam`` (:class:`tfjoint.joint.LazyAdam`) updates only the rows a batch reads;
Keras's ``adam`` rewrites every row and both moments each step; ``sgd`` keeps no state.

Each row reports the table bytes, the optimizer-state bytes and the median milliseconds of
a training step (after two warm-up steps, which trace and allocate).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np


OPTIMIZERS = ("adam", "lazy_adam", "sgd")


def _bytes(variables: list[Any]) -> int:
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables))


def measure(ids: int, dim: int = 16, batch_size: int = 1024, steps: int = 20, seed: int = 0,
            optimizer: str = "adam") -> dict[str, Any]:
    """``{ids, table_bytes, optimizer_bytes, ms_per_step, ...}`` of one table of ``ids`` rows
    trained with ``optimizer`` (``adam``, ``lazy_adam`` or ``sgd``, learning rate 1e-3)."""
    if ids < 1 or dim < 1 or batch_size < 1 or steps < 1:
        raise ValueError(f"ids, dim, batch_size and steps must be >= 1. Received: {ids}, {dim}, {batch_size}, {steps}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}. Received: {optimizer!r}")
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((1,), dtype="int64")
    table = keras.layers.Embedding(ids, dim, name="table")
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(table(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    if optimizer == "lazy_adam":
        from tfjoint.joint import LazyAdam

        chosen = LazyAdam(1e-3)
    else:
        chosen = keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": 1e-3}})
    model.compile(optimizer=chosen, loss="binary_crossentropy")
    rng = np.random.default_rng(seed)
    batches = [(rng.integers(0, ids, (batch_size, 1)), rng.integers(0, 2, (batch_size, 1)).astype("float32"))
               for _ in range(4)]
    times = []
    for step in range(steps + 2):
        x, y = batches[step % len(batches)]
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return {
        "ids": ids, "dim": dim, "batch_size": batch_size, "optimizer": optimizer,
        "table_bytes": _bytes(table.weights),
        "optimizer_bytes": _bytes([v for v in model.optimizer.variables if len(v.shape) > 0]),
        "model_bytes": _bytes(model.weights),
        "ms_per_step": round(1000 * float(np.median(times[2:])), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tfjoint.bench.vocab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", nargs="+", type=float, default=[1e5, 1e6, 1e7])
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    args = parser.parse_args(argv)
    print(f"{'ids':>10} {'table MB':>9} {'optimizer state MB':>18} {'ms/step':>8}")
    for ids in args.ids:
        row = measure(int(ids), args.dim, args.batch_size, args.steps, optimizer=args.optimizer)
        print(f"{row['ids']:>10.0e} {row['table_bytes'] / 1e6:>9.1f} {row['optimizer_bytes'] / 1e6:>18.1f} "
              f"{row['ms_per_step']:>8.2f}")
        print(json.dumps(row))


if __name__ == "__main__":
    main()
