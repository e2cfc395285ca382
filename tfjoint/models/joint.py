"""One way to build a joint model: slots filled from the registry, one loss over tasks.

::

    features --> embedding E --+-- sequence encoder  -> E^B --+
                               +-- modality encoder  -> E^M --+--> concat (U) --> E_merge
    E_merge --> scenario adapter --> task architecture --> {task: head(tower_k)}

The loss is ``sum_k w_k L_k`` where a task with a ``parent`` (a cascade such as ``like``
given ``watch``) only counts rows whose parent label is 1; the ``balancer`` slot turns the
per-task losses (and, for gradient-level strategies, the per-task gradients on the shared
parameters) into one update inside :meth:`JointModel.train_step`.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution

from tfjoint import features, registry
from tfjoint.balancing import FixedWeights, TaskBalancer
from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.models.cascade import ConditionalFromJoint

_SLOTS = ("embedding", "task_architecture", "sequence_encoder", "modality_encoder", "scenario_adapter", "balancer")

_LOSSES = {
    "binary_crossentropy": keras.losses.binary_crossentropy,
    "mean_squared_error": keras.losses.mean_squared_error,
    "mean_absolute_error": keras.losses.mean_absolute_error,
    "huber": keras.losses.huber,
}


def _check_keras3() -> None:
    major = int(keras.__version__.split(".")[0])
    if major < 3:
        raise RuntimeError(
            f"tfjoint needs Keras 3; this process runs Keras {keras.__version__}. "
            "Import `keras`, never `tf.keras`, and unset TF_USE_LEGACY_KERAS."
        )


def _entire_space_step(task: TaskSpec, by_name: dict[str, TaskSpec]) -> bool:
    """Whether ``task`` is a binary cascade step (binary task under a binary parent)."""
    if task.parent is None or task.type != "binary" or by_name[task.parent].type != "binary":
        return False
    if list(by_name).index(task.parent) > list(by_name).index(task.name):
        raise ValueError(f"a parent task must come before its child: {task.parent!r} after {task.name!r}")
    return True


def input_shapes(spec: DatasetSpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape (without batch) and dtype of every transformed model input of ``spec``."""
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    for key in spec.categorical:
        shapes[key] = ((1,), "int64")
    for key in spec.dense:
        shapes[key] = ((1,), "float32")
    shapes[features.SCENARIO_KEY] = ((1,), "int64")
    if spec.sequence:
        shapes[features.SEQUENCE_ITEMS_KEY] = ((spec.sequence.max_len,), "int64")
        shapes[features.SEQUENCE_BEHAVIORS_KEY] = ((spec.sequence.max_len,), "int64")
    for token in spec.tokens:
        shapes[token.name] = ((token.max_len,), "int64")
    return shapes


