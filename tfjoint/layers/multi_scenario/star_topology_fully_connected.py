"""STAR: star-topology fully-connected network (Sheng et al., CIKM 2021) as a scenario adapter."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import last_dim, layer_units, positive_int
from tfjoint.layers.core.contracts import AddsToLogits
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    embed_known_scenarios,
    per_scenario_dense,
    scenario_one_hot,
    scenario_segments,
    split_scenario_inputs,
    star_weights,
)
from tfjoint.layers.multi_scenario.partitioned_normalization import PartitionedNormalization
from tfjoint.registry import register


@register(
    "star",
    slot="scenario_adapter",
    family="multi_scenario",
    reference="Sheng et al., One Model to Serve All: Star Topology Adaptive Recommender for "
    "Multi-Domain CTR Prediction, CIKM 2021",
)
class StarTopologyFullyConnected(AddsToLogits, keras.layers.Layer):
    """STAR: partitioned normalization, star-topology FC layers and an auxiliary network.

    Each layer ``l`` has a shared kernel ``W`` and bias ``b`` and, per scenario ``p``, a kernel
    ``W_p`` and bias ``b_p``. A sample of scenario ``p`` uses ``W_p* = W_p ⊙ W`` and
    ``b_p* = b_p + b``: ``out_p = activation(x W_p* + b_p*)`` (paper eqs. 4-5). ``W_p`` is
    initialized to ones and ``b_p`` to zeros, so at initialization every scenario equals
    the shared network. An unknown scenario (any id outside ``[0, num_scenarios)``) uses
    ``W`` and ``b`` alone.

    Before the star layers the inputs go through :class:`PartitionedNormalization` (sec.
    4.2) when ``use_partitioned_norm``. The auxiliary network (sec. 4.4) is an MLP over the
    scenario-indicator embedding, concatenated with the (un-normalized) inputs when
    ``aux_use_inputs``, ending in one linear unit ``s_a``. As in the paper (sec. 4.4,
    ``pCTR = sigmoid(s_m + s_a)``) and the reference code (``sigmoid(final + aux_out)``,
    Xiaopengli1/Scenario-Wise-Rec ``scenario_wise_rec/models/multi_domain/star.py``), ``s_a``
    is added to the final logit: the layer is an
    :class:`~tfjoint.layers.core.contracts.AddsToLogits` adapter and returns
    ``{"outputs": star_output, "logit": s_a}``; the joint model's task architecture reads
    ``outputs`` and every task head ``k`` gives ``act_k(s_m,k + s_a)``, ``s_m,k`` being the
    head's own logit. The unknown scenario feeds a zero indicator embedding to the
    auxiliary network. With ``use_auxiliary_network=False``, ``s_a = 0``.

    Args:
        num_scenarios: number of known scenarios ``P``.
        units: sizes of the star-topology FC layers.
        activation: activation of every star layer.
        use_partitioned_norm: whether to apply partitioned normalization to the inputs.
        use_auxiliary_network: whether the auxiliary network's scalar is added to the logits.
        scenario_embedding_dim: size of the scenario-indicator embedding.
        aux_units: hidden sizes of the auxiliary MLP (before its one-unit output).
        aux_use_inputs: whether the auxiliary network also sees the inputs.
        kernel_initializer: initializer of the shared kernels ``W``.
        seed: seed of the initializers.

    Call arguments:
        inputs: ``{"inputs": (batch, d) float, "scenario": (batch, 1) int}`` or the list
            ``[inputs, scenario]``.
        training: Python bool.

    Returns:
        ``{"outputs": (batch, units[-1]), "logit": (batch, 1)}``.

    Example:
    >>> layer = StarTopologyFullyConnected(num_scenarios=2, units=[8, 4])
    >>> x = keras.ops.ones((3, 5))
    >>> out = layer({"inputs": x, "scenario": keras.ops.array([[0], [1], [2]])})
    >>> tuple(out["outputs"].shape), tuple(out["logit"].shape)
    ((3, 4), (3, 1))

    Reference:
        Sheng et al., One Model to Serve All: Star Topology Adaptive Recommender for
        Multi-Domain CTR Prediction, CIKM 2021.
    """

    def __init__(
        self,
        num_scenarios: int,
        units: list[int] | tuple[int, ...] = (64, 32),
        activation: str = "relu",
        use_partitioned_norm: bool = True,
        use_auxiliary_network: bool = True,
        scenario_embedding_dim: int = 8,
        aux_units: list[int] | tuple[int, ...] = (16,),
        aux_use_inputs: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.units = layer_units("units", units)
        self.aux_units = layer_units("aux_units", aux_units, allow_empty=True)
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.use_partitioned_norm = bool(use_partitioned_norm)
        self.use_auxiliary_network = bool(use_auxiliary_network)
        self.aux_use_inputs = bool(aux_use_inputs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed

    def build(self, input_shape: Any) -> None:
        x_shape, s_shape = split_scenario_inputs(input_shape)
        dim = last_dim(x_shape, input_shape)
        if self.use_partitioned_norm:
            self.norm = PartitionedNormalization(
                self.num_scenarios, name="partitioned_norm", dtype=self.dtype_policy
            )
            self.norm.build([x_shape, s_shape])
        self.shared_kernels, self.shared_biases, self.scenario_kernels, self.scenario_biases = [], [], [], []
        fan_in = dim
        for i, u in enumerate(self.units):
            init = self.kernel_initializer.__class__.from_config(self.kernel_initializer.get_config())
            if self.seed is not None and hasattr(init, "seed"):
                init.seed = self.seed + i
            self.shared_kernels.append(
                self.add_weight(shape=(fan_in, u), initializer=init, name=f"shared_kernel_{i}")
            )
            self.shared_biases.append(
                self.add_weight(shape=(u,), initializer="zeros", name=f"shared_bias_{i}")
            )
            self.scenario_kernels.append(
                self.add_weight(
                    shape=(self.num_scenarios, fan_in, u), initializer="ones", name=f"scenario_kernel_{i}"
                )
            )
            self.scenario_biases.append(
                self.add_weight(shape=(self.num_scenarios, u), initializer="zeros", name=f"scenario_bias_{i}")
            )
            fan_in = u
        if self.use_auxiliary_network:
            self.scenario_embedding = build_scenario_embedding(
                self.num_scenarios, self.scenario_embedding_dim, self.dtype_policy
            )
            aux_in = self.scenario_embedding_dim + (dim if self.aux_use_inputs else 0)
            if self.aux_units:
                self.aux_hidden = MLP(
                    self.aux_units, seed=self.seed, name="aux_hidden", dtype=self.dtype_policy
                )
                self.aux_hidden.build((None, aux_in))
                aux_in = self.aux_units[-1]
            self.aux_output = keras.layers.Dense(1, name="aux_output", dtype=self.dtype_policy)
            self.aux_output.build((None, aux_in))

    def effective_weights(self, layer_index: int) -> tuple[Any, Any]:
        """``(W_p*, b_p*)`` of one star layer for every scenario, row ``P`` being the shared path.

        Shapes ``(P + 1, fan_in, units)`` and ``(P + 1, units)``: ``W_p* = W_p ⊙ W``,
        ``b_p* = b_p + b``, and ``W_P* = W``, ``b_P* = b`` for the unknown scenario.
        """
        return star_weights(
            self.shared_kernels[layer_index],
            self.shared_biases[layer_index],
            self.scenario_kernels[layer_index],
            self.scenario_biases[layer_index],
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario = split_scenario_inputs(inputs)
        seg = scenario_segments(scenario, self.num_scenarios)
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="shared", dtype=self.compute_dtype)
        h = self.norm([x, scenario], training=training) if self.use_partitioned_norm else x
        for i in range(len(self.units)):
            w, b = self.effective_weights(i)
            w, b = ops.cast(w, self.compute_dtype), ops.cast(b, self.compute_dtype)
            h = self.activation(per_scenario_dense(h, w, b, onehot))
        if not self.use_auxiliary_network:
            return {self.OUTPUTS_KEY: h, self.LOGIT_KEY: ops.zeros_like(h[:, :1])}
        indicator = embed_known_scenarios(self.scenario_embedding, seg, self.compute_dtype)
        aux = (
            ops.concatenate([indicator, ops.cast(x, self.compute_dtype)], axis=-1)
            if self.aux_use_inputs
            else indicator
        )
        if self.aux_units:
            aux = self.aux_hidden(aux, training=training)
        return {self.OUTPUTS_KEY: h, self.LOGIT_KEY: self.aux_output(aux)}  # s_a, added to the logits

    def compute_output_shape(self, input_shape: Any) -> Any:
        x_shape, _ = split_scenario_inputs(input_shape)
        return {self.OUTPUTS_KEY: (x_shape[0], self.units[-1]), self.LOGIT_KEY: (x_shape[0], 1)}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            units=self.units,
            activation=self._activation_name,
            use_partitioned_norm=self.use_partitioned_norm,
            use_auxiliary_network=self.use_auxiliary_network,
            scenario_embedding_dim=self.scenario_embedding_dim,
            aux_units=self.aux_units,
            aux_use_inputs=self.aux_use_inputs,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            seed=self.seed,
        )
        return config
