"""ADI: field-level domain interest adaptation, shared and per-domain networks (Jiang et al., 2022)."""

from __future__ import annotations

from typing import Any, ClassVar

import keras
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, layer_units, positive_int
from tfjoint.layers.core.contracts import NeedsEmbeddings
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    is_known,
    per_scenario_dense,
    scenario_one_hot,
    scenario_segments,
    split_context_inputs,
)
from tfjoint.layers.multi_scenario.partitioned_normalization import PartitionedNormalization
from tfjoint.registry import register

_INPUT_KEYS = ("inputs", "scenario", "fields")


def _split_inputs(inputs: Any) -> tuple[Any, ...]:
    """``(E_merge, scenario, fields)`` from ``{"inputs", "scenario", "fields"}``."""
    return split_context_inputs(inputs, _INPUT_KEYS)


@register(
    "adi",
    slot="scenario_adapter",
    family="multi_scenario",
    reference="Jiang, Li, Zhu, Yu, Li, Xu, Dong, Zheng. Adaptive Domain Interest Network for "
    "Multi-domain Recommendation, CIKM 2022",
)
class AdaptiveDomainInterest(NeedsEmbeddings, keras.layers.Layer):
    """ADI: field-level domain adaptation, shared-specific networks with DSBN, fusion, forward network.

    With ``E_1 .. E_F`` the field embeddings, ``z_d`` the embedding of domain ``d`` (the
    domain indicator) and ``DSBN_d`` domain-specific batch normalization (a
    :class:`PartitionedNormalization`: per-domain statistics and scale/shift), a sample of
    domain ``d`` goes through (Jiang et al., 2022, sec. 3 and fig. 1, in this order; each
    step is one line of ``call``):

    1. domain interest adaptation layer, SE-block variant, per field: the squeeze
       ``s_i = avgpool(E_i)`` (mean over the embedding of field ``i``), the domain's own
       excitation ``a^(d) = sigmoid(relu(s W_0^(d) + b_0^(d)) W_1^(d) + b_1^(d))`` (one
       weight per field) and ``F = concat_i(a^(d)_i E_i)``: field ``i`` is scaled by
       ``a^(d)_i``;
    2. shared-specific network, every hidden layer ``h' = act(DSBN_d(h W))`` then dropout
       (no bias: DSBN's per-domain shift is the layer's bias). ``K`` shared networks
       weighted by the domain, ``E_shared = sum_k alpha_k MLP_k(F)`` with
       ``alpha = softmax(W_alpha z_d + b_alpha)`` (float32), and the domain's own network
       ``E_spec = MLP^(d)(F)``;
    3. fusion layer: ``beta1 = sigmoid(W_1 z_d + b_1)``, ``beta2 = sigmoid(W_2 z_d + b_2)``
       (width ``units[-1]``) and
       ``F_fused = [beta1 ⊙ E_spec, (beta1 ⊙ E_spec) ⊙ (beta2 ⊙ E_shared), beta2 ⊙ E_shared]``;
    4. domain-specific forward network ``MLP_fwd^(d)(F_fused)`` (hidden sizes
       ``forward_units``, each layer also ``act(DSBN_d(h W^(d)))``: the paper names DSBN
       for the shared-specific network, this layer uses it in every network layer), the
       output.

    The per-domain networks (``MLP^(d)``, ``MLP_fwd^(d)``, the SE blocks) keep one kernel
    per domain stacked on axis 0 and each row uses its own domain's
    (:func:`~tfjoint.layers.core.scenarios.per_scenario_dense`). The ``K`` shared networks
    share one ``PartitionedNormalization`` per layer over their concatenated units, which
    equals one per network (the statistics are per feature).

    No official code was released; this follows the paper's section 3 and figure 1. The
    self-training strategy (sec. 3.4, pseudo-labels across domains) is a training scheme,
    not part of the network, and is not implemented. Deviation: with
    ``use_merged_inputs=True`` the networks read ``F ⊕ E_merge`` (so the behavior and
    modality encodings in ``E_merge`` reach them; ``E_merge`` also repeats the un-adapted
    fields); the default ``False`` reads ``F`` only, as in the paper, so in a joint model
    with a sequence or modality encoder their encodings do not reach the networks.

    An unknown domain (any id outside ``[0, num_scenarios)``) takes defined shared paths:
    no adaptation (``a = 1``), the normalizations' shared statistics and scale/shift,
    uniform ``alpha_k = 1 / K``, no specific network (``E_spec = 0``),
    ``beta1 = beta2 = 1`` (so ``F_fused = [0, 0, mean_k MLP_k(F)]``) and a forward network
    with the mean of the domains' kernels (``W = mean_d W^(d)``).

    The mean ``alpha`` per shared network is logged as ``gate_adi_expert_<k>``.

    Args:
        num_scenarios: number of known domains ``P``.
        num_shared_networks: ``K``, the number of shared networks.
        units: hidden sizes of every shared and specific network.
        forward_units: hidden sizes of the domain-specific forward network.
        scenario_embedding_dim: size of the domain embedding ``z_d``.
        se_units: hidden width of each domain's SE block.
        use_merged_inputs: whether the networks also read ``E_merge`` (see above).
        activation: activation of every network layer.
        dropout: dropout rate after every network layer.
        seed: seed of the dropout layers.

    Call arguments:
        inputs: ``{"inputs": E_merge (batch, d) float, "scenario": (batch, 1) int,
            "fields": (batch, num_fields, emb_dim) float}``.
        training: Python bool; passed to the normalizations and the dropout layers.

    Returns:
        ``(batch, forward_units[-1])``, the output of the domain's forward network.

    Example:
    >>> layer = AdaptiveDomainInterest(num_scenarios=2, units=[8, 4], forward_units=[6])
    >>> out = layer({
    ...     "inputs": keras.ops.ones((3, 5)),
    ...     "scenario": keras.ops.array([[0], [1], [2]]),
    ...     "fields": keras.ops.ones((3, 2, 4)),
    ... })
    >>> tuple(out.shape)
    (3, 6)

    Reference:
        Jiang et al., Adaptive Domain Interest Network for Multi-domain Recommendation,
        CIKM 2022 (arXiv:2206.09672).
    """

    extra_inputs: ClassVar[tuple[str, ...]] = ("fields",)

    def __init__(
        self,
        num_scenarios: int,
        num_shared_networks: int = 2,
        units: list[int] | tuple[int, ...] = (64, 32),
        forward_units: list[int] | tuple[int, ...] = (32,),
        scenario_embedding_dim: int = 8,
        se_units: int = 4,
        use_merged_inputs: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.num_shared_networks = positive_int("num_shared_networks", num_shared_networks)
        self.units = layer_units("units", units)
        self.forward_units = layer_units("forward_units", forward_units)
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.se_units = positive_int("se_units", se_units)
        self.use_merged_inputs = bool(use_merged_inputs)
        self.activation = activation
        self._activation = keras.activations.get(activation)
        self.dropout = dropout_rate(dropout)
        self.seed = seed

    def _build_stack(self, prefix: str, fan_in: int, units: list[int], copies: int) -> None:
        """``<prefix>_kernels`` ``(copies, in, out)``, ``<prefix>_norms`` (DSBN) and ``<prefix>_dropouts``."""
        kernels, norms, dropouts = [], [], []
        for i, u in enumerate(units):
            shape = (copies, fan_in, u)
            kernels.append(
                self.add_weight(shape=shape, initializer="glorot_uniform", name=f"{prefix}_kernel_{i}")
            )
            # The shared networks share one normalization over their concatenated units.
            width = u * copies if prefix == "shared" else u
            norm = PartitionedNormalization(
                self.num_scenarios, name=f"{prefix}_norm_{i}", dtype=self.dtype_policy
            )
            norm.build([(None, width), (None, 1)])
            norms.append(norm)
            dropouts.append(
                keras.layers.Dropout(
                    self.dropout, seed=self.seed, name=f"{prefix}_dropout_{i}", dtype=self.dtype_policy
                )
            )
            fan_in = u
        setattr(self, f"{prefix}_kernels", kernels)
        setattr(self, f"{prefix}_norms", norms)
        setattr(self, f"{prefix}_dropouts", dropouts)

    def build(self, input_shape: Any) -> None:
        x_shape, _, fields_shape = _split_inputs(input_shape)
        if len(fields_shape) != 3 or None in tuple(fields_shape[1:]) or x_shape[-1] is None:
            raise ValueError(
                "inputs needs a known last dimension and fields the shape (batch, num_fields, emb_dim). "
                f"Received: input_shape={input_shape}"
            )
        p, k, r = self.num_scenarios, self.num_shared_networks, self.se_units
        num_fields, emb_dim = int(fields_shape[1]), int(fields_shape[2])
        self.num_fields = num_fields
        init = "glorot_uniform"
        self.se_kernel_0 = self.add_weight(shape=(p, num_fields, r), initializer=init, name="se_kernel_0")
        self.se_bias_0 = self.add_weight(shape=(p, r), initializer="zeros", name="se_bias_0")
        self.se_kernel_1 = self.add_weight(shape=(p, r, num_fields), initializer=init, name="se_kernel_1")
        self.se_bias_1 = self.add_weight(shape=(p, num_fields), initializer="zeros", name="se_bias_1")
        dim = num_fields * emb_dim + (int(x_shape[-1]) if self.use_merged_inputs else 0)
        self._build_stack("shared", dim, self.units, k)
        self._build_stack("specific", dim, self.units, p)
        self._build_stack("forward", 3 * self.units[-1], self.forward_units, p)
        self.scenario_embedding = build_scenario_embedding(p, self.scenario_embedding_dim, self.dtype_policy)
        z_shape = (None, self.scenario_embedding_dim)
        self.shared_network_logits = keras.layers.Dense(k, name="shared_network_logits", dtype="float32")
        self.shared_network_logits.build(z_shape)
        self.specific_fusion_gate = keras.layers.Dense(
            self.units[-1], activation="sigmoid", name="specific_fusion_gate", dtype=self.dtype_policy
        )
        self.specific_fusion_gate.build(z_shape)
        self.shared_fusion_gate = keras.layers.Dense(
            self.units[-1], activation="sigmoid", name="shared_fusion_gate", dtype=self.dtype_policy
        )
        self.shared_fusion_gate.build(z_shape)
        create_gate_trackers(self, {"adi": k})

    def _domain_embeddings(self, dtype: str) -> Any:
        return ops.cast(self.scenario_embedding.embeddings, dtype)

    def shared_network_weights(self) -> Any:
        """``alpha`` of every known domain, ``(num_scenarios, K)``; each row sums to 1."""
        return ops.softmax(self.shared_network_logits(self._domain_embeddings("float32")), axis=-1)

    def fusion_gates(self) -> tuple[Any, Any]:
        """``(beta1, beta2)`` of every known domain, each ``(num_scenarios, units[-1])``."""
        z = self._domain_embeddings(self.compute_dtype)
        return self.specific_fusion_gate(z), self.shared_fusion_gate(z)

    def domain_interest_weights(self, fields: Any, scenario: Any) -> Any:
        """``a^(d)``, one weight per row and field ``(batch, num_fields)``; 1 for an unknown domain."""
        c = self.compute_dtype
        seg = scenario_segments(scenario, self.num_scenarios)
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="zeros", dtype=c)
        squeezed = ops.mean(ops.cast(fields, c), axis=-1)  # s_i = avgpool(E_i)
        k0, b0, k1, b1 = self._cast(self.se_kernel_0, self.se_bias_0, self.se_kernel_1, self.se_bias_1)
        hidden = ops.relu(per_scenario_dense(squeezed, k0, b0, onehot))
        excitation = ops.sigmoid(per_scenario_dense(hidden, k1, b1, onehot))
        return ops.where(is_known(seg, self.num_scenarios)[:, None], excitation, ops.ones_like(excitation))

    def _cast(self, *weights: Any) -> list[Any]:
        return [ops.cast(w, self.compute_dtype) for w in weights]

    def _per_row(self, table: Any, fallback: Any, seg: Any) -> Any:
        # Row ``num_scenarios`` of the gathered table is the unknown domain's fallback.
        table = ops.concatenate([table, ops.cast(fallback, table.dtype)[None]], axis=0)
        return ops.take(table, seg, axis=0)

    def _stack_layers(self, prefix: str) -> Any:
        return zip(*(getattr(self, f"{prefix}_{part}") for part in ("kernels", "norms", "dropouts")))

    def _run_per_domain(self, prefix: str, h: Any, mix: Any, scenario: Any, training: Any) -> Any:
        """``h' = act(DSBN_d(h W^(d)))`` per layer, each row with the kernels ``mix`` selects."""
        for kernel, norm, dropout in self._stack_layers(prefix):
            h = per_scenario_dense(h, ops.cast(kernel, self.compute_dtype), None, mix)
            h = dropout(self._activation(norm([h, scenario], training=training)), training=training)
        return h

    def _run_shared(self, f: Any, scenario: Any, training: Any) -> Any:
        """``(batch, K, units[-1])``: every shared network, each layer ``act(DSBN_d(h W_k))``."""
        k = self.num_shared_networks
        h = ops.repeat(f[:, None], k, axis=1)
        for kernel, norm, dropout in self._stack_layers("shared"):
            h = ops.einsum("bki,kio->bko", h, ops.cast(kernel, self.compute_dtype))
            width = h.shape[-1]
            h = norm([ops.reshape(h, (-1, k * width)), scenario], training=training)
            h = ops.reshape(h, (-1, k, width))
            h = dropout(self._activation(h), training=training)
        return h

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario, fields = _split_inputs(inputs)
        p, k, c = self.num_scenarios, self.num_shared_networks, self.compute_dtype
        seg = scenario_segments(scenario, p)
        known = ops.cast(is_known(seg, p), c)[:, None]
        fields = ops.cast(fields, c)
        a = self.domain_interest_weights(fields, scenario)  # a^(d) = F_se^(d)(concat(avgpool(E_i)))
        f = ops.reshape(fields * a[:, :, None], (-1, self.num_fields * fields.shape[-1]))  # concat(a_i E_i)
        if self.use_merged_inputs:
            f = ops.concatenate([f, ops.cast(x, c)], axis=-1)
        alpha = self._per_row(self.shared_network_weights(), ops.full((k,), 1.0 / k), seg)
        track_gates(self, {"adi": alpha})
        shared = self._run_shared(f, scenario, training)  # MLP_k(F), DSBN_d in every layer
        e_shared = ops.einsum("bk,bku->bu", ops.cast(alpha, c), shared)  # sum_k alpha_k MLP_k(F)
        onehot = scenario_one_hot(seg, p, unknown="zeros", dtype=c)
        e_spec = known * self._run_per_domain("specific", f, onehot, scenario, training)  # MLP^(d)(F)
        beta1, beta2 = self.fusion_gates()
        ones = ops.ones((self.units[-1],))
        gated_spec = self._per_row(beta1, ones, seg) * e_spec
        gated_shared = self._per_row(beta2, ones, seg) * e_shared
        fused = ops.concatenate([gated_spec, gated_spec * gated_shared, gated_shared], axis=-1)
        mix = onehot + (1.0 - known) / p  # an unknown domain: the mean of the domains' kernels
        return self._run_per_domain("forward", fused, mix, scenario, training)  # MLP_fwd^(d)

    def compute_output_shape(self, input_shape: Any) -> Any:
        x_shape, _, _ = _split_inputs(input_shape)
        return (x_shape[0], self.forward_units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            num_shared_networks=self.num_shared_networks,
            units=self.units,
            forward_units=self.forward_units,
            scenario_embedding_dim=self.scenario_embedding_dim,
            se_units=self.se_units,
            use_merged_inputs=self.use_merged_inputs,
            activation=self.activation,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config
