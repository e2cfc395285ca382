"""Side by side: tfjoint, DeepCTR 0.9.4 and torch-rechub 0.9.0 on one workload (issue 17).

Not part of the package and not imported by it. Each framework trains in its own
subprocess (its own interpreter: tfjoint from the project's environment, the peers from a
scratch one), the frameworks taking turns within each repeat (interleaved), with 2 threads
each (TF intra/inter-op threads, ``torch.set_num_threads``).

The workload is ``tfjoint bench train``'s (:func:`tfjoint.bench.train.synthetic_data`):
16 categorical features (vocabularies 1k-100k), 63 numeric ones, click and conversion (a
child of click). ``prepare`` draws 200k training rows and 50k held-out rows once and saves
them as ``.npy``; every worker reads the same arrays. One epoch over the whole batches of
the training rows (97 x 2048 = 198,656 examples, no shuffle), batch 2048, Adam 1e-3,
embedding dim 16, after 3 warm-up steps (graph tracing) that are not timed. AUCs are on
the held-out rows: click, and conversion over the entire space (label click x conversion,
score p(click) x p(conversion | click), or the model's own ``pCTCVR`` output).

Timing protocol, the same for every framework: each step's end is recorded (a callback of
``fit`` for tfjoint and DeepCTR, the loop itself for torch-rechub); a worker's examples/s
is the median, over windows of 8 consecutive steps of the timed epoch (12 windows of the
97 steps), of the window's examples/s, so a load spike costs a window, not the epoch (the
whole epoch's rate is kept as ``epoch_examples_per_second``). Each repeat runs every model
and framework once, the framework order rotated by one each repeat (no framework always
first or last); the tables give every repeat, the median over repeats, the ratio of two
frameworks within each repeat and the median of those ratios.

``tfjoint-peer-bf16`` is ``tfjoint-peer`` built with ``precision="mixed_bfloat16"``.

Usage (see docs/training_speed.md)::

    python bench/peers/run_peers.py run --out /tmp/peers \\
        --tfjoint-python .venv/bin/python --peers-python /path/to/peers-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ("mmoe", "ple", "esmm")
FRAMEWORKS = ("tfjoint-peer", "tfjoint-peer-bf16", "tfjoint-default", "deepctr", "rechub")
OURS = {"tfjoint-peer": "peer", "tfjoint-peer-bf16": "peer-bf16", "tfjoint-default": "default"}
BATCH, LR, DIM, WARMUP, THREADS = 2048, 1e-3, 16, 3, 2
WINDOW = 8  # steps per throughput window: a worker's examples/s is the median over its windows
TRAIN_ROWS, TEST_ROWS = 200_000, 50_000


# --------------------------------------------------------------------------- data


def prepare(out: str) -> None:
    """Draws the workload with tfjoint's generator and saves it as ``.npy`` in ``out``."""
    import numpy as np

    from tfjoint.bench.train import SPEC, Workload, synthetic_data

    workload = Workload(rows=TRAIN_ROWS + TEST_ROWS)
    x, y = synthetic_data(workload)
    np.save(f"{out}/categorical.npy", np.concatenate([x[k] for k in SPEC.categorical], axis=1))
    np.save(f"{out}/dense.npy", np.concatenate([x[k] for k in SPEC.dense], axis=1))
    np.save(f"{out}/labels.npy", np.concatenate([y["click"], y["conversion"]], axis=1))
    meta = {"categorical": list(SPEC.categorical), "dense": list(SPEC.dense),
            "vocab_sizes": list(workload.vocab_sizes().values())}
    with open(f"{out}/meta.json", "w") as f:
        json.dump(meta, f)