@keras.saving.register_keras_serializable(package="tfjoint")
class JointModel(keras.Model):
    """A joint model: embedding, optional encoders and adapter, a task architecture, heads.

    Prefer :func:`build_joint_model`, which fills the slots from a dataset spec and the
    registry. Outputs are a dict keyed by task name: probabilities for binary tasks, raw
    values for regression tasks.

    Args:
        inputs_spec: ``{key: (shape, dtype)}`` of the transformed features.
        tasks: task specs (dicts or :class:`TaskSpec`).
        embedding: the embedding layer (slot ``embedding``).
        task_architecture: maps ``E_merge`` to ``{task: tower output}``; one whose class sets
            ``uses_scenario = True`` is called on ``[E_merge, scenario ids]``.
        sequence_encoder: optional, maps the embedding dict to ``E^B``.
        modality_encoder: optional, maps the embedding dict to ``E^M``.
        scenario_adapter: optional, maps ``[E_merge, scenario ids]`` to an adapted
            ``E_merge`` of any width.
        balancer: a :class:`tfjoint.balancing.TaskBalancer`; defaults to fixed weights.
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
        **kwargs: Any,
    ) -> None:
        _check_keras3()
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
        embedded = embedding(inputs)
        parts = [keras.layers.Flatten(name="flatten_fields")(embedded["fields"])]
        if sequence_encoder is not None:
            parts.append(sequence_encoder(embedded))
        if modality_encoder is not None:
            parts.append(modality_encoder(embedded))
        merged = keras.layers.Concatenate(name="merge")(parts) if len(parts) > 1 else parts[0]
        if scenario_adapter is not None:
            merged = _call_in_context(scenario_adapter, merged, inputs, embedded)
        if getattr(task_architecture, "uses_scenario", False):
            # Joint multi-scenario multi-task architectures (HiNet, M2M, ...) see the scenario.
            towers = _call_in_context(task_architecture, merged, inputs, embedded)
        else:
            towers = task_architecture(merged)
        outputs = {
            t.name: keras.layers.Dense(
                1, activation="sigmoid" if t.type == "binary" else None, name=t.name, dtype="float32"
            )(towers[t.name])
            for t in task_specs
        }
        # Entries a task architecture returns beside the task towers (e.g. ESCM2-DR's
        # imputed errors) are model outputs as they are.
        outputs.update({k: v for k, v in towers.items() if k not in outputs})
        by_name = {t.name: t for t in task_specs}
        cascaded = [t.name for t in task_specs if getattr(task_architecture, "entire_space", False)
                    and _entire_space_step(t, by_name)]
        direct = getattr(task_architecture, "entire_space", False) == "direct"
        for name in cascaded:
            parent = by_name[name].parent
            parent_joint = outputs.get(f"{parent}_joint", outputs[parent])
            if direct:
                # The head predicts p(task, joint) (AITM); the task output is the conditional.
                outputs[f"{name}_joint"] = outputs[name]
                outputs[name] = ConditionalFromJoint(name=f"{name}_conditional")([outputs[name], parent_joint])
            else:
                # p(task, joint) = p(parent, joint) * p(task | parent): pCTCVR = pCTR * pCVR.
                outputs[f"{name}_joint"] = keras.layers.Multiply(name=f"{name}_joint")([parent_joint, outputs[name]])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
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

    def _task_weights(self, y: dict[str, Any], task: TaskSpec, batch_like: Any) -> Any:
        if task.parent is None:
            return ops.ones_like(batch_like)
        return ops.cast(ops.reshape(y[task.parent], (-1,)), "float32")

    def _joint_label(self, y: dict[str, Any], name: str) -> Any:
        label = ops.cast(ops.reshape(y[name], (-1, 1)), "float32")
        parent = self._by_name[name].parent
        return label if parent is None else label * self._joint_label(y, parent)

    def task_losses(self, y: dict[str, Any], y_pred: dict[str, Any]) -> dict[str, Any]:
        """Per-task mean loss ``L_k`` over the rows the task is defined on.

        A cascade step of an entire-space architecture (ESMM) is instead judged over all
        rows: its joint output against the product of the labels along its chain.
        """
        losses = {}
        for task in self.tasks:
            if task.name in self.entire_space_tasks:
                parent = task.parent

                def column(key: str) -> Any:
                    return ops.cast(ops.reshape(y_pred[key], (-1, 1)), "float32")

                losses[task.name] = self.task_architecture.cascade_step_loss(
                    task.name,
                    parent_label=self._joint_label(y, parent),
                    label=self._joint_label(y, task.name),
                    parent_joint=column(f"{parent}_joint" if f"{parent}_joint" in y_pred else parent),
                    conditional=column(task.name),
                    joint=column(f"{task.name}_joint"),
                    outputs=y_pred,
                )
                continue
            y_true = ops.cast(ops.reshape(y[task.name], (-1, 1)), "float32")
            pred = ops.cast(ops.reshape(y_pred[task.name], (-1, 1)), "float32")
            per_example = _LOSSES[task.loss_name](y_true, pred)
            weights = self._task_weights(y, task, per_example)
            losses[task.name] = ops.sum(per_example * weights) / ops.maximum(ops.sum(weights), 1.0)
        return losses

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        terms = self._balanced_terms(y, y_pred, training=training)
        return scale_loss_for_distribution(sum(terms.values()) + self._regularization())

    def _balanced_terms(self, y: Any, y_pred: Any, training: bool = True) -> dict[str, Any]:
        """The balancer's per-task terms of ``w_k L_k``; also updates the per-task trackers."""
        losses = self.task_losses(y, y_pred)
        for task in self.tasks:
            # Weighted by the rows the task is defined on, so the epoch value is the mean over
            # rows (and an empty batch changes nothing).
            rows = ops.ones_like(ops.reshape(y[task.name], (-1,)), "float32")
            if task.name not in self.entire_space_tasks:
                rows = self._task_weights(y, task, rows)
            defined = ops.sum(rows)
            self.task_loss_trackers[task.name].update_state(losses[task.name], sample_weight=defined)
        return self.balancer.weight_losses({t.name: t.weight * losses[t.name] for t in self.tasks}, training=training)

    def _regularization(self) -> Any:
        return sum((ops.cast(extra, "float32") for extra in self.losses), ops.zeros((), "float32"))

    def train_step(self, data: Any) -> dict[str, Any]:
        """One update. With a gradient-level balancer, the shared parameters (those that two
        or more tasks reach) get ``balancer.combine_gradients`` of the per-task gradients;
        every other parameter gets the plain gradient of the objective."""
        if not self.balancer.uses_task_gradients:
            return super().train_step(data)
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self(x, training=True)
            terms = self._balanced_terms(y, y_pred)
            regularization = self._regularization()
            total = sum(terms.values()) + regularization
        self._loss_tracker.update_state(total, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
        per_task = [tape.gradient(scale_loss_for_distribution(terms[t.name]), variables) for t in self.tasks]
        grads = tape.gradient(scale_loss_for_distribution(total), variables)
        regularization_grads = (
            tape.gradient(scale_loss_for_distribution(regularization), variables) if self.losses else None
        )
        del tape
        shared = [i for i in range(len(variables)) if sum(g[i] is not None for g in per_task) >= 2]
        if shared:

            def flat(task_grads: list[Any]) -> Any:
                parts = [
                    tf.zeros_like(variables[i]) if task_grads[i] is None else tf.convert_to_tensor(task_grads[i])
                    for i in shared
                ]
                return tf.concat([tf.reshape(p, [-1]) for p in parts], axis=0)

            combined = self.balancer.combine_gradients([flat(g) for g in per_task], terms)
            offset = 0
            for i in shared:
                size = math.prod(variables[i].shape)
                grads[i] = tf.reshape(combined[offset : offset + size], variables[i].shape)
                # add_loss terms (e.g. gate regularisers) are not task gradients: keep them.
                if regularization_grads is not None and regularization_grads[i] is not None:
                    grads[i] += tf.convert_to_tensor(regularization_grads[i])
                offset += size
        self.optimizer.apply(grads, variables)
        return self.compute_metrics(x, y, y_pred)

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        for task in self.tasks:
            if task.name in self.task_aucs:
                y_true = ops.reshape(y[task.name], (-1,))
                weights = self._task_weights(y, task, ops.cast(y_true, "float32"))
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
            **{slot: keras.saving.serialize_keras_object(getattr(self, slot)) for slot in _SLOTS},
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> JointModel:
        config = dict(config)
        for slot in _SLOTS:
            if config.get(slot) is not None:
                config[slot] = keras.saving.deserialize_keras_object(config[slot])
        return cls(**config)


def _call_in_context(layer: keras.layers.Layer, merged: Any, inputs: dict[str, Any], embedded: dict[str, Any]) -> Any:
    """Calls a scenario-aware component on ``[E_merge, scenario ids]``.

    A component whose class lists ``extra_inputs`` (keys of the embedding's output, such
    as ``"sequence"``, ``"sequence_mask"``, ``"target"``, ``"fields"``) is called on the dict
    ``{"inputs": E_merge, "scenario": ids, **{key: embedded[key]}}`` instead.
    """
    scenario = inputs[features.SCENARIO_KEY]
    extras = tuple(getattr(layer, "extra_inputs", ()))
    if not extras:
        return layer([merged, scenario])
    missing = [k for k in extras if k not in embedded]
    if missing:
        raise ValueError(
            f"{layer.__class__.__name__} needs the embedding outputs {missing}, which this dataset "
            f"does not have (it has {sorted(embedded)})."
        )
    return layer({"inputs": merged, "scenario": scenario, **{k: embedded[k] for k in extras}})


def _component(slot: str, choice: str | keras.layers.Layer, context: dict[str, Any], overrides: dict[str, Any]) -> keras.layers.Layer:
    if isinstance(choice, keras.layers.Layer):
        return choice
    entry = registry.get(choice, slot=slot)
    return entry.cls(**{**context, **overrides}, name=slot)


def build_joint_model(
    spec: DatasetSpec,
    vocab_sizes: dict[str, int],
    *,
    task_architecture: str | keras.layers.Layer = "mmoe",
    sequence_encoder: str | keras.layers.Layer | None = "behavior_pooling",
    modality_encoder: str | keras.layers.Layer | None = "gating_fusion",
    scenario_adapter: str | keras.layers.Layer | None = None,
    embedding: str | keras.layers.Layer = "feature_embedding",
    balancer: str | keras.layers.Layer = "fixed",
    tasks: list[TaskSpec] | None = None,
    embedding_dim: int = 16,
    component_kwargs: dict[str, dict[str, Any]] | None = None,
) -> JointModel:
    """Builds the joint model of ``spec`` with one component per slot.

    Each slot takes a registered name (see ``tfjoint models``) or a layer instance. A named
    component is constructed from what the dataset implies (vocabularies, task names,
    number of scenarios and behaviors), updated with ``component_kwargs[slot]``. A slot
    whose input the dataset lacks (no sequence, no token modality) is left empty.

    Example:
    >>> from tfjoint.features import SYNTHETIC
    >>> sizes = {k: 10 for k in SYNTHETIC.categorical + ("item_tags",)}
    >>> model = build_joint_model(SYNTHETIC, sizes, task_architecture="shared_bottom")
    >>> sorted(model.output_names) == sorted(SYNTHETIC.label_keys)
    True
    """
    overrides = component_kwargs or {}
    unknown = set(overrides) - set(registry.SLOTS)
    if unknown:
        raise ValueError(f"component_kwargs keys must be slots {registry.SLOTS}. Received: {sorted(unknown)}")
    task_specs = list(tasks or spec.tasks)
    embedding_layer = _component(
        "embedding",
        embedding,
        {
            "vocab_sizes": vocab_sizes,
            "categorical": list(spec.categorical),
            "dense": list(spec.dense),
            "num_scenarios": spec.num_scenarios,
            "embedding_dim": embedding_dim,
            "sequence_item_feature": spec.sequence.item_feature if spec.sequence else None,
            "num_behaviors": spec.sequence.num_behaviors if spec.sequence else 0,
            "tokens": [t.name for t in spec.tokens],
        },
        overrides.get("embedding", {}),
    )
    seq = None
    if sequence_encoder is not None and spec.sequence is not None:
        seq = _component(
            "sequence_encoder",
            sequence_encoder,
            {"num_behaviors": spec.sequence.num_behaviors},
            overrides.get("sequence_encoder", {}),
        )
    modal = None
    if modality_encoder is not None and spec.tokens:
        modal = _component(
            "modality_encoder",
            modality_encoder,
            {"modalities": [t.name for t in spec.tokens]},
            overrides.get("modality_encoder", {}),
        )
    adapter = None
    if scenario_adapter is not None:
        adapter = _component(
            "scenario_adapter",
            scenario_adapter,
            {"num_scenarios": spec.num_scenarios},
            overrides.get("scenario_adapter", {}),
        )
    arch_context: dict[str, Any] = {"task_names": [t.name for t in task_specs]}
    arch_cls = registry.get(task_architecture, slot="task_architecture").cls if isinstance(task_architecture, str) else None
    if getattr(arch_cls, "uses_scenario", False):
        arch_context["num_scenarios"] = spec.num_scenarios
    if getattr(arch_cls, "uses_cascade_steps", False):
        by_name = {t.name: t for t in task_specs}
        arch_context["imputed_tasks"] = [t.name for t in task_specs if _entire_space_step(t, by_name)]
    arch = _component(
        "task_architecture",
        task_architecture,
        arch_context,
        overrides.get("task_architecture", {}),
    )
    return JointModel(
        input_shapes(spec),
        task_specs,
        embedding=embedding_layer,
        task_architecture=arch,
        sequence_encoder=seq,
        modality_encoder=modal,
        scenario_adapter=adapter,
        balancer=_component("balancer", balancer, {}, overrides.get("balancer", {})),
        name=f"joint_{arch.__class__.__name__}",
    )
