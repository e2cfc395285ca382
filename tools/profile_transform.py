"""Runs TFX's Transform executor alone on a finished ``tfjoint pipeline run``'s artifacts (its
newest ImportExampleGen examples and ImportSchemaGen schema), with the pipeline's
``preprocessing_fn``, and prints its wall and CPU time; ``--no-materialize`` leaves out the
transformed examples (analysis and the transform graph only), ``--profile FILE`` writes a
cProfile of it (issue 17).

    python tools/profile_transform.py runs/demo/pipeline /tmp/transform --profile /tmp/transform.prof
"""

from __future__ import annotations

import argparse
import cProfile
import os
import time


from tfx.components.transform import executor  # noqa: E402

BATCH_SIZE = None


class FixedBatchExecutor(executor.Executor):
    """TFX's Transform executor with tf.Transform's ``desired_batch_size`` set to BATCH_SIZE."""

    def _GetDesiredBatchSize(self, data_format, schema):
        return BATCH_SIZE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline_root")
    parser.add_argument("output_dir")
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--no-materialize", action="store_true", help="write the transform graph only")
    parser.add_argument("--profile", help="write a cProfile of the Transform here")
    parser.add_argument("--batch-size", type=int, help="tf.Transform's desired_batch_size (default: Beam tunes it, at most 1000)")
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[])
    args = parser.parse_args()

    from tfx.types import standard_artifacts
    from tfx.types import standard_component_specs as specs
    from tfx.utils import json_utils

    from tfjoint.features import get_dataset_spec
    from tfjoint.features.spec_file import spec_to_dict
    from tfjoint.pipeline.pipeline import PREPROCESSING_FN
    from tfjoint.pipeline.runners import LOCAL_BEAM_ARGS, cpu_seconds, latest_version

    spec = get_dataset_spec(args.dataset)
    examples = standard_artifacts.Examples()
    examples.uri = latest_version(os.path.join(args.pipeline_root, "ImportExampleGen", "examples", "*"))
    examples.split_names = '["train", "eval"]'
    schema = standard_artifacts.Schema()
    schema.uri = latest_version(os.path.join(args.pipeline_root, "ImportSchemaGen", "schema", "*"))
    graph = standard_artifacts.TransformGraph()
    graph.uri = os.path.join(args.output_dir, "transform_graph")
    outputs = {specs.TRANSFORM_GRAPH_KEY: [graph]}
    if not args.no_materialize:
        transformed = standard_artifacts.Examples()
        transformed.uri = os.path.join(args.output_dir, "transformed_examples")
        outputs[specs.TRANSFORMED_EXAMPLES_KEY] = [transformed]
    properties = {specs.PREPROCESSING_FN_KEY: PREPROCESSING_FN,
                  specs.CUSTOM_CONFIG_KEY: json_utils.dumps({"dataset": spec.name, "dataset_spec": spec_to_dict(spec)}),
                  specs.DISABLE_STATISTICS_KEY: 1, specs.FORCE_TF_COMPAT_V1_KEY: 0}
    beam_args = [*LOCAL_BEAM_ARGS, *args.beam_args]
    global BATCH_SIZE
    BATCH_SIZE = args.batch_size
    run = (FixedBatchExecutor if args.batch_size else executor.Executor)(executor.base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args, tmp_dir=os.path.join(args.output_dir, "tmp")))
    wall, cpu = time.time(), cpu_seconds()
    call = lambda: run.Do({specs.EXAMPLES_KEY: [examples], specs.SCHEMA_KEY: [schema]}, outputs, properties)  # noqa: E731
    if args.profile:
        cProfile.runctx("call()", globals(), {"call": call}, args.profile)
    else:
        call()
    print(f"Transform: {time.time() - wall:.0f} s, CPU {cpu_seconds() - cpu:.0f} s, "
          f"materialize={not args.no_materialize}, batch size {args.batch_size}, beam args {beam_args}")


if __name__ == "__main__":
    main()
