"""M2M: multi-scenario multi-task meta learning (Zhang et al., WSDM 2022) as a task architecture."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, last_dim, layer_units, positive_int
from tfjoint.layers.core.contracts import ScenarioAware
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    embed_known_scenarios,
    scenario_segments,
    split_scenario_inputs,
)
from tfjoint.registry import register


class _MetaUnit(keras.layers.Layer):
    """``depth`` dense layers of width ``units`` whose kernels and biases are generated from ``S``.

    Layer ``i``: ``W^(i) = Reshape(V_W^(i) S + b_W^(i))``, ``b^(i) = V_b^(i) S + b_b^(i)``,
    ``h^(i) = activation(h^(i-1) W^(i) + b^(i))``. ``V_W^(i)`` is stored as
    ``kernel_generator_i`` with shape ``(knowledge_dim, units, units)`` (the paper's
    ``(units * units) x knowledge_dim`` matrix, reshaped), ``b_W^(i)`` as
    ``kernel_generator_bias_i`` with shape ``(units, units)`` so that it takes a Glorot
    initialization like an ordinary kernel. Called on ``(batch, m, units)`` and ``S`` of shape
    ``(batch, knowledge_dim)``; every sample gets the layer generated from its own ``S``.
    """

    def __init__(self, units: int, knowledge_dim: int, depth: int, activation: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.knowledge_dim = knowledge_dim
        self.depth = depth
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: Any = None) -> None:
        d, s = self.units, self.knowledge_dim
        self.kernel_generators, self.kernel_generator_biases = [], []
        self.bias_generators, self.bias_generator_biases = [], []
        for i in range(self.depth):
            self.kernel_generators.append(
                self.add_weight(shape=(s, d, d), initializer="glorot_uniform", name=f"kernel_generator_{i}")
            )
            self.kernel_generator_biases.append(
                self.add_weight(shape=(d, d), initializer="glorot_uniform", name=f"kernel_generator_bias_{i}")
            )
            self.bias_generators.append(
                self.add_weight(shape=(s, d), initializer="glorot_uniform", name=f"bias_generator_{i}")
            )
            self.bias_generator_biases.append(
                self.add_weight(shape=(d,), initializer="zeros", name=f"bias_generator_bias_{i}")
            )

    def generated_weights(self, knowledge: Any) -> list[tuple[Any, Any]]:
        """``[(W^(i), b^(i))]``, shapes ``(batch, units, units)`` and ``(batch, units)``, from ``S``."""
        c = self.compute_dtype
        knowledge = ops.cast(knowledge, c)
        weights = []
        for i in range(self.depth):
            kernel = ops.einsum("bs,sij->bij", knowledge, ops.cast(self.kernel_generators[i], c))
            kernel = kernel + ops.cast(self.kernel_generator_biases[i], c)[None]
            bias = ops.matmul(knowledge, ops.cast(self.bias_generators[i], c))
            bias = bias + ops.cast(self.bias_generator_biases[i], c)[None]
            weights.append((kernel, bias))
        return weights

    def call(self, inputs: Any, knowledge: Any) -> Any:
        h = inputs
        for kernel, bias in self.generated_weights(knowledge):
            h = self.activation(ops.einsum("bmi,bij->bmj", h, kernel) + bias[:, None, :])
        return h


@register(
    "m2m",
    slot="task_architecture",
    family="multi_scenario",
    reference="Zhang et al., Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning Approach "
    "for Advertiser Modeling, WSDM 2022",
)
class MultiScenarioMultiTaskMetaLearner(ScenarioAware, keras.layers.Layer):
    """M2M: experts, meta attention and meta towers whose weights the scenario generates.

    Representations. ``x`` is ``E_merge`` (the paper's transformer-encoded
    features; here the joint model's merged representation).

    - Expert views ``E_i = MLP_i(x)``, ``i = 1..num_experts``, each of width ``d_e``.
    - Task views ``T_t``: one learned vector of size ``task_dim`` per task (an MLP over a
      task's embedding would add nothing to a single learned vector, so there is none).
    - Scenario knowledge ``S = e_p``, the embedding of the row's scenario ``p`` (size
      ``scenario_dim``). The paper builds ``S`` from scenario-related features with an MLP;
      the scenario id is the only such feature here, so its embedding row is ``S``.

    Meta learning mechanism, one meta unit per use and task:

    - Meta unit: ``W^(i) = Reshape(V_W^(i) S + b_W^(i))``, ``b^(i) = V_b^(i) S + b_b^(i)``,
      ``h^(i) = sigma(h^(i-1) W^(i) + b^(i))`` for ``i = 1..meta_unit_depth``,
      ``Meta(h^(0)) = h^(K)``. One generator ``(V, b)`` serves every scenario; each sample's
      layer is generated from its own ``S`` (``_MetaUnit.call``).
    - Meta attention: ``a_{t,i} = v_tᵀ Meta_t([E_i || T_t])``,
      ``alpha_{t,i} = softmax_i(a_{t,i})`` (in float32), ``R_t = sum_i alpha_{t,i} E_i``
      (``_forward``: ``meta``, ``logits``, ``alpha``, ``h``).
    - Meta tower: ``L_t^(0) = R_t``, ``L_t^(j) = sigma(Meta_t^(j)(L_t^(j-1)) + L_t^(j-1))`` for
      ``j = 1..meta_tower_depth`` (``_forward``'s loop over ``meta_towers``); the tower
      returned is ``L_t^(J)``. The paper's output layer ``sigma(W_t L_t^(J) + b_t)`` is the
      joint model's task head.

    Choices where the paper leaves room: every task has its own meta units (none shared
    across tasks); ``sigma`` follows every generated layer, the last one included; ``b_W``
    is stored as a ``(units, units)`` matrix so it initializes like a kernel (the
    equation is unchanged).

    The meta attention weights ``alpha_t`` are reported as the gate weights of task ``t``
    (``gate_<task>_expert_<i>``).

    An unknown scenario (any id outside ``[0, num_scenarios)``) has ``S = 0``: every meta
    unit then runs the generators' biases ``W^(i) = b_W^(i)``, ``b^(i) = b_b^(i)``, the
    scenario-agnostic layer that all scenarios share and modulate; experts and task views are
    shared anyway.

    Args:
        task_names: names of the tasks, one task view, meta attention and meta tower each.
        num_scenarios: number of known scenarios ``P``.
        num_experts: number of experts.
        expert_units: hidden sizes of every expert; ``d_e = expert_units[-1]``.
        task_dim: size of the task views ``T_t``.
        scenario_dim: size of the scenario knowledge ``S``.
        meta_unit_depth: ``K``, generated layers per meta unit.
        meta_tower_depth: ``J``, residual meta layers per tower.
        activation: ``sigma``, the activation of the meta units and of the tower's residual.
        dropout: dropout rate inside the experts.

    Call arguments:
        inputs: ``[E_merge, scenario]`` or ``{"inputs": E_merge, "scenario": scenario}`` with
            ``E_merge`` of shape ``(batch, d)`` and ``scenario`` ``(batch, 1)`` int.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, expert_units[-1])}``, the meta towers' outputs ``L_t^(J)``.

    Example:
    >>> layer = MultiScenarioMultiTaskMetaLearner(["click", "like"], num_scenarios=2)
    >>> x = keras.ops.ones((3, 5))
    >>> out = layer([x, keras.ops.array([[0], [1], [2]])])
    >>> sorted(out), tuple(out["click"].shape)
    (['click', 'like'], (3, 32))

    Reference:
        Zhang et al. Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning
        Approach for Advertiser Modeling. WSDM 2022.
    """


    def __init__(
        self,
        task_names: list[str],
        num_scenarios: int,
        num_experts: int = 4,
        expert_units: list[int] | tuple[int, ...] = (32,),
        task_dim: int = 16,
        scenario_dim: int = 16,
        meta_unit_depth: int = 1,
        meta_tower_depth: int = 2,
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = check_tasks(task_names)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.num_experts = positive_int("num_experts", num_experts)
        self.task_dim = positive_int("task_dim", task_dim)
        self.scenario_dim = positive_int("scenario_dim", scenario_dim)
        self.meta_unit_depth = positive_int("meta_unit_depth", meta_unit_depth)
        self.meta_tower_depth = positive_int("meta_tower_depth", meta_tower_depth)
        self.expert_units = layer_units("expert_units", expert_units)
        self.dropout = dropout_rate(dropout)
        self._activation_name = activation
        self.activation = keras.activations.get(activation)

    def _tower_names(self, task: str) -> list[str]:
        # A flat dict of named units (not a dict of lists): Keras tracks its weights.
        return [f"meta_tower_{task}_{j}" for j in range(self.meta_tower_depth)]

    def build(self, input_shape: Any) -> None:
        x_shape = tuple(split_scenario_inputs(input_shape)[0])
        last_dim(x_shape, input_shape)
        self.experts = []
        for i in range(self.num_experts):
            expert = MLP(self.expert_units, dropout=self.dropout, name=f"expert_{i}", dtype=self.dtype_policy)
            expert.build(x_shape)
            self.experts.append(expert)
        self.task_views = self.add_weight(
            shape=(len(self.task_names), self.task_dim), initializer="glorot_uniform", name="task_views"
        )
        self.scenario_embedding = build_scenario_embedding(
            self.num_scenarios, self.scenario_dim, self.dtype_policy
        )
        expert_dim = self.expert_units[-1]
        attention_dim = expert_dim + self.task_dim
        self.meta_attention, self.attention_vectors, self.meta_towers = {}, {}, {}
        for task in self.task_names:
            unit = _MetaUnit(
                attention_dim,
                self.scenario_dim,
                self.meta_unit_depth,
                self._activation_name,
                name=f"meta_attention_{task}",
                dtype=self.dtype_policy,
            )
            unit.build()
            self.meta_attention[task] = unit
            self.attention_vectors[task] = self.add_weight(
                shape=(attention_dim,), initializer="glorot_uniform", name=f"attention_vector_{task}"
            )
            for name in self._tower_names(task):
                unit = _MetaUnit(
                    expert_dim,
                    self.scenario_dim,
                    self.meta_unit_depth,
                    self._activation_name,
                    name=name,
                    dtype=self.dtype_policy,
                )
                unit.build()
                self.meta_towers[name] = unit
        create_gate_trackers(self, {t: self.num_experts for t in self.task_names})

    def scenario_knowledge(self, scenario: Any) -> Any:
        """``S``, ``(batch, scenario_dim)``: the scenario's embedding, zeros for an unknown scenario."""
        seg = scenario_segments(scenario, self.num_scenarios)
        return embed_known_scenarios(self.scenario_embedding, seg, self.compute_dtype)

    def _forward(self, inputs: Any, training: bool | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``({task: L_t^(J)}, {task: alpha_t})``."""
        x, scenario = split_scenario_inputs(inputs)
        knowledge = self.scenario_knowledge(scenario)
        experts = ops.stack([e(x, training=training) for e in self.experts], axis=1)  # (batch, n, d_e)
        batch = ops.shape(experts)[0]
        towers, attention = {}, {}
        for k, task in enumerate(self.task_names):
            task_view = ops.cast(self.task_views[k], experts.dtype)
            task_view = ops.broadcast_to(task_view, (batch, self.num_experts, self.task_dim))
            meta = self.meta_attention[task](ops.concatenate([experts, task_view], axis=-1), knowledge)
            logits = ops.einsum(
                "bnd,d->bn", ops.cast(meta, "float32"), ops.cast(self.attention_vectors[task], "float32")
            )
            alpha = ops.softmax(logits, axis=-1)
            h = ops.einsum("bn,bnd->bd", ops.cast(alpha, experts.dtype), experts)  # L_t^(0) = R_t
            for name in self._tower_names(task):
                h = self.activation(self.meta_towers[name](h[:, None, :], knowledge)[:, 0, :] + h)
            towers[task] = h
            attention[task] = alpha
        return towers, attention

    def attention_weights(self, inputs: Any) -> dict[str, Any]:
        """``{task: alpha_t}``, each ``(batch, num_experts)`` summing to 1 over the experts."""
        return self._forward(inputs, training=False)[1]

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        towers, attention = self._forward(inputs, training)
        track_gates(self, attention)
        return towers

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_scenarios=self.num_scenarios,
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            task_dim=self.task_dim,
            scenario_dim=self.scenario_dim,
            meta_unit_depth=self.meta_unit_depth,
            meta_tower_depth=self.meta_tower_depth,
            activation=self._activation_name,
            dropout=self.dropout,
        )
        return config
