"""Progressive layered extraction (PLE) and its single-level form, customized gate control (CGC)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, layer_units, positive, positive_int
from tfjoint.layers.core.experts import build_gate, mix_experts_by_gates, softmax_gate
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register

_REFERENCE = (
    "Tang et al., Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model "
    "for Personalized Recommendations, RecSys 2020"
)


@register("ple", slot="task_architecture", family="multi_task", reference=_REFERENCE)
class ProgressiveLayeredExtraction(keras.layers.Layer):
    """PLE: stacked extraction levels of task-specific and shared experts, one tower per task.

    Level ``j`` holds ``num_task_experts`` experts ``E_{k,j}`` per task ``k`` and
    ``num_shared_experts`` shared experts ``E_{s,j}``. With ``x^{k,0} = x^{s,0} = x``
    (Tang et al., 2020, eqs. 2-5):

    - ``S^{k,j} = [E_{k,j}(x^{k,j-1}), E_{s,j}(x^{s,j-1})]``: task ``k``'s own experts on its
      branch, then the shared experts on the shared branch;
    - ``w^{k,j} = softmax(W_{k,j} x^{k,j-1} / temperature)``, the task gate;
    - ``x^{k,j} = g^{k,j} = w^{k,j}ᵀ S^{k,j}``;
    - on every level but the last, a shared gate mixes **all** experts,
      ``x^{s,j} = softmax(W_{s,j} x^{s,j-1} / temperature)ᵀ [E_{1,j}, ..., E_{K,j}, E_{s,j}]``;
      the last level has no shared gate, since nothing reads the shared branch after it;
    - ``y_k = t^k(x^{k,L})``, the tower of task ``k``.

    Gate logits and the softmax are computed in float32.

    Args:
        task_names: names of the tasks, one set of experts, gate and tower each.
        num_levels: number of extraction levels ``L`` (``>= 1``).
        num_shared_experts: shared experts per level (``>= 1``).
        num_task_experts: task-specific experts per task and level (``>= 1``).
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
    >>> layer = ProgressiveLayeredExtraction(["click", "like"], num_levels=2)
    >>> sorted(layer(keras.ops.ones((2, 5))))
    ['click', 'like']

    Reference:
        Tang, Liu, Zhao, Gong. Progressive Layered Extraction (PLE): A Novel Multi-Task
        Learning (MTL) Model for Personalized Recommendations. RecSys 2020.
    """

    def __init__(
        self,
        task_names: list[str],
        num_levels: int = 2,
        num_shared_experts: int = 2,
        num_task_experts: int = 1,
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        gate_temperature: float = 1.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_levels = positive_int("num_levels", num_levels)
        self.num_shared_experts = positive_int("num_shared_experts", num_shared_experts)
        self.num_task_experts = positive_int("num_task_experts", num_task_experts)
        self.expert_units = layer_units("expert_units", expert_units)
        self.tower_units = layer_units("tower_units", tower_units)
        self.dropout = dropout_rate(dropout)
        self.batch_norm = batch_norm
        self.gate_temperature = positive("gate_temperature", gate_temperature)
        self.task_names = check_tasks(task_names)

    def _expert_names(self, level: int, task: str | None) -> list[str]:
        """Names of task ``task``'s experts on ``level``, or of the shared ones when ``task`` is None."""
        if task is None:
            return [f"level_{level}_shared_expert_{i}" for i in range(self.num_shared_experts)]
        return [f"level_{level}_task_{task}_expert_{i}" for i in range(self.num_task_experts)]

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.experts = {}
        self.gates = {}
        all_experts = len(self.task_names) * self.num_task_experts + self.num_shared_experts
        for level in range(self.num_levels):
            level_shape = tuple(input_shape) if level == 0 else (None, self.expert_units[-1])
            for task in [*self.task_names, None]:
                for name in self._expert_names(level, task):
                    expert = MLP(
                        self.expert_units, dropout=self.dropout, batch_norm=self.batch_norm,
                        name=name, dtype=self.dtype_policy
                    )
                    expert.build(level_shape)
                    self.experts[name] = expert
            gate_sizes = {
                f"level_{level}_task_gate_{t}": self.num_task_experts + self.num_shared_experts
                for t in self.task_names
            }
            if level < self.num_levels - 1:
                gate_sizes[f"level_{level}_shared_gate"] = all_experts
            for name, size in gate_sizes.items():
                self.gates[name] = build_gate(size, name, level_shape)
        self.towers = {}
        for task in self.task_names:
            tower = MLP(
                self.tower_units, dropout=self.dropout, batch_norm=self.batch_norm,
                name=f"tower_{task}", dtype=self.dtype_policy
            )
            tower.build((None, self.expert_units[-1]))
            self.towers[task] = tower
        create_gate_trackers(self, {t: self.num_task_experts + self.num_shared_experts for t in self.task_names})

    def _gate(self, name: str, x: Any) -> Any:
        return softmax_gate(self.gates[name], x, self.gate_temperature)

    def _extract(self, inputs: Any, training: bool | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Runs every level; returns ``({task: x^{k,L}}, {task: w^{k,L}})``."""
        task_inputs = {t: inputs for t in self.task_names}
        shared_input = inputs
        for level in range(self.num_levels):
            task_experts = {
                t: [self.experts[n](task_inputs[t], training=training) for n in self._expert_names(level, t)]
                for t in self.task_names
            }
            shared_experts = [
                self.experts[n](shared_input, training=training) for n in self._expert_names(level, None)
            ]
            gate_weights = {
                t: self._gate(f"level_{level}_task_gate_{t}", task_inputs[t]) for t in self.task_names
            }
            # Every gate of the level in one mix over all its experts (task k's own, then the
            # shared ones): task gate k weighs its own and the shared experts, the shared gate all.
            everything = [e for t in self.task_names for e in task_experts[t]] + shared_experts
            own = self.num_task_experts
            shared = list(range(len(self.task_names) * own, len(everything)))
            gates = list(gate_weights.values())
            members = [[*range(k * own, (k + 1) * own), *shared] for k in range(len(self.task_names))]
            if level < self.num_levels - 1:
                gates.append(self._gate(f"level_{level}_shared_gate", shared_input))
                members.append(list(range(len(everything))))
            mixed = mix_experts_by_gates(gates, everything, members)
            task_inputs = dict(zip(self.task_names, mixed))
            if level < self.num_levels - 1:
                shared_input = mixed[-1]
        return task_inputs, gate_weights

    def gate_weights(self, inputs: Any) -> dict[str, Any]:
        """Last-level task gates ``{task: w^{k,L}(x)}``, each ``(batch, num_task_experts + num_shared_experts)``.

        Columns are the task's own experts, then the shared ones.
        """
        return self._extract(inputs, training=False)[1]

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        features, gates = self._extract(inputs, training)
        track_gates(self, gates)
        return {t: self.towers[t](features[t], training=training) for t in self.task_names}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_levels=self.num_levels,
            num_shared_experts=self.num_shared_experts,
            num_task_experts=self.num_task_experts,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            gate_temperature=self.gate_temperature,
        )
        return config


@register(
    "cgc",
    slot="task_architecture",
    family="multi_task",
    reference=_REFERENCE + " (the single-level customized gate control, CGC)",
)
class CustomizedGateControl(ProgressiveLayeredExtraction):
    """CGC: one PLE extraction level, so no shared gate; task ``k`` mixes only its own and shared experts.

    ``y_k = t^k(w^k(x)ᵀ [E_k(x), E_s(x)])`` with ``w^k(x) = softmax(W_k x / temperature)``
    (Tang et al., 2020, eqs. 2-4). Task ``k``'s output never depends on another task's
    experts. See :class:`ProgressiveLayeredExtraction` for the arguments.

    Example:
    >>> layer = CustomizedGateControl(["click", "like"], num_shared_experts=2)
    >>> tuple(layer(keras.ops.ones((2, 5)))["click"].shape)
    (2, 32)

    Reference:
        Tang, Liu, Zhao, Gong. Progressive Layered Extraction (PLE). RecSys 2020, section 4.2.
    """

    def __init__(
        self,
        task_names: list[str],
        num_shared_experts: int = 2,
        num_task_experts: int = 1,
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        gate_temperature: float = 1.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            task_names,
            num_levels=1,
            num_shared_experts=num_shared_experts,
            num_task_experts=num_task_experts,
            expert_units=expert_units,
            tower_units=tower_units,
            dropout=dropout,
            gate_temperature=gate_temperature,
            batch_norm=batch_norm,
            **kwargs,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["num_levels"]
        return config
