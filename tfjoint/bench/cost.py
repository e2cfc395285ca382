"""A cost model for 1e9 examples a day, from CPU-seconds per example measured here (issue 18).

::

    tfjoint pipeline run --dataset movielens-100k --epochs 1 --pipeline-root runs/cost > runs/cost.log
    python -m tfjoint.bench.cost --pipeline-root runs/cost --log runs/cost.log --json runs/cost.json

Four per-example costs, each in CPU-seconds per million examples, each from one command:

- **Transform** and **Evaluator**: the CPU the pipeline run spent in that component (the
  ``[tfjoint] Transform done in .. s (CPU .. s)`` line of ``pipeline run``, process and
  finished worker processes), over the examples it read (Transform: train + eval; Evaluator:
  eval);
- **training**: one pass of the run's own Keras model (``model.keras``) over its transformed
  training split, in this process (CPU from ``getrusage``, after one warm-up batch);
- **serving**: the pushed SavedModel's ``serving_default`` (parse, transform, model) on the
  held-out ``tf.Example`` records, in batches of ``--serve-batch``, in this process.

CPU-seconds, not wall seconds: they are what a busy, shared machine still measures fairly,
and what a cloud bill counts (a vCPU-second of a Dataflow or GKE machine is taken as one
CPU-second here: an assumption, printed with the model).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
from typing import Any

DAILY_EXAMPLES = 1e9
COMPONENT_LINE = re.compile(r"\[tfjoint\] (\w+) done in (\d+) s \(CPU (\d+) s\)")


def cpu_now() -> float:
    """CPU-seconds of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def component_seconds(log_text: str) -> dict[str, tuple[int, int]]:
    """``{component: (wall s, CPU s)}`` from the progress lines of ``tfjoint pipeline run``."""
    return {m.group(1): (int(m.group(2)), int(m.group(3))) for m in COMPONENT_LINE.finditer(log_text)}


def count_records(pattern: str) -> int:
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files match {pattern}")
    return int(sum(1 for _ in tf.data.TFRecordDataset(files)))


def newest(pattern: str) -> str:
    """The newest path matching ``pattern`` (a component's latest output)."""
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        raise FileNotFoundError(f"nothing matches {pattern}: is this a finished pipeline root?")
    return found[-1]


