"""Sample selection bias and data sparsity: ESMM and ESCM2 against naive CVR models (X. Ma et
al., "Entire Space Multi-Task Model", SIGIR 2018).

On :func:`tfjoint.datasets.synthetic.load_synthetic_frames` a conversion is only observed
after a click, click and conversion logits are correlated (:data:`BIAS_CORRELATION`), so the
true CVR of unclicked impressions is lower than that of clicked ones, and the true
``P(conversion | click)`` of every impression is known. The click intercept
(:data:`BIAS_CLICK_INTERCEPT`) makes clicks rare, so conversions are observed on few rows:
the two problems the paper names. Compared (:data:`BIAS_MODELS`):

- ``esmm``; ``escm2`` (ESMM plus an inverse-propensity CVR risk) and ``escm2_dr`` (doubly
  robust);
- ``naive_cvr``, the paper's BASE and the reference: a CVR model and its embeddings trained
  by the conversion loss on clicked rows alone;
- ``naive_towers``: ESMM's towers trained the plain way (``independent_towers``), the CVR
  head on clicked rows while the click head trains the shared embeddings on every row;
- on request ``naive_shared_bottom``.

Every model stops at its best epoch on the latest :data:`VALIDATION_FRACTION` of the
training rows (at most ``epochs``), so none is judged at a budget that suits another (a
fixed budget flips the result; see the README). The bias of a model's pCVR is
``mean(pCVR - true_cvr)`` over unclicked eval impressions (where the naive models
extrapolate), clicked ones and all, as mean ± std over seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tqdm

from tfjoint.bench.mtl_budget import LEARNING_RATE, Budget, mean_std
from tfjoint.bench.mtl_synthetic_data import observed_conversions, take_rows, transformed_impressions
from tfjoint.datasets import synthetic
from tfjoint.features import DatasetSpec
from tfjoint.joint import build_joint_model

# ``escm2`` is its IPS variant, ``escm2_dr`` the doubly robust one; ``naive_cvr`` (the ESMM
# paper's BASE) is the reference the others' bias is judged against.
BIAS_MODELS = ("esmm", "escm2", "escm2_dr", "naive_cvr", "naive_towers", "naive_shared_bottom")
DEFAULT_BIAS_MODELS = BIAS_MODELS[:-1]
# The registered task architecture of each model; ``escm2_dr`` is built by name, so the
# joint model passes its cascade steps.
BIAS_ARCHITECTURES = {
    "esmm": "esmm",
    "escm2": "escm2",
    "escm2_dr": "escm2",
    "naive_cvr": "independent_towers",
    "naive_towers": "independent_towers",
    "naive_shared_bottom": "shared_bottom",
}
BIAS_COMPONENT_KWARGS: dict[str, dict[str, Any]] = {"escm2_dr": {"variant": "dr"}}
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
# Impressions per seed, and the most epochs a model trains (each stops at its best).
BIAS_N = 40000
BIAS_EPOCHS = 12


def bias_spec(name: str) -> DatasetSpec:
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


def bias_architecture(name: str) -> str:
    """The registered task architecture of selection-bias model ``name``."""
    if name not in BIAS_ARCHITECTURES:
        raise ValueError(f"bias model must be one of {BIAS_MODELS}. Received: {name!r}")
    return BIAS_ARCHITECTURES[name]


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
    frames, splits, vocab_sizes = transformed_impressions(n, seed, correlation, click_intercept)
    eval_frame, train_frame = frames["eval"], frames["train"]
    true_cvr = eval_frame[synthetic.TRUE_CVR_KEY].to_numpy()
    clicked = observed_conversions(eval_frame)
    # What the selection does to the target: a pCVR that ignores every feature and predicts
    # the conversion rate of the clicked training rows is off by this much on unclicked rows.
    clicked_rate = float(
        train_frame[synthetic.CONVERSION_KEY].to_numpy()[observed_conversions(train_frame)].mean()
    )
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
    validation = (take_rows(x_train, slice(n_fit, None)), take_rows(y_train, slice(n_fit, None)))
    x_train, y_train = take_rows(x_train, slice(0, n_fit)), take_rows(y_train, slice(0, n_fit))
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
            bias_spec(name),
            vocab_sizes,
            task_architecture=bias_architecture(name),
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


def run_selection_bias(
    n: int = BIAS_N,
    epochs: int = BIAS_EPOCHS,
    batch_size: int = 256,
    learning_rate: float = LEARNING_RATE,
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
            **{key: mean_std([run["models"][name][key] for run in runs]) for key in BIAS_METRICS},
            # What the model gets wrong on unclicked rows beyond its error on the clicked
            # ones, paired by seed: its extrapolation across the selection, without the
            # calibration offset that it has everywhere.
            "bias_unclicked_minus_clicked": mean_std(
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
            name: mean_std(
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
        key: mean_std([run["data"][key] for run in runs])
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
