"""``tfjoint bench train``: training speed on an AliExpress-shaped synthetic workload.

The workload of issue 17, on which tfjoint was compared with DeepCTR and torch-rechub:
16 categorical features (vocabularies from 1k to 100k, log-spaced, ids drawn with a
power law so that a batch reads a few thousand rows of each table), 63 numeric features,
click and conversion (a child of click); batch 2048, Adam 1e-3, embedding dim 16. The
models: MMoE (8 experts [256, 128], towers [64]), PLE (2 levels, 2 shared + 2 per-task
experts [256, 128], towers [64]) and ESMM (towers [256, 128, 64]), each as

- ``default``: :func:`~tfjoint.joint.build_joint_model`'s defaults: every numeric feature
  an embedded field ``x_j v_j``, the scenario an embedded field, no BatchNorm;
- ``peer``: the model DeepCTR and torch-rechub train: numerics fed raw
  (``numeric="raw"``), no scenario field, BatchNorm in every MLP layer;

and each trained with Keras's Adam and with :class:`~tfjoint.joint.optimizers.LazyAdam`
(row-wise embedding updates), in float32 and, with ``precisions``, under a mixed-precision
policy (:mod:`tfjoint.joint.precision`). Every configuration is built and warmed up first (its
training step traced), then timed over one epoch per repeat, the configurations taking
turns within each repeat (interleaved), so a slower or busier minute hits them alike.

Beside training examples per second, it reports the matmul rate measured in the same
process (:func:`matmul_rate`, before and after the training, the better of the two; fp32, and
bf16 or fp16 for a mixed-precision configuration), each model's dense-matmul FLOPs per training example
(:func:`training_flops_per_example`) and so the fraction of that rate reached, and the
input pipeline alone (one epoch of the same ``tf.data`` pipeline, no model).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfjoint import features
from tfjoint.features import ALIEXPRESS_SAMPLE
from tfjoint.joint import JointModel, LazyAdam, build_joint_model
from tfjoint.joint.precision import PRECISIONS

SPEC = ALIEXPRESS_SAMPLE
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "mmoe": {"num_experts": 8, "expert_units": [256, 128], "tower_units": [64]},
    "ple": {"num_levels": 2, "num_shared_experts": 2, "num_task_experts": 2, "expert_units": [256, 128],
            "tower_units": [64]},
    "esmm": {"tower_units": [256, 128, 64]},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "peer": {"numeric": "raw", "scenario_field": False, "batch_norm": True},
}
OPTIMIZERS = ("adam", "lazy_adam")


@dataclasses.dataclass(frozen=True)
class Workload:
    """Sizes of the synthetic workload and of the training run."""

    rows: int = 50_000
    batch_size: int = 2048
    learning_rate: float = 1e-3
    embedding_dim: int = 16
    min_vocab: int = 1_000
    max_vocab: int = 100_000
    repeats: int = 1
    warmup_steps: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rows", "batch_size", "embedding_dim", "min_vocab", "max_vocab", "repeats", "warmup_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.min_vocab > self.max_vocab:
            raise ValueError(f"min_vocab must be <= max_vocab. Received: {self.min_vocab} > {self.max_vocab}")

    def vocab_sizes(self) -> dict[str, int]:
        sizes = np.geomspace(self.min_vocab, self.max_vocab, len(SPEC.categorical)).round().astype(int)
        return {k: int(v) for k, v in zip(SPEC.categorical, sizes)}


def synthetic_data(workload: Workload) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(x, y)``: transformed features (ids ``1..V``, z-scored numerics, one scenario) and
    click/conversion labels that depend on a few ids and numerics (about 20% clicks, 25% of
    them converting)."""
    rng = np.random.default_rng(workload.seed)
    n = workload.rows
    x: dict[str, np.ndarray] = {}
    signal = np.zeros(n)
    for i, (key, size) in enumerate(workload.vocab_sizes().items()):
        ids = np.floor(size * rng.random(n) ** 3).astype(np.int64) + 1  # power law: low ids common
        x[key] = ids[:, None]
        if i < 4:
            signal += rng.normal(size=size + 2)[ids] * 0.5
    dense = rng.normal(size=(n, len(SPEC.dense))).astype(np.float32)
    for j, key in enumerate(SPEC.dense):
        x[key] = dense[:, j : j + 1]
    x[features.SCENARIO_KEY] = np.zeros((n, 1), np.int64)
    signal += dense[:, :8] @ rng.normal(size=8) * 0.3
    click = rng.random(n) < 1 / (1 + np.exp(-(signal - 1.5)))
    conversion = click & (rng.random(n) < 1 / (1 + np.exp(-(signal - 1.0))))
    return x, {"click": click.astype(np.float32)[:, None], "conversion": conversion.astype(np.float32)[:, None]}