def train_cpu_per_example(pipeline_root: str, spec: Any, examples: int, batch_size: int) -> float:
    """CPU-seconds per example of ``fit`` on the run's model and its transformed training data."""
    import keras
    import tensorflow as tf
    import tensorflow_transform as tft

    from tfjoint.pipeline.runners import run_outputs
    from tfjoint.pipeline.trainer import KERAS_MODEL_FILENAME
    from tfjoint.pipeline.transform import transformed_dataset

    outputs = run_outputs(os.path.join(pipeline_root, "metadata.sqlite"))
    model = keras.saving.load_model(os.path.join(outputs["model_run"], KERAS_MODEL_FILENAME))
    output = tft.TFTransformOutput(outputs["transform_graph"])
    files = sorted(glob.glob(os.path.join(pipeline_root, "data", spec.name, "train", "*")))
    keys = list(model.inputs_spec)  # what the Trainer feeds the model (the rest are labels)
    data = transformed_dataset(output, files, spec, batch_size=batch_size).take(max(1, examples // batch_size))
    data = data.map(lambda x, y: ({k: x[k] for k in keys}, y)).cache()  # the transform once, outside the timed pass: training alone
    for _ in data:
        pass
    model.compile(optimizer=keras.optimizers.Adam(1e-3))  # as the Trainer compiles it
    model.fit(data.take(1), epochs=1, verbose=0)  # traces the step
    start, n = cpu_now(), sum(int(tf.shape(y[spec.label_keys[0]])[0]) for _, y in data)
    model.fit(data, epochs=1, verbose=0)
    return (cpu_now() - start) / n


def serve_cpu_per_example(pushed_dir: str, data_root: str, examples: int, batch_size: int) -> float:
    """CPU-seconds per example of the SavedModel's ``serving_default`` on raw records."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(data_root, "eval", "*")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files).take(examples)]
    batches = [tf.constant(records[i:i + batch_size]) for i in range(0, len(records), batch_size)]
    signature = tf.saved_model.load(pushed_dir).signatures["serving_default"]
    signature(examples=batches[0])  # warm-up
    start = cpu_now()
    for batch in batches:
        signature(examples=batch)
    return (cpu_now() - start) / len(records)


def model(per_million: dict[str, float], daily: float = DAILY_EXAMPLES, window_h: float = 6.0,
          vcpus: int = 4, train_vcpus: int = 8, workers: int = 4, efficiency: float = 0.7,
          epochs: int = 1, peak: float = 3.0, utilization: float = 0.5) -> dict[str, Any]:
    """Machines and hours for ``daily`` examples a day from CPU-seconds per million examples.

    - Beam (Transform + Evaluator, Dataflow): vCPU-hours = cost x daily / 1e6 / 3600; workers of
      ``vcpus`` vCPUs to finish in ``window_h`` hours.
    - Training: ``epochs`` passes on ``workers`` machines of ``train_vcpus`` vCPUs, each
      keeping ``efficiency`` of its CPUs busy on the step (all-reduce and input waits take
      the rest: an assumption; on one 2-core box two workers were slower, docs/scale.md).
    - Serving ``daily`` predictions: the mean rate times ``peak``, on replicas of
      ``train_vcpus`` vCPUs at ``utilization`` target load.
    """
    scale = daily / 1e6
    out: dict[str, Any] = {"daily_examples": daily, "assumptions": {
        "window_h": window_h, "dataflow_vcpus_per_worker": vcpus, "train_vcpus_per_worker": train_vcpus,
        "train_workers": workers, "train_efficiency": efficiency, "epochs": epochs,
        "serving_peak_to_mean": peak, "serving_target_utilization": utilization,
        "one vCPU-second there = one CPU-second here": True}}
    for stage in ("transform", "evaluator"):
        vcpu_h = per_million[stage] * scale / 3600
        out[stage] = {"vcpu_hours": vcpu_h, "dataflow_workers": vcpu_h / (vcpus * window_h)}
    train_vcpu_h = per_million["training"] * scale * epochs / 3600
    out["training"] = {"vcpu_hours": train_vcpu_h, "hours": train_vcpu_h / (workers * train_vcpus * efficiency)}
    mean_rate = daily / 86400
    serve_vcpus = mean_rate * peak * per_million["serving"] / 1e6 / utilization
    out["serving"] = {"mean_examples_per_s": mean_rate, "vcpus": serve_vcpus, "replicas": serve_vcpus / train_vcpus,
                      "vcpu_hours": mean_rate * per_million["serving"] / 1e6 * 24}
    return out


def format_model(per_million: dict[str, float], sources: dict[str, str], out: dict[str, Any]) -> str:
    a = out["assumptions"]
    lines = ["| stage | CPU-s per 1M examples | measured by | for 1e9 examples/day |", "|---|---|---|---|"]
    for stage in ("transform", "evaluator"):
        lines.append(f"| {stage.capitalize()} | {per_million[stage]:,.0f} | {sources[stage]} | "
                     f"{out[stage]['vcpu_hours']:,.0f} vCPU-h: {out[stage]['dataflow_workers']:,.1f} Dataflow workers "
                     f"x {a['dataflow_vcpus_per_worker']} vCPU for {a['window_h']:g} h |")
    t = out["training"]
    lines.append(f"| Training ({a['epochs']} epoch) | {per_million['training']:,.0f} | {sources['training']} | "
                 f"{t['vcpu_hours']:,.0f} vCPU-h: {t['hours']:,.1f} h on {a['train_workers']} workers x "
                 f"{a['train_vcpus_per_worker']} vCPU at {a['train_efficiency']:.0%} |")
    s = out["serving"]
    lines.append(f"| Serving | {per_million['serving']:,.0f} | {sources['serving']} | {s['mean_examples_per_s']:,.0f} "
                 f"predictions/s mean, x{a['serving_peak_to_mean']:g} peak: {s['replicas']:,.1f} replicas x "
                 f"{a['train_vcpus_per_worker']} vCPU at {a['serving_target_utilization']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline-root", required=True, help="a finished `tfjoint pipeline run`")
    parser.add_argument("--log", required=True, help="that run's output (its [tfjoint] ... CPU lines)")
    parser.add_argument("--dataset", default="movielens-100k", help="the run's --dataset (or --spec FILE)")
    parser.add_argument("--spec", help="the run's --spec file")
    parser.add_argument("--train-examples", type=int, default=40_000)
    parser.add_argument("--train-batch", type=int, default=256, help="the run's batch size")
    parser.add_argument("--serve-examples", type=int, default=4_096)
    parser.add_argument("--serve-batch", type=int, default=64)
    parser.add_argument("--train-workers", type=int, default=4)
    parser.add_argument("--window-hours", type=float, default=6.0)
    parser.add_argument("--json", help="also write the measured costs and the model here")
    args = parser.parse_args(argv)
    for name in ("train_examples", "train_batch", "serve_examples", "serve_batch", "train_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1. Received: {getattr(args, name)}")
    with open(args.log) as f:
        seconds = component_seconds(f.read())
    if "Transform" not in seconds or "Trainer" not in seconds:
        parser.error(f"--log {args.log} has no '[tfjoint] Transform/Trainer done in' line: give a run's output")
    from tfjoint.features import get_dataset_spec
    from tfjoint.features.spec_file import load_spec_file
    from tfjoint.pipeline.runners import run_outputs

    spec = load_spec_file(args.spec)[0] if args.spec else get_dataset_spec(args.dataset)
    data_root = os.path.join(args.pipeline_root, "data", spec.name)
    rows = {split: count_records(os.path.join(data_root, split, "*")) for split in ("train", "eval")}
    pushed = run_outputs(os.path.join(args.pipeline_root, "metadata.sqlite")).get("pushed_model") or newest(
        os.path.join(args.pipeline_root, "Trainer", "model", "*", "Format-Serving"))
    per_million = {
        "transform": seconds["Transform"][1] / (rows["train"] + rows["eval"]) * 1e6,
        "evaluator": seconds["Evaluator"][1] / rows["eval"] * 1e6 if "Evaluator" in seconds else float("nan"),
        "training": train_cpu_per_example(args.pipeline_root, spec, args.train_examples, args.train_batch) * 1e6,
        "serving": serve_cpu_per_example(pushed, data_root, args.serve_examples, args.serve_batch) * 1e6,
    }
    sources = {
        "transform": f"Transform CPU {seconds['Transform'][1]} s / {rows['train'] + rows['eval']:,} rows",
        "evaluator": (f"Evaluator CPU {seconds['Evaluator'][1]} s / {rows['eval']:,} rows" if "Evaluator" in seconds
                      else "not in the log (the run had not finished it)"),
        "training": f"fit, {args.train_examples:,} examples, batch {args.train_batch}",
        "serving": f"serving_default, {args.serve_examples:,} examples, batch {args.serve_batch}",
    }
    out = model(per_million, workers=args.train_workers, window_h=args.window_hours)
    print(f"== {spec.name}: {rows['train']:,} train + {rows['eval']:,} eval rows, {args.pipeline_root} ==")
    print(format_model(per_million, sources, out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"per_million_cpu_s": per_million, "sources": sources, "components": seconds,
                       "rows": rows, "model": out}, f, indent=1)


if __name__ == "__main__":
    main()
