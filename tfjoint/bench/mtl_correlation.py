"""Task relatedness: the MMoE paper's synthetic experiment (J. Ma et al., "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018,
sections 4.2-4.3 and Fig. 4).

Two regression tasks whose weight vectors have cosine ``correlation``
(:func:`tfjoint.datasets.synthetic.mmoe_regression`) are learned by each task architecture
under one identical budget, at the paper's sizes (8 experts of 16 units, towers of 8; the
others sized to the same ~15k parameters). The architectures read the raw ``x``
(``raw_inputs`` embedding), as in the paper. Each (correlation, seed) draws fresh rows;
40,000 by default, since with 8,000 every model mostly over-fits. Measured, paired by seed
and with no sign assumed: each model's eval MSE, its change from the first correlation to
the last, the gap ``MSE(shared_bottom) - MSE(arch)`` and that gap's change, and how
differently MMoE's two gates use the experts.

Each architecture is traced once and reset to a seed's fresh weights before each run
(:func:`compile_for_resets`, :func:`reset_model`): tracing a 101-input graph costs more than
training it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tqdm

from tfjoint.bench.mtl_budget import Budget, mean_std
from tfjoint.bench.mtl_synthetic_data import (
    INPUT_DIM,
    TASKS,
    label_correlation,
    regression_batches,
    regression_spec,
)
from tfjoint.datasets import synthetic
from tfjoint.features import DatasetSpec
from tfjoint.joint import JointModel, build_joint_model

ARCHITECTURES = ("shared_bottom", "omoe", "mmoe", "ple")
CORRELATIONS = (1.0, 0.9, 0.5, 0.0)
BASELINE = "shared_bottom"

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


def correlation_key(correlation: float) -> str:
    """How the results key a correlation: ``f"{correlation:g}"``."""
    return f"{correlation:g}"


def build_regression_model(spec: DatasetSpec, architecture: str, seed: int) -> JointModel:
    """A fresh joint model of ``architecture`` over the raw inputs of ``spec``, its weights
    drawn with ``seed``."""
    keras.utils.set_random_seed(seed)
    return build_joint_model(
        spec,
        {},
        task_architecture=architecture,
        sequence_encoder=None,
        modality_encoder=None,
        embedding="raw_inputs",
        component_kwargs={"task_architecture": ARCHITECTURE_KWARGS.get(architecture, {})},
    )


def compile_for_resets(
    spec: DatasetSpec, architecture: str, budget: Budget
) -> tuple[JointModel, list[np.ndarray]]:
    """One compiled model of ``architecture``, to be reset before every run, and the initial
    state of its optimizer."""
    model = build_regression_model(spec, architecture, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(budget.learning_rate), **budget.compile_kwargs())
    model.optimizer.build(model.trainable_variables)
    return model, [v.numpy() for v in model.optimizer.variables]


def reset_model(
    model: JointModel, weights: list[np.ndarray], optimizer_state: list[np.ndarray]
) -> JointModel:
    """``model`` with ``weights`` (those of a model freshly built with some seed) and its
    optimizer back at ``optimizer_state``: a run on it is the same as one on a new model,
    without a new trace."""
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_state):
        variable.assign(value)
    return model


def gate_means(history: dict[str, list[float]]) -> dict[str, float]:
    """Last-epoch mean gate weight per task and expert, for the gated architectures."""
    return {k: float(v[-1]) for k, v in history.items() if k.startswith("gate_")}


def gate_separation(gates: dict[str, float], num_experts: int) -> float:
    """Total-variation distance between the two tasks' mean gate weights over the same
    experts: 0 when both tasks mix the experts alike, 1 when they use disjoint experts."""
    weights = np.array([[gates[f"gate_{task}_expert_{i}"] for i in range(num_experts)] for task in TASKS])
    return float(0.5 * np.abs(weights[0] - weights[1]).sum())


def task_mse(model: keras.Model, dataset: tf.data.Dataset, y: np.ndarray) -> dict[str, float]:
    """Eval MSE of each task of ``model`` on ``dataset``, whose labels are ``y``."""
    predictions = model.predict(dataset, verbose=0)
    return {
        name: float(np.mean((np.ravel(predictions[name]) - y[:, i]) ** 2)) for i, name in enumerate(TASKS)
    }


def parameter_counts(model: JointModel) -> dict[str, int]:
    """Parameters in all and in the task architecture alone (the rest is the two heads)."""
    return {
        "total": int(model.count_params()),
        "task_architecture": int(model.task_architecture.count_params()),
    }


def run_correlation(
    architectures: Sequence[str],
    correlations: Sequence[float],
    seeds: Sequence[int],
    budget: Budget,
    n_train: int,
    n_eval: int,
    *,
    input_dim: int = INPUT_DIM,
    scale: float = 1.0,
    sinusoid_seed: int | None = None,
    progress: tqdm.tqdm | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Trains every architecture on every (correlation, seed); the arguments are
    :func:`tfjoint.bench.mtl_synthetic.run_mtl_synthetic`'s.

    Returns:
        ``(runs, parameters)``: one dict per fit (see ``run_mtl_synthetic``'s ``runs``) and
        ``{arch: parameter_counts}``.
    """
    spec = regression_spec(input_dim)
    # One traced model per architecture, reset to each seed's fresh weights; the data of
    # one (correlation, seed) lives only while the architectures train on it.
    compiled = {a: compile_for_resets(spec, a, budget) for a in architectures}
    parameters = {a: parameter_counts(model) for a, (model, _) in compiled.items()}

    @functools.cache
    def fresh_weights(architecture: str, seed: int) -> list[np.ndarray]:
        return build_regression_model(spec, architecture, seed).get_weights()

    runs = []
    for correlation in correlations:
        for seed in seeds:
            x, y = synthetic.mmoe_regression(
                n_train + n_eval,
                correlation,
                dim=input_dim,
                seed=seed,
                scale=scale,
                sinusoid_seed=sinusoid_seed,
            )
            train = regression_batches(x[:n_train], y[:n_train], spec, budget.batch_size, seed)
            evaluation = regression_batches(x[n_train:], y[n_train:], spec, 4096, None)
            for architecture in architectures:
                if progress is not None:
                    progress.set_postfix_str(f"{architecture} correlation={correlation:g} seed={seed}")
                model = reset_model(
                    compiled[architecture][0], fresh_weights(architecture, seed), compiled[architecture][1]
                )
                history = model.fit(train, epochs=budget.epochs, verbose=0).history
                mse = task_mse(model, evaluation, y[n_train:])
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
                        "gates": gate_means(history),
                    }
                )
                if progress is not None:
                    progress.update()
    return runs, parameters


