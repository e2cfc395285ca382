"""STEM: shared and task-specific embeddings with an All Forward Gate (Su et al., AAAI 2024)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, positive
from tfjoint.layers.core.contracts import NeedsTaskEmbeddings, task_fields_key
from tfjoint.layers.core.experts import build_gate, mix_experts, softmax_gate
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register


@register(
    "stem",
    slot="task_architecture",
    family="multi_task",
    reference="Su et al., STEM: Unleashing the Power of Embeddings for Multi-task Recommendation, AAAI 2024",
)
class SharedAndTaskSpecificEmbeddings(NeedsTaskEmbeddings, keras.layers.Layer):
    """STEM: one shared and one task-specific embedding per task, mixed by All Forward Gates.

    STEM gives every task its own embedding tables next to the shared ones; an expert reads
    each embedding, and task ``k``'s gate mixes *all* experts while its gradient reaches
    only its own and the shared embedding and expert. With ``K`` tasks (the paper's STEM-Net
    and All Forward Gate; official code ``models/STEM.py`` of github.com/LiangcaiSu/STEM):

    - embeddings: ``x_s = flatten(E_s(x))``, ``x_k = flatten(E_k(x))``, one table per
      field and task (``fields`` and ``fields_<task>`` of the embedding slot);
    - experts: ``f_s = F_s(E_merge)``, ``f_k = F_k(x_k)``;
    - All Forward Gate: ``g_k = softmax(W_gk (x_k + x_s) / temperature)`` over the ``K + 1``
      experts ``[f_1, ..., f_K, f_s]`` (the official code's gate input ``x[i] + x[-1]``);
    - mixture: ``m_k = g_k,k f_k + sum_{j != k} g_k,j sg(f_j) + g_k,s f_s``, where ``sg`` is
      the stop-gradient (the official code's ``detach``): task ``k`` sees every task's
      expert in the forward pass, but its loss never updates another task's tables or
      expert;
    - towers: ``y_k = h_k(m_k)``.

    The embedding lookup is the joint model's embedding slot: this layer is a
    :class:`~tfjoint.layers.core.contracts.NeedsTaskEmbeddings`, so
    :func:`~tfjoint.joint.build_joint_model` builds the ``FeatureEmbedding`` with
    ``task_tables=task_names`` and the joint model calls this layer on
    ``{"inputs": E_merge, "fields": ..., "fields_<task>": ...}``.

    Deviations: E_merge may hold more than the field embeddings (a behavior-sequence or
    modality encoding, a scenario adapter's output); those parts have no per-task tables,
    so the shared expert reads all of E_merge, while task experts read only their own
    field tables and the gate reads ``x_k + x_s`` over the fields (both of width
    ``num_fields * d``). Without sequence, modality and adapter, E_merge is ``x_s`` and
    this is the paper's layer. The paper's extra gate of the shared branch feeds only a
    next stacked STEM layer; with one layer it has no output, so it is left out. Gate
    logits and the softmax are computed in float32. The mean gate weight is logged as
    ``gate_<task>_expert_<i>``, where expert ``i < K`` is the specific expert of
    ``task_names[i]`` and expert ``K`` is the shared one.

    Args:
        task_names: names of the tasks, one embedding, expert, gate and tower each.
        expert_units: hidden sizes of every expert (shared and task-specific).
        tower_units: hidden sizes of every task tower.
        dropout: dropout rate inside experts and towers.
        gate_temperature: the gate logits are divided by it before the softmax.

    Call arguments:
        inputs: a dict with ``inputs``, E_merge ``(batch, d_merge)``; ``fields``, the shared
            field embeddings ``(batch, num_fields, d)``; and ``fields_<task>`` for every
            task, shaped like ``fields``. Other keys (``scenario``) are ignored.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> fields = keras.ops.ones((2, 3, 4))
    >>> layer = SharedAndTaskSpecificEmbeddings(["click", "like"], expert_units=[8])
    >>> out = layer({"inputs": keras.ops.ones((2, 12)), "fields": fields,
    ...              "fields_click": fields, "fields_like": fields})
    >>> sorted(out)
    ['click', 'like']

    Reference:
        Su, Pan, Wang, Xiao, Quan, Chen, Jiang. STEM: Unleashing the Power of Embeddings for
        Multi-Task Recommendation. AAAI 2024. Official code: github.com/LiangcaiSu/STEM.
    """

    def __init__(
        self,
        task_names: list[str],
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        gate_temperature: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dropout = dropout_rate(dropout)
        self.gate_temperature = positive("gate_temperature", gate_temperature)
        self.task_names = check_tasks(task_names)
        self.expert_units = list(expert_units)
        self.tower_units = list(tower_units)

    @property
    def extra_inputs(self) -> tuple[str, ...]:
        return ("fields", *(task_fields_key(name) for name in self.task_names))

    def _check_inputs(self, inputs: Any) -> None:
        needed = ["inputs", *self.extra_inputs]
        if not isinstance(inputs, dict) or any(k not in inputs for k in needed):
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"SharedAndTaskSpecificEmbeddings is called on a dict with keys {needed} (the per-task "
                f"tables of FeatureEmbedding(task_tables=...)). Received: {got}"
            )

    def build(self, input_shape: dict[str, Any]) -> None:
        self._check_inputs(input_shape)
        fields_shape = input_shape["fields"]
        for name in self.task_names:
            if tuple(input_shape[task_fields_key(name)][1:]) != tuple(fields_shape[1:]):
                raise ValueError(
                    f"fields_{name} must have the shape of fields. Received: "
                    f"{input_shape[task_fields_key(name)]} and {fields_shape}"
                )
        field_shape = (None, fields_shape[-2] * fields_shape[-1])
        self.shared_expert = MLP(
            self.expert_units, dropout=self.dropout, name="shared_expert", dtype=self.dtype_policy
        )
        self.shared_expert.build(input_shape["inputs"])
        self.task_experts = {}
        self.gates = {}
        self.towers = {}
        num_experts = len(self.task_names) + 1
        for name in self.task_names:
            expert = MLP(
                self.expert_units, dropout=self.dropout, name=f"expert_{name}", dtype=self.dtype_policy
            )
            expert.build(field_shape)
            self.task_experts[name] = expert
            self.gates[name] = build_gate(num_experts, f"gate_{name}", field_shape)
            tower = MLP(self.tower_units, dropout=self.dropout, name=f"tower_{name}", dtype=self.dtype_policy)
            tower.build((None, self.expert_units[-1]))
            self.towers[name] = tower
        create_gate_trackers(self, {name: num_experts for name in self.task_names})

    def _embeddings(self, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """``x_s`` and ``{task: x_k}``, the flattened field embeddings, ``(batch, num_fields * d)``."""
        self._check_inputs(inputs)

        def flat(fields: Any) -> Any:
            return ops.reshape(fields, (-1, fields.shape[-2] * fields.shape[-1]))

        return flat(inputs["fields"]), {name: flat(inputs[task_fields_key(name)]) for name in self.task_names}

    def _gates(self, shared: Any, specific: dict[str, Any]) -> dict[str, Any]:
        # As in the official code (gate[i](x[i] + x[-1])): task k's own plus the shared embedding.
        return {
            name: softmax_gate(gate, specific[name] + shared, self.gate_temperature)
            for name, gate in self.gates.items()
        }

    def gate_weights(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``{task: g_k(x)}``, each ``(batch, num_tasks + 1)`` summing to 1; the last column
        is the shared expert, column ``j`` the specific expert of ``task_names[j]``."""
        return self._gates(*self._embeddings(inputs))

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> dict[str, Any]:
        shared, specific = self._embeddings(inputs)
        shared_output = self.shared_expert(inputs["inputs"], training=training)
        specific_outputs = {
            name: self.task_experts[name](specific[name], training=training) for name in self.task_names
        }
        gates = self._gates(shared, specific)
        track_gates(self, gates)
        outputs = {}
        for name in self.task_names:
            experts = [
                out if other == name else ops.stop_gradient(out) for other, out in specific_outputs.items()
            ]
            mixed = mix_experts(gates[name], [*experts, shared_output])
            outputs[name] = self.towers[name](mixed, training=training)
        return outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            gate_temperature=self.gate_temperature,
        )
        return config
