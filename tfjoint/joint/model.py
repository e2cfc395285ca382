"""The joint model: slots wired into one Keras model, one loss over tasks.

::

    features --> embedding E --+-- sequence encoder  -> E^B --+
                               +-- modality encoder  -> E^M --+--> concat (U) --> E_merge
    E_merge --> scenario adapter --> task architecture --> {task: head(tower_k)}

The loss is ``sum_k w_k L_k`` where a task with a ``parent`` (a cascade such as ``like``
given ``watch``) only counts rows whose parent label is 1; the ``balancer`` slot turns the
per-task losses (and, for gradient-level strategies, the per-task gradients on the shared
parameters) into one update inside :meth:`JointModel.train_step`.

A ``sample_weight`` given to ``fit`` or ``evaluate`` (one weight per row, ``(n,)`` or
``(n, 1)``, or a dict of them by task) weighs each row in every task's loss:
``L_k = sum_i s_i d_ik l_ik / sum_i s_i d_ik`` with ``d_ik`` the task's defined rows
(:meth:`~tfjoint.features.TaskSpec.defined_rows`) and ``L_k = 0`` when that sum is 0. This
is a weighted mean, not Keras's ``sum_over_batch_size`` (``sum_i s_i l_i / n``): a row of
weight 0 counts as if it were not in the batch, whatever the other weights are. The
entire-space cascade steps take the same weighted means over all rows
(``cascade_step_loss(..., sample_weight=...)``), in both training paths.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution

from tfjoint import features
from tfjoint.balancing import FixedWeights, TaskBalancer
from tfjoint.features import TaskSpec
from tfjoint.joint.balanced_step import balanced_update
from tfjoint.joint.cascade import add_cascade_outputs
from tfjoint.joint.precision import precision_scope
from tfjoint.layers.core.contracts import (
    DENSE_INPUTS_KEY,
    AddsToLogits,
    NeedsEmbeddings,
    ScenarioAware,
    weighted_mean,
)
from tfjoint.layers.core.scenarios import UnknownScenarioMasking

SLOTS = ("embedding", "task_architecture", "sequence_encoder", "modality_encoder", "scenario_adapter", "balancer")

_LOSSES = {
    "binary_crossentropy": keras.losses.binary_crossentropy,
    "mean_squared_error": keras.losses.mean_squared_error,
    "mean_absolute_error": keras.losses.mean_absolute_error,
    "huber": keras.losses.huber,
}


def check_keras3() -> None:
    major = int(keras.__version__.split(".")[0])
    if major < 3:
        raise RuntimeError(
            f"tfjoint needs Keras 3; this process runs Keras {keras.__version__}. "
            "Import `keras`, never `tf.keras`, and unset TF_USE_LEGACY_KERAS."
        )


@keras.saving.register_keras_serializable(package="tfjoint")
class JointModel(keras.Model):
    """A joint model: embedding, optional encoders and adapter, a task architecture, heads.

    Prefer :func:`tfjoint.joint.build_joint_model`, which fills the slots from a dataset spec and the
    catalog. Outputs are a dict keyed by task name: probabilities for binary tasks, raw
    values for regression tasks.

    Args:
        inputs_spec: ``{key: (shape, dtype)}`` of the transformed features.
        tasks: task specs (dicts or :class:`TaskSpec`).
        embedding: the embedding layer (slot ``embedding``).
        task_architecture: maps ``E_merge`` to ``{task: tower output}``; a
            :class:`~tfjoint.layers.core.contracts.ScenarioAware` one is called on
            ``[E_merge, scenario ids]``, a ``NeedsEmbeddings`` one on
            ``{"inputs": E_merge, "scenario": ids, *extra_inputs}``, a
            ``CascadeArchitecture`` trains its cascade steps over the entire space (see
            :mod:`tfjoint.joint.cascade`).
        sequence_encoder: optional, maps the embedding dict to ``E^B``.
        modality_encoder: optional, maps the embedding dict to ``E^M``.
        scenario_adapter: optional, maps ``[E_merge, scenario ids]`` to an adapted
            ``E_merge`` of any width; an :class:`~tfjoint.layers.core.contracts.AddsToLogits`
            one also returns a scalar per row added to every task head's logit (STAR).
        balancer: a :class:`tfjoint.balancing.TaskBalancer`; defaults to fixed weights.
        num_scenarios: ``P``, the number of known scenarios; needed when
            ``unknown_scenario_rate > 0``.
        unknown_scenario_rate: in training, the probability that a row's scenario is
            replaced by the unknown id ``P`` before every component sees it
            (:class:`~tfjoint.layers.core.scenarios.UnknownScenarioMasking`), so each
            component's unknown-scenario fallback is trained; 0 (the default here, so
            that configs saved without it load as they were) turns it off.
            :func:`~tfjoint.joint.build_joint_model` sets 0.05.
        precision: the dtype policy the model's own layers (flatten, merge, heads) are
            built with, ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``
            (:mod:`tfjoint.joint.precision`); ``None``: Keras's global policy. The policy
            taken is saved, and the model reloads under it.
    """

    def __init__(
        self,
        inputs_spec: dict[str, Any],
        tasks: list[TaskSpec | dict],
        embedding: keras.layers.Layer,
        task_architecture: keras.layers.Layer,
        sequence_encoder: keras.layers.Layer | None = None,
        modality_encoder: keras.layers.Layer | None = None,
        scenario_adapter: keras.layers.Layer | None = None,
        balancer: TaskBalancer | None = None,
        num_scenarios: int | None = None,
        unknown_scenario_rate: float = 0.0,
        precision: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_keras3()
        with precision_scope(precision):
            task_specs = [t if isinstance(t, TaskSpec) else TaskSpec.from_json(t) for t in tasks]
            names = [t.name for t in task_specs]
            for t in task_specs:
                if t.parent is not None and t.parent not in names:
                    raise ValueError(f"task {t.name!r} has parent {t.parent!r}, which is not a task. Tasks: {names}")
                if t.loss_name not in _LOSSES:
                    raise ValueError(f"unknown loss {t.loss_name!r} for task {t.name!r}. Known: {sorted(_LOSSES)}")
            inputs = {
                key: keras.Input(shape=tuple(shape), dtype=dtype, name=key)
                for key, (shape, dtype) in inputs_spec.items()
            }
            model_inputs = inputs
            if unknown_scenario_rate:
                if num_scenarios is None:
                    raise ValueError(
                        "num_scenarios is needed when unknown_scenario_rate > 0. "
                        f"Received: num_scenarios=None, unknown_scenario_rate={unknown_scenario_rate}"
                    )
                masking = UnknownScenarioMasking(
                    num_scenarios, unknown_scenario_rate, name="unknown_scenario_masking"
                )
                inputs = {**inputs, features.SCENARIO_KEY: masking(inputs[features.SCENARIO_KEY])}
            embedded = embedding(inputs)
            parts = [keras.layers.Flatten(name="flatten_fields")(embedded["fields"])]
            if DENSE_INPUTS_KEY in embedded:  # dense features fed raw, beside the fields
                parts.append(embedded[DENSE_INPUTS_KEY])
            if sequence_encoder is not None:
                parts.append(sequence_encoder(embedded))
            if modality_encoder is not None:
                parts.append(modality_encoder(embedded))
            merged = keras.layers.Concatenate(name="merge")(parts) if len(parts) > 1 else parts[0]
            logit_offset = None
            if scenario_adapter is not None:
                merged = _call_in_context(scenario_adapter, merged, inputs, embedded)
                if isinstance(scenario_adapter, AddsToLogits):
                    merged, logit_offset = merged[AddsToLogits.OUTPUTS_KEY], merged[AddsToLogits.LOGIT_KEY]
            if isinstance(task_architecture, (ScenarioAware, NeedsEmbeddings)):
                # Joint multi-scenario multi-task architectures (HiNet, M2M, ...) see the scenario;
                # STEM reads its per-task field embeddings.
                towers = _call_in_context(task_architecture, merged, inputs, embedded)
            else:
                towers = task_architecture(merged)
            outputs = {t.name: _head(t, towers[t.name], logit_offset) for t in task_specs}
            # Entries a task architecture returns beside the task towers (e.g. ESCM2-DR's
            # imputed errors) are model outputs as they are, in float32 like the heads.
            outputs.update({k: _float32(k, v) for k, v in towers.items() if k not in outputs})
            by_name = {t.name: t for t in task_specs}
            cascaded = add_cascade_outputs(outputs, task_specs, task_architecture)
            super().__init__(inputs=model_inputs, outputs=outputs, **kwargs)
        # The policy every layer built above took (the global one, or ``precision``).
        self.precision = self.dtype_policy.name
        self.num_scenarios = num_scenarios
        self.unknown_scenario_rate = float(unknown_scenario_rate)
        self.entire_space_tasks = cascaded
        self.inputs_spec = {k: (list(s), d) for k, (s, d) in inputs_spec.items()}
        self.tasks = task_specs
        self._by_name = by_name
        self.embedding = embedding
        self.task_architecture = task_architecture
        self.sequence_encoder = sequence_encoder
        self.modality_encoder = modality_encoder
        self.scenario_adapter = scenario_adapter
        self.balancer = balancer or FixedWeights(name="balancer")
        self.balancer.bind(task_specs)
        self.task_loss_trackers = {t.name: keras.metrics.Mean(name=f"{t.name}_loss") for t in task_specs}
        self.task_aucs = {
            t.name: keras.metrics.AUC(name=f"{t.name}_auc") for t in task_specs if t.type == "binary"
        }

    def _joint_label(self, y: dict[str, Any], name: str) -> Any:
        label = ops.cast(ops.reshape(y[name], (-1, 1)), "float32")
        parent = self._by_name[name].parent
        return label if parent is None else label * self._joint_label(y, parent)

    def task_losses(
        self, y: dict[str, Any], y_pred: dict[str, Any], sample_weight: Any = None
    ) -> dict[str, Any]:
        """Per-task mean loss ``L_k`` over the rows the task is defined on.

        A cascade step of an entire-space architecture (ESMM) is instead judged over all
        rows: its joint output against the product of the labels along its chain.

        Args:
            y: labels by task, each ``(n,)`` or ``(n, 1)``.
            y_pred: the model's outputs.
            sample_weight: ``None``, one weight per row (``(n,)`` or ``(n, 1)``) for every
                task, or a dict of them by task name (a task missing from it is unweighted).
                Each task's loss is then the mean over its defined rows weighted by them
                (see the module doc).
        """
        losses = {}
        for task in self.tasks:
            weights = _row_weights(sample_weight, task.name)
            if task.name in self.entire_space_tasks:
                parent = task.parent

                def column(key: str) -> Any:
                    return ops.cast(ops.reshape(y_pred[key], (-1, 1)), "float32")

                extra = {}
                if weights is not None:
                    extra["sample_weight"] = ops.reshape(weights, (-1, 1))
                    _check_takes_sample_weight(self.task_architecture)
                losses[task.name] = self.task_architecture.cascade_step_loss(
                    task.name,
                    parent_label=self._joint_label(y, parent),
                    label=self._joint_label(y, task.name),
                    parent_joint=column(f"{parent}_joint" if f"{parent}_joint" in y_pred else parent),
                    conditional=column(task.name),
                    joint=column(f"{task.name}_joint"),
                    outputs=y_pred,
                    **extra,
                )
                continue
            y_true = ops.cast(ops.reshape(y[task.name], (-1, 1)), "float32")
            pred = ops.cast(ops.reshape(y_pred[task.name], (-1, 1)), "float32")
            per_example = _LOSSES[task.loss_name](y_true, pred)
            losses[task.name] = weighted_mean(per_example, self._task_rows(task, y, weights))
        return losses

    def _task_rows(self, task: TaskSpec, y: dict[str, Any], weights: Any) -> Any:
        """``(n,)``: each row's weight in task ``task``'s loss, ``s_i d_ik`` (see the module doc)."""
        if task.name in self.entire_space_tasks:
            rows = ops.ones_like(ops.reshape(ops.cast(y[task.name], "float32"), (-1,)))
        else:
            rows = task.defined_rows(y)
        return rows if weights is None else rows * weights

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        terms = self._balanced_terms(y, y_pred, training=training, sample_weight=sample_weight)
        return scale_loss_for_distribution(sum(terms.values()) + self._regularization())

    def _balanced_terms(
        self, y: Any, y_pred: Any, training: bool = True, sample_weight: Any = None
    ) -> dict[str, Any]:
        """The balancer's per-task terms of ``w_k L_k``; also updates the per-task trackers."""
        losses = self.task_losses(y, y_pred, sample_weight=sample_weight)
        for task in self.tasks:
            # Weighted by the (sample-weighted) rows the task is defined on, so the epoch
            # value is the weighted mean over rows (and an empty batch changes nothing).
            defined = ops.sum(self._task_rows(task, y, _row_weights(sample_weight, task.name)))
            self.task_loss_trackers[task.name].update_state(losses[task.name], sample_weight=defined)
        return self.balancer.weight_losses({t.name: t.weight * losses[t.name] for t in self.tasks}, training=training)

    def _regularization(self) -> Any:
        return sum((ops.cast(extra, "float32") for extra in self.losses), ops.zeros((), "float32"))

    def train_step(self, data: Any) -> dict[str, Any]:
        """One update. With a gradient-level balancer, the shared parameters get
        ``balancer.combine_gradients`` of the per-task gradients and every task-specific
        parameter the plain gradient of the objective (the balancing contract of
        :mod:`tfjoint.balancing.task_gradients`)."""
        return self._for_reduction(self._update(data))

    def test_step(self, data: Any) -> dict[str, Any]:
        return self._for_reduction(super().test_step(data))

    def _for_reduction(self, logs: dict[str, Any]) -> dict[str, Any]:
        """Across workers Keras 3 reduces each step's logs with ``strategy.reduce("MEAN", v,
        axis=0)``, which fails on a scalar (tensorflow/tensorflow#72388): under a multi-worker
        strategy the logs go out as ``(1,)`` vectors, which that reduce turns back into
        scalars."""
        strategy = self.distribute_strategy
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
            strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
        )
        if not multi_worker:
            return logs
        return {k: ops.reshape(v, (1,)) if len(v.shape) == 0 else v for k, v in logs.items()}

    def _update(self, data: Any) -> dict[str, Any]:
        if not self.balancer.uses_task_gradients:
            return super().train_step(data)
        return balanced_update(self, data)

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Keras 3's TF trainer builds the model on the first batch, which under a strategy it
        gets with ``strategy.reduce("MEAN", batch)``; ``MultiWorkerMirroredStrategy`` cannot
        reduce a dict of inputs (keras-team/keras#20329, #20585). The build only needs shapes
        and dtypes, so this takes the first local replica's share of that batch instead."""
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(batches),
                )
                break
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        for task in self.tasks:
            if task.name in self.task_aucs:
                y_true = ops.reshape(y[task.name], (-1,))
                weights = task.defined_rows(y)
                row_weights = _row_weights(sample_weight, task.name)
                if row_weights is not None:
                    weights = weights * row_weights
                self.task_aucs[task.name].update_state(
                    y_true, ops.reshape(y_pred[task.name], (-1,)), sample_weight=weights
                )
        return self.get_metrics_result()

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "inputs_spec": self.inputs_spec,
            "tasks": [t.to_json() for t in self.tasks],
            **{slot: keras.saving.serialize_keras_object(getattr(self, slot)) for slot in SLOTS},
            "num_scenarios": self.num_scenarios,
            "unknown_scenario_rate": self.unknown_scenario_rate,
            "precision": self.precision,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> JointModel:
        config = dict(config)
        # The components' own sublayers take the global policy when they are built: they are
        # rebuilt under the saved one (a config saved before it was recorded: as it is).
        with precision_scope(config.get("precision")):
            for slot in SLOTS:
                if config.get(slot) is not None:
                    config[slot] = keras.saving.deserialize_keras_object(config[slot])
            return cls(**config)


