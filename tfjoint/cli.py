"""The ``tfjoint`` command line.

::

    tfjoint pipeline run --dataset movielens-100k --model mmoe --pipeline-root runs/demo --serving-dir serving/models
    tfjoint pipeline run --spec my.yaml --data 'my/*.csv' [--schema my.pbtxt]
    tfjoint pipeline compile --runner kubeflow --output build/pipeline.json
    tfjoint pipeline retrieval --dataset retailrocket --model bpr_mf --threshold NDCG@10=0.001 --query-server
    tfjoint models --json
    tfjoint serve --model_name movielens --model_base_path runs/demo/serving/movielens
    tfjoint predict --target 127.0.0.1:8500 --model_name movielens --examples FILE.tfrecord
    tfjoint bench mtl-synthetic --output build/mtl_synthetic.png
    tfjoint data --dataset synthetic --output DIR
    tfjoint schema [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Sequence

from tfjoint import DEFAULT_IMAGE
from tfjoint.features import DATASETS


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="movielens-100k")
    parser.add_argument(
        "--model", default="mmoe", help="a registered task architecture (`tfjoint models`) or package.module:Class"
    )
    for slot in ("sequence_encoder", "modality_encoder", "scenario_adapter"):
        parser.add_argument(
            f"--{slot.replace('_', '-')}",
            help=f"a registered {slot} or package.module:Class ('none': no {slot}; default: the Trainer's)",
        )
    parser.add_argument("--balancer", help="a registered loss/gradient balancer (default: fixed)")
    parser.add_argument("--item-text-encoder", choices=["none", "minilm", "hashed"],
                        help="encode each item's text once in the Trainer (MiniLM, or a hashed bag of tokens) "
                        "and give the vectors to the modality encoder (movielens-100k; default: none)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: 2)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: 256)")
    parser.add_argument("--hparams", default="{}", help="JSON overrides of the Trainer's hyper-parameters")
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[], metavar="OPTION",
                        help="a Beam pipeline option for every Beam component (repeatable), "
                        "e.g. --beam-arg=--runner=DataflowRunner")
    parser.add_argument("--beam-workers", type=int, metavar="N",
                        help="Beam worker processes for ImportExampleGen, StatisticsGen, Transform and Evaluator "
                        "(DirectRunner multi_processing; default: one, in memory; docs/scale.md)")


def _hparams(args: argparse.Namespace) -> dict[str, Any]:
    try:
        hparams = json.loads(args.hparams)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--hparams must be a JSON object: {e}") from None
    if not isinstance(hparams, dict):
        raise SystemExit(f"tfjoint pipeline: error: --hparams must be a JSON object of {{name: value}}. Received: {args.hparams}")
    if args.epochs is not None:
        hparams["epochs"] = args.epochs
    if args.batch_size is not None:
        hparams["batch_size"] = args.batch_size
    for slot in ("sequence_encoder", "modality_encoder", "scenario_adapter"):
        choice = getattr(args, slot)
        if choice is not None:
            hparams[slot] = None if choice.lower() == "none" else _check_component(choice, slot)
    if args.balancer is not None:
        hparams["balancer"] = _check_component(args.balancer, "balancer")
    if getattr(args, "item_text_encoder", None) is not None:
        if args.item_text_encoder != "none" and args.dataset != "movielens-100k":
            raise SystemExit(f"tfjoint pipeline: error: --item-text-encoder needs item texts: movielens-100k only. Received: --dataset {args.dataset}")
        hparams["item_text_encoder"] = None if args.item_text_encoder == "none" else args.item_text_encoder
    from tfjoint.pipeline.hparams import check_hparams

    try:
        return check_hparams(hparams)
    except ValueError as e:
        raise SystemExit(f"tfjoint pipeline: error: {e}") from None


def _check_component(name: str, slot: str) -> str:
    """A registered name, or an importable ``package.module:Class`` of the user's own."""
    from tfjoint.joint import resolve_component

    try:
        resolve_component(slot, name)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return name


def _check_model(name: str) -> None:
    _check_component(name, "task_architecture")