def input_pipeline(x: dict[str, np.ndarray], y: dict[str, np.ndarray], batch_size: int) -> tf.data.Dataset:
    """The training input: whole batches sliced from the in-memory columns (as Keras's array
    adapter does; a remainder smaller than a batch is dropped, so every step has one
    shape), prefetched so that it runs beside the training step."""
    columns = tf.nest.map_structure(tf.constant, (x, y))
    steps = len(next(iter(x.values()))) // batch_size

    def batch(i: Any) -> Any:
        return tf.nest.map_structure(lambda column: column[i * batch_size : (i + 1) * batch_size], columns)

    return tf.data.Dataset.range(steps).map(batch).prefetch(tf.data.AUTOTUNE)


def spec_for(architecture: str, variant: str) -> features.DatasetSpec:
    """The tasks ``variant`` of ``architecture`` trains. The peers' MMoE and PLE (DeepCTR,
    torch-rechub) fit conversion on every row, as a task of its own; so does the ``peer``
    variant of every architecture that does not model the click -> conversion cascade itself
    (all but ESMM), while the ``default`` one fits conversion on clicked rows only
    (``parent="click"``). Under BatchNorm that restriction alone costs MMoE about .03 click
    AUC in one epoch (docs/training_speed.md, "BatchNorm and the embedding tables")."""
    if variant != "peer" or architecture == "esmm":
        return SPEC
    return dataclasses.replace(SPEC, tasks=tuple(dataclasses.replace(t, parent=None) for t in SPEC.tasks))


def build_model(architecture: str, variant: str, workload: Workload, precision: str | None = None) -> JointModel:
    """The ``variant`` (``default`` or ``peer``) of ``architecture`` with the workload's sizes,
    built with the dtype policy ``precision`` (``None``: Keras's global one)."""
    return build_joint_model(
        spec_for(architecture, variant),
        workload.vocab_sizes(),
        task_architecture=architecture,
        embedding_dim=workload.embedding_dim,
        component_kwargs={"task_architecture": ARCHITECTURES[architecture]},
        precision=precision,
        **VARIANTS[variant],
    )


def forward_flops_per_example(model: keras.Model) -> int:
    """Dense-matmul FLOPs of one example's forward pass: ``2 * inputs * units`` for every
    ``Dense`` layer of ``model`` (each counted once, however deep it is nested). Embedding
    lookups, activations, normalization and the gates' expert mix (``n * d`` multiply-adds
    per gate) are left out: they are a fraction of a percent of it here."""
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dense):
            inputs, units = layer.kernel.shape
            total += 2 * int(inputs) * int(units)
    return total


def training_flops_per_example(model: keras.Model) -> int:
    """Three times :func:`forward_flops_per_example`: the forward matmul, the gradient with
    respect to its input and the one with respect to its kernel (the input gradient of the
    first layer is needed too, for the embeddings)."""
    return 3 * forward_flops_per_example(model)


