"""ms per train step with a gradient-level balancer: the step before issue 17 (``T + 1``
backward passes over every variable, kept as ``use_reference`` in
``tfjoint/joint/balancer_passes_test.py``) against the current one, interleaved in one
process; prints the median of the per-repeat ratios (after / before).

    PYTHONPATH=. python bench/balancer_passes.py pcgrad gradnorm gradcraft [--repeats 7]
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from tfjoint.features import MOVIELENS_100K
from tfjoint.joint import build_joint_model
from tfjoint.joint.balancer_passes_test import use_reference
from tfjoint.testing import fake_batch, fake_vocab_sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("balancers", nargs="+")
    parser.add_argument("--architecture", default="mmoe")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x, y = fake_batch(MOVIELENS_100K, n=args.batch_size)
    batch = tf.nest.map_structure(tf.constant, (x, y))
    steps = {}
    for name in args.balancers:
        for kind in ("before", "after"):
            keras.utils.set_random_seed(0)
            model = build_joint_model(
                MOVIELENS_100K, fake_vocab_sizes(MOVIELENS_100K, args.vocab), task_architecture=args.architecture,
                balancer=name,
            )
            if kind == "before":
                use_reference(model)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)  # optimizer and balancer state
            step = tf.function(model.train_step)
            for _ in range(2):
                float(step(batch)["loss"])
            steps[name, kind] = step
    times = {key: [] for key in steps}
    for _ in range(args.repeats):
        for key, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                logs = step(batch)
            float(logs["loss"])
            times[key].append((time.perf_counter() - start) / args.steps * 1000)
    print(f"{args.architecture}, batch {args.batch_size}, vocabularies {args.vocab}, "
          f"{len(MOVIELENS_100K.tasks)} tasks, {args.repeats} repeats x {args.steps} steps")
    print("| balancer | ms/step before | ms/step after | after / before (median) | per repeat |")
    print("|---|---|---|---|---|")
    for name in args.balancers:
        before, after = times[name, "before"], times[name, "after"]
        ratios = [a / b for a, b in zip(after, before)]
        print(f"| {name} | {np.median(before):.1f} | {np.median(after):.1f} | {np.median(ratios):.2f} | "
              f"{' '.join(f'{r:.2f}' for r in ratios)} |")


if __name__ == "__main__":
    main()
