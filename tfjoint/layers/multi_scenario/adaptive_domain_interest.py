"""ADI: shared and per-domain networks, gated fusion, domain interest adaptation (Jiang et al., 2022)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, last_dim, layer_units, positive_int
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    scenario_one_hot,
    scenario_segments,
    split_scenario_inputs,
)
from tfjoint.layers.multi_scenario.partitioned_normalization import PartitionedNormalization
from tfjoint.registry import register

_NUM_BLOCKS = 3  # the fusion blocks: specific, specific ⊙ shared, shared


@register(
    "adi",
    slot="scenario_adapter",
    family="multi_scenario",
    reference="Jiang, Li, Zhu, Zhang, Zheng, Xu, Fan, Li, Zhang, Hu, Xu. Adaptive Domain Interest "
    "Network for Multi-domain Recommendation, CIKM 2022",
)
class AdaptiveDomainInterest(keras.layers.Layer):
    """ADI: domain-weighted shared networks, a network per domain, gated fusion and an SE block per domain.

    With ``z_d`` the embedding of domain ``d`` (the domain indicator), each sample of domain
    ``d`` goes through (Jiang et al., 2022, sec. 3; each step is one line of ``call``):

    1. domain-specific batch normalization, ``F = DSBN_d(x)``: a
       :class:`PartitionedNormalization` with per-domain statistics and scale/shift;
    2. shared networks weighted by the domain, ``E_shared = sum_k alpha_k MLP_k(F)`` with
       ``alpha = softmax(W_alpha z_d + b_alpha)`` over the ``K`` shared networks (softmax in
       float32);
    3. the domain's own network, ``E_spec = MLP^(d)(F)``;
    4. gated fusion, ``beta1 = sigmoid(W_1 z_d + b_1)``, ``beta2 = sigmoid(W_2 z_d + b_2)``
       (vectors of width ``units[-1]``) and
       ``F_i = [beta1 ⊙ E_spec, (beta1 ⊙ E_spec) ⊙ (beta2 ⊙ E_shared), beta2 ⊙ E_shared]``;
    5. domain interest adaptation, an SE block per domain over the three fusion blocks:
       ``alpha^(d) = F_se^(d)(concat(avgpool(F_i)))`` with
       ``F_se^(d)(s) = sigmoid(relu(s W_0^(d) + b_0^(d)) W_1^(d) + b_1^(d))`` (one weight per
       block) and ``F^(d) = alpha^(d) ⊗ concat(F_i)``: block ``i`` is scaled by ``alpha^(d)_i``.

    Deviation from the paper: the paper applies the domain interest adaptation (its SE
    variant) to the feature-field embeddings before the shared and specific networks. A
    scenario adapter sees ``E_merge`` as one flat vector whose field boundaries it does not
    know, so here the SE block squeezes the three fusion blocks instead: ``avgpool`` is the
    mean over the ``units[-1]`` entries of each block, and each domain re-weights the
    specific, interaction and shared blocks of its own samples. Domain-specific batch
    normalization is applied once, on the input.

    An unknown domain (any id outside ``[0, num_scenarios)``) takes the shared path: the
    normalization's shared statistics and scale/shift, uniform ``alpha_k = 1 / K``, no
    specific network (``E_spec = 0``), ``beta1 = beta2 = 1`` and SE weights ``1``, so its
    output is ``[0, 0, mean_k MLP_k(F)]``.

    The mean ``alpha`` per shared network is logged as ``gate_adi_expert_<k>``.

    Args:
        num_scenarios: number of known domains ``P``.
        num_shared_networks: ``K``, the number of shared networks.
        units: hidden sizes of every shared and specific network.
        scenario_embedding_dim: size of the domain embedding ``z_d``.
        se_units: hidden width of each domain's SE block.
        activation: activation of the shared and specific networks.
        dropout: dropout rate inside the shared and specific networks.
        seed: seed of the networks' dropout.

    Call arguments:
        inputs: ``{"inputs": (batch, d) float, "scenario": (batch, 1) int}`` or the list
            ``[inputs, scenario]``.
        training: Python bool; passed to the normalization and the networks.

    Returns:
        ``(batch, 3 * units[-1])``, the adapted representation ``F^(d)``.

    Example:
    >>> layer = AdaptiveDomainInterest(num_scenarios=2, units=[8, 4])
    >>> x = keras.ops.ones((3, 5))
    >>> tuple(layer({"inputs": x, "scenario": keras.ops.array([[0], [1], [2]])}).shape)
    (3, 12)

    Reference:
        Jiang et al., Adaptive Domain Interest Network for Multi-domain Recommendation,
        CIKM 2022.
    """

    def __init__(
        self,
        num_scenarios: int,
        num_shared_networks: int = 2,
        units: list[int] | tuple[int, ...] = (64, 32),
        scenario_embedding_dim: int = 8,
        se_units: int = 4,
        activation: str = "relu",
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.num_shared_networks = positive_int("num_shared_networks", num_shared_networks)
        self.units = layer_units("units", units)
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.se_units = positive_int("se_units", se_units)
        self.activation = activation
        self.dropout = dropout_rate(dropout)
        self.seed = seed

    def _network(self, name: str, input_shape: tuple[int | None, ...]) -> MLP:
        net = MLP(
            self.units,
            activation=self.activation,
            dropout=self.dropout,
            seed=self.seed,
            name=name,
            dtype=self.dtype_policy,
        )
        net.build(input_shape)
        return net

    def build(self, input_shape: Any) -> None:
        x_shape, s_shape = split_scenario_inputs(input_shape)
        dim = last_dim(x_shape, input_shape)
        p, width, r = self.num_scenarios, self.units[-1], self.se_units
        self.domain_norm = PartitionedNormalization(p, name="domain_norm", dtype=self.dtype_policy)
        self.domain_norm.build([x_shape, s_shape])
        self.scenario_embedding = build_scenario_embedding(p, self.scenario_embedding_dim, self.dtype_policy)
        self.shared_networks = [
            self._network(f"shared_network_{k}", (None, dim)) for k in range(self.num_shared_networks)
        ]
        self.specific_networks = [self._network(f"specific_network_{d}", (None, dim)) for d in range(p)]
        z_shape = (None, self.scenario_embedding_dim)
        self.shared_network_logits = keras.layers.Dense(
            self.num_shared_networks, name="shared_network_logits", dtype="float32"
        )
        self.shared_network_logits.build(z_shape)
        self.specific_fusion_gate = keras.layers.Dense(
            width, activation="sigmoid", name="specific_fusion_gate", dtype=self.dtype_policy
        )
        self.specific_fusion_gate.build(z_shape)
        self.shared_fusion_gate = keras.layers.Dense(
            width, activation="sigmoid", name="shared_fusion_gate", dtype=self.dtype_policy
        )
        self.shared_fusion_gate.build(z_shape)
        init = "glorot_uniform"
        self.se_kernel_0 = self.add_weight(shape=(p, _NUM_BLOCKS, r), initializer=init, name="se_kernel_0")
        self.se_bias_0 = self.add_weight(shape=(p, r), initializer="zeros", name="se_bias_0")
        self.se_kernel_1 = self.add_weight(shape=(p, r, _NUM_BLOCKS), initializer=init, name="se_kernel_1")
        self.se_bias_1 = self.add_weight(shape=(p, _NUM_BLOCKS), initializer="zeros", name="se_bias_1")
        create_gate_trackers(self, {"adi": self.num_shared_networks})

    def _domain_embeddings(self, dtype: str) -> Any:
        return ops.cast(self.scenario_embedding.embeddings, dtype)

    def shared_network_weights(self) -> Any:
        """``alpha`` of every known domain, ``(num_scenarios, K)``; each row sums to 1."""
        return ops.softmax(self.shared_network_logits(self._domain_embeddings("float32")), axis=-1)

    def fusion_gates(self) -> tuple[Any, Any]:
        """``(beta1, beta2)`` of every known domain, each ``(num_scenarios, units[-1])``."""
        z = self._domain_embeddings(self.compute_dtype)
        return self.specific_fusion_gate(z), self.shared_fusion_gate(z)

    def _per_row(self, table: Any, fallback: Any, seg: Any) -> Any:
        # Row ``num_scenarios`` of the gathered table is the unknown domain's fallback.
        table = ops.concatenate([table, ops.cast(fallback, table.dtype)[None]], axis=0)
        return ops.take(table, seg, axis=0)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario = split_scenario_inputs(inputs)
        p, k, c = self.num_scenarios, self.num_shared_networks, self.compute_dtype
        seg = scenario_segments(scenario, p)
        known = (seg < p)[:, None]
        f = self.domain_norm([x, scenario], training=training)  # F = DSBN_d(x)
        alpha = self._per_row(self.shared_network_weights(), ops.full((k,), 1.0 / k), seg)
        track_gates(self, {"adi": alpha})
        shared = ops.stack([net(f, training=training) for net in self.shared_networks], axis=1)
        e_shared = ops.einsum("bk,bku->bu", ops.cast(alpha, c), shared)  # sum_k alpha_k MLP_k(F)
        specific = ops.stack([net(f, training=training) for net in self.specific_networks], axis=1)
        onehot = scenario_one_hot(seg, p, unknown="zeros", dtype=c)  # E_spec = 0 for an unknown domain
        e_spec = ops.einsum("bp,bpu->bu", onehot, specific)  # E_spec = MLP^(d)(F)
        beta1, beta2 = self.fusion_gates()
        ones = ops.ones((self.units[-1],))
        gated_spec = self._per_row(beta1, ones, seg) * e_spec
        gated_shared = self._per_row(beta2, ones, seg) * e_shared
        blocks = ops.stack([gated_spec, gated_spec * gated_shared, gated_shared], axis=1)  # F_i
        squeezed = ops.mean(blocks, axis=-1)  # avgpool(F_i): (batch, 3)
        domain = ops.minimum(seg, p - 1)
        hidden = ops.relu(
            ops.einsum("bi,bir->br", squeezed, ops.cast(ops.take(self.se_kernel_0, domain, axis=0), c))
            + ops.cast(ops.take(self.se_bias_0, domain, axis=0), c)
        )
        excitation = ops.sigmoid(
            ops.einsum("br,bri->bi", hidden, ops.cast(ops.take(self.se_kernel_1, domain, axis=0), c))
            + ops.cast(ops.take(self.se_bias_1, domain, axis=0), c)
        )  # alpha^(d) = F_se^(d)(concat(avgpool(F_i)))
        excitation = ops.where(known, excitation, ops.ones_like(excitation))
        adapted = blocks * excitation[:, :, None]  # alpha^(d) ⊗ concat(F_i)
        return ops.reshape(adapted, (-1, _NUM_BLOCKS * self.units[-1]))

    def compute_output_shape(self, input_shape: Any) -> Any:
        x_shape, _ = split_scenario_inputs(input_shape)
        return (x_shape[0], _NUM_BLOCKS * self.units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            num_shared_networks=self.num_shared_networks,
            units=self.units,
            scenario_embedding_dim=self.scenario_embedding_dim,
            se_units=self.se_units,
            activation=self.activation,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config