def load(out: str, rows: int = TRAIN_ROWS):
    import numpy as np

    with open(f"{out}/meta.json") as f:
        meta = json.load(f)
    arrays = {k: np.load(f"{out}/{k}.npy") for k in ("categorical", "dense", "labels")}
    steps = rows // BATCH
    train = {k: v[: steps * BATCH] for k, v in arrays.items()}
    test = {k: v[TRAIN_ROWS:] for k, v in arrays.items()}
    return meta, train, test, steps


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def aucs(test, click, ctcvr) -> dict[str, float]:
    return {"click_auc": auc(test["labels"][:, 0], click), "ctcvr_auc": auc(test["labels"][:, 1], ctcvr)}


def throughput(start: float, ends: list[float], cpu_start: float) -> dict:
    """The timed epoch's speed from the end time of each step (``start``: before the first;
    ``cpu_start``: the process's CPU time then, ``time.process_time()``).

    ``examples_per_second`` is the median over windows of :data:`WINDOW` consecutive steps
    of that window's examples/s (a load spike slows a window or two, not the median; all
    windows are kept in ``window_examples_per_second``); ``epoch_examples_per_second`` the
    whole epoch's, first step to last; ``cores`` the process's CPU seconds over the epoch's
    wall seconds (at most :data:`THREADS`: below it, the threads waited or were not run)."""
    import numpy as np

    cpu = time.process_time() - cpu_start
    times = [start, *ends]
    bounds = list(range(0, len(ends) + 1, WINDOW)) if len(ends) >= WINDOW else [0, len(ends)]
    windows = [(b - a) * BATCH / (times[b] - times[a]) for a, b in zip(bounds, bounds[1:])]
    return {"examples_per_second": float(np.median(windows)), "windows": len(windows),
            "window_examples_per_second": [round(w) for w in windows],
            "epoch_examples_per_second": len(ends) * BATCH / (times[-1] - start), "seconds": times[-1] - start,
            "cpu_seconds": cpu, "cores": cpu / (times[-1] - start)}


def step_clock(keras_module):
    """A ``Callback`` of ``keras_module`` (Keras 3 or tf_keras) that records each step's end."""

    class StepClock(keras_module.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.ends.append(time.perf_counter())

    return StepClock()


# --------------------------------------------------------------------------- workers


def run_tfjoint(out: str, model_name: str, variant: str, optimizer: str, extra: dict, rows: int,
                precision: str = "float32") -> dict:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    import keras

    from tfjoint import features
    from tfjoint.bench import train as bench
    from tfjoint.joint import LazyAdam

    meta, train, test, steps = load(out, rows)

    def columns(part):
        x = {k: part["categorical"][:, i : i + 1].astype(np.int64) for i, k in enumerate(meta["categorical"])}
        x.update({k: part["dense"][:, j : j + 1].astype(np.float32) for j, k in enumerate(meta["dense"])})
        x[features.SCENARIO_KEY] = np.zeros((len(part["labels"]), 1), np.int64)
        return x

    x = columns(train)
    y = {"click": train["labels"][:, :1], "conversion": train["labels"][:, 1:]}
    workload = bench.Workload(rows=steps * BATCH)
    keras.utils.set_random_seed(0)
    variants = dict(bench.VARIANTS)
    variants["peer"] = {**variants["peer"], **extra}
    bench.VARIANTS.update(variants)
    model = bench.build_model(model_name, variant, workload, precision)
    adam = LazyAdam if optimizer == "lazy_adam" else keras.optimizers.Adam
    model.compile(optimizer=adam(LR))
    dataset = bench.input_pipeline(x, y, BATCH)
    model.fit(dataset.take(WARMUP), epochs=1, verbose=0)
    clock = step_clock(keras)
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=1, verbose=0, callbacks=[clock])
    speed = throughput(start, clock.ends, cpu_start)
    pred = model.predict(columns(test), batch_size=8192, verbose=0)
    click = np.ravel(pred["click"])
    conversion = np.ravel(pred["conversion"])
    if "conversion_joint" in pred:  # ESMM's own pCTCVR
        ctcvr = np.ravel(pred["conversion_joint"])
    elif bench.spec_for(model_name, variant).task("conversion").parent is None:  # as DeepCTR's output
        ctcvr = conversion
    else:  # p(click) x p(conversion | click)
        ctcvr = click * conversion
    return {**speed, "examples": steps * BATCH, "params": int(model.count_params()),
            **aucs(test, click, ctcvr), "version": f"tf {tf.__version__}, keras {keras.__version__}, {precision}"}


