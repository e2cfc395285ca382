"""HiNet: hierarchical scenario then task information extraction (Zhou et al., ICDE 2023)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, last_dim, layer_units, positive_int
from tfjoint.layers.core.contracts import ScenarioAware
from tfjoint.layers.core.experts import build_gate, mix_experts, softmax_gate
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    embed_known_scenarios,
    scenario_one_hot,
    scenario_segments,
    split_scenario_inputs,
)
from tfjoint.layers.multi_task.progressive_layered_extraction import CustomizedGateControl
from tfjoint.registry import register


@register(
    "hinet",
    slot="task_architecture",
    family="multi_scenario",
    reference="Zhou et al., HiNet: Novel Multi-Scenario & Multi-Task Learning with Hierarchical "
    "Information Extraction, ICDE 2023",
)
class HierarchicalInformationExtractionNetwork(ScenarioAware, keras.layers.Layer):
    """HiNet: a scenario extraction layer, then a CGC task extraction layer and task towers.

    Scenario extraction layer, on ``x = E_merge`` for a row of scenario ``p``:

    - Subexpert integration: an "expert" is a gated mixture of sub-experts,
      ``SEI(x) = sum_k g_k(x) e_k(x)`` with ``g(x) = softmax(W_g x + b_g)`` (float32).
    - Scenario-shared expert ``V^sh = SEI_sh(x)``, one for all scenarios.
    - Scenario-specific experts ``S_j = SEI_j(x)``, one SEI per scenario ``j`` with its own
      sub-experts and gate; the row keeps its own ``S_p`` (``own``).
    - Scenario-aware attentive network (SAN): ``alpha = softmax(g(e_p))`` over the ``P``
      scenarios, ``g`` an MLP then a linear layer on the scenario embedding ``e_p``, and
      ``A_p = sum_{j != p} alpha_j S_j`` (``san``): the other scenarios' specific experts. As in
      the official code the softmax runs over all ``P`` scenarios and the own term is then
      dropped (no renormalization), so ``alpha_p`` scales the transferred information down;
      the own scenario reaches the representation only through ``S_p``.
    - Scenario representation ``C_p = concat(V^sh, S_p, A_p)`` (``scenario_representation``),
      of width ``3 * scenario_expert_units[-1]``.

    Task extraction layer: customized gate control on ``C_p``,
    ``y_t = tower_t(softmax(W_t C_p)ᵀ [E_t(C_p), E_sh(C_p)])``: task ``t``'s gate covers only its
    own experts and the task-shared ones. It is a :class:`CustomizedGateControl` sublayer
    (``task_extraction``), which also reports the task gates as ``gate_<task>_expert_<i>``
    (own experts first, then the shared ones).

    Deviations from the official code: gate and SAN logits are linear (the code applies a
    ReLU to them before the softmax); the concatenation order is (shared, specific, SAN)
    where the code uses (SAN, specific, shared), which changes nothing the model can learn;
    the official code's single task-extraction level is kept (no PLE stacking).

    An unknown scenario (any id outside ``[0, num_scenarios)``) has no specific expert of its
    own: ``S_p = 0``. Its SAN runs over all ``P`` scenarios with a zero scenario embedding, so
    ``alpha = softmax(g(0))`` depends only on shared parameters, and ``A = sum_j alpha_j S_j``.
    The scenario-shared expert and the whole task extraction layer are shared anyway.

    Args:
        task_names: names of the tasks, one gate, set of task experts and tower each.
        num_scenarios: number of known scenarios ``P``.
        num_scenario_shared_experts: sub-experts of the scenario-shared SEI.
        num_scenario_specific_experts: sub-experts of each scenario's SEI.
        scenario_expert_units: hidden sizes of every scenario sub-expert.
        scenario_embedding_dim: size of the scenario embedding ``e_p`` fed to the SAN.
        san_units: hidden sizes of the SAN's MLP ``g`` before its ``P`` logits (may be empty).
        num_task_experts: task-specific experts per task in the task extraction layer.
        num_task_shared_experts: task-shared experts in the task extraction layer.
        task_expert_units: hidden sizes of every task-extraction expert.
        tower_units: hidden sizes of every task tower.
        dropout: dropout rate inside every expert and tower.

    Call arguments:
        inputs: ``[E_merge, scenario]`` or ``{"inputs": E_merge, "scenario": scenario}`` with
            ``E_merge`` of shape ``(batch, d)`` and ``scenario`` ``(batch, 1)`` int.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = HierarchicalInformationExtractionNetwork(["click", "like"], num_scenarios=2)
    >>> x = keras.ops.ones((3, 5))
    >>> out = layer([x, keras.ops.array([[0], [1], [2]])])
    >>> sorted(out), tuple(out["click"].shape)
    (['click', 'like'], (3, 32))

    Reference:
        Zhou et al. HiNet: Novel Multi-Scenario & Multi-Task Learning with Hierarchical
        Information Extraction. ICDE 2023.
    """


    def __init__(
        self,
        task_names: list[str],
        num_scenarios: int,
        num_scenario_shared_experts: int = 2,
        num_scenario_specific_experts: int = 2,
        scenario_expert_units: list[int] | tuple[int, ...] = (64,),
        scenario_embedding_dim: int = 8,
        san_units: list[int] | tuple[int, ...] = (16,),
        num_task_experts: int = 1,
        num_task_shared_experts: int = 1,
        task_expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = check_tasks(task_names)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.num_scenario_shared_experts = positive_int(
            "num_scenario_shared_experts", num_scenario_shared_experts
        )
        self.num_scenario_specific_experts = positive_int(
            "num_scenario_specific_experts", num_scenario_specific_experts
        )
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.num_task_experts = positive_int("num_task_experts", num_task_experts)
        self.num_task_shared_experts = positive_int("num_task_shared_experts", num_task_shared_experts)
        self.scenario_expert_units = layer_units("scenario_expert_units", scenario_expert_units)
        self.task_expert_units = layer_units("task_expert_units", task_expert_units)
        self.tower_units = layer_units("tower_units", tower_units)
        self.san_units = layer_units("san_units", san_units, allow_empty=True)
        self.dropout = dropout_rate(dropout)

    def _expert_names(self, scenario: int | None) -> list[str]:
        """Sub-expert names of scenario ``scenario``'s SEI, or of the shared SEI when None."""
        if scenario is None:
            return [f"shared_expert_{k}" for k in range(self.num_scenario_shared_experts)]
        return [f"scenario_{scenario}_expert_{k}" for k in range(self.num_scenario_specific_experts)]

    def _gate_name(self, scenario: int | None) -> str:
        return "shared_gate" if scenario is None else f"scenario_{scenario}_gate"

    def build(self, input_shape: Any) -> None:
        x_shape = tuple(split_scenario_inputs(input_shape)[0])
        last_dim(x_shape, input_shape)
        self.experts, self.gates = {}, {}
        for scenario in [None, *range(self.num_scenarios)]:
            names = self._expert_names(scenario)
            for name in names:
                expert = MLP(
                    self.scenario_expert_units, dropout=self.dropout, name=name, dtype=self.dtype_policy
                )
                expert.build(x_shape)
                self.experts[name] = expert
            gate = build_gate(len(names), self._gate_name(scenario), x_shape)
            self.gates[gate.name] = gate
        self.scenario_embedding = build_scenario_embedding(
            self.num_scenarios, self.scenario_embedding_dim, self.dtype_policy
        )
        san_in = self.scenario_embedding_dim
        if self.san_units:
            self.san_hidden = MLP(self.san_units, name="san_hidden", dtype=self.dtype_policy)
            self.san_hidden.build((None, san_in))
            san_in = self.san_units[-1]
        self.san_output = keras.layers.Dense(self.num_scenarios, name="san_output", dtype="float32")
        self.san_output.build((None, san_in))
        self.task_extraction = CustomizedGateControl(
            self.task_names,
            num_shared_experts=self.num_task_shared_experts,
            num_task_experts=self.num_task_experts,
            expert_units=self.task_expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            name="task_extraction",
            dtype=self.dtype_policy,
        )
        self.task_extraction.build((None, 3 * self.scenario_expert_units[-1]))

    def _integrate(self, x: Any, scenario: int | None, training: bool | None) -> Any:
        """``SEI(x) = sum_k softmax(W_g x + b_g)_k e_k(x)`` of one scenario (None: the shared SEI)."""
        gate = softmax_gate(self.gates[self._gate_name(scenario)], x)
        return mix_experts(gate, [self.experts[n](x, training=training) for n in self._expert_names(scenario)])

    def scenario_representation(self, inputs: Any, training: bool | None = None) -> Any:
        """``C_p = concat(V^sh, S_p, A_p)``, ``(batch, 3 * scenario_expert_units[-1])``."""
        x, scenario = split_scenario_inputs(inputs)
        seg = scenario_segments(scenario, self.num_scenarios)
        shared = self._integrate(x, None, training)  # V^sh
        specific = ops.stack(
            [self._integrate(x, j, training) for j in range(self.num_scenarios)], axis=1
        )  # S_j for every j: (batch, P, d_s)
        # All-zero row for an unknown scenario: it has no S_p and its SAN excludes nothing.
        own_onehot = scenario_one_hot(seg, self.num_scenarios, unknown="zeros", dtype=specific.dtype)
        own = ops.einsum("bp,bpd->bd", own_onehot, specific)  # S_p
        embedding = embed_known_scenarios(self.scenario_embedding, seg, self.compute_dtype)  # e_p
        hidden = self.san_hidden(embedding, training=training) if self.san_units else embedding
        alpha = ops.softmax(self.san_output(ops.cast(hidden, "float32")), axis=-1)
        others = ops.cast(alpha, specific.dtype) * (1.0 - own_onehot)  # alpha_j for j != p
        san = ops.einsum("bp,bpd->bd", others, specific)  # A_p
        return ops.concatenate([shared, own, san], axis=-1)

    def task_gate_weights(self, inputs: Any) -> dict[str, Any]:
        """``{task: w_t(C_p)}``, each ``(batch, num_task_experts + num_task_shared_experts)``.

        Columns are the task's own experts, then the task-shared ones.
        """
        return self.task_extraction.gate_weights(self.scenario_representation(inputs, training=False))

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        return self.task_extraction(
            self.scenario_representation(inputs, training=training), training=training
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_scenarios=self.num_scenarios,
            num_scenario_shared_experts=self.num_scenario_shared_experts,
            num_scenario_specific_experts=self.num_scenario_specific_experts,
            scenario_expert_units=self.scenario_expert_units,
            scenario_embedding_dim=self.scenario_embedding_dim,
            san_units=self.san_units,
            num_task_experts=self.num_task_experts,
            num_task_shared_experts=self.num_task_shared_experts,
            task_expert_units=self.task_expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
        )
        return config