def _run_spec(args: argparse.Namespace, command: str = "run") -> tuple[Any, Any]:
    """The dataset spec (built-in ``--dataset`` or the user's ``--spec`` file) and its column
    mapping; the flags' conflicts and a bad spec file are one line each."""
    from tfjoint.features import get_dataset_spec
    from tfjoint.features.spec_file import SpecError, load_spec_file

    def fail(message: str) -> SystemExit:
        return SystemExit(f"tfjoint pipeline {command}: error: {message}")

    if args.spec and args.dataset:
        raise fail(f"--dataset and --spec are mutually exclusive. Received: --dataset {args.dataset} --spec {args.spec}")
    if args.data and args.data_root:
        raise fail(f"--data and --data-root are mutually exclusive. Received: --data {args.data} --data-root {args.data_root}")
    if not args.spec:
        args.dataset = args.dataset or "movielens-100k"
        return get_dataset_spec(args.dataset), None
    if command == "run" and not (args.data or args.data_root):
        raise fail(f"--spec {args.spec} needs its data: --data 'FILES*.csv' or --data-root DIR")
    try:
        return load_spec_file(args.spec)
    except (SpecError, FileNotFoundError) as e:
        raise fail(str(e)) from None


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    _check_model(args.model)
    spec, source = _run_spec(args)
    hparams = _hparams(args)
    from tfjoint.pipeline import evaluation, reporting, runners
    from tfjoint.pipeline.hparams import DEFAULT_HPARAMS

    start = time.time()
    try:
        run = runners.run_local(
            dataset=spec,
            model=args.model,
            pipeline_root=args.pipeline_root,
            serving_dir=args.serving_dir,
            model_name=args.model_name,
            data_root=args.data_root,
            hparams=hparams,
            beam_args=args.beam_args,
            beam_workers=args.beam_workers,
            data=args.data,
            source=source,
            schema_file=args.schema,
            enable_cache=args.enable_cache,
        )
    except (FileNotFoundError, ValueError) as e:  # checked before any component runs
        print(f"tfjoint pipeline run: error: {e}", file=sys.stderr)
        return 2
    table = evaluation.metric_table(run.evaluation_dir, spec)
    blessed = evaluation.is_blessed(run.evaluation_dir)
    found = {split: lines for split, lines in run.anomalies.items() if lines}
    for split, lines in found.items():
        print(f"\nExampleValidator anomalies in {split} ({run.schema_file}):", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
    print(f"\n== {spec.name} / {args.model}: Evaluator metrics (eval split), per scenario and task ==")
    text = evaluation.format_table(table, spec)
    print(text)
    print(f"\nblessed: {blessed}    pipeline time: {time.time() - start:.0f} s")
    print(f"evaluation: {run.evaluation_dir}")
    heatmap = reporting.plot_metric_heatmap(table, spec, os.path.join(args.pipeline_root, "evaluation_heatmap.png"))
    card = reporting.write_model_card(
        os.path.join(args.pipeline_root, "model_card.md"), spec=spec, model=args.model,
        hparams={**DEFAULT_HPARAMS, **hparams}, table=table, metric_text=text, blessed=blessed,
        pushed_dir=run.pushed_dir, heatmap=heatmap)
    print(f"per scenario x task heatmap: {heatmap}\nmodel card: {card}")
    print(f"keras model (for notebooks): {run.keras_model_path}")
    if found and args.fail_on_anomalies:
        print("the data has anomalies and --fail-on-anomalies was given", file=sys.stderr)
        return 1
    if run.pushed_dir is None:
        print("the model was not blessed, so nothing was pushed", file=sys.stderr)
        return 1
    print(f"pushed SavedModel (TF Serving layout): {run.pushed_dir}")
    if args.score:
        rows = runners.score_examples(run.pushed_dir, run.data_root, spec, args.score)
        print(f"\n== serving_default on {len(rows)} held-out examples of {run.data_root}/eval ==")
        for row in rows:
            print("  ".join(f"{k}={'-' if v is None else format(v, '.3f')}" for k, v in row.items()))
    if args.query_server:
        _query_served_model(run.pushed_dir, run.data_root, args.model_name or spec.default_model_name, spec)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"blessed": blessed, "metrics": table, "pushed_dir": run.pushed_dir,
                       "keras_model": run.keras_model_path, "evaluation_dir": run.evaluation_dir}, f, indent=1)
    return 0


