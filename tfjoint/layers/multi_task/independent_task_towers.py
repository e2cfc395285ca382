"""Independent task towers: one MLP per task over the shared input, nothing else shared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, layer_units
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register


@register(
    "independent_towers",
    slot="task_architecture",
    family="multi_task",
    reference="Ma et al., Entire Space Multi-Task Model: An Effective Approach for Estimating "
    "Post-Click Conversion Rate, SIGIR 2018 (BASE: ESMM's towers with pCVR fitted on clicked "
    "impressions)",
)
class IndependentTaskTowers(keras.layers.Layer):
    """``y_k = h_k(x)``: one tower per task over the shared representation.

    The towers are ESMM's (the same sizes, built in the same order), but trained the plain
    way: the joint model fits a task with a ``parent`` only on the rows where the parent
    label is 1 (:meth:`tfjoint.features.TaskSpec.defined_rows`), so pCVR learns from
    clicked impressions alone. This is the ESMM paper's BASE model when only the conversion
    loss is weighted, and the naive multi-task model whose sample selection bias ESMM
    removes when every task is. Only the input (the embedding) is shared between tasks.

    Args:
        task_names: the tasks; each gets its own tower and nothing else.
        tower_units: hidden sizes of each tower (ESMM's by default).
        dropout: dropout rate after each tower layer.
        batch_norm: BatchNormalization in every tower layer (:class:`MLP`); off by default.

    Call arguments:
        inputs: ``(batch, d)``, the representation that every tower reads.
        training: Python bool, whether dropout is active.

    Returns:
        ``{task: (batch, tower_units[-1])}``, the output of each task's tower.

    Example:
    >>> layer = IndependentTaskTowers(["click", "conversion"], tower_units=[4])
    >>> {k: tuple(v.shape) for k, v in layer(keras.ops.ones((2, 3))).items()}
    {'click': (2, 4), 'conversion': (2, 4)}
    """

    def __init__(
        self,
        task_names: Sequence[str],
        tower_units: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = check_tasks(task_names)
        self.tower_units = layer_units("tower_units", tower_units)
        self.dropout = dropout_rate(dropout)
        self.batch_norm = batch_norm

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.towers = {name: self._tower(name, input_shape) for name in self.task_names}

    def _tower(self, task: str, input_shape: tuple[int | None, ...]) -> MLP:
        tower = MLP(
            self.tower_units, dropout=self.dropout, batch_norm=self.batch_norm,
            name=f"tower_{task}", dtype=self.dtype_policy
        )
        tower.build(input_shape)
        return tower

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        return {name: tower(inputs, training=training) for name, tower in self.towers.items()}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "task_names": self.task_names,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
        }
