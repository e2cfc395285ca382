"""Staged training: components whose schedule is more than one ``fit``.

A component that is :class:`~tfjoint.layers.core.contracts.StagedTraining` (M-LoRA) lists
its :class:`~tfjoint.layers.core.contracts.TrainingStage` s; this module runs them on the
joint model that holds it. :func:`fit_joint_model` is the one training entry point of the
TFX Trainer and the benches: a plain ``fit`` for every other model.

- :func:`pretrain` runs the stages that use every row (M-LoRA: the shared backbone);
- :func:`fine_tune` runs the per-scenario stages (M-LoRA: each scenario's own pair);
- :func:`add_scenarios` grows a trained model by new scenarios, each with fresh weights
  that start as the unknown scenario's path.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfjoint import features
from tfjoint.joint.model import JointModel
from tfjoint.layers.core.arguments import whole_number
from tfjoint.layers.core.contracts import StagedTraining, TrainingStage

Optimizer = str | dict | keras.optimizers.Optimizer


def staged_component(model: JointModel) -> StagedTraining | None:
    """The model's component with its own schedule, if any (at most one)."""
    staged = [
        getattr(model, slot) for slot in ("scenario_adapter", "task_architecture")
        if isinstance(getattr(model, slot), StagedTraining)
    ]
    return staged[0] if staged else None


def _staged(model: JointModel) -> StagedTraining:
    component = staged_component(model)
    if component is None:
        raise TypeError(
            "the model has no component with training stages (e.g. scenario_adapter='m_lora'). "
            f"Received: scenario_adapter={model.scenario_adapter!r}"
        )
    return component


def _fresh_optimizer(optimizer: Optimizer) -> keras.optimizers.Optimizer:
    # A Keras 3 optimizer is built for one list of variables: every stage gets its own copy.
    return keras.optimizers.get(keras.optimizers.serialize(keras.optimizers.get(optimizer)))


@contextlib.contextmanager
def _training_stage(model: JointModel, optimizer: Optimizer, train: list[Any], freeze_layers: bool) -> Iterator[None]:
    """Trains only the variables ``train`` inside the block, then restores the model.

    With ``freeze_layers``, every layer that holds none of ``train`` is also set
    ``trainable = False``, which keeps layers with statistics (batch norm, partitioned
    norm) in inference mode, so their non-trainable state does not move either.
    The model is compiled with a fresh copy of ``optimizer`` for the block (Keras 3
    collects the trainable variables at compile and fit time). On exit the layer and
    variable ``trainable`` flags are restored and the model is compiled again for them:
    with its previous compile configuration if it had one, else with a fresh copy of
    ``optimizer``. Optimizer state does not survive a stage.
    """
    layers = model._flatten_layers(include_self=False)  # parents before their sublayers
    layer_flags = [(layer, layer.trainable) for layer in layers]
    variable_flags = [(v, v.trainable) for v in model.variables]
    previous = model.get_compile_config() if model.compiled else None
    keep = {id(v) for v in train}
    try:
        if freeze_layers:
            for layer in layers:
                if not any(id(v) in keep for v in layer.variables):
                    layer.trainable = False
        for v, _ in variable_flags:
            v.trainable = id(v) in keep
        model.compile(optimizer=_fresh_optimizer(optimizer))
        yield
    finally:
        # The setter recurses into sublayers and their variables: restore top-down, then variables.
        for layer, flag in layer_flags:
            layer.trainable = flag
        for v, flag in variable_flags:
            v.trainable = flag
        if previous:
            model.compile_from_config(previous)
        else:
            model.compile(optimizer=_fresh_optimizer(optimizer))
            # As compile_from_config does: a saved model then holds a complete optimizer.
            model.optimizer.build(model.trainable_variables)


def _fit(model: JointModel, data: Any, epochs: int, batch_size: int, verbose: Any, **fit_kwargs: Any) -> keras.callbacks.History:
    if isinstance(data, tf.data.Dataset):
        return model.fit(data, epochs=epochs, verbose=verbose, **fit_kwargs)
    x, y = data
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose, **fit_kwargs)


def _check_data(data: Any) -> None:
    if isinstance(data, tf.data.Dataset):
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], dict)):
        raise ValueError(
            "data must be a batched tf.data.Dataset of (x, y) or a tuple (x, y) of dicts of arrays. "
            f"Received: {type(data).__name__}"
        )


