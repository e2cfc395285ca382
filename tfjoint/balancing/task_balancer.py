"""The balancing slot: how per-task losses and gradients become one update.

A balancer acts at one or both of two levels inside :meth:`JointModel.train_step`:

- loss level, :meth:`TaskBalancer.weight_losses`: maps the per-task losses ``w_k L_k`` to the
  terms whose sum is minimised (uncertainty weighting, DWA);
- gradient level, :meth:`TaskBalancer.combine_gradients`: when ``uses_task_gradients`` is
  True the model computes one gradient per task over the parameters the balancer combines
  (``gradient_scope``), flattens each into a vector ``g_k`` (zeros where task ``k`` does not
  reach a parameter) and the balancer returns the vector applied to them (PCGrad,
  MetaBalance, GradCraft, GradNorm); a balancer whose combination is the plain sum outside
  some of them reads only those (:meth:`TaskBalancer.gradients_read`, GradNorm's last
  shared layer). Before that the model hands over the layout of those
  vectors, :meth:`TaskBalancer.bind_gradient_layout`: the size and the layer of each
  parameter tensor, in order (MetaBalance's per-tensor norms, GradCraft's per-tensor masks
  and GradNorm's last shared layer read it).

The balancing contract (see :mod:`tfjoint.balancing.task_gradients` for the rule that
splits the parameters): with ``gradient_scope = "shared"`` the balancer combines the
*shared* parameters only, and every task-specific parameter gets the plain gradient of the
total objective, unchanged; a balancer whose method works on the full parameter vector
(GradCraft) sets ``gradient_scope = "all"``.

The model binds its task specs to the balancer (:meth:`TaskBalancer.bind`) before use, so a
balancer knows the task names, their types and the target task without repeating them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
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
    # "shared": combine_gradients sees the shared parameters; "all": every parameter a task reaches.
    gradient_scope: ClassVar[str] = "shared"
    # False: the state depends on the gradient layout and is built by bind_gradient_layout.
    builds_on_bind: ClassVar[bool] = True

    def __init__(self, target_task: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_task = target_task
        self.tasks: list[TaskSpec] = []
        self.gradient_sizes: list[int] | None = None
        self.gradient_layers: list[str] | None = None

    def bind(self, tasks: list[TaskSpec]) -> None:
        """Receives the model's tasks and creates the balancer's weights."""
        names = [t.name for t in tasks]
        if self.target_task is not None and self.target_task not in names:
            raise ValueError(f"target_task must be one of {names}. Received: target_task={self.target_task!r}")
        self.tasks = list(tasks)
        if not self.built and self.builds_on_bind:
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

    def bind_gradient_layout(self, sizes: list[int], layers: list[str]) -> None:
        """The layout of the ``(P,)`` vectors :meth:`combine_gradients` receives: the number
        of entries of each parameter tensor, in order (``sum(sizes) = P``), and the path of
        the layer that holds it. The model calls this outside any traced function, so a
        balancer may create per-tensor state here. Without a layout the vector is one tensor.
        """
        if not sizes or len(sizes) != len(layers) or min(sizes) < 1:
            raise ValueError(f"sizes and layers must be non-empty, of one length, sizes >= 1. Received: sizes={sizes}")
        self.gradient_sizes = [int(n) for n in sizes]
        self.gradient_layers = list(layers)

    def gradients_read(self, layers: list[str]) -> list[int]:
        """Of the parameter tensors this balancer combines (the path of each one's layer, in
        order), the positions whose per-task gradients :meth:`combine_gradients` reads.

        A balancer that returns fewer promises that its combination is the plain sum of the
        task gradients on the others: the model then gives them the gradient of the objective
        and computes no per-task gradient there (GradNorm reads its last shared layer only).
        Default: all of them.
        """
        return list(range(len(layers)))

    def tensor_ids(self, num_entries: int) -> Any:
        """``(P,)`` int32: the index of the parameter tensor of each entry of a gradient vector."""
        sizes = self.gradient_sizes or [num_entries]
        if sum(sizes) != num_entries:
            raise ValueError(f"the gradient layout covers {sum(sizes)} entries. Received: a vector of {num_entries}")
        return ops.convert_to_tensor(np.repeat(np.arange(len(sizes)), sizes).astype("int32"))

    def tensor_norms(self, stacked: Any) -> Any:
        """``(K, T)``: the norm of each task's gradient on each of the ``T`` parameter tensors."""
        ids = self.tensor_ids(stacked.shape[1])
        num_tensors = len(self.gradient_sizes or [0])
        squares = ops.segment_sum(ops.transpose(ops.square(stacked)), ids, num_segments=num_tensors)
        return ops.sqrt(ops.transpose(squares))

    def combine_gradients(self, gradients: list[Any], losses: dict[str, Any]) -> Any:
        """One gradient from the per-task ones (each of shape ``(P,)``)."""
        return ops.sum(ops.stack(gradients), axis=0)

    def call(self, inputs: Any) -> Any:
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(target_task=self.target_task)
        return config


class NormAveragingBalancer(TaskBalancer):
    """A gradient-level balancer that tracks moving averages of the task gradient norms,
    ``m_k <- beta m_k + (1 - beta) ||g_k||`` (GradCraft; MetaBalance keeps them per parameter
    tensor); ``beta = 0`` uses the current norms. Subclasses set ``self.beta``."""

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