def _row_weights(sample_weight: Any, task: str) -> Any:
    """Task ``task``'s ``(n,)`` float32 row weights from ``fit``'s ``sample_weight``, or ``None``.

    Keras hands a model with dict labels either the array it was given or, from arrays,
    that array once per output (a dict by task); a dict may also give each task its own.
    """
    if isinstance(sample_weight, dict):
        sample_weight = sample_weight.get(task)
    if sample_weight is None:
        return None
    return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


def _check_takes_sample_weight(architecture: Any) -> None:
    parameters = inspect.signature(architecture.cascade_step_loss).parameters
    if "sample_weight" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise TypeError(
            f"{architecture.__class__.__name__}.cascade_step_loss takes no `sample_weight`, so its "
            "cascade steps cannot weigh rows; add the keyword (see "
            "tfjoint.layers.core.contracts.CascadeArchitecture) or fit without sample_weight."
        )


def _head(task: TaskSpec, tower: Any, logit_offset: Any) -> Any:
    """Task ``task``'s output: ``act(Dense(1)(tower))``, or ``act(Dense(1)(tower) + s_a)``.

    ``logit_offset`` is the ``s_a`` of an :class:`~tfjoint.layers.core.contracts.AddsToLogits`
    scenario adapter (``(batch, 1)``), else ``None`` (the head is then one ``Dense`` layer).
    """
    activation = "sigmoid" if task.type == "binary" else None
    if logit_offset is None:
        return keras.layers.Dense(1, activation=activation, name=task.name, dtype="float32")(tower)
    # The last layer carries the task's name: Keras names the model's outputs after it.
    logit = keras.layers.Dense(1, name=f"{task.name}_logit", dtype="float32")(tower)
    logit = keras.layers.Add(name=f"{task.name}_plus_logit_offset", dtype="float32")([logit, logit_offset])
    return keras.layers.Activation(activation or "linear", name=task.name, dtype="float32")(logit)