def _scenario_rows(data: Any, scenario: int) -> Any:
    """The rows of ``data`` whose ``x["scenario"]`` is ``scenario``; ``None`` if there are none."""
    if isinstance(data, tf.data.Dataset):

        def select(*batch: Any) -> Any:
            ids = tf.reshape(tf.cast(batch[0][features.SCENARIO_KEY], tf.int64), [-1])
            mask = tf.equal(ids, scenario)
            return tf.nest.map_structure(lambda t: tf.boolean_mask(t, mask), batch)

        def non_empty(*batch: Any) -> Any:
            return tf.size(batch[0][features.SCENARIO_KEY]) > 0

        rows = data.map(select).filter(non_empty)
        return rows if any(True for _ in rows.take(1)) else None
    x, y = data
    mask = np.reshape(np.asarray(x[features.SCENARIO_KEY]), (-1,)) == scenario
    if not mask.any():
        return None
    return keras.tree.map_structure(lambda a: np.asarray(a)[mask], (x, y))


def run_stage(
    model: JointModel, stage: TrainingStage, data: Any, optimizer: Optimizer = "adam",
    batch_size: int = 32, verbose: Any = "auto",
) -> keras.callbacks.History | None:
    """Runs one stage; ``None`` when its scenario has no rows in ``data``."""
    rows = data if stage.scenario is None else _scenario_rows(data, stage.scenario)
    if rows is None:
        return None
    if stage.train is None:
        frozen = {id(v) for v in stage.frozen}
        train = [v for v in model.trainable_variables if id(v) not in frozen]
    else:
        train = list(stage.train)
    with _training_stage(model, optimizer, train, freeze_layers=stage.freeze_layers):
        return _fit(model, rows, stage.epochs, batch_size, verbose)


def pretrain(
    model: JointModel, data: Any, epochs: int = 1, optimizer: Optimizer = "adam",
    batch_size: int = 32, verbose: Any = "auto",
) -> keras.callbacks.History:
    """Stage 1 (M-LoRA): trains everything but the per-scenario weights, on every row.

    With M-LoRA's ``B = 0`` (as initialized) every scenario runs the shared backbone, so
    this is the paper's pre-training of the shared network on all domains; the LoRA
    variables are frozen for the stage and left unchanged.

    Args:
        model: a joint model with a :class:`StagedTraining` component.
        data: a batched ``tf.data.Dataset`` of ``(x, y)`` dicts, or a tuple ``(x, y)`` of
            dicts of arrays.
        epochs: number of epochs.
        optimizer: an optimizer (copied, not reused), its name or its config.
        batch_size: batch size for array data.
        verbose: passed to ``fit``.

    Returns:
        The ``History`` of the stage. On return the trainable flags are as before and the
        model is compiled again for them (see :func:`fine_tune`).
    """
    component = _staged(model)
    whole_number("epochs", epochs)
    _check_data(data)
    stage = next(s for s in component.training_stages(1) if s.scenario is None)
    return run_stage(model, dataclasses.replace(stage, epochs=epochs), data, optimizer, batch_size, verbose)


def fine_tune(
    model: JointModel, data: Any, scenarios: list[int] | None = None, epochs: int = 1,
    optimizer: Optimizer = "adam", batch_size: int = 32, verbose: Any = "auto",
) -> dict[int, keras.callbacks.History]:
    """Stage 2 (M-LoRA): trains each scenario's own weights on that scenario's rows only.

    For each ``t`` in ``scenarios``, one after the other: every layer of the model
    (embedding, encoders, backbone, task architecture, heads) and every other scenario's
    weights are frozen, the model is compiled with a fresh copy of ``optimizer``, and
    scenario ``t``'s weights are trained for ``epochs`` on the rows whose
    ``x["scenario"] == t``. Layers with statistics are frozen too, so they run in
    inference mode and nothing else changes. A scenario without rows in ``data`` is
    skipped. Afterwards the previous trainable flags are restored and the model is
    compiled again: with its previous compile configuration if it was compiled, else with
    ``optimizer``; optimizer state does not carry over.

    Args:
        model: a joint model with a :class:`StagedTraining` component.
        data: a batched ``tf.data.Dataset`` of ``(x, y)`` dicts (each batch is filtered on
            ``x["scenario"]``; finding out whether a scenario has rows reads up to its
            first one), or a tuple ``(x, y)`` of dicts of arrays.
        scenarios: scenario ids in ``[0, num_scenarios)``; all of them when ``None``.
        epochs: number of epochs per scenario.
        optimizer: an optimizer (copied, not reused), its name or its config.
        batch_size: batch size for array data.
        verbose: passed to ``fit``.

    Returns:
        ``{t: History}`` for every scenario that had rows.
    """
    component = _staged(model)
    whole_number("epochs", epochs)
    _check_data(data)
    per_scenario = {s.scenario: s for s in component.training_stages(1) if s.scenario is not None}
    p = len(per_scenario)
    scenarios = list(range(p)) if scenarios is None else list(scenarios)
    bad = [t for t in scenarios if int(t) != t or t not in per_scenario]
    if bad:
        raise ValueError(f"scenarios must be ids in [0, {p}). Received: scenarios={scenarios}")
    histories = {}
    for t in scenarios:
        stage = dataclasses.replace(per_scenario[t], epochs=epochs)
        history = run_stage(model, stage, data, optimizer, batch_size, verbose)
        if history is not None:
            histories[t] = history
    return histories


