"""Runs TFX's StatisticsGen executor alone on a finished ``tfjoint pipeline run``'s
ImportExampleGen examples and prints its wall and CPU time; ``--stats-options JSON`` passes
TFDV ``StatsOptions`` fields, ``--profile FILE`` writes a cProfile of it (issue 17).

    python tools/profile_statistics.py runs/demo/pipeline /tmp/stats --profile /tmp/stats.prof
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline_root")
    parser.add_argument("output_dir")
    parser.add_argument("--stats-options", default="{}", help='e.g. {"num_top_values": 20}')
    parser.add_argument("--profile", help="write a cProfile of the StatisticsGen here")
    args = parser.parse_args()

    import tensorflow_data_validation as tfdv
    from tfx.components.statistics_gen import executor
    from tfx.types import standard_artifacts
    from tfx.types import standard_component_specs as specs

    from tfjoint.pipeline.runners import LOCAL_BEAM_ARGS, cpu_seconds, latest_version

    examples = standard_artifacts.Examples()
    examples.uri = latest_version(os.path.join(args.pipeline_root, "ImportExampleGen", "examples", "*"))
    examples.split_names = '["train", "eval"]'
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = os.path.join(args.output_dir, "statistics")
    properties = {specs.STATS_OPTIONS_JSON_KEY: tfdv.StatsOptions(**json.loads(args.stats_options)).to_json()}
    run = executor.Executor(executor.base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=LOCAL_BEAM_ARGS, tmp_dir=os.path.join(args.output_dir, "tmp")))
    wall, cpu = time.time(), cpu_seconds()
    call = lambda: run.Do({specs.EXAMPLES_KEY: [examples]}, {specs.STATISTICS_KEY: [statistics]}, properties)  # noqa: E731
    if args.profile:
        cProfile.runctx("call()", globals(), {"call": call}, args.profile)
    else:
        call()
    print(f"StatisticsGen: {time.time() - wall:.0f} s, CPU {cpu_seconds() - cpu:.0f} s, options {args.stats_options}")


if __name__ == "__main__":
    main()
