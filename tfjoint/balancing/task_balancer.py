"""The balancing slot: how per-task losses and gradients become one update.

A balancer acts at one or both of two levels inside :meth:`JointModel.train_step`:

- loss level, :meth:`TaskBalancer.weight_losses`: maps the per-task losses ``w_k L_k`` to the
  terms whose sum is minimised (uncertainty weighting, DWA);
- gradient level, :meth:`TaskBalancer.combine_gradients`: when ``uses_task_gradients`` is
  True the model computes one gradient per task over the *shared* parameters (those that
  receive a gradient from two or more tasks), flattens each into a vector ``g_k`` and the
  balancer returns the vector applied to them (PCGrad, MetaBalance, GradCraft, GradNorm).
  Task-specific parameters always receive their own task's gradient unchanged.

The model binds its task specs to the balancer (:meth:`TaskBalancer.bind`) before use, so a
balancer knows the task names, their types and the target task without repeating them.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.features import TaskSpec
from tfjoint.registry import register


@keras.saving.register_keras_serializable(package="tfjoint")
class TaskBalancer(keras.layers.Layer):
    """Base class: the plain weighted sum ``sum_k w_k L_k`` and the plain sum of gradients.

    Args:
        target_task: the task the others serve (used by target-aware strategies such as
            MetaBalance); defaults to the model's first task.
    """

    uses_task_gradients = False

    def __init__(self, target_task: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_task = target_task
        self.tasks: list[TaskSpec] = []

    def bind(self, tasks: list[TaskSpec]) -> None:
        """Receives the model's tasks and creates the balancer's weights."""
        names = [t.name for t in tasks]
        if self.target_task is not None and self.target_task not in names:
            raise ValueError(f"target_task must be one of {names}. Received: target_task={self.target_task!r}")
        self.tasks = list(tasks)
        if not self.built:
            self.build()

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def target_index(self) -> int:
        return self.task_names.index(self.target_task) if self.target_task else 0

    def build(self, input_shape: Any = None) -> None:
        self.built = True

    # A balancer's weights depend on the tasks, which only :meth:`bind` knows: loading
    # must not build it before the model binds it.
    def get_build_config(self) -> dict[str, Any]:
        return {}

    def build_from_config(self, config: dict[str, Any]) -> None:
        return None

    def weight_losses(self, losses: dict[str, Any], training: bool = True) -> dict[str, Any]:
        """The per-task terms whose sum is the training objective; ``training`` is False in
        evaluation, where stateful strategies must not advance."""
        return dict(losses)

    def combine_gradients(self, gradients: list[Any], losses: dict[str, Any]) -> Any:
        """One shared-parameter gradient from the per-task ones (each of shape ``(P,)``)."""
        return ops.sum(ops.stack(gradients), axis=0)

    def call(self, inputs: Any) -> Any:
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(target_task=self.target_task)
        return config


class NormAveragingBalancer(TaskBalancer):
    """A gradient-level balancer that tracks moving averages of the task gradient norms,
    ``m_k <- beta m_k + (1 - beta) ||g_k||`` (MetaBalance, GradCraft); ``beta = 0`` uses the
    current norms. Subclasses set ``self.beta``."""

    uses_task_gradients = True
    beta: float = 0.0

    def build(self, input_shape: Any = None) -> None:
        self.norm_averages = self.add_weight(
            shape=(len(self.tasks),),
            initializer="zeros",
            trainable=False,
            name="norm_averages",
            dtype="float32",
        )
        self.built = True

    def moving_norms(self, stacked: Any) -> Any:
        """Updates and returns the averaged norms of the ``(K, P)`` stacked gradients."""
        norms = self.beta * self.norm_averages + (1.0 - self.beta) * ops.norm(stacked, axis=1)
        self.norm_averages.assign(norms)
        return norms


@register("fixed", slot="balancer", family="balancing", reference="Caruana, Multitask Learning, 1997 (fixed weights w_k)")
class FixedWeights(TaskBalancer):
    """``L = sum_k w_k L_k`` with the task specs' fixed weights ``w_k``."""