def fit_joint_model(
    model: JointModel, data: Any, epochs: int, optimizer: Optimizer | None = None,
    batch_size: int = 32, verbose: Any = "auto", **fit_kwargs: Any,
) -> dict[str, keras.callbacks.History]:
    """Trains ``model`` for a budget of ``epochs``: its component's stages, or one ``fit``.

    The entry point of the TFX Trainer and the benches. Without a staged component the
    model is compiled with ``optimizer`` (when given) and fitted once, with
    ``fit_kwargs`` (validation data, callbacks); with one, every stage of
    ``training_stages(epochs)`` runs in order, each with a fresh copy of ``optimizer``
    (default: of the optimizer the model was compiled with, else Adam), and
    ``fit_kwargs`` are not used.

    Returns:
        ``{"": History}``, or ``{stage name: History}`` for every stage that ran.
    """
    whole_number("epochs", epochs)
    _check_data(data)
    component = staged_component(model)
    if component is None:
        if optimizer is not None:
            model.compile(optimizer=optimizer)
        return {"": _fit(model, data, epochs, batch_size, verbose, **fit_kwargs)}
    if optimizer is None:
        optimizer = model.optimizer if model.compiled else "adam"
    histories = {}
    for stage in component.training_stages(epochs):
        history = run_stage(model, stage, data, optimizer, batch_size, verbose)
        if history is not None:
            histories[stage.name] = history
    return histories


def add_scenarios(model: JointModel, num_new: int) -> JointModel:
    """A copy of ``model`` with ``num_new`` more scenarios, each with fresh weights.

    The new model has ``P + num_new`` known scenarios: ids ``P .. P + num_new - 1`` are the
    new ones and ``P + num_new`` becomes the unknown-scenario id (the data transform must
    map scenarios the same way). Every weight is copied; the embedding's scenario table
    grows from ``P + 1`` to ``P + num_new + 1`` rows: rows ``0 .. P - 1`` are copied, the
    old unknown row moves to the new unknown row, and each new scenario's row starts as a
    copy of the old unknown row. With M-LoRA's ``B = 0`` for the new pairs, a new scenario
    therefore predicts exactly what ``model`` predicted for an unknown scenario, and old
    scenarios predict exactly as before; :func:`fine_tune` on the new ids then trains
    only their weights. A scenario-aware task architecture keeps its ``num_scenarios``
    and treats the new ids through its own unknown-scenario path, as it did before. The
    returned model is not compiled.

    Args:
        model: a joint model whose ``scenario_adapter`` is :class:`StagedTraining` with a
            ``num_scenarios`` argument, and whose embedding has a ``scenario_table`` (as
            :class:`~tfjoint.layers.core.FeatureEmbedding` does).
        num_new: number of scenarios to add, ``>= 1``.

    Returns:
        The new :class:`JointModel`.
    """
    adapter = model.scenario_adapter
    if not isinstance(adapter, StagedTraining):
        raise TypeError(
            "add_scenarios grows a StagedTraining scenario adapter (e.g. 'm_lora'). "
            f"Received: scenario_adapter={adapter!r}"
        )
    num_new = whole_number("num_new", num_new)
    table = getattr(getattr(model.embedding, "scenario_table", None), "embeddings", None)
    if table is None:
        raise ValueError(
            "add_scenarios grows the embedding's scenario_table, which this embedding lacks. "
            f"Received: embedding={model.embedding!r}"
        )
    p = adapter.num_scenarios
    config = model.get_config()
    for slot in ("embedding", "scenario_adapter"):
        config[slot]["config"]["num_scenarios"] = p + num_new
    if config.get("num_scenarios") is not None:  # the masking's unknown id moves to P + num_new
        config["num_scenarios"] = p + num_new
    grown = JointModel.from_config(config)

    for old, new in zip([*model.layers, model.balancer], [*grown.layers, grown.balancer]):
        if old is adapter:
            pairs = list(zip(adapter.shared_weights(), new.shared_weights()))
            for t in range(p):
                pairs += zip(adapter.scenario_weights(t), new.scenario_weights(t))
        else:
            pairs = list(zip(old.weights, new.weights))
        for o, n in pairs:
            if o is table:
                value = np.asarray(o.numpy())
                unknown = value[p : p + 1]
                n.assign(np.concatenate([value[:p], np.repeat(unknown, num_new + 1, axis=0)]))
            else:
                n.assign(o.numpy())
    return grown
