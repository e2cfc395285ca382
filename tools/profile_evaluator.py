"""Runs TFX's Evaluator executor alone on a finished ``tfjoint pipeline run``'s artifacts (its
examples and newest Trainer model), with the pipeline's EvalConfig, and prints its wall and CPU
time and the metric table; ``--profile FILE`` writes a cProfile of it (issue 17).

    python tools/profile_evaluator.py runs/demo/pipeline /tmp/eval --dataset movielens-100k \
        --beam-arg=--direct_running_mode=in_memory --beam-arg=--direct_num_workers=1
    python tools/profile_evaluator.py runs/demo/pipeline /tmp/eval_stock --stock-metrics  # TFMA's metrics
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline_root")
    parser.add_argument("output_dir")
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[])
    parser.add_argument("--profile", help="write a cProfile of the Evaluator here")
    parser.add_argument("--stock-metrics", action="store_true",
                        help="TFMA's own metric classes (one combiner per metric), not tfjoint's task_metrics")
    args = parser.parse_args()

    from google.protobuf import json_format
    from tfx.components.evaluator import executor
    from tfx.types import standard_artifacts
    from tfx.types import standard_component_specs as specs
    from tfx.utils import json_utils

    from tfjoint.features import get_dataset_spec
    from tfjoint.pipeline.evaluation import eval_config, format_table, metric_table
    from tfjoint.pipeline.runners import LOCAL_BEAM_ARGS, cpu_seconds, latest_version

    spec = get_dataset_spec(args.dataset)
    examples = standard_artifacts.Examples()
    examples.uri = latest_version(os.path.join(args.pipeline_root, "ImportExampleGen", "examples", "*"))
    examples.split_names = '["train", "eval"]'
    model = standard_artifacts.Model()
    model.uri = latest_version(os.path.join(args.pipeline_root, "Trainer", "model", "*"))
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = (os.path.join(args.output_dir, name) for name in ("evaluation", "blessing"))
    for uri in (evaluation.uri, blessing.uri):
        os.makedirs(uri, exist_ok=True)
    properties = {specs.EVAL_CONFIG_KEY: json_format.MessageToJson(eval_config(spec, stock_metrics=args.stock_metrics)),
                  specs.EXAMPLE_SPLITS_KEY: json_utils.dumps(["eval"])}
    beam_args = [*LOCAL_BEAM_ARGS, *args.beam_args]
    run = executor.Executor(executor.base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args))
    wall, cpu = time.time(), cpu_seconds()
    call = lambda: run.Do({specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [model]},  # noqa: E731
                          {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [blessing]}, properties)
    if args.profile:
        cProfile.runctx("call()", globals(), {"call": call}, args.profile)
    else:
        call()
    print(f"Evaluator: {time.time() - wall:.0f} s, CPU {cpu_seconds() - cpu:.0f} s, beam args {beam_args}")
    print(format_table(metric_table(evaluation.uri, spec), spec))


if __name__ == "__main__":
    main()