def _float32(name: str, tensor: Any) -> Any:
    """``tensor`` itself if float32, else cast by a float32 layer named ``name`` (an output
    computed under a mixed-precision policy)."""
    if keras.backend.standardize_dtype(tensor.dtype) == "float32":
        return tensor
    return keras.layers.Identity(name=name, dtype="float32")(tensor)


def _call_in_context(layer: keras.layers.Layer, merged: Any, inputs: dict[str, Any], embedded: dict[str, Any]) -> Any:
    """Calls a scenario-aware component on ``[E_merge, scenario ids]``.

    A :class:`~tfjoint.layers.core.contracts.NeedsEmbeddings` component, whose
    ``extra_inputs`` name keys of the embedding's output (``"sequence"``,
    ``"sequence_mask"``, ``"target"``, ``"fields"``), is called on the dict
    ``{"inputs": E_merge, "scenario": ids, **{key: embedded[key]}}`` instead.
    """
    scenario = inputs[features.SCENARIO_KEY]
    extras = tuple(layer.extra_inputs) if isinstance(layer, NeedsEmbeddings) else ()
    if not extras:
        return layer([merged, scenario])
    missing = [k for k in extras if k not in embedded]
    if missing:
        raise ValueError(
            f"{layer.__class__.__name__} needs the embedding outputs {missing}, which this dataset "
            f"does not have (it has {sorted(embedded)})."
        )
    return layer({"inputs": merged, "scenario": scenario, **{k: embedded[k] for k in extras}})
