"""HAMUR: a backbone MLP with a domain-specific adapter after its layers, whose weights a
shared hyper-network generates per instance (Li et al., 2023)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import last_dim, layer_units, positive_int
from tfjoint.layers.core.scenarios import (
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
    """HAMUR: backbone layers ``h_l = ReLU(BN(W_l h_{l-1} + b_l))``, each followed by an adapter cell.

    With ``h_0 = x`` (``E_merge``), the backbone's layer ``l`` is ``Dense -> BatchNorm ->
    ReLU`` and is followed by the adapter cell of row ``b``'s domain ``d``
    (paper sec. 3.2-3.3; official code ``HAMUR/models/multi_domain/adapter.py``,
    ``MLP_adap_2_layer_1_adp`` and ``MLP_adap_7_layer_2_adp``):

    - the shared hyper-network ``H`` (``[Dense -> BatchNorm -> ReLU]`` for every width of
      ``hyper_units`` and then for ``k * k``) maps the instance's own representation ``x_b``
      (the backbone's input, the official ``emb``) to the core matrix
      ``I_b = reshape(H(x_b), (k, k))``, row-major; one ``I_b`` per row, shared by every cell;
    - ``U_b = W_d^ul I_b W_d^ur`` (``m_l x r``) and ``V_b = W_d^vl I_b W_d^vr`` (``r x m_l``),
      the low-rank decompositions (``W^ul: m_l x k``, ``W^ur: k x r``, ``W^vl: r x k``,
      ``W^vr: k x m_l``), so the adapter weights differ per instance, not only per domain;
    - ``A(h) = DN_d(sigma(h U_b + b_d^u) V_b + b_d^v) + h``: down-projection, ``sigma``,
      up-projection, domain norm ``DN_d`` (a :class:`PartitionedNormalization`, statistics
      and scale/shift per domain) and the short-cut; ``h_l <- A(h_l)``.

    ``H`` has one set of weights shared by every domain and cell; each cell has its own
    ``W^*``, biases and ``DN``, all per domain. The output is the last ``h_l``.

    An unknown scenario (any id outside ``[0, num_scenarios)``) has no adapter: its rows go
    through the backbone alone (every cell is the identity for them).

    Deviations from the official code, each a choice the paper leaves open:

    - the official MLP variants give every domain its own backbone and share the adapter's
      ``U, V``, biases and norm scale across domains; the DCN and Wide & Deep variants share
      the backbone too. Here the backbone is shared (as in DCN/W&D, which keeps an unknown
      scenario defined) and the adapter is domain-specific, as the paper names it;
    - the official code places one cell after the last layer of its 2-layer MLP and two
      after the last two layers of its 7-layer MLP; here a cell follows every backbone layer
      by default, and ``num_adapters`` keeps only the cells of the last ``num_adapters``
      layers (``num_adapters=1`` with a 2-layer backbone is the official placement);
    - the official domain norm always uses the full batch's statistics of the domain's
      path; here ``DN_d`` uses the statistics of the domain's rows in training and moving
      averages at inference (STAR's partitioned normalization);
    - the official ``W^*`` start at all-ones, which makes every bottleneck unit identical
      forever; here they are Glorot-uniform.

    Args:
        num_scenarios: number of known domains.
        backbone_units: widths of the backbone's layers (official ``fcn_dims``).
        bottleneck_dim: ``r``, the adapter's hidden width (32 in the official code).
        core_dim: ``k``, the side of the core matrix ``I_b``.
        hyper_units: hidden widths of ``H`` before its ``k * k`` layer (may be empty).
        num_adapters: how many of the last backbone layers get a cell; ``None``: all.
        activation: ``sigma``, the adapter's non-linearity (sigmoid in the paper).
        seed: seed of the Glorot initializers.

    Call arguments:
        inputs: ``{"inputs": (batch, d) float, "scenario": (batch, 1) int}`` or the list
            ``[inputs, scenario]``.
        training: Python bool; passed to every batch and domain normalization.

    Returns:
        ``(batch, backbone_units[-1])``, the adapted representation.

    Example:
    >>> layer = HyperNetworkAdapter(num_scenarios=2, backbone_units=[6, 4], bottleneck_dim=3, core_dim=2)
    >>> x = keras.ops.ones((3, 5))
    >>> tuple(layer({"inputs": x, "scenario": keras.ops.array([[0], [1], [2]])}).shape)
    (3, 4)

    Reference:
        Li, Yan, Zhao, Wang, Chen, Guo, Tang. HAMUR: Hyper Adapter for Multi-Domain
        Recommendation. CIKM 2023. Official code: github.com/Applied-Machine-Learning-Lab/HAMUR.
    """

    def __init__(
        self,
        num_scenarios: int,
        backbone_units: list[int] | tuple[int, ...] = (256, 128),
        bottleneck_dim: int = 32,
        core_dim: int = 8,
        hyper_units: list[int] | tuple[int, ...] = (64,),
        num_adapters: int | None = None,
        activation: str = "sigmoid",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.backbone_units = layer_units("backbone_units", backbone_units)
        self.bottleneck_dim = positive_int("bottleneck_dim", bottleneck_dim)
        self.core_dim = positive_int("core_dim", core_dim)
        self.hyper_units = layer_units("hyper_units", hyper_units, allow_empty=True)
        if num_adapters is not None:
            num_adapters = positive_int("num_adapters", num_adapters)
            if num_adapters > len(self.backbone_units):
                raise ValueError(
                    "num_adapters must be at most the number of backbone layers "
                    f"({len(self.backbone_units)}). Received: num_adapters={num_adapters}"
                )
        self.num_adapters = num_adapters
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.seed = seed

    @property
    def adapted_layers(self) -> list[int]:
        """Indices of the backbone layers that are followed by an adapter cell."""
        n = len(self.backbone_units)
        return list(range(n - (self.num_adapters or n), n))

    def _initializer(self) -> Any:
        """Glorot-uniform, seeded ``seed, seed + 1, ...`` in creation order when ``seed`` is set."""
        seed = None if self.seed is None else self.seed + self._num_initializers
        self._num_initializers += 1
        return keras.initializers.GlorotUniform(seed)

    def _dense_bn(self, width: int, name: str, in_dim: int) -> tuple[Any, Any]:
        dense = keras.layers.Dense(
            width, kernel_initializer=self._initializer(), name=f"{name}_dense", dtype=self.dtype_policy
        )
        dense.build((None, in_dim))
        norm = keras.layers.BatchNormalization(name=f"{name}_norm", dtype=self.dtype_policy)
        norm.build((None, width))
        return dense, norm

    def build(self, input_shape: Any) -> None:
        x_shape, s_shape = split_scenario_inputs(input_shape)
        dim = last_dim(x_shape, input_shape)
        p, k, r = self.num_scenarios, self.core_dim, self.bottleneck_dim
        self._num_initializers = 0
        # Flat lists of layers (Keras saves the layers of a list, not of nested tuples).
        self.hyper_dense, self.hyper_norms = [], []
        width_in = dim
        for i, width in enumerate([*self.hyper_units, k * k]):
            dense, norm = self._dense_bn(width, f"hyper_{i}", width_in)
            self.hyper_dense.append(dense)
            self.hyper_norms.append(norm)
            width_in = width
        self.backbone_dense, self.backbone_norms = [], []
        width_in = dim
        for i, width in enumerate(self.backbone_units):
            dense, norm = self._dense_bn(width, f"backbone_{i}", width_in)
            self.backbone_dense.append(dense)
            self.backbone_norms.append(norm)
            width_in = width
        # One cell per adapted layer: its per-domain W^ul, W^ur, b^u, W^vl, W^vr, b^v and DN_d.
        self.adapter_cells = []
        self.adapter_norms = []
        for i in self.adapted_layers:
            m = self.backbone_units[i]

            def weight(name: str, shape: tuple[int, ...], zeros: bool = False, i: int = i) -> Any:
                init = "zeros" if zeros else self._initializer()
                return self.add_weight(shape=shape, initializer=init, name=f"adapter_{i}_{name}")

            self.adapter_cells.append(
                {
                    "down_left": weight("down_left", (p, m, k)),
                    "down_right": weight("down_right", (p, k, r)),
                    "down_bias": weight("down_bias", (p, r), zeros=True),
                    "up_left": weight("up_left", (p, r, k)),
                    "up_right": weight("up_right", (p, k, m)),
                    "up_bias": weight("up_bias", (p, m), zeros=True),
                }
            )
            norm = PartitionedNormalization(p, name=f"adapter_{i}_norm", dtype=self.dtype_policy)
            norm.build([(None, m), s_shape])
            self.adapter_norms.append(norm)

    def core_matrices(self, x: Any, training: bool | None = None) -> Any:
        """``I_b = reshape(H(x_b), (k, k))`` for every row of ``x``: ``(batch, k, k)``."""
        h = x
        for dense, norm in zip(self.hyper_dense, self.hyper_norms):
            h = ops.relu(norm(dense(h), training=training))
        return ops.reshape(h, (-1, self.core_dim, self.core_dim))

    def adapter_weights(self, inputs: Any, training: bool | None = None) -> dict[int, tuple[Any, Any]]:
        """``{layer: (U_b, V_b)}``, ``(batch, m, r)`` and ``(batch, r, m)`` per row (zeros for an
        unknown scenario), materialized for inspection; ``call`` never forms them."""
        x, scenario = split_scenario_inputs(inputs)
        core = self.core_matrices(ops.cast(x, self.compute_dtype), training=training)
        onehot = self._onehot(scenario)
        c = self.compute_dtype
        out = {}
        for i, w in zip(self.adapted_layers, self.adapter_cells):
            pick = lambda t: ops.einsum("bs,s...->b...", onehot, ops.cast(t, c))  # noqa: E731
            u = ops.einsum("bmk,bkl,blr->bmr", pick(w["down_left"]), core, pick(w["down_right"]))
            v = ops.einsum("brk,bkl,blm->brm", pick(w["up_left"]), core, pick(w["up_right"]))
            out[i] = (u, v)
        return out

    def _onehot(self, scenario: Any) -> Any:
        seg = scenario_segments(scenario, self.num_scenarios)
        # Unknown rows get an all-zero one-hot: no adapter.
        return scenario_one_hot(seg, self.num_scenarios, unknown="zeros", dtype=self.compute_dtype)

    def _low_rank(self, h: Any, left: Any, core: Any, right: Any, bias: Any, onehot: Any) -> Any:
        """``h (W_d^l I_b W_d^r) + b_d`` per row, without forming the ``m x r`` matrix."""
        c = self.compute_dtype
        t = per_scenario_dense(h, ops.cast(left, c), None, onehot)
        t = ops.einsum("bk,bkl->bl", t, core)
        return per_scenario_dense(t, ops.cast(right, c), ops.cast(bias, c), onehot)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario = split_scenario_inputs(inputs)
        onehot = self._onehot(scenario)
        known = is_known(scenario_segments(scenario, self.num_scenarios), self.num_scenarios)[:, None]
        core = self.core_matrices(x, training=training)
        cells = dict(zip(self.adapted_layers, zip(self.adapter_cells, self.adapter_norms)))
        h = x
        for i, (dense, norm) in enumerate(zip(self.backbone_dense, self.backbone_norms)):
            h = ops.relu(norm(dense(h), training=training))
            if i not in cells:
                continue
            w, domain_norm = cells[i]
            t = self.activation(self._low_rank(h, w["down_left"], core, w["down_right"], w["down_bias"], onehot))
            t = self._low_rank(t, w["up_left"], core, w["up_right"], w["up_bias"], onehot)
            h = ops.where(known, domain_norm([t, scenario], training=training) + h, h)
        return h

    def compute_output_shape(self, input_shape: Any) -> Any:
        x_shape = split_scenario_inputs(input_shape)[0]
        return (*x_shape[:-1], self.backbone_units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            backbone_units=self.backbone_units,
            bottleneck_dim=self.bottleneck_dim,
            core_dim=self.core_dim,
            hyper_units=self.hyper_units,
            num_adapters=self.num_adapters,
            activation=self._activation_name,
            seed=self.seed,
        )
        return config
