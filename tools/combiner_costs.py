"""CPU microseconds per example of each TFMA combiner of the pipeline's EvalConfig on
MovieLens-100K (random labels and predictions, 5,000 examples, timed after one warm-up pass),
outside Beam: where the Evaluator's per-example Python goes (issue 17).

    python tools/combiner_costs.py
"""

from __future__ import annotations

import time

import numpy as np


def main(n: int = 5000) -> None:
    from tensorflow_model_analysis.metrics import metric_specs, metric_types

    from tfjoint.features import MOVIELENS_100K
    from tfjoint.pipeline.evaluation import eval_config

    config = eval_config(MOVIELENS_100K)
    computations = metric_specs.to_computations(config.metrics_specs, eval_config=config)
    # TFMA computes each distinct combiner once (metrics_plots_and_validations_evaluator).
    combiners = list(dict.fromkeys(c for c in computations if isinstance(c, metric_types.MetricComputation)))
    rng = np.random.default_rng(0)
    inputs = []
    for _ in range(n):
        watch = float(rng.integers(0, 2))
        inputs.append(metric_types.StandardMetricInputs(
            labels={"watch": np.array([watch]), "like": np.array([float(rng.integers(0, 2))]),
                    "rating": np.array([float(rng.integers(1, 6))])},
            predictions={k: np.array([rng.random()], np.float32) for k in ("watch", "like", "rating")},
            example_weights={"watch": np.array([1.0]), "like": np.array([watch]), "rating": np.array([watch])}))
    total = 0.0
    for computation in combiners:
        combiner = computation.combiner
        combiner.setup()
        for timed in (False, True):
            accumulator = combiner.create_accumulator()
            start = time.process_time()
            for x in inputs:
                accumulator = combiner.add_input(accumulator, x)
            combiner.extract_output(accumulator)
        micros = (time.process_time() - start) / n * 1e6
        total += micros
        key = computation.keys[0]
        print(f"{micros:7.1f} µs  {type(combiner).__name__:45s} {key.name[:40]}/{key.output_name}")
    print(f"{total:7.1f} µs per example over {len(combiners)} combiners")


if __name__ == "__main__":
    main()
