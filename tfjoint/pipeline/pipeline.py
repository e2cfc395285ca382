"""A pure, typed ``create_pipeline`` factory; runners only choose where it runs."""

from __future__ import annotations

import os
from typing import Any

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from tfjoint.features import get_dataset_spec
from tfjoint.pipeline.evaluation import eval_config
from tfjoint.features.schema import schema_path

PREPROCESSING_FN = "tfjoint.pipeline.transform.preprocessing_fn"
RUN_FN = "tfjoint.pipeline.trainer.run_fn"
COMPONENT_IDS = (
    "ImportExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
)


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    dataset: str,
    model: str,
    serving_dir: str,
    model_name: str | None = None,
    hparams: dict[str, Any] | None = None,
    metadata_path: str | None = None,
    beam_pipeline_args: list[str] | None = None,
    schema_file: str | None = None,
    enable_cache: bool = False,
) -> tfx.dsl.Pipeline:
    """Wires ImportExampleGen, StatisticsGen, ImportSchemaGen, ExampleValidator, Transform,
    Trainer, Evaluator and Pusher for one dataset and one task architecture.

    Args:
        pipeline_name: name of the pipeline in ML Metadata.
        pipeline_root: where artifacts are written.
        data_root: folder with ``train/*`` and ``eval/*`` TFRecord files of ``tf.Example``
            (see :func:`tfjoint.datasets.write_dataset`).
        dataset: a name in :data:`tfjoint.features.DATASETS`.
        model: a registered task architecture (``tfjoint models``).
        serving_dir: the Pusher writes ``<serving_dir>/<model_name>/<version>/``.
        model_name: defaults to ``dataset`` with dashes turned into underscores.
        hparams: overrides of :data:`tfjoint.pipeline.trainer.DEFAULT_HPARAMS`.
        metadata_path: SQLite ML Metadata file; ``None`` leaves the connection to the
            orchestrator (Kubeflow).
        beam_pipeline_args: passed to every Beam-based component.
        schema_file: curated schema; defaults to ``schemas/<dataset>.pbtxt``.
        enable_cache: TFX caching: a component whose inputs and properties are unchanged
            reuses its last outputs. Off by default: the cache key names ``preprocessing_fn``
            and ``run_fn`` by import path, so an edit of tfjoint's code is not a change.
    """
    spec = get_dataset_spec(dataset)
    served_name = model_name or spec.default_model_name
    custom_config = {
        "dataset": spec.name,
        "model": model,
        "model_name": served_name,
        # Raw held-out records for the SavedModel's TF Serving warmup file.
        "warmup_examples": os.path.join(data_root, "eval", "*"),
        **(hparams or {}),
    }
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name="train", pattern="train/*"),
                example_gen_pb2.Input.Split(name="eval", pattern="eval/*"),
            ]
        ),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file or str(schema_path(spec)))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"dataset": spec.name},
        # Nothing reads Transform's pre/post-transform statistics (StatisticsGen and
        # ExampleValidator judge the raw data): on MovieLens-100K they were a fifth of its CPU.
        disable_statistics=True,
    )
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=custom_config,
    )
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=eval_config(spec),
        example_splits=["eval"],
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(serving_dir, served_name)
            )
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            trainer,
            evaluator,
            pusher,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
            if metadata_path
            else None
        ),
        beam_pipeline_args=beam_pipeline_args or [],
    )
