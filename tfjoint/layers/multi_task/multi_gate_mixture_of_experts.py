"""Mixture-of-experts multi-task architectures: MMoE and its one-gate ablation OMoE."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, positive, positive_int
from tfjoint.layers.core.experts import build_gate, mix_experts_by_gates, softmax_gate
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register


@register(
    "mmoe",
    slot="task_architecture",
    family="multi_task",
    reference="Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate "
    "Mixture-of-Experts, KDD 2018",
)
class MultiGateMixtureOfExperts(keras.layers.Layer):
    """MMoE: shared experts ``f_i``, one softmax gate per task, one tower per task.

    ``g_k(x) = softmax(W_gk x)``, ``f^k(x) = sum_i g_k(x)_i f_i(x)``, ``y_k = h_k(f^k(x))``
    (Ma et al., 2018, eqs. 5-6). Gate logits and the softmax are computed in float32. The
    mean gate weight per expert and task is logged as ``gate_<task>_expert_<i>``.

    Args:
        task_names: names of the tasks, one gate and tower each.
        num_experts: number of shared experts ``f_i``.
        expert_units: hidden sizes of every expert.
        tower_units: hidden sizes of every task tower.
        dropout: dropout rate inside experts and towers.
        gate_temperature: the gate logits are divided by it before the softmax.
        batch_norm: BatchNormalization in every expert and tower layer (:class:`MLP`); off by default.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = MultiGateMixtureOfExperts(["click", "like"], num_experts=3)
    >>> sorted(layer(keras.ops.ones((2, 5))))
    ['click', 'like']
    """

    shared_gate = False

    def __init__(
        self,
        task_names: list[str],
        num_experts: int = 4,
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        gate_temperature: float = 1.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_experts = positive_int("num_experts", num_experts)
        self.gate_temperature = positive("gate_temperature", gate_temperature)
        self.task_names = check_tasks(task_names)
        self.expert_units = list(expert_units)
        self.tower_units = list(tower_units)
        self.dropout = dropout
        self.batch_norm = batch_norm

    def _gate_names(self) -> list[str]:
        return ["shared"] if self.shared_gate else self.task_names

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.experts = []
        for i in range(self.num_experts):
            expert = MLP(
                self.expert_units, dropout=self.dropout, batch_norm=self.batch_norm,
                name=f"expert_{i}", dtype=self.dtype_policy
            )
            expert.build(input_shape)
            self.experts.append(expert)
        self.gates = {}
        for name in self._gate_names():
            self.gates[name] = build_gate(self.num_experts, f"gate_{name}", input_shape)
        self.towers = {}
        for name in self.task_names:
            tower = MLP(
                self.tower_units, dropout=self.dropout, batch_norm=self.batch_norm,
                name=f"tower_{name}", dtype=self.dtype_policy
            )
            tower.build((None, self.expert_units[-1]))
            self.towers[name] = tower
        create_gate_trackers(self, {name: self.num_experts for name in self.task_names})

    def gate_weights(self, inputs: Any) -> dict[str, Any]:
        """``{task: g_k(x)}``, each ``(batch, num_experts)`` summing to 1."""
        weights = {name: softmax_gate(gate, inputs, self.gate_temperature) for name, gate in self.gates.items()}
        if self.shared_gate:
            return {name: weights["shared"] for name in self.task_names}
        return weights

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        expert_outputs = ops.stack([e(inputs, training=training) for e in self.experts], axis=1)
        outputs = {}
        gates = self.gate_weights(inputs)
        track_gates(self, gates)
        for name, mixed in zip(gates, mix_experts_by_gates(list(gates.values()), expert_outputs)):
            outputs[name] = self.towers[name](mixed, training=training)
        return outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            gate_temperature=self.gate_temperature,
            batch_norm=self.batch_norm,
        )
        return config


@register(
    "omoe",
    slot="task_architecture",
    family="multi_task",
    reference="Ma et al., KDD 2018 (the one-gate mixture-of-experts baseline, OMoE)",
)
class OneGateMixtureOfExperts(MultiGateMixtureOfExperts):
    """OMoE: MMoE with a single gate shared by all tasks, ``f^k(x) = sum_i g(x)_i f_i(x)``."""

    shared_gate = True
