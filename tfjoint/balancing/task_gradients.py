"""The balancing contract: which parameters a gradient-level balancer combines.

With a gradient-level balancer (``uses_task_gradients``), the joint model computes one
gradient ``g_k`` per task term and splits the trainable parameters in two:

- a parameter is **task-specific** to task ``k`` when the architecture says it is ``k``'s
  own: the weights of ``k``'s head (the ``Dense`` named ``k``) and, with a
  :class:`~tfjoint.layers.core.contracts.CascadeArchitecture`, its
  ``task_weights(k)`` (``k``'s tower). A parameter that only one task's gradient reaches is
  that task's too;
- every other parameter that two or more tasks' gradients reach is **shared**.

Gradient reachability alone is not the rule: in a cascade (ESMM, ESCM2, AITM) the child's
entire-space term ``p(parent) * p(child | parent)`` reaches the parent's own tower and head,
which are still the parent's, as in the papers (only the embedding is shared in ESMM).

Task-specific parameters get the plain gradient of the total objective, unchanged; shared
parameters get ``balancer.combine_gradients`` of the per-task gradients, each flattened into
one vector over those parameters (zeros where a task does not reach a parameter), plus the
gradient of the ``add_loss`` terms, which belong to no task. A balancer whose method
works on the full parameter vector (GradCraft) sets ``gradient_scope = "all"``: it combines
every parameter that some task reaches, task-specific ones included.
"""

from __future__ import annotations

import math
from typing import Any

from keras import ops

from tfjoint.balancing.task_balancer import TaskBalancer


def combined_variables(
    balancer: TaskBalancer, reach: list[list[bool]], owners: list[int | None]
) -> list[int]:
    """The indices of the variables whose gradient ``balancer`` combines.

    Args:
        balancer: the gradient-level balancer (its ``gradient_scope``).
        reach: per task, whether its term reaches each variable (its gradient is not ``None``).
        owners: per variable, the task that owns it by the architecture, or ``None``.
    """
    if balancer.gradient_scope not in ("shared", "all"):
        raise ValueError(f"gradient_scope must be 'shared' or 'all'. Received: {balancer.gradient_scope!r}")
    reached = [sum(bool(task[i]) for task in reach) for i in range(len(owners))]
    if balancer.gradient_scope == "all":
        return [i for i, count in enumerate(reached) if count >= 1]
    return [i for i, count in enumerate(reached) if count >= 2 and owners[i] is None]


def layer_path(variable: Any) -> str:
    """The path of the layer that holds ``variable`` (its own path without the last part)."""
    return variable.path.rpartition("/")[0]


def combine_task_gradients(
    balancer: TaskBalancer,
    gradients: list[list[Any]],
    total: list[Any],
    regularization: list[Any] | None,
    variables: list[Any],
    indices: list[int],
    losses: dict[str, Any],
) -> list[Any]:
    """``total`` with the gradients of ``variables[indices]`` replaced by the balancer's.

    Call :meth:`TaskBalancer.bind_gradient_layout` with the layout of ``indices`` first.

    Args:
        balancer: the gradient-level balancer.
        gradients: per task, the dense gradient of each variable of its term, or ``None``.
        total: the plain gradient of the total objective, per variable.
        regularization: the gradient of the ``add_loss`` terms per variable, or ``None``.
        variables: the trainable variables.
        indices: the variables to combine (:func:`combined_variables`).
        losses: the per-task terms, handed to ``combine_gradients``.
    """
    if not indices:
        return total

    def flat(task_gradients: list[Any]) -> Any:
        parts = [
            ops.zeros(variables[i].shape, variables[i].dtype) if task_gradients[i] is None else task_gradients[i]
            for i in indices
        ]
        return ops.concatenate([ops.reshape(p, (-1,)) for p in parts], axis=0)

    combined = balancer.combine_gradients([flat(g) for g in gradients], losses)
    result = list(total)
    offset = 0
    for i in indices:
        size = math.prod(variables[i].shape)
        result[i] = ops.reshape(combined[offset : offset + size], variables[i].shape)
        # add_loss terms (e.g. gate regularisers) are not task gradients: keep them.
        if regularization is not None and regularization[i] is not None:
            result[i] = result[i] + regularization[i]
        offset += size
    return result
