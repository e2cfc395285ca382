"""Shared-bottom multi-task architecture (hard parameter sharing)."""

from __future__ import annotations

from typing import Any

import keras

from tfjoint.layers.core.arguments import check_tasks
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register


@register(
    "shared_bottom",
    slot="task_architecture",
    family="multi_task",
    reference="Caruana, Multitask Learning, Machine Learning 28, 1997",
)
class SharedBottom(keras.layers.Layer):
    """One shared bottom network ``f`` under one tower ``h_k`` per task: ``y_k = h_k(f(x))``.

    Args:
        task_names: names of the tasks, one tower each.
        bottom_units: hidden sizes of the shared bottom.
        tower_units: hidden sizes of every task tower.
        dropout: dropout rate inside the bottom and the towers.
        batch_norm: BatchNormalization in every bottom and tower layer (:class:`MLP`); off by default.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.
    """

    def __init__(
        self,
        task_names: list[str],
        bottom_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = check_tasks(task_names)
        self.bottom_units = list(bottom_units)
        self.tower_units = list(tower_units)
        self.dropout = dropout
        self.batch_norm = batch_norm

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.bottom = MLP(
            self.bottom_units, dropout=self.dropout, batch_norm=self.batch_norm,
            name="bottom", dtype=self.dtype_policy
        )
        self.bottom.build(input_shape)
        self.towers = {}
        for name in self.task_names:
            tower = MLP(
                self.tower_units, dropout=self.dropout, batch_norm=self.batch_norm,
                name=f"tower_{name}", dtype=self.dtype_policy
            )
            tower.build((None, self.bottom_units[-1]))
            self.towers[name] = tower

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        shared = self.bottom(inputs, training=training)
        return {name: self.towers[name](shared, training=training) for name in self.task_names}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            bottom_units=self.bottom_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
        )
        return config
