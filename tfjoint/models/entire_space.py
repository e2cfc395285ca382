"""ESMM: the entire-space multi-task model for cascades (impression -> click -> conversion)."""

from __future__ import annotations

from typing import Any

import keras

from tfjoint.models.mlp import MLP
from tfjoint.models.shared_bottom import _check_tasks
from tfjoint.registry import register


@register(
    "esmm",
    slot="task_architecture",
    family="multi_task",
    reference="Ma et al., Entire Space Multi-Task Model: An Effective Approach for Estimating "
    "Post-Click Conversion Rate, SIGIR 2018",
)
@keras.saving.register_keras_serializable(package="tfjoint")
class EntireSpaceMultiTask(keras.layers.Layer):
    """ESMM: one tower per task over the shared embedding, trained over the entire space.

    The towers are independent MLPs over the shared representation (the embedding is the
    only shared part, as in the paper). Because ``entire_space`` is True, the joint model
    treats every binary task with a binary parent as a cascade step: its head predicts the
    conditional ``pCVR = p(task | parent)``, the model adds the output
    ``<task>_joint = p(parent, joint) * pCVR`` (``pCTCVR = pCTR * pCVR``, eq. 1 of the
    paper), and the task's loss is the cross-entropy of ``<task>_joint`` against
    ``y_parent * y_task`` over *all* rows (eq. 3), so the conditional head is never fitted
    on the clicked rows alone and sample selection bias does not enter.

    Args:
        task_names: names of the tasks, one tower each.
        tower_units: hidden sizes of every tower.
        dropout: dropout rate inside the towers.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.
    """

    entire_space = True

    def __init__(
        self,
        task_names: list[str],
        tower_units: list[int] | tuple[int, ...] = (64, 32),
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = _check_tasks(task_names)
        self.tower_units = list(tower_units)
        self.dropout = dropout

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.towers = {}
        for name in self.task_names:
            tower = MLP(self.tower_units, dropout=self.dropout, name=f"tower_{name}", dtype=self.dtype_policy)
            tower.build(input_shape)
            self.towers[name] = tower

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        return {name: self.towers[name](inputs, training=training) for name in self.task_names}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(task_names=self.task_names, tower_units=self.tower_units, dropout=self.dropout)
        return config
