"""One training step of :class:`~tfjoint.joint.model.JointModel` with a gradient-level balancer
(PCGrad, GradNorm, GradCraft, MetaBalance: :mod:`tfjoint.balancing.task_gradients` holds the
balancing contract). Each backward pass asks only for the parameters it serves:

- ``T`` per-task passes over the parameters whose per-task gradients the balancer reads
  (:meth:`~tfjoint.balancing.TaskBalancer.gradients_read`: the shared ones, GradNorm's last
  shared layer only, GradCraft's every parameter);
- one pass of the total objective over all the others (dense on a shared parameter the
  balancer does not read: the update it had as a sum of dense task gradients);
- with ``add_loss`` terms, one pass of them over the combined parameters.

The sum of the task gradients is the total's minus the ``add_loss`` terms', so no parameter
needs both. ``tape.jacobian(..., experimental_use_pfor=True)`` over the stacked terms (one
vectorized pass) measured slower than the ``T`` passes on CPU (docs/training_speed.md).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from keras.src.losses.loss import scale_loss_for_distribution

from tfjoint.balancing.task_gradients import combine_task_gradients, combined_variables, layer_path
from tfjoint.layers.core.contracts import CascadeArchitecture


def balanced_update(model: Any, data: Any) -> dict[str, Any]:
    """One update of ``model`` (a ``JointModel`` whose balancer uses task gradients) on ``data``;
    returns the step's metrics."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)
        terms = model._balanced_terms(y, y_pred, sample_weight=sample_weight)
        regularization = model._regularization()
        total = sum(terms.values()) + regularization
    model._loss_tracker.update_state(total, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
    task_terms = [scale_loss_for_distribution(terms[t.name]) for t in model.tasks]
    reach = task_reach(model, tape, task_terms, variables)
    shared = combined_variables(model.balancer, reach, variable_owners(model, variables))
    read = model.balancer.gradients_read([layer_path(variables[i]) for i in shared])
    indices = [shared[j] for j in read]
    if indices:
        # Outside the traced function: a balancer may create its per-tensor state here.
        with tf.init_scope():
            model.balancer.bind_gradient_layout(
                [math.prod(variables[i].shape) for i in indices], [layer_path(variables[i]) for i in indices]
            )
    read_set = set(indices)
    rest = [i for i in range(len(variables)) if i not in read_set]
    grads = gradients(tape, scale_loss_for_distribution(total), variables, rest)
    for i in set(shared) - read_set:
        grads[i] = None if grads[i] is None else tf.convert_to_tensor(grads[i])
    per_task = [dense(gradients(tape, term, variables, indices)) for term in task_terms]
    regularization_grads = (
        dense(gradients(tape, scale_loss_for_distribution(regularization), variables, indices))
        if model.losses and indices
        else None
    )
    del tape
    grads = combine_task_gradients(model.balancer, per_task, grads, regularization_grads, variables, indices, terms)
    model.optimizer.apply(grads, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def task_reach(model: Any, tape: tf.GradientTape, task_terms: list[Any], variables: list[Any]) -> list[list[bool]]:
    """Per task, whether its term reaches each variable. The graph is the same at every step,
    so this is found once (by ``T`` gradients whose values are never used: a traced function
    prunes them) and kept on ``model`` for as long as its trainable variables are the same."""
    key = tuple(id(v) for v in variables)
    cached = getattr(model, "_task_reach_cache", None)
    if cached is None or cached[0] != key:
        reach = tuple(tuple(g is not None for g in tape.gradient(term, variables)) for term in task_terms)
        model._task_reach_cache = (key, reach)
    return [list(r) for r in model._task_reach_cache[1]]


def variable_owners(model: Any, variables: list[Any]) -> list[int | None]:
    """Per variable, the index of the task that owns it by the architecture (its head, or its
    tower in a cascade architecture, ``task_weights``), or ``None``."""
    owner = {}
    for k, task in enumerate(model.tasks):
        weights = list(model.get_layer(task.name).trainable_weights)
        if isinstance(model.task_architecture, CascadeArchitecture):
            weights += list(model.task_architecture.task_weights(task.name))
        owner.update({id(w): k for w in weights})
    return [owner.get(id(v)) for v in variables]


def gradients(tape: tf.GradientTape, target: Any, variables: list[Any], positions: list[int]) -> list[Any]:
    """The gradient of ``target`` on ``variables[i]`` for ``i`` in ``positions`` (one backward
    pass over those only; none when there are none), ``None`` at every other position."""
    out: list[Any] = [None] * len(variables)
    if positions:
        for i, g in zip(positions, tape.gradient(target, [variables[i] for i in positions])):
            out[i] = g
    return out


def dense(gradients: list[Any]) -> list[Any]:
    """Gradients as dense tensors (an embedding's ``IndexedSlices`` included), ``None`` kept."""
    return [None if g is None else tf.convert_to_tensor(g) for g in gradients]
