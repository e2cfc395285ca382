"""SAR-Net: scenario-aware ranking network (Shen et al., CIKM 2021) as a scenario adapter."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import keras
from keras import ops

from tfjoint.layers.core.arguments import layer_units, positive_int
from tfjoint.layers.core.contracts import NeedsEmbeddings
from tfjoint.layers.core.experts import mix_experts
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    embed_known_scenarios,
    per_scenario_dense,
    scenario_one_hot,
    scenario_segments,
    split_context_inputs,
)
from tfjoint.registry import register

# A finite "minus infinity" for masked logits: exp() of it is exactly 0 in float32.
_MASKED_LOGIT = -1e9
_INPUT_KEYS = ("inputs", "scenario", "sequence", "sequence_mask", "target")


def masked_softmax(logits: Any, mask: Any) -> Any:
    """Softmax over the last axis restricted to ``mask > 0``; exactly 0 elsewhere, and all 0 on
    a row with no valid position."""
    valid = mask > 0
    weights = ops.softmax(ops.where(valid, logits, _MASKED_LOGIT), axis=-1)
    return ops.where(valid, weights, ops.zeros_like(weights))


def _split_inputs(inputs: Any) -> tuple[Any, ...]:
    return split_context_inputs(inputs, _INPUT_KEYS)


@register(
    "sar_net",
    slot="scenario_adapter",
    family="multi_scenario",
    reference="Shen, Tao, Zhang, Wen, Chen, Lu. SAR-Net: A Scenario-Aware Ranking Network for "
    "Personalized Fair Recommendation in Hundreds of Travel Scenarios, CIKM 2021",
)
class ScenarioAwareRankingNetwork(NeedsEmbeddings, keras.layers.Layer):
    """SAR-Net: cross-scenario behavior attention, a per-scenario transform, then a mixture of
    scenario-specific and shared experts.

    With the behavior sequence ``p_k`` (``sequence``, masked by ``sequence_mask``), the
    candidate item ``e_t`` (``target``) and the row's scenario embedding ``z`` (Shen et al.,
    2021):

    - cross-scenario behavior extract layer:
      ``alpha^i = softmax_k((W_q^i e_t) . (W_k^i p_k) / sqrt(a))``, the item relevance;
      ``alpha^s = softmax_k((W_q^s z) . (W_k^s p_k) / sqrt(a))``, the scenario relevance;
      ``v_cb = sum_k alpha^i_k alpha^s_k p_k``. Both softmaxes run over the real items only:
      a padded position gets weight exactly 0, and a row without any item gets ``v_cb = 0``;
    - scenario-specific transform layer: ``v = [E_merge, v_cb]``,
      ``v' = v ⊙ beta_p + gamma_p`` with ``beta_p`` initialized to ones and ``gamma_p`` to zeros;
    - mixture of experts: ``num_scenario_experts`` experts of scenario ``p`` ``S_p^k`` and
      ``num_shared_experts`` shared experts ``S^k`` (MLPs of ``expert_units``), mixed by a
      softmax gate on ``v'``: ``y = sum_k w^k(v') S^k(v')`` over the row's own scenario's
      experts, then the shared ones.

    Deviation: the paper scores ``alpha^s`` against the scenario context of each behavior
    (where it happened). The sequence embedding here is item + behavior-type embedding and
    carries no per-item scenario, so the sequence embedding itself is item ``k``'s context
    for ``alpha^s``. The paper's debias (fairness) net on the expert outputs is not included:
    the layer returns the mixed representation and the joint model's heads produce the logits.

    An unknown scenario (any id outside ``[0, num_scenarios)``) takes the shared path: ``z = 0``
    (so ``alpha^s`` is uniform over the real items), ``beta = 1``, ``gamma = 0``, and the gate
    mixes the shared experts only. Attention logits, softmaxes and the gate are float32. The
    mean gate weight per expert is tracked as ``gate_sar_net_expert_{k}`` (the row's scenario
    experts first, then the shared ones).

    Args:
        num_scenarios: number of known scenarios ``P``.
        expert_units: hidden sizes of every expert (scenario-specific and shared).
        num_scenario_experts: experts per scenario (``>= 1``).
        num_shared_experts: shared experts (``>= 1``).
        attention_dim: ``a``, the size of the attention queries and keys.
        scenario_embedding_dim: size of the scenario embedding ``z``.
        activation: activation of every expert layer.
        kernel_initializer: initializer of the scenario-specific expert kernels.

    Call arguments:
        inputs: dict with ``inputs`` ``(batch, d)`` (``E_merge``), ``scenario`` ``(batch, 1)``
            int, ``sequence`` ``(batch, L, e)``, ``sequence_mask`` ``(batch, L)`` (1.0 on real
            items) and ``target`` ``(batch, e)``.
        training: Python bool; passed to the shared experts.

    Returns:
        ``(batch, expert_units[-1])``, the mixed expert representation.

    Example:
    >>> layer = ScenarioAwareRankingNetwork(num_scenarios=2, expert_units=[8])
    >>> out = layer({
    ...     "inputs": keras.ops.ones((3, 5)),
    ...     "scenario": keras.ops.array([[0], [1], [2]]),
    ...     "sequence": keras.ops.ones((3, 4, 6)),
    ...     "sequence_mask": keras.ops.ones((3, 4)),
    ...     "target": keras.ops.ones((3, 6)),
    ... })
    >>> tuple(out.shape)
    (3, 8)

    Reference:
        Shen, Tao, Zhang, Wen, Chen, Lu. SAR-Net: A Scenario-Aware Ranking Network for
        Personalized Fair Recommendation in Hundreds of Travel Scenarios. CIKM 2021.
    """

    extra_inputs: ClassVar[tuple[str, ...]] = ("sequence", "sequence_mask", "target")

    def __init__(
        self,
        num_scenarios: int,
        expert_units: list[int] | tuple[int, ...] = (64,),
        num_scenario_experts: int = 2,
        num_shared_experts: int = 2,
        attention_dim: int = 16,
        scenario_embedding_dim: int = 16,
        activation: str = "relu",
        kernel_initializer: Any = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.expert_units = layer_units("expert_units", expert_units)
        self.num_scenario_experts = positive_int("num_scenario_experts", num_scenario_experts)
        self.num_shared_experts = positive_int("num_shared_experts", num_shared_experts)
        self.attention_dim = positive_int("attention_dim", attention_dim)
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _projection(self, name: str, fan_in: int) -> keras.layers.Dense:
        # No bias: a zero query (the unknown scenario) then scores every item alike.
        dense = keras.layers.Dense(self.attention_dim, use_bias=False, name=name, dtype=self.dtype_policy)
        dense.build((None, fan_in))
        return dense

    def build(self, input_shape: Any) -> None:
        x_shape, _, seq_shape, _, target_shape = _split_inputs(input_shape)
        dim, emb = x_shape[-1], seq_shape[-1]
        if dim is None or emb is None:
            raise ValueError(
                f"the last dimensions of inputs and sequence must be known. Received: {input_shape}"
            )
        if target_shape[-1] != emb:
            raise ValueError(
                f"target and sequence must have the same embedding size. Received: target={target_shape}, "
                f"sequence={seq_shape}"
            )
        p = self.num_scenarios
        self.scenario_embedding = build_scenario_embedding(p, self.scenario_embedding_dim, self.dtype_policy)
        self.item_query = self._projection("item_query", emb)
        self.item_key = self._projection("item_key", emb)
        self.scenario_query = self._projection("scenario_query", self.scenario_embedding_dim)
        self.scenario_key = self._projection("scenario_key", emb)
        width = dim + emb
        self.scenario_beta = self.add_weight(shape=(p, width), initializer="ones", name="scenario_beta")
        self.scenario_gamma = self.add_weight(shape=(p, width), initializer="zeros", name="scenario_gamma")
        self.scenario_expert_kernels, self.scenario_expert_biases = [], []
        fan_in = width
        for i, units in enumerate(self.expert_units):
            self.scenario_expert_kernels.append(
                self.add_weight(
                    shape=(p, self.num_scenario_experts, fan_in, units),
                    initializer=self.kernel_initializer,
                    name=f"scenario_expert_kernel_{i}",
                )
            )
            self.scenario_expert_biases.append(
                self.add_weight(
                    shape=(p, self.num_scenario_experts, units),
                    initializer="zeros",
                    name=f"scenario_expert_bias_{i}",
                )
            )
            fan_in = units
        self.shared_experts = []
        for k in range(self.num_shared_experts):
            expert = MLP(
                self.expert_units,
                activation=self._activation_name,
                name=f"shared_expert_{k}",
                dtype=self.dtype_policy,
            )
            expert.build((None, width))
            self.shared_experts.append(expert)
        self.gate = keras.layers.Dense(
            self.num_scenario_experts + self.num_shared_experts, name="gate", dtype="float32"
        )
        self.gate.build((None, width))
        create_gate_trackers(self, {"sar_net": self.num_scenario_experts + self.num_shared_experts})

    def _attention(self, query: Any, keys: Any, mask: Any) -> Any:
        """``softmax_k(q . k_k / sqrt(a))`` over the real items, ``(batch, L)`` float32."""
        logits = ops.einsum("ba,bla->bl", ops.cast(query, "float32"), ops.cast(keys, "float32"))
        return masked_softmax(logits / math.sqrt(self.attention_dim), ops.cast(mask, "float32"))

    def behavior_weights(self, inputs: dict[str, Any]) -> tuple[Any, Any]:
        """``(alpha^i, alpha^s)``, each ``(batch, L)`` float32, 0 on padded positions."""
        _, scenario, sequence, mask, target = _split_inputs(inputs)
        seg = scenario_segments(scenario, self.num_scenarios)
        z = embed_known_scenarios(self.scenario_embedding, seg, self.compute_dtype)
        item = self._attention(self.item_query(target), self.item_key(sequence), mask)
        scene = self._attention(self.scenario_query(z), self.scenario_key(sequence), mask)
        return item, scene

    def transform(self, inputs: dict[str, Any]) -> Any:
        """``v' = [E_merge, v_cb] ⊙ beta_p + gamma_p``, ``(batch, d + e)``."""
        x, scenario, sequence, _, _ = _split_inputs(inputs)
        item, scene = self.behavior_weights(inputs)
        v_cb = ops.einsum("bl,ble->be", ops.cast(item * scene, self.compute_dtype), sequence)
        v = ops.concatenate([ops.cast(x, self.compute_dtype), v_cb], axis=-1)
        seg = scenario_segments(scenario, self.num_scenarios)
        c = self.compute_dtype
        # Row P of each table is the unknown scenario's identity transform.
        beta = ops.concatenate([ops.cast(self.scenario_beta, c), ops.ones((1, v.shape[-1]), c)], axis=0)
        gamma = ops.concatenate([ops.cast(self.scenario_gamma, c), ops.zeros((1, v.shape[-1]), c)], axis=0)
        return v * ops.take(beta, seg, axis=0) + ops.take(gamma, seg, axis=0)

    def _scenario_experts(self, v: Any, onehot: Any) -> Any:
        """The row's own scenario's experts, ``(batch, num_scenario_experts, units)``; 0 when unknown."""
        c = self.compute_dtype
        h = ops.repeat(v[:, None, :], self.num_scenario_experts, axis=1)
        for kernel, bias in zip(self.scenario_expert_kernels, self.scenario_expert_biases):
            h = self.activation(per_scenario_dense(h, ops.cast(kernel, c), ops.cast(bias, c), onehot))
        return h

    def gate_weights(self, inputs: dict[str, Any]) -> Any:
        """``w(v')``, ``(batch, num_scenario_experts + num_shared_experts)`` float32; the scenario
        experts' columns are 0 for an unknown scenario."""
        return self._gate(self.transform(inputs), inputs["scenario"])

    def _gate(self, v: Any, scenario: Any) -> Any:
        seg = scenario_segments(scenario, self.num_scenarios)
        logits = self.gate(ops.cast(v, "float32"))
        known = (seg < self.num_scenarios)[:, None]
        is_specific = (
            ops.arange(self.num_scenario_experts + self.num_shared_experts) < self.num_scenario_experts
        )
        usable = ops.logical_or(known, ops.logical_not(is_specific)[None, :])
        return masked_softmax(logits, ops.cast(usable, "float32"))

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        scenario = inputs["scenario"]
        v = self.transform(inputs)
        seg = scenario_segments(scenario, self.num_scenarios)
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="zeros", dtype=self.compute_dtype)
        specific = self._scenario_experts(v, onehot)
        shared = ops.stack([e(v, training=training) for e in self.shared_experts], axis=1)
        experts = ops.concatenate([specific, shared], axis=1)
        weights = self._gate(v, scenario)
        track_gates(self, {"sar_net": weights})
        return mix_experts(weights, experts)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, int]:
        return (_split_inputs(input_shape)[0][0], self.expert_units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            expert_units=self.expert_units,
            num_scenario_experts=self.num_scenario_experts,
            num_shared_experts=self.num_shared_experts,
            attention_dim=self.attention_dim,
            scenario_embedding_dim=self.scenario_embedding_dim,
            activation=self._activation_name,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