def _query_served_model(pushed_dir: str, data_root: str, model_name: str, spec: Any) -> None:
    """Starts the TF-Serving-compatible server on the pushed model, queries it over gRPC with
    the client and checks the answer against the in-process signature, then stops it."""
    import glob

    import numpy as np
    import tensorflow as tf

    from tfjoint.serving.client import ServingClient
    from tfjoint.serving.server import serve_in_background

    files = sorted(glob.glob(os.path.join(data_root, "eval", "*")))
    examples = [r.numpy() for r in tf.data.TFRecordDataset(files).take(4)]
    base_path = os.path.dirname(pushed_dir)
    with serve_in_background(model_name=model_name, model_base_path=base_path, port=0, rest_api_port=0) as server:
        print(f"\n== TF Serving API: {model_name} at gRPC {server.grpc_target}, REST {server.rest_url} ==")
        client = ServingClient(server.grpc_target, model_name)
        client.wait_until_available()
        served = client.predict(examples)
    local = tf.saved_model.load(pushed_dir).signatures["serving_default"](examples=tf.constant(examples))
    for task in spec.label_keys:
        np.testing.assert_allclose(served[task], local[task].numpy(), atol=1e-6)
        print(f"{task:>12}: " + "  ".join(f"{v:.3f}" for v in np.ravel(served[task])))
    print("gRPC Predict matches the in-process signature; server stopped")


