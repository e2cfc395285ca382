"""Cascade wiring: tasks with a parent, and entire-space outputs of cascade architectures.

A task with a ``parent`` (``like`` given ``watch``) is a *cascade step*. With a
:class:`~tfjoint.layers.core.contracts.CascadeArchitecture`, each binary step under a binary
parent is trained over the entire space: :func:`add_cascade_outputs` adds
``<task>_joint = p(parent, joint) * p(task | parent)`` (ESMM), or, in ``"direct"`` mode
(AITM), turns the joint head into the conditional with :class:`ConditionalFromJoint`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.features import TaskSpec
from tfjoint.layers.core.arguments import positive
from tfjoint.layers.core.contracts import CascadeArchitecture


@keras.saving.register_keras_serializable(package="tfjoint")
class ConditionalFromJoint(keras.layers.Layer):
    """``p(task | parent) = clip(p(task, joint) / max(p(parent, joint), epsilon), 0, 1)``.

    Args:
        epsilon: lower bound of the parent probability.

    Call arguments:
        inputs: ``[joint, parent_joint]``, each ``(batch, 1)``.

    Returns:
        ``(batch, 1)`` conditional probabilities.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = positive("epsilon", epsilon)

    def call(self, inputs: list[Any]) -> Any:
        joint, parent = inputs
        return ops.clip(joint / ops.maximum(parent, self.epsilon), 0.0, 1.0)

    def compute_output_shape(self, input_shape: list[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


def is_entire_space_step(task: TaskSpec, by_name: dict[str, TaskSpec]) -> bool:
    """Whether ``task`` is a binary cascade step (a binary task under a binary parent)."""
    if task.parent is None or task.type != "binary" or by_name[task.parent].type != "binary":
        return False
    if list(by_name).index(task.parent) > list(by_name).index(task.name):
        raise ValueError(f"a parent task must come before its child: {task.parent!r} after {task.name!r}")
    return True


def cascade_steps(tasks: list[TaskSpec]) -> list[str]:
    """The names of the binary cascade steps among ``tasks``, in task order."""
    by_name = {t.name: t for t in tasks}
    return [t.name for t in tasks if is_entire_space_step(t, by_name)]


def add_cascade_outputs(
    outputs: dict[str, Any], tasks: list[TaskSpec], architecture: keras.layers.Layer
) -> list[str]:
    """Adds the ``<task>_joint`` outputs of ``architecture``'s cascade steps to ``outputs``.

    Like the heads, they are float32 under a mixed-precision policy (:mod:`tfjoint.joint.precision`):
    they are model outputs and the cascade losses read them.

    Returns the steps trained over the entire space (none unless ``architecture`` is a
    :class:`CascadeArchitecture`).
    """
    if not isinstance(architecture, CascadeArchitecture):
        return []
    by_name = {t.name: t for t in tasks}
    steps = cascade_steps(tasks)
    for name in steps:
        parent = by_name[name].parent
        parent_joint = outputs.get(f"{parent}_joint", outputs[parent])
        if architecture.cascade_mode == "direct":
            # The head predicts p(task, joint) (AITM); the task output is the conditional.
            outputs[f"{name}_joint"] = outputs[name]
            outputs[name] = ConditionalFromJoint(name=f"{name}_conditional", dtype="float32")(
                [outputs[name], parent_joint]
            )
        else:
            # p(task, joint) = p(parent, joint) * p(task | parent): pCTCVR = pCTR * pCVR.
            outputs[f"{name}_joint"] = keras.layers.Multiply(name=f"{name}_joint", dtype="float32")(
                [parent_joint, outputs[name]]
            )
    return steps
