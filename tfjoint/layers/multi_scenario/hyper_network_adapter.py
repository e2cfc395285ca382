"""HAMUR: a per-domain adapter whose weights come from one shared hyper-network (Li et al., 2023)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import last_dim, layer_units, positive_int
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    is_known,
    per_scenario_dense,
    scenario_one_hot,
    scenario_segments,
    split_scenario_inputs,
)
from tfjoint.layers.multi_scenario.partitioned_normalization import PartitionedNormalization
from tfjoint.registry import register


@register(
    "hamur",
    slot="scenario_adapter",
    family="multi_scenario",
    reference="Li et al., HAMUR: Hyper Adapter for Multi-Domain Recommendation, CIKM 2023",
)
class HyperNetworkAdapter(keras.layers.Layer):
    """HAMUR adapter: ``A_d(x) = DN_d(V_d(sigma(U_d(x)))) + x`` with hyper-generated ``U_d, V_d``.

    One shared hyper-network ``H`` (an MLP, then a linear layer to ``k * k`` units) maps the
    domain embedding ``z_d`` to ``h = H(z_d)``, reshaped row-major into the core matrix
    ``I_d`` (``k x k``). The adapter's down and up projections are its low-rank
    decompositions (paper sec. 3.3):
    ``U_d = W_d^ul I_d W_d^ur`` (``d x r``, with ``W_d^ul: d x k``, ``W_d^ur: k x r``) and
    ``V_d = W_d^vl I_d W_d^vr`` (``r x d``, with ``W_d^vl: r x k``, ``W_d^vr: k x d``).
    Then ``A_d(x) = DN_d(sigma(x U_d + b_d^u) V_d + b_d^v) + x`` where ``DN_d`` is a
    :class:`PartitionedNormalization` (per-domain statistics and scale/shift).

    The paper's code feeds the hyper-network the instance representation; following the
    brief's ``h = H(z_d)`` the hyper-network here is conditioned on the domain embedding
    only, so ``U_d, V_d`` are per domain, not per sample. ``H`` has a single set of weights
    shared by every domain; ``W_d^*`` and the biases are per domain.

    An unknown scenario (any id outside ``[0, num_scenarios)``) has no adapter: the layer
    returns ``x`` unchanged for it.

    Args:
        num_scenarios: number of known domains.
        bottleneck_dim: ``r``, the adapter's hidden width.
        core_dim: ``k``, the side of the core matrix ``I``.
        scenario_embedding_dim: size of the domain embedding ``z_d``.
        hyper_units: hidden sizes of ``H`` before its ``k * k`` output (may be empty).
        activation: ``sigma``, the adapter's non-linearity (sigmoid in the paper).
        seed: passed to the hyper-network's MLP.

    Call arguments:
        inputs: ``{"inputs": (batch, d) float, "scenario": (batch, 1) int}`` or the list
            ``[inputs, scenario]``.
        training: Python bool; passed to ``DN_d``.

    Returns:
        ``(batch, d)``, the adapted representation.

    Example:
    >>> layer = HyperNetworkAdapter(num_scenarios=2, bottleneck_dim=4, core_dim=2)
    >>> x = keras.ops.ones((3, 5))
    >>> tuple(layer({"inputs": x, "scenario": keras.ops.array([[0], [1], [2]])}).shape)
    (3, 5)

    Reference:
        Li et al., HAMUR: Hyper Adapter for Multi-Domain Recommendation, CIKM 2023.
    """

    def __init__(
        self,
        num_scenarios: int,
        bottleneck_dim: int = 16,
        core_dim: int = 8,
        scenario_embedding_dim: int = 8,
        hyper_units: list[int] | tuple[int, ...] = (32,),
        activation: str = "sigmoid",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.bottleneck_dim = positive_int("bottleneck_dim", bottleneck_dim)
        self.core_dim = positive_int("core_dim", core_dim)
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.hyper_units = layer_units("hyper_units", hyper_units, allow_empty=True)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.seed = seed

    def build(self, input_shape: Any) -> None:
        x_shape, s_shape = split_scenario_inputs(input_shape)
        dim = last_dim(x_shape, input_shape)
        p, k, r = self.num_scenarios, self.core_dim, self.bottleneck_dim
        self.scenario_embedding = build_scenario_embedding(p, self.scenario_embedding_dim, self.dtype_policy)
        hyper_in = self.scenario_embedding_dim
        if self.hyper_units:
            self.hyper_hidden = MLP(
                self.hyper_units, seed=self.seed, name="hyper_hidden", dtype=self.dtype_policy
            )
            self.hyper_hidden.build((None, hyper_in))
            hyper_in = self.hyper_units[-1]
        self.hyper_output = keras.layers.Dense(k * k, name="hyper_output", dtype=self.dtype_policy)
        self.hyper_output.build((None, hyper_in))
        init = "glorot_uniform"
        self.down_left = self.add_weight(shape=(p, dim, k), initializer=init, name="down_left")
        self.down_right = self.add_weight(shape=(p, k, r), initializer=init, name="down_right")
        self.down_bias = self.add_weight(shape=(p, r), initializer="zeros", name="down_bias")
        self.up_left = self.add_weight(shape=(p, r, k), initializer=init, name="up_left")
        self.up_right = self.add_weight(shape=(p, k, dim), initializer=init, name="up_right")
        self.up_bias = self.add_weight(shape=(p, dim), initializer="zeros", name="up_bias")
        self.domain_norm = PartitionedNormalization(p, name="domain_norm", dtype=self.dtype_policy)
        self.domain_norm.build([x_shape, s_shape])

    def core_matrices(self) -> Any:
        """``I_d`` for every domain, ``(num_scenarios, k, k)``, all from the one hyper-network."""
        h = self.scenario_embedding.embeddings  # z_d, one row per domain
        h = ops.cast(h, self.compute_dtype)
        if self.hyper_units:
            h = self.hyper_hidden(h)
        h = self.hyper_output(h)
        return ops.reshape(h, (self.num_scenarios, self.core_dim, self.core_dim))

    def adapter_weights(self) -> tuple[Any, Any]:
        """``(U_d, V_d)`` for every domain: ``(P, d, r)`` and ``(P, r, d)``."""
        core = self.core_matrices()
        c = self.compute_dtype
        u = ops.einsum("sdk,skl,slr->sdr", ops.cast(self.down_left, c), core, ops.cast(self.down_right, c))
        v = ops.einsum("srk,skl,sld->srd", ops.cast(self.up_left, c), core, ops.cast(self.up_right, c))
        return u, v

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario = split_scenario_inputs(inputs)
        seg = scenario_segments(scenario, self.num_scenarios)
        # Unknown rows get an all-zero one-hot (no adapter); they are passed through below.
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="zeros", dtype=self.compute_dtype)
        u, v = self.adapter_weights()
        c = self.compute_dtype
        hidden = self.activation(per_scenario_dense(x, u, ops.cast(self.down_bias, c), onehot))
        up = per_scenario_dense(hidden, v, ops.cast(self.up_bias, c), onehot)
        adapted = self.domain_norm([up, scenario], training=training) + x
        known = is_known(seg, self.num_scenarios)[:, None]
        return ops.where(known, adapted, x)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return split_scenario_inputs(input_shape)[0]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            bottleneck_dim=self.bottleneck_dim,
            core_dim=self.core_dim,
            scenario_embedding_dim=self.scenario_embedding_dim,
            hyper_units=self.hyper_units,
            activation=self._activation_name,
            seed=self.seed,
        )
        return config