def cmd_pipeline_compile(args: argparse.Namespace) -> int:
    if args.runner != "kubeflow":
        raise SystemExit(f"--runner must be 'kubeflow'. Received: {args.runner!r}")
    _check_model(args.model)
    args.data = args.data_root = None  # a compiled job reads its data root at run time
    spec = _run_spec(args, command="compile")[0] if args.spec else (args.dataset or "movielens-100k")
    hparams = _hparams(args)
    from tfjoint.pipeline import runners

    try:
        path = runners.compile_kubeflow(
            output=args.output,
            dataset=spec,
            model=args.model,
            pipeline_root=args.pipeline_root,
            data_root=args.job_data_root,
            serving_dir=args.serving_dir,
            model_name=args.model_name,
            image=args.image,
            hparams=hparams,
            beam_args=args.beam_args,
            beam_workers=args.beam_workers,
            trainer_workers=args.trainer_workers,
            vertex_project=args.vertex_project,
            vertex_region=args.vertex_region,
            schema_file=args.schema,
        )
    except ValueError as e:  # checked before anything is compiled
        print(f"tfjoint pipeline compile: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tfjoint import catalog

    entries = catalog.entries(args.slot)
    if not entries:
        from tfjoint.registry import SLOTS

        raise SystemExit(f"tfjoint models: error: --slot {args.slot!r} is not a slot; choose from {list(SLOTS)}")
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=1))
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name.ljust(width)}  {e.slot:<18} {e.family:<15} {e.reference}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from tfjoint.datasets import write_dataset

    try:
        print(f"wrote {write_dataset(args.dataset, args.output)}")
    except OSError as e:
        raise SystemExit(f"tfjoint data: error: cannot write --output {args.output}: {e}") from None
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from tfjoint.features import schema
    from tfjoint.features import DATASETS as specs

    if args.spec:  # a user's spec: its schema on stdout, to curate and pass to `pipeline run --schema`
        from tfjoint.features.spec_file import load_spec_file

        print(schema.schema_text(load_spec_file(args.spec)[0]), end="")
        return 0
    if args.check:
        stale = [s.name for s in specs.values()
                 if not schema.schema_path(s).exists() or schema.schema_path(s).read_text() != schema.schema_text(s)]
        if stale:
            print(f"stale schemas (run `tfjoint schema`): {stale}", file=sys.stderr)
            return 1
        print("schemas match tfjoint/features/")
        return 0
    for path in schema.write_schemas():
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfjoint", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    pipeline = sub.add_parser("pipeline", help="run or compile the TFX pipeline")
    pipeline_sub = pipeline.add_subparsers(dest="pipeline_command", required=True)
    run = pipeline_sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, Beam DirectRunner)")
    _add_pipeline_args(run)
    run.add_argument("--pipeline-root", default="runs/pipeline")
    run.add_argument("--serving-dir", default="runs/serving")
    run.add_argument("--model-name", help="served model name (default: the dataset name)")
    run.add_argument("--data-root", help="existing train/ and eval/ TFRecords (default: written under the pipeline root)")
    run.add_argument("--spec", help="your own dataset spec file, YAML or JSON (docs/your_data.md); instead of --dataset")
    run.add_argument("--data", metavar="GLOB", help="your CSV, Parquet or TFRecord (tf.Example) files, e.g. 'data/*.csv', checked against the spec "
                     "and converted to tf.Example under the pipeline root before any component runs")
    run.add_argument("--schema", help="a curated TFMD schema (.pbtxt) for ImportSchemaGen (default: generated from the spec)")
    run.set_defaults(dataset=None)  # --dataset and --spec exclude each other; movielens-100k when neither
    run.add_argument("--score", type=int, default=5, help="held-out examples to score through the pushed model")
    run.add_argument("--json", help="also write the metrics and paths to this JSON file")
    run.add_argument("--fail-on-anomalies", action="store_true",
                     help="exit 1 when ExampleValidator found anomalies (they are always printed)")
    run.add_argument("--enable-cache", action="store_true",
                     help="TFX caching: components whose inputs are unchanged since a run in the same "
                     "--pipeline-root reuse its outputs (off by default: an edit of tfjoint's code is not seen)")
    run.add_argument("--query-server", action="store_true",
                     help="serve the pushed model over the TF Serving API and query it with the gRPC client")
    run.set_defaults(func=cmd_pipeline_run)

    from tfjoint.pipeline.retrieval.cli import add_parser as add_retrieval_parser

    add_retrieval_parser(pipeline_sub)

    comp = pipeline_sub.add_parser(
        "compile", help="compile the pipeline for an orchestrator",
        description="Writes a Kubeflow Pipelines V2 job for the image the repository's Dockerfile builds. "
                    "data_root, epochs and model are runtime parameters (--data-root, --epochs and --model "
                    "give their defaults); nothing of this machine's paths is embedded.")
    _add_pipeline_args(comp)
    comp.add_argument("--runner", default="kubeflow", help="only 'kubeflow' (Kubeflow Pipelines V2)")
    comp.add_argument("--output", required=True, help="PipelineJob JSON file to write")
    comp.add_argument("--pipeline-root", default="gs://YOUR_BUCKET/tfjoint/pipeline_root")
    comp.add_argument("--data-root", dest="job_data_root", default="gs://YOUR_BUCKET/tfjoint/data",
                      help="train/ and eval/ TFRecords (default of the data_root runtime parameter)")
    comp.add_argument("--serving-dir", default="gs://YOUR_BUCKET/tfjoint/serving")
    comp.add_argument("--model-name", help="served model name: the Pusher writes <serving-dir>/<name>/<version>/ "
                      "(default: the dataset name)")
    comp.add_argument("--image", default=DEFAULT_IMAGE,
                      help="the image built from the repository's Dockerfile, pushed to your registry")
    comp.add_argument("--trainer-workers", type=int, help="run the Trainer as a Vertex AI job of N workers "
                      "(MultiWorkerMirroredStrategy); needs --vertex-project")
    comp.add_argument("--vertex-project", help="GCP project of the Vertex AI training job")
    comp.add_argument("--vertex-region", default="us-central1", help="region of the Vertex AI training job")
    comp.add_argument("--spec", help="your own dataset spec file (docs/your_data.md); it travels in the job, "
                      "whose data root holds its train/ and eval/ TFRecords; needs --schema")
    comp.add_argument("--schema", help="the schema ImportSchemaGen reads where the job runs (gs://...; "
                      "`tfjoint schema --spec FILE` writes it); default: the image's, for built-in datasets")
    comp.set_defaults(func=cmd_pipeline_compile, dataset=None)

    models = sub.add_parser("models", help="list the registered models and components")
    models.add_argument("--json", action="store_true", help="print a JSON list of {name, family, reference, ...}")
    models.add_argument("--slot", help="only this slot")
    models.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="write a dataset as train/ and eval/ TFRecords of tf.Example")
    data.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    data.add_argument("--output", required=True)
    data.set_defaults(func=cmd_data)

    from tfjoint.bench.cli import add_bench_parser
    from tfjoint.serving.cli import add_predict_parser, add_serve_parser

    add_serve_parser(sub)
    add_predict_parser(sub)
    add_bench_parser(sub)

    schema = sub.add_parser("schema", help="write tfjoint/schemas/*.pbtxt from the specs in tfjoint/features/")
    schema.add_argument("--check", action="store_true", help="only check that the files are up to date")
    schema.add_argument("--spec", help="print the schema of your own spec file instead (YAML or JSON)")
    schema.set_defaults(func=cmd_schema)
    return parser


DEBUG_ENV = "TFJOINT_DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; an error it did not report itself is one line on stderr and exit
    code 2, unless ``--debug`` (or ``TFJOINT_DEBUG=1``) asks for the traceback."""

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, OSError) as e:
        if args.debug or os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"tfjoint {args.command}: error: {e} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
