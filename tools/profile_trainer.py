"""Runs TFX's Trainer executor alone on a finished ``tfjoint pipeline run``'s artifacts (its
newest Transform outputs and schema), with the pipeline's ``run_fn``, and prints its wall and
CPU time; ``--profile FILE`` writes a cProfile of it (issue 17).

    python tools/profile_trainer.py runs/demo/pipeline /tmp/trainer --profile /tmp/trainer.prof
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
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--model", default="mmoe")
    parser.add_argument("--hparams", default="{}", help="JSON overrides of the Trainer's hyper-parameters")
    parser.add_argument("--profile", help="write a cProfile of the Trainer here")
    args = parser.parse_args()

    from google.protobuf import json_format
    from tfx.components.trainer import executor
    from tfx.proto import trainer_pb2
    from tfx.types import standard_artifacts
    from tfx.types import standard_component_specs as specs
    from tfx.utils import json_utils

    from tfjoint.features import get_dataset_spec
    from tfjoint.features.spec_file import spec_to_dict
    from tfjoint.pipeline.pipeline import RUN_FN
    from tfjoint.pipeline.runners import cpu_seconds, latest_version

    spec = get_dataset_spec(args.dataset)

    def newest(kind, component: str, output: str):
        artifact = kind()
        artifact.uri = latest_version(os.path.join(args.pipeline_root, component, output, "*"))
        return artifact

    examples = newest(standard_artifacts.Examples, "ImportExampleGen", "examples")  # raw: the Trainer transforms them
    examples.split_names = '["train", "eval"]'
    inputs = {specs.EXAMPLES_KEY: [examples],
              specs.TRANSFORM_GRAPH_KEY: [newest(standard_artifacts.TransformGraph, "Transform", "transform_graph")],
              specs.SCHEMA_KEY: [newest(standard_artifacts.Schema, "ImportSchemaGen", "schema")]}
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = (os.path.join(args.output_dir, name) for name in ("model", "model_run"))
    config = {"dataset": spec.name, "dataset_spec": spec_to_dict(spec), "model": args.model,
              "model_name": spec.default_model_name,
              "warmup_examples": os.path.join(args.pipeline_root, "data", spec.name, "eval", "*"),
              **json.loads(args.hparams)}
    properties = {specs.RUN_FN_KEY: RUN_FN,
                  specs.TRAIN_ARGS_KEY: json_format.MessageToJson(trainer_pb2.TrainArgs(splits=["train"])),
                  specs.EVAL_ARGS_KEY: json_format.MessageToJson(trainer_pb2.EvalArgs(splits=["eval"])),
                  specs.CUSTOM_CONFIG_KEY: json_utils.dumps(config)}
    run = executor.GenericExecutor()
    wall, cpu = time.time(), cpu_seconds()
    call = lambda: run.Do(inputs, {specs.MODEL_KEY: [model], specs.MODEL_RUN_KEY: [model_run]}, properties)  # noqa: E731
    if args.profile:
        cProfile.runctx("call()", globals(), {"call": call}, args.profile)
    else:
        call()
    print(f"Trainer: {time.time() - wall:.0f} s, CPU {cpu_seconds() - cpu:.0f} s")


if __name__ == "__main__":
    main()
