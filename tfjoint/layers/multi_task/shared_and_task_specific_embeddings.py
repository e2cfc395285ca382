"""STEM: shared and task-specific embeddings with an All Forward Gate (Su et al., AAAI 2024)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, positive, positive_int
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
class SharedAndTaskSpecificEmbeddings(keras.layers.Layer):
    """STEM: one shared and one task-specific embedding per task, mixed by All Forward Gates.

    STEM gives every task its own embedding table ``E_k`` next to a shared table ``E_s``; an
    expert reads each table, and task ``k``'s gate mixes *all* experts while its gradient
    reaches only its own and the shared embedding and expert. With ``K`` tasks:

    - embeddings: ``e_s = P_s(x)``, ``e_k = P_k(x)``;
    - experts: ``f_s = F_s(e_s)``, ``f_k = F_k(e_k)``;
    - All Forward Gate: ``g_k = softmax(W_gk (e_k + e_s) / temperature)`` over the ``K + 1``
      experts ``[f_1, ..., f_K, f_s]``;
    - mixture: ``m_k = g_k,k f_k + sum_{j != k} g_k,j sg(f_j) + g_k,s f_s``, where ``sg`` is
      the stop-gradient: task ``k`` sees every task's expert in the forward pass, but its
      loss never updates another task's embedding or expert (the paper's key mechanism);
    - towers: ``y_k = h_k(m_k)``.

    Adaptation to a pre-merged input: in the paper the separation happens in the lookup
    tables (each field has ``K + 1`` embeddings). Here the feature embedding runs upstream
    and the layer receives the merged ``x``, so the ``K + 1`` embeddings are linear
    projections ``P_s``, ``P_k`` of ``x`` to ``embedding_dim``: the gradient of task ``k``
    still reaches only ``P_k`` and ``P_s``, which is the separation STEM asks for. The paper's
    extra gate of the shared branch feeds only a next stacked STEM layer; with one layer it
    has no output, so it is left out. Gate logits and the softmax are computed in float32.
    The mean gate weight is logged as ``gate_<task>_expert_<i>``, where expert ``i < K`` is
    the specific expert of ``task_names[i]`` and expert ``K`` is the shared one.

    Args:
        task_names: names of the tasks, one embedding, expert, gate and tower each.
        embedding_dim: width of the shared and of every task-specific embedding.
        expert_units: hidden sizes of every expert (shared and task-specific).
        tower_units: hidden sizes of every task tower.
        dropout: dropout rate inside experts and towers.
        gate_temperature: the gate logits are divided by it before the softmax.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = SharedAndTaskSpecificEmbeddings(["click", "like"], embedding_dim=4)
    >>> sorted(layer(keras.ops.ones((2, 5))))
    ['click', 'like']

    Reference:
        Su, Pan, Lin, Gu, Ming, Yang, Li, Zhang, Liu, Jiang, Zheng, Yu, Wu, Zhang, Li, Xia.
        STEM: Unleashing the Power of Embeddings for Multi-task Recommendation. AAAI 2024.
    """

    def __init__(
        self,
        task_names: list[str],
        embedding_dim: int = 16,
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        gate_temperature: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.dropout = dropout_rate(dropout)
        self.gate_temperature = positive("gate_temperature", gate_temperature)
        self.task_names = check_tasks(task_names)
        self.expert_units = list(expert_units)
        self.tower_units = list(tower_units)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        embedding_shape = (*input_shape[:-1], self.embedding_dim)
        self.shared_embedding = keras.layers.Dense(self.embedding_dim, name="shared_embedding", dtype=self.dtype_policy)
        self.shared_embedding.build(input_shape)
        self.shared_expert = MLP(self.expert_units, dropout=self.dropout, name="shared_expert", dtype=self.dtype_policy)
        self.shared_expert.build(embedding_shape)
        self.task_embeddings = {}
        self.task_experts = {}
        self.gates = {}
        self.towers = {}
        num_experts = len(self.task_names) + 1
        for name in self.task_names:
            embedding = keras.layers.Dense(self.embedding_dim, name=f"embedding_{name}", dtype=self.dtype_policy)
            embedding.build(input_shape)
            self.task_embeddings[name] = embedding
            expert = MLP(self.expert_units, dropout=self.dropout, name=f"expert_{name}", dtype=self.dtype_policy)
            expert.build(embedding_shape)
            self.task_experts[name] = expert
            self.gates[name] = build_gate(num_experts, f"gate_{name}", embedding_shape)
            tower = MLP(self.tower_units, dropout=self.dropout, name=f"tower_{name}", dtype=self.dtype_policy)
            tower.build((None, self.expert_units[-1]))
            self.towers[name] = tower
        create_gate_trackers(self, {name: num_experts for name in self.task_names})

    def _embeddings(self, inputs: Any) -> tuple[Any, dict[str, Any]]:
        return self.shared_embedding(inputs), {name: p(inputs) for name, p in self.task_embeddings.items()}

    def _gates(self, shared: Any, specific: dict[str, Any]) -> dict[str, Any]:
        # As in the official code, a task's gate reads its own embedding plus the shared one.
        return {
            name: softmax_gate(gate, specific[name] + shared, self.gate_temperature)
            for name, gate in self.gates.items()
        }

    def gate_weights(self, inputs: Any) -> dict[str, Any]:
        """``{task: g_k(x)}``, each ``(batch, num_tasks + 1)`` summing to 1; the last column
        is the shared expert, column ``j`` the specific expert of ``task_names[j]``."""
        return self._gates(*self._embeddings(inputs))

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        shared, specific = self._embeddings(inputs)
        shared_output = self.shared_expert(shared, training=training)
        specific_outputs = {name: self.task_experts[name](specific[name], training=training) for name in self.task_names}
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
            embedding_dim=self.embedding_dim,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            gate_temperature=self.gate_temperature,
        )
        return config
