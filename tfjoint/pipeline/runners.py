"""Runners: the local one (LocalDagRunner on the Beam DirectRunner) and the Kubeflow V2
compile. Both run :func:`tfjoint.pipeline.pipeline.create_pipeline` unchanged."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from tfjoint import DEFAULT_IMAGE
from tfjoint.features import DATASETS, DatasetSpec, get_dataset_spec
from tfjoint.features.spec_file import SourceSpec
from tfjoint.pipeline.hparams import DEFAULT_HPARAMS, MODEL_OPTIONS, check_hparams
from tfjoint.pipeline.pipeline import COMPONENT_IDS, create_pipeline

LOCAL_BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def beam_worker_args(workers: int | None, beam_args: list[str] | None = None) -> list[str]:
    """Beam options for ``workers`` local worker processes: the DirectRunner in
    ``multi_processing`` mode (each worker a subprocess fed over the Fn API), or
    :data:`LOCAL_BEAM_ARGS` (one worker, in memory) for 1 or ``None``. Another runner set in
    ``beam_args`` has its own worker count (Dataflow: ``--max_num_workers``), so asking for
    workers there is refused."""
    if workers is None:
        return list(LOCAL_BEAM_ARGS)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"--beam-workers must be an integer >= 1. Received: {workers!r}")
    if workers == 1:
        return list(LOCAL_BEAM_ARGS)
    runners = [a for a in beam_args or [] if a.startswith("--runner=") and a != "--runner=DirectRunner"]
    if runners:
        raise ValueError(f"--beam-workers starts DirectRunner worker processes; with {runners[-1]} set that "
                         f"runner's own worker count (Dataflow: --beam-arg=--max_num_workers={workers}). "
                         f"Received: --beam-workers {workers}")
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


@dataclasses.dataclass
class LocalRun:
    """Where a local run left its results."""

    spec: DatasetSpec
    data_root: str
    evaluation_dir: str
    model_run_dir: str
    pushed_dir: str | None
    anomalies: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    schema_file: str = ""

    @property
    def keras_model_path(self) -> str:
        from tfjoint.pipeline.trainer import KERAS_MODEL_FILENAME

        return os.path.join(self.model_run_dir, KERAS_MODEL_FILENAME)


def pipeline_name(spec: DatasetSpec, model: str) -> str:
    """``tfjoint-<dataset>-<model>`` in ML Metadata's alphabet (at most 63 characters); a model
    given by import path (``package.module:Class``) is named by its class."""
    short = model.rpartition(":")[2].rpartition(".")[2] if (":" in model or "." in model) else model
    name = re.sub(r"[^a-z0-9-]+", "-", f"tfjoint-{spec.name}-{short}".lower())
    return name[:63].rstrip("-")


def cpu_seconds() -> float:
    """CPU seconds of this process (every thread) and of its finished child processes: the
    work a component did, which wall time only shows when the cores are not shared."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def component_progress(pipeline_root: str, component_ids: tuple[str, ...], every_s: float = 30.0) -> Iterator[None]:
    """Prints a line as each component starts (a new execution folder appears under
    ``<pipeline root>/<component>/<output>/``) with the time the previous one took, and one
    every ``every_s`` seconds while a component runs, so a long Evaluator is never silent."""
    stop = threading.Event()

    def executions(name: str) -> set[str]:
        return set(glob.glob(os.path.join(pipeline_root, name, "*", "*")))

    before = {name: executions(name) for name in component_ids}
    seen: set[str] = set()
    clock: dict[str, Any] = {"name": None, "start": time.time(), "said": time.time(), "cpu": cpu_seconds()}

    def report(name: str | None, when: float) -> None:
        cpu = cpu_seconds()
        if clock["name"]:
            print(f"[tfjoint] {clock['name']} done in {when - clock['start']:.0f} s "
                  f"(CPU {cpu - clock['cpu']:.0f} s)", flush=True)
        if name:
            print(f"[tfjoint] {name} ...", flush=True)
        clock.update(name=name, start=when, said=time.time(), cpu=cpu)

    def scan() -> None:
        started = []
        for name in component_ids:
            new = executions(name) - before[name] if name not in seen else set()
            if new:
                seen.add(name)
                started.append((min(os.path.getmtime(p) for p in new), name))
        # Several quick components can start within one poll: report them in start order.
        for when, name in sorted(started):
            report(name, when)

    def watch() -> None:
        while not stop.wait(0.5):
            scan()
            now = time.time()
            if clock["name"] and now - clock["said"] >= every_s:
                print(f"[tfjoint] {clock['name']} running, {now - clock['start']:.0f} s", flush=True)
                clock["said"] = now

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        scan()  # a last component that ran within the final poll
        report(None, time.time())