def summarize_correlation(
    runs: list[dict[str, Any]], architectures: list[str], correlations: list[float], seeds: list[int]
) -> dict[str, Any]:
    """``loss``, ``gap``, ``gap_growth``, ``label_correlation``, ``gate_separation``,
    ``train_loss`` and ``loss_change`` of ``runs`` (see ``run_mtl_synthetic``'s results)."""
    key = correlation_key
    loss = {(r["architecture"], r["correlation"], r["seed"]): r["loss"] for r in runs}
    summary: dict[str, Any] = {
        "loss": {
            a: {key(c): mean_std([loss[a, c, s] for s in seeds]) for c in correlations} for a in architectures
        },
        "gap": {},
        "gap_growth": {},
        "label_correlation": {
            key(c): mean_std(
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
            key(c): mean_std(
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
        a: {key(c): mean_std([train[a, c, s] for s in seeds]) for c in correlations} for a in architectures
    }
    # How much each loss moves from the first correlation to the last (1.0 -> 0.0 by
    # default), paired by seed: the paper's "all models lose as correlation falls".
    first, last = correlations[0], correlations[-1]
    summary["loss_change"] = {
        a: mean_std([loss[a, last, s] - loss[a, first, s] for s in seeds]) for a in architectures
    }
    if BASELINE in architectures:
        summary["gap"] = {
            a: {key(c): mean_std([loss[BASELINE, c, s] - loss[a, c, s] for s in seeds]) for c in correlations}
            for a in architectures
            if a != BASELINE
        }
        # Whether the advantage over shared-bottom grows as correlation falls: the gap at the
        # last correlation minus the gap at the first, paired by seed (> 0: it grows).
        summary["gap_growth"] = {
            a: mean_std(
                [
                    (loss[BASELINE, last, s] - loss[a, last, s])
                    - (loss[BASELINE, first, s] - loss[a, first, s])
                    for s in seeds
                ]
            )
            for a in summary["gap"]
        }
    return summary
