"""Multi-task learning on synthetic data with known task relatedness and known ground truth.

Two experiments, both through :func:`tfjoint.models.joint.build_joint_model`:

1. **Task relatedness** (J. Ma et al., "Modeling Task Relationships in Multi-task Learning
   with Multi-gate Mixture-of-Experts", KDD 2018, sections 4.2-4.3 and Fig. 4). Two
   regression tasks from :func:`tfjoint.datasets.synthetic.mmoe_regression`, whose weight
   vectors have cosine ``correlation``, are learned by each task architecture under one
   identical budget (epochs, batch size, Adam learning rate, data order, comparable
   parameter counts). The paper finds that every model does worse as the correlation
   falls and that the gated models (OMoE, MMoE) lose less than shared-bottom. The bench
   measures the final eval MSE of each (correlation, architecture, seed) and the gap
   ``MSE(shared_bottom) - MSE(arch)``; it does not assume its sign.
2. **Sample selection bias** (X. Ma et al., "Entire Space Multi-Task Model", SIGIR 2018).
   On :func:`tfjoint.datasets.synthetic.load_synthetic_frames`, where a conversion is only
   observed after a click and the true ``P(conversion | click)`` of every impression is
   known, ESMM (pCTCVR = pCTR * pCVR trained over all impressions) is compared with naive
   CVR models trained on clicked rows only: the same towers as ESMM without the entire
   space, and shared-bottom. The bias of each model's pCVR is
   ``mean(pCVR - true_cvr)`` over unclicked eval impressions (where the naive models
   extrapolate), clicked ones and all. The frames go through the package's own
   tf.Transform graph (:func:`tfjoint.pipeline.transform.fit_transform_graph`), run
   in-process.

Sizing: the default run (3 seeds x 4 correlations x 4 architectures = 48 fits of 8,000
training rows for 12 epochs, then 3 fits of 20,000 impressions for 4 epochs) takes about
6 minutes on 2 CPU cores, 9 when other jobs share them. Each architecture is traced once
and re-initialized for every run (the weights of a fresh model built with that seed),
because tracing a 101-input graph costs more than training it. ``quick=True`` (CLI
``--quick``) runs a tiny version in under a minute, for tests and smoke checks.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tqdm

from tfjoint import features, registry
from tfjoint.datasets import synthetic
from tfjoint.datasets.examples import write_tfrecords
from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.models.entire_space import EntireSpaceMultiTask
from tfjoint.models.joint import JointModel, build_joint_model

ARCHITECTURES = ("shared_bottom", "omoe", "mmoe", "ple")
CORRELATIONS = (1.0, 0.9, 0.5, 0.0)
BASELINE = "shared_bottom"
TASKS = ("y1", "y2")
INPUT_DIM = 100

# The paper's synthetic setup: 8 experts of 16 units under towers of 8 units. The other
# architectures are sized to the same count of parameters (about 15k; see
# `results["parameters"]`).
ARCHITECTURE_KWARGS: dict[str, dict[str, Any]] = {
    "shared_bottom": {"bottom_units": [128], "tower_units": [8]},
    "omoe": {"num_experts": 8, "expert_units": [16], "tower_units": [8]},
    "mmoe": {"num_experts": 8, "expert_units": [16], "tower_units": [8]},
    "ple": {
        "num_levels": 2,
        "num_shared_experts": 3,
        "num_task_experts": 2,
        "expert_units": [16],
        "tower_units": [8],
    },
}

BIAS_MODELS = ("esmm", "escm2", "naive_towers", "naive_shared_bottom")


@dataclasses.dataclass(frozen=True)
class Budget:
    """The training budget every model of one experiment gets."""

    epochs: int
    batch_size: int
    learning_rate: float
    # Runs the steps eagerly: the same updates, and faster for tiny runs, whose time would
    # otherwise go into tracing the training step.
    run_eagerly: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError(f"epochs and batch_size must be >= 1 and learning_rate > 0. Received: {self}")


DEFAULTS: dict[str, Any] = {
    "seeds": 3,
    "correlations": CORRELATIONS,
    "architectures": ARCHITECTURES,
    "n_train": 8000,
    "n_eval": 2000,
    "epochs": 12,
    "batch_size": 128,
    "learning_rate": 3e-3,
    "bias_n": 20000,
    "bias_epochs": 4,
    "bias_models": BIAS_MODELS,
    "run_eagerly": False,
}
QUICK: dict[str, Any] = {
    **DEFAULTS,
    "seeds": 1,
    "correlations": (1.0, 0.0),
    "n_train": 600,
    "n_eval": 300,
    "epochs": 1,
    "bias_n": 1500,
    "bias_epochs": 1,
    "bias_models": ("esmm", "naive_towers"),
    "run_eagerly": True,
}


def regression_spec(input_dim: int = INPUT_DIM) -> DatasetSpec:
    """The two-task regression of the MMoE paper as a dataset spec: ``input_dim`` dense
    features, no ids, one scenario."""
    return DatasetSpec(
        name="mmoe-synthetic",
        categorical=(),
        dense=tuple(f"x{i}" for i in range(input_dim)),
        tasks=tuple(TaskSpec(name, "regression") for name in TASKS),
        scenarios=("all",),
    )


def label_correlation(y: np.ndarray) -> float:
    """Pearson correlation of the two tasks' labels ``y[:, 0]`` and ``y[:, 1]``."""
    return float(np.corrcoef(y[:, 0], y[:, 1])[0, 1])


