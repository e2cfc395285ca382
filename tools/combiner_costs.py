"""CPU microseconds per example of each TFMA combiner of the pipeline's EvalConfig on
MovieLens-100K (random labels and predictions, 5,000 examples, timed after one warm-up pass),
outside Beam: where the Evaluator's per-example Python goes (issue 17).

TFMA's stock metrics (``eval_config(..., stock_metrics=True)``: one combiner per metric) and
tfjoint's per-task combiners (``tfjoint.pipeline.task_metrics``, what the pipeline runs) are
timed in the same process, interleaved over ``--rounds`` rounds (the median is printed), so
their ratio holds on a loaded machine.

    python tools/combiner_costs.py [--examples 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _inputs(n: int) -> list:
    from tensorflow_model_analysis.metrics import metric_types

    rng = np.random.default_rng(0)
    inputs = []
    for _ in range(n):
        watch = float(rng.integers(0, 2))
        inputs.append(metric_types.StandardMetricInputs(
            labels={"watch": np.array([watch]), "like": np.array([float(rng.integers(0, 2))]),
                    "rating": np.array([float(rng.integers(1, 6))])},
            predictions={k: np.array([rng.random()], np.float32) for k in ("watch", "like", "rating")},
            example_weights={"watch": np.array([1.0]), "like": np.array([watch]), "rating": np.array([watch])}))
    return inputs


def _combiners(stock: bool) -> list:
    from tensorflow_model_analysis.metrics import metric_specs, metric_types

    from tfjoint.features import MOVIELENS_100K
    from tfjoint.pipeline.evaluation import eval_config

    config = eval_config(MOVIELENS_100K, stock_metrics=stock)
    computations = metric_specs.to_computations(config.metrics_specs, eval_config=config)
    # TFMA computes each distinct combiner once (metrics_plots_and_validations_evaluator).
    return list(dict.fromkeys(c for c in computations if isinstance(c, metric_types.MetricComputation)))


def _micros(computation, inputs: list) -> float:
    combiner = computation.combiner
    accumulator = combiner.create_accumulator()
    start = time.process_time()
    for x in inputs:
        accumulator = combiner.add_input(accumulator, x)
    combiner.extract_output(accumulator)
    return (time.process_time() - start) / len(inputs) * 1e6


def main(n: int = 5000, rounds: int = 3) -> None:
    inputs = _inputs(n)
    groups = {"TFMA stock": _combiners(stock=True), "tfjoint task_metrics": _combiners(stock=False)}
    times = {(g, i): [] for g, cs in groups.items() for i in range(len(cs))}
    for computations in groups.values():
        for computation in computations:
            computation.combiner.setup()
            _micros(computation, inputs)  # warm-up
    for _ in range(rounds):
        for group, computations in groups.items():
            for i, computation in enumerate(computations):
                times[group, i].append(_micros(computation, inputs))
    totals = {}
    for group, computations in groups.items():
        print(f"{group}:")
        totals[group] = 0.0
        for i, computation in enumerate(computations):
            micros = statistics.median(times[group, i])
            totals[group] += micros
            key = computation.keys[0]
            print(f"  {micros:7.1f} µs  {type(computation.combiner).__name__:45s} {key.name[:40]}/{key.output_name}")
        print(f"  {totals[group]:7.1f} µs per example over {len(computations)} combiners")
    old, new = totals.values()
    print(f"task_metrics / stock: {new / old:.3f} ({old:.1f} -> {new:.1f} µs per example, medians of {rounds} rounds)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.examples, args.rounds)
