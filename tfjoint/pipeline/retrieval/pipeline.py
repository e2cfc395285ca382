"""``create_retrieval_pipeline`` (pure, typed) and its local run.

The same factory serves every orchestrator; :func:`run_retrieval_local` runs it with TFX's
LocalDagRunner on Beam's DirectRunner, the data of a built-in interaction dataset written
under ``<pipeline root>/data/<dataset>`` (never into a folder the user gave).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from pathlib import Path
from typing import Any

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from tfjoint.features.interactions import InteractionSpec
from tfjoint.features.schema import SCHEMA_DIR
from tfjoint.pipeline.retrieval import item_features
from tfjoint.pipeline.retrieval.evaluator import METRICS_FILENAME, RankingEvaluator, parse_thresholds
from tfjoint.pipeline.retrieval.trainer import DEFAULT_HPARAMS
from tfjoint.pipeline.runners import LOCAL_BEAM_ARGS, component_progress, latest_version

PREPROCESSING_FN = "tfjoint.pipeline.retrieval.transform.preprocessing_fn"
RUN_FN = "tfjoint.pipeline.retrieval.trainer.run_fn"
SCHEMA_FILE = SCHEMA_DIR / "interactions.pbtxt"
COMPONENT_IDS = (
    "ItemTextEmbeddings", "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
    "Transform", "Trainer", "RankingEvaluator", "Pusher",
)


def create_retrieval_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    spec: InteractionSpec,
    serving_dir: str,
    model_name: str,
    hparams: dict[str, Any] | None = None,
    thresholds: str = "",
    metadata_path: str | None = None,
    beam_pipeline_args: list[str] | None = None,
    schema_file: str | None = None,
    item_texts: str = "",
) -> tfx.dsl.Pipeline:
    """Wires the retrieval pipeline (see :mod:`tfjoint.pipeline.retrieval`).

    Args:
        data_root: ``train/*`` and ``eval/*`` TFRecords of
            :mod:`tfjoint.pipeline.retrieval.data`'s examples.
        spec: the behaviors and the target.
        serving_dir: the Pusher writes ``<serving_dir>/<model_name>/<version>/``.
        hparams: overrides of :data:`tfjoint.pipeline.retrieval.trainer.DEFAULT_HPARAMS`.
        thresholds: blessing thresholds, ``"NDCG@10=0.001"`` (judged on validation).
        item_texts: a TSV of ``item_id<TAB>text`` for ``item_features`` ``minilm`` or ``hashed``
            (default: MovieLens-100K's titles); those kinds add the ``ItemTextEmbeddings``
            component, whose vectors the Trainer aligns to the item vocabulary
            (:mod:`tfjoint.pipeline.retrieval.item_features`).
    """
    unknown = sorted(set(hparams or {}) - set(DEFAULT_HPARAMS))
    if unknown:
        raise ValueError(f"unknown retrieval hparams {unknown}; known: {sorted(DEFAULT_HPARAMS)}")
    parse_thresholds(thresholds)  # a malformed threshold fails before any component runs
    config = {**DEFAULT_HPARAMS, **(hparams or {}), "dataset": spec.name,
              "behaviors": list(spec.behaviors), "target": spec.target}
    config["item_features"] = item_features.check(config["item_features"], config["model"], spec.name, item_texts)
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="train", pattern="train/*"),
            example_gen_pb2.Input.Split(name="eval", pattern="eval/*"),
        ]),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file or str(SCHEMA_FILE))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"behaviors": list(spec.behaviors)},
        disable_statistics=True,  # nothing reads Transform's own statistics (docs/pipeline_speed.md)
    )
    embeddings = None
    if config["item_features"] in item_features.TEXT_KINDS:
        from tfjoint.pipeline.item_embeddings import ItemTextEmbeddings

        embeddings = ItemTextEmbeddings(items_path=item_texts, encoder=config["item_features"]).with_id(item_features.COMPONENT_ID)
        config["item_features_dir"] = os.path.join(pipeline_root, item_features.COMPONENT_ID, "embeddings")
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config,
    )
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform, trainer]
    if embeddings is not None:
        trainer.add_upstream_node(embeddings)  # the Trainer reads its newest output
        components.insert(0, embeddings)
    evaluator = RankingEvaluator(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        model=trainer.outputs["model"],
        custom_config=json.dumps(config),
        thresholds=thresholds,
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=os.path.join(serving_dir, model_name))
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[*components, evaluator, pusher],
        enable_cache=False,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path) if metadata_path else None
        ),
        beam_pipeline_args=beam_pipeline_args or [],
    )


@dataclasses.dataclass
class RetrievalRun:
    """Where a local retrieval run left its results."""

    data_root: str
    metrics: dict[str, Any]
    model_run_dir: str
    pushed_dir: str | None


def run_retrieval_local(
    *,
    dataset: str,
    pipeline_root: str,
    serving_dir: str,
    model_name: str | None = None,
    hparams: dict[str, Any] | None = None,
    thresholds: str = "",
    signal: float = 1.0,
    split: Any = None,
    item_texts: str = "",
) -> RetrievalRun:
    """Writes a built-in dataset's split (or ``split``, a :class:`~tfjoint.retrieval.LeaveOneOut`
    of your own log, named ``dataset``) under ``<pipeline_root>/data/<dataset>`` once, runs the
    pipeline locally and returns where its outputs are (``item_texts``: see
    :func:`create_retrieval_pipeline`)."""
    from tfjoint.pipeline.retrieval.data import write_split
    from tfjoint.retrieval import builtin

    spec = builtin.spec_of(dataset) if split is None else split.spec
    name = model_name or f"{dataset.replace('-', '_')}_topk"
    pipeline_root = os.path.abspath(pipeline_root)
    data_root = os.path.join(pipeline_root, "data", dataset)
    if not (glob.glob(os.path.join(data_root, "train", "*")) and glob.glob(os.path.join(data_root, "eval", "*"))):
        write_split(builtin.load_split(dataset, signal=signal) if split is None else split, data_root)
    model = (hparams or {}).get("model", DEFAULT_HPARAMS["model"])
    with component_progress(pipeline_root, COMPONENT_IDS):
        tfx.orchestration.LocalDagRunner().run(
            create_retrieval_pipeline(
                pipeline_name=f"tfjoint-retrieval-{dataset}-{model}".replace("_", "-")[:63],
                pipeline_root=pipeline_root,
                data_root=data_root,
                spec=spec,
                serving_dir=os.path.abspath(serving_dir),
                model_name=name,
                hparams=hparams,
                thresholds=thresholds,
                metadata_path=os.path.join(pipeline_root, "metadata.sqlite"),
                beam_pipeline_args=LOCAL_BEAM_ARGS,
                item_texts=item_texts,
            )
        )
    evaluation = latest_version(os.path.join(pipeline_root, "RankingEvaluator", "evaluation", "*"))
    metrics = json.loads(Path(evaluation, METRICS_FILENAME).read_text())
    model_run_dir = latest_version(os.path.join(pipeline_root, "Trainer", "model_run", "*"))
    pushed = latest_version(os.path.join(os.path.abspath(serving_dir), name, "*")) if metrics["blessed"] else None
    return RetrievalRun(data_root, metrics, model_run_dir, pushed)