def _key(correlation: float) -> str:
    return f"{correlation:g}"


def _mean_std(values: Sequence[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def _regression_batches(
    x: np.ndarray, y: np.ndarray, spec: DatasetSpec, batch_size: int, seed: int | None
) -> tf.data.Dataset:
    """``(inputs, labels)`` batches in the model's input format; shuffled when ``seed`` is set.

    The rows are shuffled once and the batches cached, and only the order of the batches
    changes every epoch: splitting 100 columns per batch anew every epoch costs more than
    the model's step.
    """
    keys = list(spec.dense)

    def to_inputs(xb: tf.Tensor, yb: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        inputs = dict(zip(keys, tf.split(xb, len(keys), axis=1)))
        inputs[features.SCENARIO_KEY] = tf.zeros((tf.shape(xb)[0], 1), tf.int64)
        return inputs, {name: yb[:, i : i + 1] for i, name in enumerate(TASKS)}

    dataset = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.float32)))
    if seed is not None:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=False)
    dataset = dataset.batch(batch_size).map(to_inputs).cache()
    if seed is not None:
        dataset = dataset.shuffle(-(-len(x) // batch_size), seed=seed)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _build(spec: DatasetSpec, architecture: str, seed: int) -> JointModel:
    keras.utils.set_random_seed(seed)
    return build_joint_model(
        spec,
        {},
        task_architecture=architecture,
        sequence_encoder=None,
        modality_encoder=None,
        # One learned scale per input: the experts see the 100 raw inputs, as in the paper.
        embedding_dim=1,
        component_kwargs={"task_architecture": ARCHITECTURE_KWARGS.get(architecture, {})},
    )


class _Reinitializable:
    """One compiled model of an architecture, reset to a seed's fresh state before each run.

    ``reset(seed)`` loads the weights that a model freshly built with ``seed`` has and the
    optimizer's initial state, so a run is the same as one on a new model, without a new
    trace.
    """

    def __init__(self, spec: DatasetSpec, architecture: str, budget: Budget) -> None:
        self.spec = spec
        self.architecture = architecture
        self.model = _build(spec, architecture, seed=0)
        self.model.compile(
            optimizer=keras.optimizers.Adam(budget.learning_rate), run_eagerly=budget.run_eagerly
        )
        self.model.optimizer.build(self.model.trainable_variables)
        self._optimizer_state = [v.numpy() for v in self.model.optimizer.variables]
        self._weights: dict[int, list[np.ndarray]] = {}

    def reset(self, seed: int) -> keras.Model:
        if seed not in self._weights:
            self._weights[seed] = _build(self.spec, self.architecture, seed).get_weights()
        self.model.set_weights(self._weights[seed])
        for variable, value in zip(self.model.optimizer.variables, self._optimizer_state):
            variable.assign(value)
        return self.model


def _gate_means(history: dict[str, list[float]]) -> dict[str, float]:
    """Last-epoch mean gate weight per task and expert, for the gated architectures."""
    return {k: float(v[-1]) for k, v in history.items() if k.startswith("gate_")}


def _task_mse(model: keras.Model, dataset: tf.data.Dataset, y: np.ndarray) -> dict[str, float]:
    predictions = model.predict(dataset, verbose=0)
    return {
        name: float(np.mean((np.ravel(predictions[name]) - y[:, i]) ** 2)) for i, name in enumerate(TASKS)
    }


def _parameter_counts(model: JointModel) -> dict[str, int]:
    """Parameters in all and in the task architecture alone (the rest is the
    shared input scale and the two heads)."""
    return {
        "total": int(model.count_params()),
        "task_architecture": int(model.task_architecture.count_params()),
    }


class _ClickedRowsTowers(EntireSpaceMultiTask):
    """ESMM's towers trained the naive way: the conversion head only on clicked rows."""

    entire_space = False


def _materialize(dataset: tf.data.Dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    xs, ys = [], []
    for x, y in dataset:
        xs.append({k: v.numpy() for k, v in x.items()})
        ys.append({k: v.numpy() for k, v in y.items()})
    return (
        {k: np.concatenate([b[k] for b in xs]) for k in xs[0]},
        {k: np.concatenate([b[k] for b in ys]) for k in ys[0]},
    )


def _bias_architecture(name: str) -> str | keras.layers.Layer:
    if name in ("esmm", "escm2"):
        return name
    if name == "naive_towers":
        return _ClickedRowsTowers(list(synthetic.SPEC.label_keys), name="task_architecture")
    if name == "naive_shared_bottom":
        return "shared_bottom"
    raise ValueError(f"bias model must be one of {BIAS_MODELS}. Received: {name!r}")


def run_selection_bias(
    n: int = DEFAULTS["bias_n"],
    epochs: int = DEFAULTS["bias_epochs"],
    batch_size: int = 256,
    learning_rate: float = DEFAULTS["learning_rate"],
    seed: int = 0,
    models: Sequence[str] = BIAS_MODELS,
    run_eagerly: bool = False,
    progress: tqdm.tqdm | None = None,
) -> dict[str, Any]:
    """Bias of pCVR on unclicked impressions, ESMM against naive CVR models.

    Returns:
        ``{"config": {...}, "models": {model: {"bias_unclicked", "bias_clicked",
        "bias_all", "mean_pcvr_unclicked", "mean_true_cvr_unclicked", "parameters"}}}``
        for each of ``models``; see the module docstring.
    """
    budget = Budget(epochs, batch_size, learning_rate, run_eagerly)
    spec = synthetic.SPEC
    frames = synthetic.load_synthetic_frames(n=n, seed=seed)
    from tfjoint.pipeline.transform import fit_transform_graph, transformed_dataset, vocabulary_sizes

    with tempfile.TemporaryDirectory() as tmp:
        root = write_tfrecords(frames, spec, pathlib.Path(tmp) / "data")
        transform = fit_transform_graph(str(root), spec, os.path.join(tmp, "transform"))
        vocab_sizes = vocabulary_sizes(transform, spec)
        splits = {
            split: _materialize(
                transformed_dataset(
                    transform, sorted(glob.glob(str(root / split / "*"))), spec, batch_size=1024
                )
            )
            for split in ("train", "eval")
        }
    eval_frame = frames["eval"]
    # The eval records are written in the frame's order and read back unshuffled; check it,
    # since the ground truth `true_cvr` is matched to predictions by position.
    eval_labels = splits["eval"][1]
    if not (
        np.array_equal(eval_labels[synthetic.CLICK_KEY].ravel(), eval_frame[synthetic.CLICK_KEY].to_numpy())
        and np.allclose(
            eval_labels[synthetic.SCORE_KEY].ravel(), eval_frame[synthetic.SCORE_KEY].to_numpy(), atol=1e-4
        )
    ):
        raise RuntimeError("transformed eval rows are not in the order of the eval frame")
    true_cvr = eval_frame[synthetic.TRUE_CVR_KEY].to_numpy()
    clicked = eval_frame[synthetic.CLICK_KEY].to_numpy() == 1.0
    x_train, y_train = splits["train"]
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(y_train[synthetic.CLICK_KEY]), seed=seed)
        .batch(budget.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    results: dict[str, Any] = {}
    for name in models:
        if progress is not None:
            progress.set_postfix_str(f"selection bias: {name}")
        keras.utils.set_random_seed(seed)
        model = build_joint_model(spec, vocab_sizes, task_architecture=_bias_architecture(name))
        model.compile(optimizer=keras.optimizers.Adam(budget.learning_rate), run_eagerly=budget.run_eagerly)
        model.fit(train, epochs=budget.epochs, verbose=0)
        # One eager forward pass: tracing a predict function would cost more than it.
        outputs = model(splits["eval"][0], training=False)
        pcvr = np.ravel(keras.ops.convert_to_numpy(outputs[synthetic.CONVERSION_KEY]))
        error = pcvr - true_cvr
        results[name] = {
            "bias_unclicked": float(error[~clicked].mean()),
            "bias_clicked": float(error[clicked].mean()),
            "bias_all": float(error.mean()),
            "mean_pcvr_unclicked": float(pcvr[~clicked].mean()),
            "mean_true_cvr_unclicked": float(true_cvr[~clicked].mean()),
            "parameters": int(model.count_params()),
        }
        if progress is not None:
            progress.update()
    return {
        "config": {
            "n": n,
            "n_eval": len(eval_frame),
            "n_eval_unclicked": int((~clicked).sum()),
            "seed": seed,
            **dataclasses.asdict(budget),
        },
        "models": results,
    }


def run_mtl_synthetic(
    seeds: int = DEFAULTS["seeds"],
    correlations: Sequence[float] = CORRELATIONS,
    architectures: Sequence[str] = ARCHITECTURES,
    n_train: int = DEFAULTS["n_train"],
    n_eval: int = DEFAULTS["n_eval"],
    epochs: int = DEFAULTS["epochs"],
    output_png: str | os.PathLike | None = None,
    *,
    batch_size: int = DEFAULTS["batch_size"],
    learning_rate: float = DEFAULTS["learning_rate"],
    input_dim: int = INPUT_DIM,
    selection_bias: bool = True,
    bias_n: int = DEFAULTS["bias_n"],
    bias_epochs: int = DEFAULTS["bias_epochs"],
    bias_models: Sequence[str] = BIAS_MODELS,
    run_eagerly: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Runs both experiments of the module docstring and returns their numbers.

    Args:
        seeds: number of seeds; seed ``s`` draws the data (tasks, inputs, noise), the
            initial weights and the batch order.
        correlations: cosines of the two tasks' weight vectors.
        architectures: registered task architectures (``tfjoint models --slot
            task_architecture``); the first experiment's gap is taken against
            ``shared_bottom`` when it is among them.
        n_train, n_eval: rows per (correlation, seed) to train on and to evaluate on.
        epochs, batch_size, learning_rate: the budget of every fit of the first experiment.
        output_png: where to write the figure; ``None`` writes none.
        input_dim: input dimension of the regression (100 in the paper).
        selection_bias: also run the second experiment.
        bias_n, bias_epochs: impressions and epochs of the second experiment.
        bias_models: models of the second experiment, among :data:`BIAS_MODELS`.
        run_eagerly: train without tracing (same updates; faster only for tiny runs).
        verbose: show a progress bar over the fits and print :func:`format_report`.

    Returns:
        A JSON-ready dict:

        - ``config``: every argument above;
        - ``parameters``: ``{arch: {"total", "task_architecture"}}``;
        - ``runs``: one dict per fit: ``correlation``, ``architecture``, ``seed``, ``loss``
          (eval MSE of y1 + eval MSE of y2), ``loss_y1``, ``loss_y2``, ``label_correlation``
          (Pearson, of the training labels), ``gates`` (last-epoch mean gate weights);
        - ``loss``: ``{arch: {correlation: {"mean", "std", "values"}}}`` over seeds, with
          correlations keyed as ``f"{c:g}"`` and ``std`` the sample std (0 for one seed);
        - ``gap``: ``{arch: {correlation: {"mean", "std", "values"}}}`` of
          ``loss(shared_bottom) - loss(arch)`` paired by seed (> 0: arch is better);
        - ``label_correlation``: ``{correlation: {"mean", "std", "values"}}``;
        - ``selection_bias``: :func:`run_selection_bias`'s dict, or ``None``;
        - ``png``: the figure's path or ``None``; ``seconds``: wall time.
    """
    start = time.time()
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1. Received: seeds={seeds}")
    architectures = list(dict.fromkeys(architectures))
    for architecture in architectures:
        registry.get(architecture, slot="task_architecture")
    correlations = [float(c) for c in correlations]
    budget = Budget(epochs, batch_size, learning_rate, run_eagerly)
    spec = regression_spec(input_dim)
    seed_list = list(range(seeds))

    data = {}
    for correlation in correlations:
        for seed in seed_list:
            x, y = synthetic.mmoe_regression(n_train + n_eval, correlation, dim=input_dim, seed=seed)
            data[correlation, seed] = {
                "train": _regression_batches(x[:n_train], y[:n_train], spec, budget.batch_size, seed),
                "eval": _regression_batches(x[n_train:], y[n_train:], spec, 1024, None),
                "y_eval": y[n_train:],
                "label_correlation": label_correlation(y[:n_train]),
            }

    bias_models = list(bias_models) if selection_bias else []
    unknown = [name for name in bias_models if name not in BIAS_MODELS]
    if unknown:
        raise ValueError(f"bias_models must be among {BIAS_MODELS}. Received: {unknown}")
    total = len(architectures) * len(correlations) * seeds + len(bias_models)
    runs = []
    parameters = {}
    with tqdm.tqdm(total=total, desc="mtl-synthetic", unit="fit", disable=not verbose) as progress:
        for architecture in architectures:
            trainer = _Reinitializable(spec, architecture, budget)
            parameters[architecture] = _parameter_counts(trainer.model)
            for correlation in correlations:
                for seed in seed_list:
                    progress.set_postfix_str(f"{architecture} correlation={correlation:g} seed={seed}")
                    model = trainer.reset(seed)
                    run = data[correlation, seed]
                    history = model.fit(run["train"], epochs=budget.epochs, verbose=0).history
                    mse = _task_mse(model, run["eval"], run["y_eval"])
                    runs.append(
                        {
                            "correlation": correlation,
                            "architecture": architecture,
                            "seed": seed,
                            "loss": sum(mse.values()),
                            **{f"loss_{name}": value for name, value in mse.items()},
                            "label_correlation": run["label_correlation"],
                            "gates": _gate_means(history),
                        }
                    )
                    progress.update()
        bias = (
            run_selection_bias(
                bias_n,
                bias_epochs,
                learning_rate=learning_rate,
                models=bias_models,
                run_eagerly=run_eagerly,
                progress=progress,
            )
            if bias_models
            else None
        )

    results = _summarize(runs, architectures, correlations, seed_list)
    results.update(
        config={
            "seeds": seeds,
            "correlations": correlations,
            "architectures": architectures,
            "n_train": n_train,
            "n_eval": n_eval,
            "input_dim": input_dim,
            **dataclasses.asdict(budget),
            "architecture_kwargs": {a: ARCHITECTURE_KWARGS.get(a, {}) for a in architectures},
            "selection_bias": selection_bias,
            "bias_n": bias_n,
            "bias_epochs": bias_epochs,
            "bias_models": bias_models,
        },
        parameters=parameters,
        runs=runs,
        selection_bias=bias,
        png=None,
    )
    if output_png is not None:
        results["png"] = str(plot(results, output_png))
    results["seconds"] = time.time() - start
    if verbose:
        print(format_report(results))
    return results


def _summarize(
    runs: list[dict[str, Any]], architectures: list[str], correlations: list[float], seeds: list[int]
) -> dict[str, Any]:
    loss = {(r["architecture"], r["correlation"], r["seed"]): r["loss"] for r in runs}
    summary: dict[str, Any] = {
        "loss": {
            a: {_key(c): _mean_std([loss[a, c, s] for s in seeds]) for c in correlations}
            for a in architectures
        },
        "gap": {},
        "label_correlation": {
            _key(c): _mean_std(
                [
                    r["label_correlation"]
                    for r in runs
                    if r["correlation"] == c and r["architecture"] == architectures[0]
                ]
            )
            for c in correlations
        },
    }
    if BASELINE in architectures:
        summary["gap"] = {
            a: {
                _key(c): _mean_std([loss[BASELINE, c, s] - loss[a, c, s] for s in seeds])
                for c in correlations
            }
            for a in architectures
            if a != BASELINE
        }
    return summary


def _cell(stats: dict[str, Any], signed: bool = False) -> str:
    return f"{stats['mean']:{'+' if signed else ''}.3f} ± {stats['std']:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def format_report(results: dict[str, Any]) -> str:
    """The tables of ``results``: loss, gap to shared-bottom, parameters, selection bias."""
    config = results["config"]
    architectures = config["architectures"]
    keys = [_key(c) for c in config["correlations"]]
    title = (
        f"== MMoE synthetic (Ma et al., KDD 2018, Fig. 4): eval MSE(y1) + MSE(y2), mean ± std over "
        f"{config['seeds']} seed(s); {config['n_train']} train / {config['n_eval']} eval rows, "
        f"{config['epochs']} epochs, batch {config['batch_size']}, Adam lr {config['learning_rate']:g} =="
    )
    out = [
        title,
        _table(
            ["correlation", "label corr", *architectures],
            [
                [
                    k,
                    f"{results['label_correlation'][k]['mean']:.3f}",
                    *(_cell(results["loss"][a][k]) for a in architectures),
                ]
                for k in keys
            ],
        ),
    ]
    if results["gap"]:
        gated = list(results["gap"])
        out += [
            f"\n== gap MSE({BASELINE}) - MSE(arch), paired by seed (> 0: arch beats {BASELINE}) ==",
            _table(
                ["correlation", *gated],
                [[k, *(_cell(results["gap"][a][k], signed=True) for a in gated)] for k in keys],
            ),
        ]
    out += [
        "\n== parameters ==",
        _table(
            ["architecture", "total", "task architecture"],
            [[a, str(p["total"]), str(p["task_architecture"])] for a, p in results["parameters"].items()],
        ),
    ]
    bias = results.get("selection_bias")
    if bias:
        c = bias["config"]
        title = (
            f"\n== selection bias of pCVR (ESMM, Ma et al., SIGIR 2018): mean(pCVR - true CVR); "
            f"{c['n']} impressions, {c['n_eval']} eval ({c['n_eval_unclicked']} unclicked), "
            f"{c['epochs']} epochs; naive_* models fit pCVR on clicked rows only =="
        )
        out += [
            title,
            _table(
                [
                    "model",
                    "unclicked",
                    "clicked",
                    "all",
                    "mean pCVR unclicked",
                    "true CVR unclicked",
                    "parameters",
                ],
                [
                    [
                        name,
                        f"{m['bias_unclicked']:+.4f}",
                        f"{m['bias_clicked']:+.4f}",
                        f"{m['bias_all']:+.4f}",
                        f"{m['mean_pcvr_unclicked']:.4f}",
                        f"{m['mean_true_cvr_unclicked']:.4f}",
                        str(m["parameters"]),
                    ]
                    for name, m in bias["models"].items()
                ],
            ),
        ]
    out.append(
        f"\nwall time: {results['seconds']:.0f} s" + (f"; figure: {results['png']}" if results["png"] else "")
    )
    return "\n".join(out)


def plot(results: dict[str, Any], path: str | os.PathLike) -> pathlib.Path:
    """Writes the figure: final eval loss against correlation, one line per architecture with
    std error bars (the paper's Fig. 4 read at the end of training), and the gap to
    shared-bottom."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    config = results["config"]
    correlations = np.asarray(config["correlations"])
    architectures = config["architectures"]
    panels = 2 if results["gap"] else 1
    figure = Figure(figsize=(5.5 * panels, 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]

    def lines(ax: Any, stats_by_arch: dict[str, dict[str, Any]]) -> None:
        for architecture, by_corr in stats_by_arch.items():
            i = architectures.index(architecture)
            stats = [by_corr[_key(c)] for c in correlations]
            # One colour per architecture in both panels; a small offset keeps the bars apart.
            ax.errorbar(
                correlations + 0.008 * (i - (len(architectures) - 1) / 2),
                [s["mean"] for s in stats],
                yerr=[s["std"] for s in stats],
                marker="o",
                capsize=3,
                color=f"C{i}",
                label=architecture,
            )

    lines(axes[0], results["loss"])
    axes[0].set(
        xlabel="task correlation",
        ylabel="final eval MSE (y1 + y2)",
        title=f"MMoE synthetic: mean ± std over {config['seeds']} seed(s)",
    )
    if results["gap"]:
        lines(axes[1], results["gap"])
        axes[1].axhline(0.0, color="grey", linewidth=0.8)
        axes[1].set(
            xlabel="task correlation",
            ylabel=f"MSE({BASELINE}) - MSE(arch)",
            title=f"advantage over {BASELINE} (> 0: better)",
        )
    for ax in axes:
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
