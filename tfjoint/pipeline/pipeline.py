"""A pure, typed ``create_pipeline`` factory; runners only choose where it runs."""

from __future__ import annotations

import os
from typing import Any

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from tfjoint.features import DatasetSpec, get_dataset_spec
from tfjoint.features.spec_file import spec_to_dict
from tfjoint.pipeline.evaluation import eval_config
from tfjoint.pipeline.hparams import DEFAULT_HPARAMS
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
    dataset: str | DatasetSpec,
    model: str,
    serving_dir: str,
    model_name: str | None = None,
    hparams: dict[str, Any] | None = None,
    metadata_path: str | None = None,
    beam_pipeline_args: list[str] | None = None,
    schema_file: str | None = None,
    runtime_parameters: bool = False,
    trainer_job: dict[str, Any] | None = None,
    enable_cache: bool = False,
    local_import: bool = False,
) -> tfx.dsl.Pipeline:
    """Wires ImportExampleGen, StatisticsGen, ImportSchemaGen, ExampleValidator, Transform,
    Trainer, Evaluator and Pusher for one dataset and one task architecture.

    Args:
        pipeline_name: name of the pipeline in ML Metadata.
        pipeline_root: where artifacts are written.
        data_root: folder with ``train/*`` and ``eval/*`` TFRecord files of ``tf.Example``
            (see :func:`tfjoint.datasets.write_dataset`).
        dataset: a name in :data:`tfjoint.features.DATASETS`, or a user's own spec
            (:func:`tfjoint.features.spec_file.load_spec_file`). Either way the spec itself, as a
            dict, travels to Transform and Trainer in ``custom_config["dataset_spec"]``.
        model: a registered task architecture (``tfjoint models``).
        serving_dir: the Pusher writes ``<serving_dir>/<model_name>/<version>/``.
        model_name: defaults to ``dataset`` with dashes turned into underscores.
        hparams: overrides of :data:`tfjoint.pipeline.trainer.DEFAULT_HPARAMS`.
        metadata_path: SQLite ML Metadata file; ``None`` leaves the connection to the
            orchestrator (Kubeflow).
        beam_pipeline_args: passed to every Beam-based component.
        schema_file: curated schema; defaults to ``tfjoint/schemas/<dataset>.pbtxt`` (package
            data; built-in datasets).
        runtime_parameters: make ``data_root``, ``epochs`` and ``model`` runtime parameters
            of the compiled pipeline (their values here are the defaults), applied to the
            Trainer by a :func:`tfjoint.pipeline.runtime.RuntimeOverrides` step.
        trainer_job: a Vertex AI training job (:func:`vertex_trainer_job`): the Trainer
            then runs as that CustomJob (e.g. N workers under MultiWorkerMirroredStrategy,
            which Vertex configures through ``TF_CONFIG``) instead of in the component's pod.
        enable_cache: TFX caching: a component whose inputs and properties are unchanged
            reuses its last outputs. Off by default: the cache key names ``preprocessing_fn``
            and ``run_fn`` by import path, so an edit of tfjoint's code is not a change.
        local_import: ImportExampleGen copies the records with TensorFlow's native I/O
            (:class:`tfjoint.pipeline.local_import.LocalImportExecutor`) instead of Beam: the
            local runner's choice; a compiled pipeline keeps Beam.
    """
    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset_spec(dataset)
    served_name = model_name or spec.default_model_name
    # The spec itself, not its name: the components never look a dataset up in the source.
    spec_config = {"dataset": spec.name, "dataset_spec": spec_to_dict(spec)}
    custom_config = {
        **spec_config,
        "model": model,
        "model_name": served_name,
        # Raw held-out records for the SavedModel's TF Serving warmup file.
        "warmup_examples": os.path.join(data_root, "eval", "*"),
        **(hparams or {}),
    }
    overrides, input_base = None, data_root
    if runtime_parameters:
        from tfjoint.pipeline import runtime

        params = runtime.runtime_parameters(
            data_root=data_root, epochs=custom_config.get("epochs", DEFAULT_HPARAMS["epochs"]), model=model
        )
        overrides = runtime.RuntimeOverrides(data_root=params.data_root, epochs=params.epochs, model=params.model)
        input_base = params.data_root
    example_gen = tfx.components.ImportExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name="train", pattern="train/*"),
                example_gen_pb2.Input.Split(name="eval", pattern="eval/*"),
            ]
        ),
    )
    if local_import:
        from tfx.dsl.components.base import executor_spec

        from tfjoint.pipeline.local_import import LocalImportExecutor

        example_gen.executor_spec = executor_spec.BeamExecutorSpec(LocalImportExecutor)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file or str(schema_path(spec)))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=spec_config,
        # Nothing reads Transform's pre/post-transform statistics (StatisticsGen and
        # ExampleValidator judge the raw data): on MovieLens-100K they were a fifth of its CPU.
        disable_statistics=True,
        # Nor the transformed examples: writing them (200k on MovieLens-100K) was half of its
        # CPU time; the Trainer applies the transform graph to the raw examples instead
        # (trainer._dataset), the same graph the serving signatures run.
        materialize=False,
    )
    trainer_class = tfx.components.Trainer
    if trainer_job:
        trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer
        custom_config = {**custom_config, **trainer_job}
    trainer = trainer_class(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=custom_config,
        hyperparameters=overrides.outputs["overrides_file"] if overrides else None,
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
            *([overrides] if overrides else []),
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


def vertex_trainer_job(workers: int, project: str, region: str, image: str,
                       machine_type: str = "n1-standard-8") -> dict[str, Any]:
    """The Trainer ``custom_config`` entries that run it as a Vertex AI CustomJob of
    ``workers`` replicas (pool 0: the chief; pool 1: ``workers - 1`` workers), through TFX's
    ``google_cloud_ai_platform`` Trainer extension. Vertex sets each replica's
    ``TF_CONFIG``, from which the module file picks ``MultiWorkerMirroredStrategy``."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"--trainer-workers must be an integer >= 1. Received: {workers!r}")
    if not project:
        raise ValueError(f"--vertex-project is needed to run the Trainer on Vertex AI. Received: {project!r}")
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor

    def pool(replicas: int) -> dict[str, Any]:
        return {"machine_spec": {"machine_type": machine_type}, "replica_count": replicas,
                "container_spec": {"image_uri": image}}

    pools = [pool(1)] + ([pool(workers - 1)] if workers > 1 else [])
    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: region,
        executor.TRAINING_ARGS_KEY: {"project": project, "job_spec": {"worker_pool_specs": pools}},
    }