def run_deepctr(out: str, model_name: str, rows: int) -> dict:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    import deepctr
    from deepctr.feature_column import DenseFeat, SparseFeat
    from deepctr.models import ESMM, MMOE, PLE

    meta, train, test, steps = load(out, rows)
    columns = [SparseFeat(k, v + 1, embedding_dim=DIM) for k, v in zip(meta["categorical"], meta["vocab_sizes"])]
    columns += [DenseFeat(k, 1) for k in meta["dense"]]
    tf.random.set_seed(0)
    common = {"dnn_use_bn": True, "task_names": ("click", "conversion")}
    if model_name == "mmoe":
        model = MMOE(columns, num_experts=8, expert_dnn_hidden_units=(256, 128), tower_dnn_hidden_units=(64,), **common)
    elif model_name == "ple":
        model = PLE(columns, shared_expert_num=2, specific_expert_num=2, num_levels=2,
                    expert_dnn_hidden_units=(256, 128), tower_dnn_hidden_units=(64,), **common)
    else:
        model = ESMM(columns, tower_dnn_hidden_units=(256, 128, 64), **common)
    import tf_keras  # DeepCTR is Keras 2 (TF_USE_LEGACY_KERAS=1 in the peers environment): its optimizer too

    model.compile(tf_keras.optimizers.Adam(LR), loss=["binary_crossentropy", "binary_crossentropy"])

    def inputs(part, rows=None):
        rows = slice(None) if rows is None else slice(0, rows)
        x = {k: part["categorical"][rows, i].astype(np.int32) for i, k in enumerate(meta["categorical"])}
        x.update({k: part["dense"][rows, j].astype(np.float32) for j, k in enumerate(meta["dense"])})
        return x, [part["labels"][rows, 0], part["labels"][rows, 1]]

    x, y = inputs(train)
    wx, wy = inputs(train, WARMUP * BATCH)
    model.fit(wx, wy, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    clock = step_clock(tf_keras)
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    speed = throughput(start, clock.ends, cpu_start)
    click, ctcvr = model.predict(inputs(test)[0], batch_size=8192, verbose=0)
    return {**speed, "examples": steps * BATCH, "params": int(model.count_params()),
            **aucs(test, np.ravel(click), np.ravel(ctcvr)),
            "version": f"deepctr {deepctr.__version__}, tf {tf.__version__} (legacy Keras)"}


def run_rechub(out: str, model_name: str, rows: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(THREADS)
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import ESMM, MMOE, PLE

    meta, train, test, steps = load(out, rows)
    torch.manual_seed(0)
    sparse = [SparseFeature(k, v + 1, embed_dim=DIM) for k, v in zip(meta["categorical"], meta["vocab_sizes"])]
    tasks = ["classification", "classification"]
    towers = [{"dims": [64]}, {"dims": [64]}]
    edges = None
    if model_name == "mmoe":
        model = MMOE(sparse + [DenseFeature(k) for k in meta["dense"]], tasks, n_expert=8,
                     expert_params={"dims": [256, 128]}, tower_params_list=towers)
    elif model_name == "ple":
        model = PLE(sparse + [DenseFeature(k) for k in meta["dense"]], tasks, n_level=2, n_expert_specific=2,
                    n_expert_shared=2, expert_params={"dims": [256, 128]}, tower_params_list=towers)
    else:
        # torch-rechub's ESMM takes sparse features only: numerics bucketised into 64 bins.
        edges = np.quantile(train["dense"], np.linspace(0, 1, 65)[1:-1], axis=0)
        buckets = [SparseFeature(k, 64, embed_dim=DIM) for k in meta["dense"]]
        model = ESMM(sparse[:8], sparse[8:] + buckets, cvr_params={"dims": [256, 128, 64]},
                     ctr_params={"dims": [256, 128, 64]})

    def inputs(part):
        x = {k: torch.from_numpy(part["categorical"][:, i].astype(np.int64)) for i, k in enumerate(meta["categorical"])}
        for j, k in enumerate(meta["dense"]):
            column = part["dense"][:, j]
            if edges is None:
                x[k] = torch.from_numpy(column.astype(np.float32))
            else:
                x[k] = torch.from_numpy(np.searchsorted(edges[:, j], column).astype(np.int64))
        return x

    def predict(batch):
        out = model(batch)
        return (out[:, 1], out[:, 2]) if model_name == "esmm" else (out[:, 0], out[:, 1])

    x = inputs(train)
    labels = torch.from_numpy(train["labels"].astype(np.float32))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    bce = torch.nn.functional.binary_cross_entropy

    def step(i):
        rows = slice(i * BATCH, (i + 1) * BATCH)
        click, ctcvr = predict({k: v[rows] for k, v in x.items()})
        loss = bce(click, labels[rows, 0]) + bce(ctcvr, labels[rows, 1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    for i in range(WARMUP):
        step(i % steps)  # a short --rows may have fewer batches than warm-up steps
    start, cpu_start, ends = time.perf_counter(), time.process_time(), []
    for i in range(steps):
        step(i)
        ends.append(time.perf_counter())
    speed = throughput(start, ends, cpu_start)
    model.eval()
    with torch.no_grad():
        click, ctcvr = predict(inputs(test))
    return {**speed, "examples": steps * BATCH, "params": sum(p.numel() for p in model.parameters()),
            **aucs(test, click.numpy(), ctcvr.numpy()), "version": f"torch-rechub 0.9.0, torch {torch.__version__}"}


def worker(args: argparse.Namespace) -> None:
    extra = json.loads(args.extra)
    if args.framework == "tfjoint-peer":
        result = run_tfjoint(args.out, args.model, "peer", args.optimizer, extra, args.rows)
    elif args.framework == "tfjoint-peer-bf16":
        result = run_tfjoint(args.out, args.model, "peer", args.optimizer, extra, args.rows, "mixed_bfloat16")
    elif args.framework == "tfjoint-default":
        result = run_tfjoint(args.out, args.model, "default", "adam", {}, args.rows)
    elif args.framework == "deepctr":
        result = run_deepctr(args.out, args.model, args.rows)
    else:
        result = run_rechub(args.out, args.model, args.rows)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- driver


def run(args: argparse.Namespace) -> None:
    os.makedirs(args.out, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": str(THREADS)}
    python = {"deepctr": args.peers_python, "rechub": args.peers_python}
    if not os.path.exists(f"{args.out}/labels.npy"):
        subprocess.run([args.tfjoint_python, __file__, "prepare", "--out", args.out], env=env, check=True)
    results = []
    for repeat in range(args.repeats):
        turn = repeat % len(args.frameworks)  # each repeat starts with the next framework
        order = args.frameworks[turn:] + args.frameworks[:turn]
        for model in args.models:
            for framework in order:
                command = [python.get(framework, args.tfjoint_python), __file__, "worker", "--out", args.out,
                           "--framework", framework, "--model", model, "--optimizer", args.optimizer,
                           "--extra", args.extra, "--rows", str(args.rows)]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
                if done.returncode or not lines:
                    print(f"{framework}/{model} failed:\n{done.stderr[-3000:]}", flush=True)
                    continue
                result = {"repeat": repeat + 1, "model": model, "framework": framework, **json.loads(lines[-1][7:])}
                results.append(result)
                print(f"repeat {repeat + 1} {model:5s} {framework:17s} {result['examples_per_second']:9,.0f} ex/s "
                      f"(epoch {result['epoch_examples_per_second']:9,.0f}, {result['cores']:.2f} cores) "
                      f"click {result['click_auc']:.3f} ctcvr {result['ctcvr_auc']:.3f}", flush=True)
                with open(f"{args.out}/results.json", "w") as f:
                    json.dump(results, f, indent=1)
    print(table(results))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def table(results: list[dict]) -> str:
    """Markdown: examples/s per repeat per framework and their median (bold), the ratios of
    the same repeat and their median (bold), the cores each used (CPU seconds over wall
    seconds: below 2, its threads waited or were not run) and the mean AUCs."""
    def cell(model, framework, key="examples_per_second"):
        return [r[key] for r in sorted(results, key=lambda r: r["repeat"])
                if r["model"] == model and r["framework"] == framework and key in r]  # no cores before session 12

    def joined(values, fmt):
        text = " / ".join(format(v, fmt) for v in values)
        return f"{text} (**{format(median(values), fmt)}**)" if len(values) > 1 else text

    frameworks = [f for f in FRAMEWORKS if any(r["framework"] == f for r in results)]
    pairs = [(ours, theirs) for ours in OURS for theirs in ("deepctr", "rechub") if {ours, theirs} <= set(frameworks)]
    names = {"deepctr": "DeepCTR", "rechub": "rechub"}
    lines = ["| model | " + " | ".join(frameworks + [f"{OURS[a]} / {names[b]}" for a, b in pairs]) + " |",
             "|---" * (len(frameworks) + len(pairs) + 1) + "|"]
    for model in MODELS:
        if not any(r["model"] == model for r in results):
            continue
        row = [joined(cell(model, f), ",.0f") or "-" for f in frameworks]
        for ours, theirs in pairs:
            by_repeat = {r["repeat"]: r["examples_per_second"] for r in results
                         if r["model"] == model and r["framework"] == theirs}
            ratios = [r["examples_per_second"] / by_repeat[r["repeat"]] for r in sorted(results, key=lambda r: r["repeat"])
                      if r["model"] == model and r["framework"] == ours and r["repeat"] in by_repeat]
            row.append(joined(ratios, ".2f") or "-")
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    lines += ["", "| model | " + " | ".join(f"{f} cores" for f in frameworks) + " |",
              "|---" * (len(frameworks) + 1) + "|"]
    for model in MODELS:
        if any(r["model"] == model for r in results):
            lines.append(f"| {model} | " + " | ".join(joined(cell(model, f, "cores"), ".2f") or "-" for f in frameworks) + " |")
    lines += ["", "| model | " + " | ".join(f"{f} click / ctcvr AUC" for f in frameworks) + " |",
              "|---" * (len(frameworks) + 1) + "|"]
    for model in MODELS:
        if not any(r["model"] == model for r in results):
            continue
        row = []
        for f in frameworks:
            c, v = cell(model, f, "click_auc"), cell(model, f, "ctcvr_auc")
            row.append(f"{sum(c) / len(c):.3f} / {sum(v) / len(v):.3f}" if c else "-")
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--out", required=True)
    p.add_argument("--tfjoint-python", default=sys.executable)
    p.add_argument("--peers-python", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument("--optimizer", default="lazy_adam", choices=("adam", "lazy_adam"))
    p.add_argument("--extra", default="{}", help="JSON: extra build_joint_model options for tfjoint-peer")
    p.add_argument("--rows", type=int, default=TRAIN_ROWS, help="training rows (whole batches of them are used)")
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    p = sub.add_parser("worker")
    for name in ("--out", "--framework", "--model", "--optimizer"):
        p.add_argument(name, required=True)
    p.add_argument("--extra", default="{}")
    p.add_argument("--rows", type=int, default=TRAIN_ROWS)
    p = sub.add_parser("table")
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out)
    elif args.command == "worker":
        worker(args)
    elif args.command == "table":
        with open(f"{args.out}/results.json") as f:
            print(table(json.load(f)))
    else:
        run(args)


if __name__ == "__main__":
    main()
