"""``tfjoint bench mtl-synthetic``: multi-task learning on synthetic data with known task
relatedness and known ground truth, through :func:`tfjoint.joint.build_joint_model`.

Two experiments (the README's benchmark section has their results):

1. **Task relatedness** (:mod:`tfjoint.bench.mtl_correlation`): the MMoE paper's synthetic
   two-task regression at several task correlations, every task architecture under one
   identical budget (rows, epochs, batch size, Adam learning rate, data order).
2. **Sample selection bias** (:mod:`tfjoint.bench.selection_bias`): the pCVR bias of ESMM
   and ESCM2 against CVR models fitted on clicked impressions only, on impressions whose
   true CVR is known, each model read at its best epoch on held-out rows.

Their data is :mod:`tfjoint.bench.mtl_synthetic_data`, their shared budget and statistics
:mod:`tfjoint.bench.mtl_budget`, their tables and figure
:mod:`tfjoint.bench.mtl_synthetic_report`. :data:`DEFAULTS` (48 fits of 40,000 rows for 6
epochs, then 3 seeds x 5 models on 40,000 impressions) takes about 6 minutes on 2 CPU cores;
:data:`QUICK` (CLI ``--quick``) runs a tiny version in one to two minutes (most of it the
tf.Transform analysis), for tests and smoke checks.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import tqdm

from tfjoint import catalog
from tfjoint.bench.mtl_budget import LEARNING_RATE, Budget
from tfjoint.bench.mtl_correlation import (
    ARCHITECTURE_KWARGS,
    ARCHITECTURES,
    CORRELATIONS,
    run_correlation,
    summarize_correlation,
)
from tfjoint.bench.mtl_synthetic_data import INPUT_DIM, NOISE_FLOOR
from tfjoint.bench.mtl_synthetic_report import format_report, plot
from tfjoint.bench.selection_bias import (
    BIAS_EPOCHS,
    BIAS_MODELS,
    BIAS_N,
    DEFAULT_BIAS_MODELS,
    run_selection_bias,
)

__all__ = ["DEFAULTS", "QUICK", "format_report", "plot", "run_mtl_synthetic"]

DEFAULTS: dict[str, Any] = {
    "seeds": 3,
    "correlations": CORRELATIONS,
    "architectures": ARCHITECTURES,
    "n_train": 40000,
    "n_eval": 10000,
    "epochs": 6,
    "batch_size": 128,
    "learning_rate": LEARNING_RATE,
    "bias_n": BIAS_N,
    # At most; each model stops at its best epoch on held-out rows.
    "bias_epochs": BIAS_EPOCHS,
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
        bias_models: models of the second experiment, among
            :data:`tfjoint.bench.selection_bias.BIAS_MODELS`.
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
          of :func:`tfjoint.bench.mtl_correlation.gate_separation` of MMoE's runs;
        - ``label_correlation``: ``{correlation: {"mean", "std", "values"}}``;
        - ``selection_bias``: :func:`tfjoint.bench.selection_bias.run_selection_bias`'s
          dict, or ``None``;
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
    seed_list = list(range(seeds))

    bias_models = list(bias_models) if selection_bias else []
    unknown = [name for name in bias_models if name not in BIAS_MODELS]
    if unknown:
        raise ValueError(f"bias_models must be among {BIAS_MODELS}. Received: {unknown}")
    total = len(architectures) * len(correlations) * seeds + len(bias_models) * seeds
    with tqdm.tqdm(total=total, desc="mtl-synthetic", unit="fit", disable=not verbose) as progress:
        runs, parameters = run_correlation(
            architectures,
            correlations,
            seed_list,
            budget,
            n_train,
            n_eval,
            input_dim=input_dim,
            scale=scale,
            sinusoid_seed=sinusoid_seed,
            progress=progress,
        )
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

    results = summarize_correlation(runs, architectures, correlations, seed_list)
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
