"""Multi-task learning on synthetic data with known task relatedness and known ground truth.

Two experiments, both through :func:`tfjoint.joint.model.build_joint_model`:

1. **Task relatedness** (J. Ma et al., "Modeling Task Relationships in Multi-task Learning
   with Multi-gate Mixture-of-Experts", KDD 2018, sections 4.2-4.3 and Fig. 4). Two
   regression tasks from :func:`tfjoint.datasets.synthetic.mmoe_regression`, the paper's
   generator (``d = 100``, ``c = 1``, ``m = 10`` sinusoids shared by both tasks, label
   noise ``N(0, 0.01)``), whose weight vectors have cosine ``correlation``, are learned by
   each task architecture under one identical budget (rows, epochs, batch size, Adam
   learning rate, data order) at the paper's sizes (8 experts of 16 units, towers of 8;
   the other architectures sized to the same ~15k parameters). As in the paper, the
   experts, gates and bottom read the raw ``x`` (:class:`RawInputs`). Each (correlation,
   seed) draws 40,000 fresh training rows: with 8,000 (this bench's first version) every
   model mostly over-fits (eval MSE 2.5-4x the training MSE) instead of learning the task
   functions. The generator draws the sinusoids' ``alpha_i, beta_i`` from ``N(0, 1)`` per
   seed; drawn from ``N(0, 0.01)`` instead, both tasks are nearly linear and every
   architecture reaches the same loss at every correlation. The paper finds that every
   model does worse as the correlation falls and that the gated models (OMoE, MMoE) lose
   less than shared-bottom, MMoE least. The bench
   measures the final eval MSE of each (correlation, architecture, seed), each model's
   change from the first correlation to the last, the gap ``MSE(shared_bottom) -
   MSE(arch)`` and how that gap changes from the first correlation to the last, all
   paired by seed; it assumes none of their signs. It also reports how differently MMoE's
   two gates use the experts.
2. **Sample selection bias and data sparsity** (X. Ma et al., "Entire Space Multi-Task
   Model", SIGIR 2018). On :func:`tfjoint.datasets.synthetic.load_synthetic_frames`, where a
   conversion is only observed after a click, click and conversion logits are correlated
   (0.5) so the true CVR of unclicked impressions is lower than that of clicked ones (about
   0.29 against 0.41), and the true ``P(conversion | click)`` of every impression is known.
   The click intercept is :data:`BIAS_CLICK_INTERCEPT`, so about 11% of the impressions are
   clicked (the paper's Taobao data: about 4%) and conversions are observed on few rows: the
   two problems the paper names. ESMM (pCTCVR = pCTR * pCVR trained over all impressions)
   and ESCM2 (ESMM plus an inverse-propensity, ``escm2``, or doubly robust, ``escm2_dr``,
   CVR risk) are compared with CVR models fitted on clicked rows only: ``naive_cvr``, the
   paper's BASE (a CVR model and its embeddings trained by the conversion loss on clicked
   rows alone; the reference), ``naive_towers`` (ESMM's towers, the CVR head on clicked rows
   while the click head trains the shared embeddings on every row) and, on request,
   ``naive_shared_bottom``. Every model stops at its best epoch on the latest
   :data:`VALIDATION_FRACTION` of the training rows (at most ``bias_epochs``), so no model is
   judged at a budget that suits another (a fixed budget flips the result: at 4 epochs the
   BASE model over-predicts, at 6 ESMM and ESCM2 under-predict more than it). The bias of
   each model's pCVR is ``mean(pCVR - true_cvr)`` over unclicked eval impressions (where
   the naive models extrapolate), clicked ones and all, as mean ± std over the seeds (each
   draws new impressions, weights and batch order). The frames go through the package's
   own tf.Transform graph (:func:`tfjoint.pipeline.transform.fit_transform_graph`), run
   in-process.

Sizing: the default run (3 seeds x 4 correlations x 4 architectures = 48 fits of 40,000
training rows for 6 epochs, about 1,900 steps each, then 3 seeds x 5 models on 40,000
impressions, each stopping at its best of at most 12 epochs) takes 6.3 minutes on 2 CPU
cores with one or two other jobs running.
Each architecture is traced once and re-initialized for every run (the weights of a fresh
model built with that seed), because tracing a 101-input graph costs more than training
it, and traced steps run 32 at a time. ``quick=True`` (CLI ``--quick``) runs a tiny
version in under a minute, for tests and smoke checks.
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
from keras import ops

from tfjoint import catalog, features
from tfjoint.datasets import synthetic
from tfjoint.datasets.examples import write_tfrecords
from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceMultiTask
from tfjoint.joint import JointModel, build_joint_model

ARCHITECTURES = ("shared_bottom", "omoe", "mmoe", "ple")
CORRELATIONS = (1.0, 0.9, 0.5, 0.0)
BASELINE = "shared_bottom"
TASKS = ("y1", "y2")
INPUT_DIM = 100
# The generator's label noise is N(0, 0.1^2) per task (the paper's N(0, 0.01)), so no model
# can get MSE(y1) + MSE(y2) below 2 * 0.01 on fresh rows.
NOISE_FLOOR = 2 * 0.1**2

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

# ``escm2`` is its IPS variant, ``escm2_dr`` the doubly robust one; ``naive_cvr`` (the ESMM
# paper's BASE) is the reference the others' bias is judged against.
BIAS_MODELS = ("esmm", "escm2", "escm2_dr", "naive_cvr", "naive_towers", "naive_shared_bottom")
DEFAULT_BIAS_MODELS = BIAS_MODELS[:-1]
BIAS_COMPONENT_KWARGS: dict[str, dict[str, Any]] = {"escm2_dr": {"variant": "dr"}}


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

    def compile_kwargs(self) -> dict[str, Any]:
        """``Model.compile`` arguments besides the optimizer. Traced steps run
        :data:`STEPS_PER_EXECUTION` at a time (the same updates, a third of the time: these
        models are so small that the per-step overhead dominates)."""
        if self.run_eagerly:
            return {"run_eagerly": True}
        return {"run_eagerly": False, "steps_per_execution": STEPS_PER_EXECUTION}


STEPS_PER_EXECUTION = 32

DEFAULTS: dict[str, Any] = {
    "seeds": 3,
    "correlations": CORRELATIONS,
    "architectures": ARCHITECTURES,
    "n_train": 40000,
    "n_eval": 10000,
    "epochs": 6,
    "batch_size": 128,
    "learning_rate": 3e-3,
    "bias_n": 40000,
    # At most; each model stops at its best epoch on held-out rows.
    "bias_epochs": 12,
    "bias_models": DEFAULT_BIAS_MODELS,
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
    "bias_models": ("esmm", "naive_cvr"),
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


class RawInputs(keras.layers.Layer):
    """The embedding slot of the regression: the dense inputs as they are.

    Returns ``{"fields": (batch, len(dense), 1)}``, which the joint model flattens to the raw
    ``x``: the task architecture sees ``x`` itself, as the experts, gates and bottom do in the
    paper. (The package's ``feature_embedding`` would multiply every input by a learned,
    randomly initialized scale, which changes how these small models train.)
    """

    def __init__(self, dense: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = list(dense)

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        values = ops.concatenate([ops.cast(inputs[k], "float32") for k in self.dense], axis=1)
        return {"fields": values[:, :, None]}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dense": self.dense}


def _build(spec: DatasetSpec, architecture: str, seed: int) -> JointModel:
    keras.utils.set_random_seed(seed)
    return build_joint_model(
        spec,
        {},
        task_architecture=architecture,
        sequence_encoder=None,
        modality_encoder=None,
        embedding=RawInputs(spec.dense, name="embedding"),
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
        self.model.compile(optimizer=keras.optimizers.Adam(budget.learning_rate), **budget.compile_kwargs())
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


def gate_separation(gates: dict[str, float], num_experts: int) -> float:
    """Total-variation distance between the two tasks' mean gate weights over the same
    experts: 0 when both tasks mix the experts alike, 1 when they use disjoint experts."""
    weights = np.array([[gates[f"gate_{task}_expert_{i}"] for i in range(num_experts)] for task in TASKS])
    return float(0.5 * np.abs(weights[0] - weights[1]).sum())


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


def _bias_spec(name: str) -> DatasetSpec:
    """The dataset spec a selection-bias model trains on. ``naive_cvr`` is the ESMM paper's
    BASE: a CVR model fitted on clicked impressions only, with nothing learned from the
    other tasks (their loss weights are 0, so the embeddings and towers see only the
    conversion loss on clicked rows)."""
    spec = synthetic.SPEC
    if name != "naive_cvr":
        return spec
    tasks = tuple(
        t if t.name == synthetic.CONVERSION_KEY else dataclasses.replace(t, weight=0.0) for t in spec.tasks
    )
    return dataclasses.replace(spec, tasks=tasks)


def _bias_architecture(name: str) -> str | keras.layers.Layer:
    if name in ("esmm", "escm2"):
        return name
    if name == "escm2_dr":  # built by name, so the joint model passes its cascade steps
        return "escm2"
    if name in ("naive_cvr", "naive_towers"):
        return _ClickedRowsTowers(list(synthetic.SPEC.label_keys), name="task_architecture")
    if name == "naive_shared_bottom":
        return "shared_bottom"
    raise ValueError(f"bias model must be one of {BIAS_MODELS}. Received: {name!r}")


BIAS_METRICS = (
    "bias_unclicked",
    "bias_clicked",
    "bias_all",
    "mean_pcvr_unclicked",
    "mean_true_cvr_unclicked",
)
# Pearson correlation of the true click and conversion logits of the impressions
# (`load_synthetic_frames`' default): it is what makes the true CVR of unclicked impressions
# lower than that of clicked ones.
BIAS_CORRELATION = 0.5
# Intercept of the true click logit: about 11% of impressions are clicked (the ESMM paper's
# Taobao data: about 4%), so conversions are observed on few rows.
BIAS_CLICK_INTERCEPT = -4.0
# The reference of the selection-bias table: the models' bias is judged against this one.
NAIVE_REFERENCE = "naive_cvr"
# Share of the training rows (the latest) held out to stop each selection-bias model early.
VALIDATION_FRACTION = 0.1


def _selection_bias_run(
    n: int,
    budget: Budget,
    seed: int,
    models: Sequence[str],
    progress: tqdm.tqdm | None,
    correlation: float = BIAS_CORRELATION,
    click_intercept: float = BIAS_CLICK_INTERCEPT,
    early_stopping: bool = True,
) -> dict[str, Any]:
    """One seed of :func:`run_selection_bias`: fresh impressions, then every model."""
    spec = synthetic.SPEC
    frames = synthetic.load_synthetic_frames(
        n=n, correlation=correlation, seed=seed, click_intercept=click_intercept
    )
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
    train_frame = frames["train"]
    train_clicked = train_frame[synthetic.CLICK_KEY].to_numpy() == 1.0
    # What the selection does to the target: a pCVR that ignores every feature and predicts
    # the conversion rate of the clicked training rows is off by this much on unclicked rows.
    clicked_rate = float(train_frame[synthetic.CONVERSION_KEY].to_numpy()[train_clicked].mean())
    data = {
        "true_cvr_clicked": float(true_cvr[clicked].mean()),
        "true_cvr_unclicked": float(true_cvr[~clicked].mean()),
        "clicked_rate_bias_unclicked": clicked_rate - float(true_cvr[~clicked].mean()),
        "n_eval": len(eval_frame),
        "n_eval_unclicked": int((~clicked).sum()),
    }
    x_train, y_train = splits["train"]
    # The last VALIDATION_FRACTION of the training rows (by time) decide when each model
    # stops: every model is read at its own best epoch, so none is judged under- or
    # over-trained by a budget that suits another.
    n_fit = int(round(len(y_train[synthetic.CLICK_KEY]) * (1.0 - VALIDATION_FRACTION)))
    validation = (_take_rows(x_train, slice(n_fit, None)), _take_rows(y_train, slice(n_fit, None)))
    x_train, y_train = _take_rows(x_train, slice(0, n_fit)), _take_rows(y_train, slice(0, n_fit))
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(y_train[synthetic.CLICK_KEY]), seed=seed)
        .batch(budget.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    results: dict[str, Any] = {}
    for name in models:
        if progress is not None:
            progress.set_postfix_str(f"selection bias: {name} seed={seed}")
        keras.utils.set_random_seed(seed)
        model = build_joint_model(
            _bias_spec(name),
            vocab_sizes,
            task_architecture=_bias_architecture(name),
            component_kwargs={"task_architecture": BIAS_COMPONENT_KWARGS.get(name, {})},
        )
        model.compile(optimizer=keras.optimizers.Adam(budget.learning_rate), **budget.compile_kwargs())
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
        history = model.fit(
            train,
            validation_data=validation,
            epochs=budget.epochs,
            callbacks=[stop] if early_stopping else [],
            verbose=0,
        ).history
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
            # The epoch whose weights are scored.
            "best_epoch": int(np.argmin(history["val_loss"])) + 1 if early_stopping else budget.epochs,
        }
        if progress is not None:
            progress.update()
    return {"seed": seed, "data": data, "models": results}


def less_biased_than_reference(bias: dict[str, Any]) -> list[str]:
    """The models of :func:`run_selection_bias`'s ``bias`` whose ``|bias_unclicked|`` is lower
    than :data:`NAIVE_REFERENCE`'s by more than two standard errors of the paired difference
    (none with one seed, which gives no noise estimate)."""
    n = len(bias["config"]["seeds"])
    if n < 2:
        return []
    return [
        name
        for name, stats in bias["excess"].items()
        if stats["mean"] + 2.0 * stats["std"] / np.sqrt(n) < 0.0
    ]


def _take_rows(arrays: dict[str, np.ndarray], rows: slice) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in arrays.items()}


def run_selection_bias(
    n: int = DEFAULTS["bias_n"],
    epochs: int = DEFAULTS["bias_epochs"],
    batch_size: int = 256,
    learning_rate: float = DEFAULTS["learning_rate"],
    seeds: Sequence[int] = (0, 1, 2),
    models: Sequence[str] = DEFAULT_BIAS_MODELS,
    run_eagerly: bool = False,
    progress: tqdm.tqdm | None = None,
    correlation: float = BIAS_CORRELATION,
    click_intercept: float = BIAS_CLICK_INTERCEPT,
    early_stopping: bool = True,
) -> dict[str, Any]:
    """Bias of pCVR on unclicked impressions, ESMM and ESCM2 against naive CVR models, over
    ``seeds`` (each seed draws new impressions, initial weights and batch order).

    With ``early_stopping`` each model trains until its loss on the latest
    :data:`VALIDATION_FRACTION` of the training rows stops falling (at most ``epochs``) and is
    scored with its best epoch's weights; without it, every model trains ``epochs`` epochs.

    Returns:
        - ``config``: the arguments;
        - ``runs``: per seed ``{"seed", "data", "models": {model: {metric: value}}}``;
        - ``models``: ``{model: {metric: {"mean", "std", "values"}}}`` over the seeds for
          every metric of :data:`BIAS_METRICS` and ``bias_unclicked_minus_clicked`` (paired
          by seed), ``parameters`` and ``best_epochs`` (each seed's epoch with the lowest
          validation loss, whose weights are scored);
        - ``excess``: ``{model: {"mean", "std", "values"}}`` of
          ``|bias_unclicked(model)| - |bias_unclicked(naive_cvr)|`` paired by seed (< 0:
          less biased than the BASE model), when ``naive_cvr`` is among ``models``;
        - ``data``: over the seeds, the mean true CVR of clicked and of unclicked eval
          impressions and ``clicked_rate_bias_unclicked``, the bias on unclicked rows of a
          constant pCVR equal to the clicked training rows' conversion rate (how strong the
          selection is); ``n_eval`` and ``n_eval_unclicked`` of the first seed.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    budget = Budget(epochs, batch_size, learning_rate, run_eagerly)
    runs = [
        _selection_bias_run(n, budget, seed, models, progress, correlation, click_intercept, early_stopping)
        for seed in seeds
    ]
    summary: dict[str, Any] = {
        name: {
            **{key: _mean_std([run["models"][name][key] for run in runs]) for key in BIAS_METRICS},
            # What the model gets wrong on unclicked rows beyond its error on the clicked
            # ones, paired by seed: its extrapolation across the selection, without the
            # calibration offset that it has everywhere.
            "bias_unclicked_minus_clicked": _mean_std(
                [run["models"][name]["bias_unclicked"] - run["models"][name]["bias_clicked"] for run in runs]
            ),
            "parameters": runs[0]["models"][name]["parameters"],
            "best_epochs": [run["models"][name]["best_epoch"] for run in runs],
        }
        for name in models
    }
    excess = {}
    if NAIVE_REFERENCE in models:
        excess = {
            name: _mean_std(
                [
                    abs(run["models"][name]["bias_unclicked"])
                    - abs(run["models"][NAIVE_REFERENCE]["bias_unclicked"])
                    for run in runs
                ]
            )
            for name in models
            if name != NAIVE_REFERENCE
        }
    data = {
        key: _mean_std([run["data"][key] for run in runs])
        for key in ("true_cvr_clicked", "true_cvr_unclicked", "clicked_rate_bias_unclicked")
    }
    data.update(n_eval=runs[0]["data"]["n_eval"], n_eval_unclicked=runs[0]["data"]["n_eval_unclicked"])
    return {
        "config": {
            "n": n,
            "seeds": seeds,
            "models": list(models),
            "correlation": correlation,
            "click_intercept": click_intercept,
            "early_stopping": early_stopping,
            **dataclasses.asdict(budget),
        },
        "runs": runs,
        "models": summary,
        "excess": excess,
        "data": data,
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
    scale: float = 1.0,
    sinusoid_seed: int | None = None,
    selection_bias: bool = True,
    bias_n: int = DEFAULTS["bias_n"],
    bias_epochs: int = DEFAULTS["bias_epochs"],
    bias_models: Sequence[str] = DEFAULT_BIAS_MODELS,
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
        scale, sinusoid_seed: the generator's ``c`` and, when set, the one seed of the
            sinusoids shared by every run (see
            :func:`tfjoint.datasets.synthetic.mmoe_regression`).
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
          (eval MSE of y1 + eval MSE of y2), ``loss_y1``, ``loss_y2``, ``train_loss`` (the
          last epoch's mean training MSE, y1 + y2), ``label_correlation`` (Pearson, of the
          training labels), ``gates`` (last-epoch mean gate weights);
        - ``loss``: ``{arch: {correlation: {"mean", "std", "values"}}}`` over seeds, with
          correlations keyed as ``f"{c:g}"`` and ``std`` the sample std (0 for one seed);
        - ``train_loss``: like ``loss``, of the runs' ``train_loss``;
        - ``loss_change``: ``{arch: {"mean", "std", "values"}}`` of the loss at the last
          correlation minus the loss at the first, paired by seed;
        - ``gap``: ``{arch: {correlation: {"mean", "std", "values"}}}`` of
          ``loss(shared_bottom) - loss(arch)`` paired by seed (> 0: arch is better);
        - ``gap_growth``: ``{arch: {"mean", "std", "values"}}`` of the gap at the last
          correlation minus the gap at the first, paired by seed (> 0: the advantage over
          shared-bottom grows from the first correlation to the last);
        - ``gate_separation`` (when MMoE ran): ``{correlation: {"mean", "std", "values"}}``
          of :func:`gate_separation` of MMoE's runs;
        - ``label_correlation``: ``{correlation: {"mean", "std", "values"}}``;
        - ``selection_bias``: :func:`run_selection_bias`'s dict, or ``None``;
        - ``png``: the figure's path or ``None``; ``seconds``: wall time.
    """
    start = time.time()
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1. Received: seeds={seeds}")
    architectures = list(dict.fromkeys(architectures))
    for architecture in architectures:
        catalog.get(architecture, slot="task_architecture")
    correlations = [float(c) for c in correlations]
    budget = Budget(epochs, batch_size, learning_rate, run_eagerly)
    spec = regression_spec(input_dim)
    seed_list = list(range(seeds))

    bias_models = list(bias_models) if selection_bias else []
    unknown = [name for name in bias_models if name not in BIAS_MODELS]
    if unknown:
        raise ValueError(f"bias_models must be among {BIAS_MODELS}. Received: {unknown}")
    total = len(architectures) * len(correlations) * seeds + len(bias_models) * seeds
    runs = []
    with tqdm.tqdm(total=total, desc="mtl-synthetic", unit="fit", disable=not verbose) as progress:
        # One traced model per architecture, reset to each seed's fresh weights; the data of
        # one (correlation, seed) lives only while the architectures train on it.
        trainers = {a: _Reinitializable(spec, a, budget) for a in architectures}
        parameters = {a: _parameter_counts(t.model) for a, t in trainers.items()}
        for correlation in correlations:
            for seed in seed_list:
                x, y = synthetic.mmoe_regression(
                    n_train + n_eval, correlation, dim=input_dim, seed=seed, scale=scale, sinusoid_seed=sinusoid_seed
                )
                train = _regression_batches(x[:n_train], y[:n_train], spec, budget.batch_size, seed)
                evaluation = _regression_batches(x[n_train:], y[n_train:], spec, 4096, None)
                for architecture in architectures:
                    progress.set_postfix_str(f"{architecture} correlation={correlation:g} seed={seed}")
                    model = trainers[architecture].reset(seed)
                    history = model.fit(train, epochs=budget.epochs, verbose=0).history
                    mse = _task_mse(model, evaluation, y[n_train:])
                    runs.append(
                        {
                            "correlation": correlation,
                            "architecture": architecture,
                            "seed": seed,
                            "loss": sum(mse.values()),
                            **{f"loss_{name}": value for name, value in mse.items()},
                            # The mean training loss over the last epoch, to tell under- from
                            # over-fitting.
                            "train_loss": sum(float(history[f"{name}_loss"][-1]) for name in TASKS),
                            "label_correlation": label_correlation(y[:n_train]),
                            "gates": _gate_means(history),
                        }
                    )
                    progress.update()
        del trainers
        bias = (
            run_selection_bias(
                bias_n,
                bias_epochs,
                learning_rate=learning_rate,
                seeds=seed_list,
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
            "scale": scale,
            "sinusoid_seed": sinusoid_seed,
            "noise_floor": NOISE_FLOOR,
            **dataclasses.asdict(budget),
            "steps_per_execution": budget.compile_kwargs().get("steps_per_execution", 1),
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
        "gap_growth": {},
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
    if "mmoe" in architectures:
        # MMoE's per-task gates over one set of experts: how differently the two tasks use them.
        num_experts = ARCHITECTURE_KWARGS["mmoe"]["num_experts"]
        summary["gate_separation"] = {
            _key(c): _mean_std(
                [
                    gate_separation(r["gates"], num_experts)
                    for r in runs
                    if r["architecture"] == "mmoe" and r["correlation"] == c
                ]
            )
            for c in correlations
        }
    train = {(r["architecture"], r["correlation"], r["seed"]): r["train_loss"] for r in runs}
    summary["train_loss"] = {
        a: {_key(c): _mean_std([train[a, c, s] for s in seeds]) for c in correlations} for a in architectures
    }
    # How much each loss moves from the first correlation to the last (1.0 -> 0.0 by
    # default), paired by seed: the paper's "all models lose as correlation falls".
    first, last = correlations[0], correlations[-1]
    summary["loss_change"] = {
        a: _mean_std([loss[a, last, s] - loss[a, first, s] for s in seeds]) for a in architectures
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
        # Whether the advantage over shared-bottom grows as correlation falls: the gap at the
        # last correlation minus the gap at the first, paired by seed (> 0: it grows).
        summary["gap_growth"] = {
            a: _mean_std(
                [
                    (loss[BASELINE, last, s] - loss[a, last, s])
                    - (loss[BASELINE, first, s] - loss[a, first, s])
                    for s in seeds
                ]
            )
            for a in summary["gap"]
        }
    return summary


def _cell(stats: dict[str, Any], signed: bool = False, digits: int = 3) -> str:
    return f"{stats['mean']:{'+' if signed else ''}.{digits}f} ± {stats['std']:.{digits}f}"


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
    change = f"{keys[-1]} minus {keys[0]}"
    title = (
        f"== MMoE synthetic (Ma et al., KDD 2018, Fig. 4): eval MSE(y1) + MSE(y2), mean ± std over "
        f"{config['seeds']} seed(s); {config['n_train']} train / {config['n_eval']} eval rows, "
        f"{config['epochs']} epochs, batch {config['batch_size']}, Adam lr {config['learning_rate']:g}; "
        f"noise floor {NOISE_FLOOR:.3f}; scale c = {config.get('scale', 1.0):g}, sinusoids "
        + ("drawn per seed" if config.get("sinusoid_seed") is None else f"from seed {config['sinusoid_seed']}")
        + " =="
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
            ]
            + [[change, "", *(_cell(results["loss_change"][a], signed=True) for a in architectures)]],
        ),
        "train MSE (last epoch's mean): "
        + "; ".join(
            f"{a} " + " / ".join(f"{results['train_loss'][a][k]['mean']:.3f}" for k in keys)
            for a in architectures
        ),
    ]
    if results.get("gate_separation"):
        out.append(
            "MMoE gate separation (total variation between the two tasks' mean gate weights; 0: both "
            "tasks mix the experts alike): "
            + ", ".join(f"{k}: {_cell(results['gate_separation'][k])}" for k in keys)
        )
    if results["gap"]:
        gated = list(results["gap"])
        out += [
            f"\n== gap MSE({BASELINE}) - MSE(arch), paired by seed (> 0: arch beats {BASELINE}); "
            f"last row: gap at {keys[-1]} minus gap at {keys[0]} (> 0: the advantage grows as "
            f"correlation falls) ==",
            _table(
                ["correlation", *gated],
                [[k, *(_cell(results["gap"][a][k], signed=True) for a in gated)] for k in keys]
                + [[change, *(_cell(results["gap_growth"][a], signed=True) for a in gated)]],
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
        c, data = bias["config"], bias["data"]
        title = (
            f"\n== selection bias of pCVR (ESMM, Ma et al., SIGIR 2018): mean(pCVR - true CVR), "
            f"mean ± std over {len(c['seeds'])} seed(s); {c['n']} impressions, {data['n_eval']} eval "
            f"({data['n_eval_unclicked']} unclicked), "
            + (
                f"each model at its best epoch (at most {c['epochs']}) on held-out rows"
                if c.get("early_stopping", True)
                else f"{c['epochs']} epochs"
            )
            + "; naive_* models fit pCVR "
            f"on clicked rows only =="
        )
        excess = bias["excess"]
        header = ["model", "unclicked", "clicked", "all", "unclicked - clicked", "parameters", "best epoch per seed"]
        if excess:
            header.insert(5, f"|unclicked| - |{NAIVE_REFERENCE}|")
        rows = []
        for name, m in bias["models"].items():
            row = [
                name,
                _cell(m["bias_unclicked"], signed=True, digits=4),
                _cell(m["bias_clicked"], signed=True, digits=4),
                _cell(m["bias_all"], signed=True, digits=4),
                _cell(m["bias_unclicked_minus_clicked"], signed=True, digits=4),
                str(m["parameters"]),
                " ".join(str(e) for e in m.get("best_epochs", [])),
            ]
            if excess:
                row.insert(5, _cell(excess[name], signed=True, digits=4) if name in excess else "(reference)")
            rows.append(row)
        out += [
            title,
            _table(header, rows),
            f"true CVR of eval impressions: clicked {_cell(data['true_cvr_clicked'], digits=4)}, unclicked "
            f"{_cell(data['true_cvr_unclicked'], digits=4)}; a constant pCVR equal to the clicked training "
            "rows' conversion rate is off by "
            f"{_cell(data['clicked_rate_bias_unclicked'], signed=True, digits=4)} "
            "on unclicked rows",
        ]
        if excess:
            less = less_biased_than_reference(bias)
            out.append(
                f"less biased than {NAIVE_REFERENCE} on unclicked impressions (|bias| lower, paired by seed, "
                f"by more than 2 standard errors): {', '.join(less) if less else 'none'}"
                + ("" if len(bias["config"]["seeds"]) > 1 else " (one seed: no noise estimate, nothing claimed)")
            )
    out.append(
        f"\nwall time: {results['seconds']:.0f} s" + (f"; figure: {results['png']}" if results["png"] else "")
    )
    return "\n".join(out)


def plot(results: dict[str, Any], path: str | os.PathLike) -> pathlib.Path:
    """Writes the figure: final eval loss against correlation, one line per architecture with
    std error bars (the paper's Fig. 4 read at the end of training); the gap to
    shared-bottom; and, when it ran, the pCVR bias of the selection-bias models."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    config = results["config"]
    correlations = np.asarray(config["correlations"])
    architectures = config["architectures"]
    bias = results.get("selection_bias")
    panels = 1 + bool(results["gap"]) + bool(bias)
    figure = Figure(figsize=(5.5 * panels, 4.4))
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, panels, squeeze=False)[0])

    def lines(ax: Any, stats_by_arch: dict[str, dict[str, Any]]) -> None:
        for architecture, by_corr in stats_by_arch.items():
            i = architectures.index(architecture)
            stats = [by_corr[_key(c)] for c in correlations]
            # One colour per architecture in both panels; a small offset keeps the bars apart.
            ax.errorbar(
                correlations + 0.012 * (i - (len(architectures) - 1) / 2),
                [s["mean"] for s in stats],
                yerr=[s["std"] for s in stats],
                marker="o",
                capsize=3,
                color=f"C{i}",
                label=architecture,
            )

    ax = axes.pop(0)
    lines(ax, results["loss"])
    ax.set(
        xlabel="task correlation",
        ylabel="final eval MSE (y1 + y2)",
        title=f"MMoE synthetic: mean ± std over {config['seeds']} seed(s)",
    )
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    if results["gap"]:
        ax = axes.pop(0)
        lines(ax, results["gap"])
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set(
            xlabel="task correlation",
            ylabel=f"MSE({BASELINE}) - MSE(arch), paired by seed",
            title=f"advantage over {BASELINE} (> 0: better)",
        )
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend()
    if bias:
        ax = axes.pop(0)
        names = list(bias["models"])
        positions = np.arange(len(names))
        for j, (key, label) in enumerate((("bias_unclicked", "unclicked"), ("bias_clicked", "clicked"))):
            ax.bar(
                positions + (j - 0.5) * 0.38,
                [bias["models"][n][key]["mean"] for n in names],
                width=0.38,
                yerr=[bias["models"][n][key]["std"] for n in names],
                capsize=3,
                color=f"C{j}",
                label=f"{label} impressions",
            )
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.axhline(
            bias["data"]["clicked_rate_bias_unclicked"]["mean"],
            color="black",
            linestyle="--",
            linewidth=0.8,
            label="constant clicked-rows CVR (unclicked)",
        )
        ax.set_xticks(positions, names, rotation=15)
        ax.set(
            ylabel="mean(pCVR - true CVR)",
            title=f"pCVR bias: mean ± std over {len(bias['config']['seeds'])} seed(s)",
        )
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