def latest_version(pattern: str) -> str:
    paths = [p for p in glob.glob(pattern) if os.path.basename(p).isdigit()]
    if not paths:
        raise FileNotFoundError(f"nothing matches {pattern}")
    return max(paths, key=lambda p: int(os.path.basename(p)))


def run_outputs(metadata_path: str) -> dict[str, str]:
    """``{output key: URI}`` of the newest pipeline run recorded in the ML Metadata file
    ``metadata_path``: ``evaluation``, ``model_run``, ``anomalies``, ``pushed_model`` and the
    others. A component TFX caching skipped counts with the outputs it reused, so they are the
    run's own even when a newer folder on disk belongs to another run; the Pusher's entry is
    the pushed version's directory (absent when it did not push)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = store.get_executions_by_context(run.id)
    events = [e for e in store.get_events_by_execution_ids([x.id for x in executions])
              if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted({e.artifact_id for e in events}))}
    out = {}
    for event in events:
        artifact, key = artifacts[event.artifact_id], event.path.steps[0].key
        if key == "pushed_model":
            pushed = artifact.custom_properties.get("pushed")
            if not (pushed and pushed.int_value):
                continue
            out[key] = artifact.custom_properties["pushed_destination"].string_value
        else:
            out[key] = artifact.uri
    return out


def read_anomalies(pipeline_root: str, anomalies_dir: str | None = None) -> dict[str, list[str]]:
    """The newest ExampleValidator run's anomalies, ``{split: ["feature: description", ...]}``
    (an empty list for a clean split): NaN or inf in a dense feature, a label outside its
    domain, a missing feature, as the curated schema defines them."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    run = anomalies_dir or latest_version(os.path.join(pipeline_root, "ExampleValidator", "anomalies", "*"))
    out: dict[str, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(run, "Split-*", "SchemaDiff.pb"))):
        with open(path, "rb") as f:
            found = anomalies_pb2.Anomalies.FromString(f.read())
        split = os.path.basename(os.path.dirname(path)).removeprefix("Split-")
        out[split] = [f"{name}: {info.description or info.short_description}"
                      for name, info in sorted(found.anomaly_info.items())]
    return out


def check_model(spec: DatasetSpec, model: str, hparams: dict[str, Any] | None) -> None:
    """Builds the Trainer's joint model of ``model`` and ``hparams`` on stand-in vocabularies:
    an incompatible combination fails here, in one line naming the slots, not in the Trainer
    after Transform has run. ``hparams`` are checked first (:func:`check_hparams`)."""
    from tfjoint.joint.builder import check_combination

    config = {**DEFAULT_HPARAMS, **check_hparams(hparams or {})}
    slots = ("sequence_encoder", "modality_encoder", "scenario_adapter", "balancer", "component_kwargs")
    # Stand-in item vectors (2 items, as the stand-in vocabularies) when the Trainer will give some.
    vectors = {}
    if config.get("item_text_encoder") and spec.sequence is not None:
        import numpy as np

        from tfjoint.pipeline.trainer import ITEM_TEXT_MODALITY

        vectors = {"item_vectors": {ITEM_TEXT_MODALITY: np.ones((2, 1), np.float32)}}
    check_combination(spec, task_architecture=model, embedding_dim=int(config["embedding_dim"]),
                      **{slot: config[slot] for slot in (*slots, *MODEL_OPTIONS)}, **vectors)


def check_labels(data_root: str, spec: DatasetSpec) -> None:
    """Labels outside their task's domain are refused in one line (:mod:`tfjoint.pipeline.label_check`)."""
    from tfjoint.pipeline.label_check import check_labels as check

    check(data_root, spec)


def check_data_root(data_root: str) -> str:
    """``data_root`` if it holds ``train/*`` and ``eval/*`` files; otherwise a
    FileNotFoundError that names what is missing. A data root the user gave is only read:
    the pipeline never writes into it."""
    missing = [split for split in ("train", "eval") if not glob.glob(os.path.join(data_root, split, "*"))]
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"--data-root {data_root} is not a directory")
    if missing:
        raise FileNotFoundError(
            f"--data-root {data_root} has no {' and no '.join(f'{m}/*' for m in missing)} files; "
            "it needs train/ and eval/ TFRecords of tf.Example (`tfjoint data --output DIR` writes a built-in dataset)"
        )
    return data_root


def prepare_data(dataset: str, data_root: str, **dataset_kwargs: Any) -> str:
    """Writes a built-in dataset's TFRecords under ``data_root`` (a folder the pipeline owns:
    ``<pipeline root>/data/<dataset>``) unless they are already there."""
    if glob.glob(os.path.join(data_root, "train", "*")) and glob.glob(os.path.join(data_root, "eval", "*")):
        return data_root
    from tfjoint.datasets import write_dataset

    write_dataset(dataset, data_root, **dataset_kwargs)
    return data_root