def matmul_rate(size: int = 1024, repeats: int = 5, dtype: str = "float32") -> float:
    """Matmul GFLOP/s of this process in ``dtype``: the best of ``repeats`` timings of 10
    chained ``size`` x ``size`` products in one traced function."""
    a = tf.cast(tf.random.normal((size, size), seed=1), dtype)
    b = tf.cast(tf.random.normal((size, size), seed=2) / size**0.5, dtype)

    @tf.function
    def chain(x: Any) -> Any:
        for _ in range(10):
            x = tf.matmul(x, b)
        return x

    chain(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        chain(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 10 * 2 * size**3 / best / 1e9


def pipeline_seconds(dataset: tf.data.Dataset) -> float:
    """Seconds to draw every batch of ``dataset`` once, with no model."""
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def _compute_dtype(precision: str) -> str:
    return precision.removeprefix("mixed_")


def run_train_bench(
    workload: Workload = Workload(),
    architectures: Sequence[str] = tuple(ARCHITECTURES),
    variants: Sequence[str] = tuple(VARIANTS),
    optimizers: Sequence[str] = OPTIMIZERS,
    verbose: bool = False,
    precisions: Sequence[str] = ("float32",),
) -> dict[str, Any]:
    """Runs the bench; returns ``{"workload", "matmul_gflops", "pipeline", "results"}`` with
    one result per (architecture, variant, optimizer, precision): examples/s per repeat, ms
    per step, training GFLOP per example, achieved GFLOP/s and the fraction of the matmul
    rate of its compute dtype (``matmul_gflops_by_dtype``; ``matmul_gflops`` is fp32's)."""
    for name, chosen, known in [("architectures", architectures, ARCHITECTURES), ("variants", variants, VARIANTS),
                                ("optimizers", optimizers, OPTIMIZERS), ("precisions", precisions, PRECISIONS)]:
        unknown = [c for c in chosen if c not in known]
        if unknown or not chosen:
            raise ValueError(f"{name} must be among {list(known)}. Received: {list(chosen)}")
    dtypes = sorted({"float32", *(_compute_dtype(p) for p in precisions)})
    rates = {d: [matmul_rate(dtype=d)] for d in dtypes}
    x, y = synthetic_data(workload)
    dataset = input_pipeline(x, y, workload.batch_size)
    steps = workload.rows // workload.batch_size
    if steps < 1:
        raise ValueError(f"rows must be at least one batch. Received: rows={workload.rows} < {workload.batch_size}")
    examples = steps * workload.batch_size
    runs = []
    for architecture, variant, optimizer, precision in itertools.product(architectures, variants, optimizers, precisions):
        keras.utils.set_random_seed(workload.seed)
        model = build_model(architecture, variant, workload, precision)
        adam = LazyAdam if optimizer == "lazy_adam" else keras.optimizers.Adam
        model.compile(optimizer=adam(workload.learning_rate))
        start = time.perf_counter()
        model.fit(dataset.take(workload.warmup_steps), epochs=1, verbose=0)
        if verbose:
            print(f"built and warmed up {architecture}/{variant}/{optimizer}/{precision} "
                  f"in {time.perf_counter() - start:.1f}s", flush=True)
        runs.append({"architecture": architecture, "variant": variant, "optimizer": optimizer,
                     "precision": precision, "model": model, "seconds": [], "history": {}})
    pipeline = [pipeline_seconds(dataset)]
    for repeat in range(workload.repeats):
        for run in runs:
            start = time.perf_counter()
            history = run["model"].fit(dataset, epochs=1, verbose=0).history
            run["seconds"].append(time.perf_counter() - start)
            run["history"] = {k: float(v[-1]) for k, v in history.items() if k.endswith(("_auc", "loss"))}
            if verbose:
                print(f"repeat {repeat + 1}: {run['architecture']}/{run['variant']}/{run['optimizer']}/{run['precision']} "
                      f"{examples / run['seconds'][-1]:,.0f} examples/s", flush=True)
        pipeline.append(pipeline_seconds(dataset))
    for d in dtypes:
        rates[d].append(matmul_rate(dtype=d))
    rate = {d: max(r) for d, r in rates.items()}  # the best of before and after: a busy machine only lowers it
    results = []
    for run in runs:
        flops = training_flops_per_example(run["model"])
        best = min(run["seconds"])
        achieved = examples / best * flops / 1e9
        results.append({
            "architecture": run["architecture"], "variant": run["variant"], "optimizer": run["optimizer"],
            "precision": run["precision"],
            "examples_per_second": [examples / s for s in run["seconds"]],
            "ms_per_step": 1000 * best / steps,
            "input_width": _input_width(run["model"]),
            "params": int(run["model"].count_params()),
            "train_gflop_per_example": flops / 1e9,
            "achieved_gflops": achieved,
            "fraction_of_matmul_rate": achieved / rate[_compute_dtype(run["precision"])],
            "train_metrics": run["history"],
        })
    return {
        "workload": dataclasses.asdict(workload),
        "steps_per_epoch": steps,
        "matmul_gflops": rate["float32"],
        "matmul_gflops_before_after": rates["float32"],
        "matmul_gflops_by_dtype": rate,
        "pipeline": {"ms_per_batch": 1000 * min(pipeline) / steps,
                     "examples_per_second": examples / min(pipeline)},
        "results": results,
    }


def _input_width(model: keras.Model) -> int:
    """The width of the task architecture's input ``E_merge`` (the flattened fields, and
    the raw numerics when they are fed raw)."""
    return int(sum(t.shape[-1] for t in keras.tree.flatten(model.task_architecture.input)))


def format_report(report: dict[str, Any]) -> str:
    """The results as a Markdown table, with the matmul rate and the input pipeline."""
    w = report["workload"]
    lines = [
        f"workload: {w['rows']:,} rows, batch {w['batch_size']}, Adam {w['learning_rate']:g}, dim "
        f"{w['embedding_dim']}, vocabularies {w['min_vocab']:,}-{w['max_vocab']:,}, {w['repeats']} repeat(s), "
        f"{report['steps_per_epoch']} steps per epoch",
        "matmul rate (this process): " + ", ".join(
            f"{d} {g:.1f} GFLOP/s" for d, g in report.get("matmul_gflops_by_dtype", {"float32": report["matmul_gflops"]}).items()
        ),
        f"input pipeline alone: {report['pipeline']['ms_per_batch']:.1f} ms per batch "
        f"({report['pipeline']['examples_per_second']:,.0f} examples/s)",
        "",
        "| model | variant | optimizer | precision | input width | examples/s | ms/step | train GFLOP/example "
        "| GFLOP/s | of matmul rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        speeds = " / ".join(f"{s:,.0f}" for s in r["examples_per_second"])
        lines.append(
            f"| {r['architecture']} | {r['variant']} | {r['optimizer']} | {r.get('precision', 'float32')} | "
            f"{r['input_width']} | {speeds} | "
            f"{r['ms_per_step']:.1f} | {r['train_gflop_per_example'] * 1e3:.2f}e-3 | {r['achieved_gflops']:.1f} | "
            f"{r['fraction_of_matmul_rate']:.0%} |"
        )
    speeds = {(r["architecture"], r["variant"], r["optimizer"], r.get("precision", "float32")):
              r["examples_per_second"] for r in report["results"]}
    speedups = [f"- {a} {v} {o} {p}: {max(speed) / max(speeds[(a, 'default', 'adam', 'float32')]):.2f}x"
                for (a, v, o, p), speed in speeds.items()
                if (a, "default", "adam", "float32") in speeds and (v, o, p) != ("default", "adam", "float32")]
    if speedups:
        lines += ["", "speed-up over the default float32 model with Adam (best repeat):", *speedups]
    # Each repeat's mixed-precision epoch ran next to its float32 one: one ratio per repeat.
    mixed = [(key, [m / f for m, f in zip(speed, speeds[(*key[:3], "float32")])])
             for key, speed in speeds.items() if key[3] != "float32" and (*key[:3], "float32") in speeds]
    if mixed:
        lines += ["", "mixed precision over float32, same model and optimizer (per repeat; median):"]
        lines += [f"- {a} {v} {o} {p}: " + " / ".join(f"{x:.2f}" for x in ratios) + f"; median {np.median(ratios):.2f}x"
                  for (a, v, o, p), ratios in mixed]
    return "\n".join(lines)