def pipeline_schema(spec: DatasetSpec, schema_file: str | None, pipeline_root: str) -> str:
    """The schema ImportSchemaGen reads: ``schema_file`` when given (it must parse and hold
    every key of ``spec``), the packaged ``tfjoint/schemas/<name>.pbtxt`` of a built-in spec, or
    else one generated from ``spec`` under ``<pipeline root>/schema/``."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tfjoint.features import schema

    if schema_file is None:
        if DATASETS.get(spec.name) == spec:
            return str(schema.schema_path(spec))
        path = os.path.join(pipeline_root, "schema", f"{spec.name}.pbtxt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_text(schema.schema_text(spec))
        return path
    if not os.path.isfile(schema_file):
        raise FileNotFoundError(f"--schema {schema_file} is not a file")
    try:
        given = text_format.Parse(Path(schema_file).read_text(), schema_pb2.Schema())
    except text_format.ParseError as e:
        raise ValueError(f"--schema {schema_file} is not a TFMD Schema in text format: {e}") from None
    missing = sorted(set(spec.feature_keys + spec.label_keys) - {f.name for f in given.feature})
    if missing:
        raise ValueError(f"--schema {schema_file} lacks the spec's feature(s) {missing} (spec {spec.name!r})")
    return os.path.abspath(schema_file)


def run_local(
    *,
    dataset: str | DatasetSpec,
    model: str,
    pipeline_root: str,
    serving_dir: str,
    model_name: str | None = None,
    data_root: str | None = None,
    hparams: dict[str, Any] | None = None,
    dataset_kwargs: dict[str, Any] | None = None,
    beam_args: list[str] | None = None,
    data: str | None = None,
    source: SourceSpec | None = None,
    schema_file: str | None = None,
    enable_cache: bool = False,
    beam_workers: int | None = None,
) -> LocalRun:
    """Runs the whole pipeline locally and returns where its outputs are (those of this run,
    read from its ML Metadata: with ``enable_cache`` (TFX caching, see
    :func:`~tfjoint.pipeline.pipeline.create_pipeline`) a component whose inputs did not
    change reuses its last outputs instead of running).

    ``dataset`` is a built-in name or a spec of the user's own; its data is ``data_root``
    (train/ and eval/ TFRecords), or ``data`` (a glob of CSV, Parquet or TFRecord files read with
    ``source``, checked row by row and written under the pipeline root before any component
    runs, :mod:`tfjoint.datasets.tabular`), or a built-in dataset written by tfjoint.
    ``schema_file`` overrides the schema generated from the spec (:func:`pipeline_schema`).

    ``beam_workers`` worker processes run every Beam-based component (ImportExampleGen,
    StatisticsGen, Transform, Evaluator; :func:`beam_worker_args`); ``beam_args`` are Beam
    pipeline options for them, after (so they override) those, e.g. a distributed runner's.
    """
    from tfx import v1 as tfx

    beam_pipeline_args = [*beam_worker_args(beam_workers, beam_args), *(beam_args or [])]
    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset_spec(dataset)
    pipeline_root = os.path.abspath(pipeline_root)
    if data is not None and data_root is not None:
        raise ValueError(f"give --data or --data-root, not both. Received: --data {data} --data-root {data_root}")
    if data_root is not None:  # the user's data: read, never written; checked before the model is built
        data_root = check_data_root(os.path.abspath(data_root))
        check_labels(data_root, spec)
    elif data is not None:  # the user's files, checked against the spec and converted once
        from tfjoint.datasets.tabular import write_user_data

        data_root = write_user_data(data, spec, source or SourceSpec(), os.path.join(pipeline_root, "data", spec.name))
    elif DATASETS.get(spec.name) != spec:
        raise ValueError(f"spec {spec.name!r} is not a built-in dataset: give its data with --data FILES or --data-root DIR")
    check_model(spec, model, hparams)
    schema_file = pipeline_schema(spec, schema_file, pipeline_root)
    if data_root is None:
        data_root = prepare_data(spec.name, os.path.join(pipeline_root, "data", spec.name), **(dataset_kwargs or {}))
    metadata_path = os.path.join(pipeline_root, "metadata.sqlite")
    with component_progress(pipeline_root, COMPONENT_IDS):
        tfx.orchestration.LocalDagRunner().run(
            create_pipeline(
                pipeline_name=pipeline_name(spec, model),
                pipeline_root=pipeline_root,
                data_root=os.path.abspath(data_root),
                dataset=spec,
                model=model,
                serving_dir=os.path.abspath(serving_dir),
                model_name=model_name,
                hparams=hparams,
                metadata_path=metadata_path,
                beam_pipeline_args=beam_pipeline_args,
                schema_file=schema_file,
                enable_cache=enable_cache,
                local_import=True,
            )
        )
    outputs = run_outputs(metadata_path)
    missing = [key for key in ("evaluation", "model_run", "anomalies") if key not in outputs]
    if missing:
        raise RuntimeError(f"the pipeline run recorded no {', '.join(missing)} in {metadata_path}")
    return LocalRun(spec, data_root, outputs["evaluation"], outputs["model_run"], outputs.get("pushed_model"),
                    read_anomalies(pipeline_root, outputs["anomalies"]), schema_file)


def score_examples(saved_model_dir: str, data_root: str, spec: DatasetSpec, count: int = 5) -> list[dict[str, Any]]:
    """Scores the first ``count`` held-out examples through ``serving_default``.

    Returns one dict per example with the labels and the predictions of every task; the
    label of a task whose parent label is 0 is ``None`` (undefined there).
    """
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(data_root, "eval", "*")))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files).take(count)]
    loaded = tf.saved_model.load(saved_model_dir)
    outputs = loaded.signatures["serving_default"](examples=tf.constant(serialized))
    label_spec = {k: tf.io.FixedLenFeature([1], tf.float32) for k in spec.label_keys}
    labels = {k: v.numpy() for k, v in tf.io.parse_example(tf.constant(serialized), label_spec).items()}
    defined = {task.name: task.defined_rows(labels) for task in spec.tasks}
    rows = []
    for i in range(len(serialized)):
        row: dict[str, Any] = {}
        for task in spec.tasks:
            row[f"{task.name}_label"] = float(labels[task.name][i, 0]) if defined[task.name][i] == 1.0 else None
            row[f"{task.name}_pred"] = float(outputs[task.name][i, 0])
        rows.append(row)
    return rows


def compile_kubeflow(
    *,
    output: str,
    dataset: str | DatasetSpec,
    model: str,
    pipeline_root: str,
    data_root: str,
    serving_dir: str,
    model_name: str | None = None,
    image: str = DEFAULT_IMAGE,
    hparams: dict[str, Any] | None = None,
    beam_args: list[str] | None = None,
    beam_workers: int | None = None,
    trainer_workers: int | None = None,
    vertex_project: str | None = None,
    vertex_region: str = "us-central1",
    schema_file: str | None = None,
) -> str:
    """Compiles the pipeline to a Kubeflow Pipelines V2 ``PipelineJob`` JSON file.

    Nothing of this machine is embedded: the schema is named where ``image`` (the
    repository's Dockerfile) installs the package (or ``schema_file``, a path the job reads,
    e.g. ``gs://``, required for a user's spec), and ``data_root``, epochs and ``model``
    are runtime parameters (:mod:`tfjoint.pipeline.runtime`) with these values as defaults.
    ``dataset`` is a built-in name or a :class:`DatasetSpec` (a user's spec file), which
    travels in the job's ``custom_config`` as the local run's does.
    With ``trainer_workers`` the Trainer runs as a Vertex AI job of that many workers
    (:func:`~tfjoint.pipeline.pipeline.vertex_trainer_job`). With ``beam_workers`` each
    Beam-based component runs that many DirectRunner worker processes in its pod
    (:func:`beam_worker_args`); without it the job keeps Beam's defaults, or ``beam_args``.
    """
    from tfx import v1 as tfx

    from tfjoint.features.schema import image_schema_path
    from tfjoint.pipeline.pipeline import vertex_trainer_job

    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset_spec(dataset)
    if schema_file is None and DATASETS.get(spec.name) != spec:
        raise ValueError(f"a job for the spec {spec.name!r} needs its schema where the job runs: --schema "
                         f"gs://.../{spec.name}.pbtxt (write it with `tfjoint schema --spec FILE`)")
    if beam_workers is not None:
        beam_args = [*beam_worker_args(beam_workers, beam_args), *(beam_args or [])]
    check_model(spec, model, hparams)
    trainer_job = (
        vertex_trainer_job(trainer_workers, vertex_project, vertex_region, image) if trainer_workers else None
    )
    out = Path(output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(out.parent),
        output_filename=out.name,
    )
    epochs = int({**DEFAULT_HPARAMS, **(hparams or {})}["epochs"])
    runner.run(
        create_pipeline(
            pipeline_name=pipeline_name(spec, model),
            pipeline_root=pipeline_root,
            data_root=data_root,
            dataset=dataset,
            model=model,
            serving_dir=serving_dir,
            model_name=model_name,
            hparams=hparams,
            beam_pipeline_args=beam_args,
            schema_file=schema_file or image_schema_path(spec),
            runtime_parameters=True,
            trainer_job=trainer_job,
        ),
        # The runtime parameters' defaults (runtimeConfig): a run may set any of them.
        parameter_values={"data_root": data_root, "epochs": epochs, "model": model},
    )
    return str(out)
