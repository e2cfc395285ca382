"""M-LoRA: a shared backbone plus one low-rank adapter per scenario (Yang et al., RecSys 2024).

The layer :class:`MultiScenarioLowRankAdaptation` fills the ``scenario_adapter`` slot and
declares the paper's two training stages (:class:`~tfjoint.layers.core.contracts.StagedTraining`);
:mod:`tfjoint.joint.staged` runs them on a joint model (``pretrain``, ``fine_tune``,
``add_scenarios``, ``fit_joint_model``).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import last_dim, layer_units, whole_number
from tfjoint.layers.core.contracts import StagedTraining, TrainingStage
from tfjoint.layers.core.scenarios import (
    check_num_scenarios,
    scenario_one_hot,
    scenario_segments,
    split_scenario_inputs,
)
from tfjoint.registry import register

_REFERENCE = (
    "Yang et al., MLoRA: Multi-Domain Low-Rank Adaptive Network for Click-Through Rate "
    "Prediction, RecSys 2024"
)


@register("m_lora", slot="scenario_adapter", family="multi_scenario", reference=_REFERENCE)
class MultiScenarioLowRankAdaptation(StagedTraining, keras.layers.Layer):
    """M-LoRA: dense backbone layers, each with a low-rank update per scenario.

    Layer ``l`` computes, for a row of scenario ``t``,
    ``h_l = activation(W_l h_{l-1} + b_l + B_{l,t} A_{l,t} h_{l-1})`` with ``h_0 = x``,
    ``A_{l,t} in R^{r_l x d_in}``, ``B_{l,t} in R^{d_out x r_l}`` and
    ``r_l = max(d_out // alpha, 1)``. ``A`` is drawn from ``kernel_initializer`` and ``B``
    starts at zero, so at initialization (and throughout :func:`tfjoint.joint.staged.pretrain`) every scenario
    computes the shared backbone; :func:`tfjoint.joint.staged.fine_tune` then trains only ``A_t, B_t``.

    Like every Keras kernel, the weights are stored transposed for row vectors:
    ``kernel_{l}`` is ``W_l^T`` ``(d_in, d_out)``, ``lora_a_{l}_{t}`` is ``A_{l,t}^T``
    ``(d_in, r_l)`` and ``lora_b_{l}_{t}`` is ``B_{l,t}^T`` ``(r_l, d_out)``. Each
    scenario's pair is a separate variable, so a whole pair can be frozen or trained.

    The paper (and its code) also gives each domain a bias ``b_t`` in the LoRA layers;
    following ``h = Wx + b + B_t A_t x`` this layer has the shared bias only, so a
    scenario's whole specific part is its rank-``r`` pair.

    An unknown scenario (any id outside ``[0, num_scenarios)``, in particular the
    transformed fallback ``num_scenarios``) has no pair: it gets the backbone only,
    ``h_l = activation(W_l h_{l-1} + b_l)``.

    Args:
        num_scenarios: number of known scenarios ``P``.
        units: output sizes ``d_out`` of the backbone layers.
        activation: activation of every layer, the last one included.
        alpha: the rank divisor, ``r_l = max(units[l] // alpha, 1)``.
        kernel_initializer: initializer of ``W`` and of every ``A``.
        seed: seed of the initializers.

    Call arguments:
        inputs: ``{"inputs": (batch, d) float, "scenario": (batch, 1) int}`` or the list
            ``[inputs, scenario]``.
        training: Python bool (unused: the layer has no training-only behaviour).

    Returns:
        ``(batch, units[-1])``.

    Example:
    >>> layer = MultiScenarioLowRankAdaptation(num_scenarios=2, units=[8, 4], alpha=2)
    >>> x = keras.ops.ones((3, 5))
    >>> tuple(layer({"inputs": x, "scenario": keras.ops.array([[0], [1], [2]])}).shape)
    (3, 4)
    >>> layer.ranks
    [4, 2]

    Reference:
        Yang et al., MLoRA: Multi-Domain Low-Rank Adaptive Network for Click-Through Rate
        Prediction, RecSys 2024.
    """

    def __init__(
        self,
        num_scenarios: int,
        units: list[int] | tuple[int, ...] = (64, 32),
        activation: str = "relu",
        alpha: int = 4,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.units = layer_units("units", units)
        self.alpha = whole_number("alpha", alpha)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.ranks = [max(u // self.alpha, 1) for u in self.units]

    def _initializer(self, offset: int) -> keras.initializers.Initializer:
        # A fresh instance per weight: a reused unseeded initializer would repeat its values.
        init = self.kernel_initializer.__class__.from_config(self.kernel_initializer.get_config())
        if self.seed is not None and hasattr(init, "seed"):
            init.seed = self.seed + offset
        return init

    def build(self, input_shape: Any) -> None:
        fan_in = last_dim(split_scenario_inputs(input_shape)[0], input_shape)
        p = self.num_scenarios
        self.kernels, self.biases, self.lora_a, self.lora_b = [], [], [], []
        for i, (u, r) in enumerate(zip(self.units, self.ranks)):
            offset = i * (p + 1)
            self.kernels.append(
                self.add_weight(shape=(fan_in, u), initializer=self._initializer(offset), name=f"kernel_{i}")
            )
            self.biases.append(self.add_weight(shape=(u,), initializer="zeros", name=f"bias_{i}"))
            self.lora_a.append(
                [
                    self.add_weight(
                        shape=(fan_in, r),
                        initializer=self._initializer(offset + 1 + t),
                        name=f"lora_a_{i}_{t}",
                    )
                    for t in range(p)
                ]
            )
            self.lora_b.append(
                [self.add_weight(shape=(r, u), initializer="zeros", name=f"lora_b_{i}_{t}") for t in range(p)]
            )
            fan_in = u

    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """The paper's two stages for a budget of ``epochs`` passes.

        Pre-training (everything but the LoRA pairs, every row) takes ``ceil(epochs / 2)``;
        then each scenario's pair is fine-tuned alone on its own rows for the rest, at
        least one (every other layer frozen, statistics included).
        """
        whole_number("epochs", epochs)
        stages = [TrainingStage("pretrain", (epochs + 1) // 2, frozen=tuple(self.lora_weights()))]
        for t in range(self.num_scenarios):
            stages.append(
                TrainingStage(
                    f"fine_tune_{t}",
                    max(epochs // 2, 1),
                    train=tuple(self.lora_weights(t)),
                    scenario=t,
                    freeze_layers=True,
                )
            )
        return stages

    def shared_weights(self) -> list[Any]:
        """The backbone's kernels and biases."""
        return [*self.kernels, *self.biases]

    def scenario_weights(self, scenario: int | None = None) -> list[Any]:
        """The LoRA pairs ``A, B`` of ``scenario`` (of every scenario when ``None``)."""
        return self.lora_weights(scenario)

    def lora_weights(self, scenario: int | None = None) -> list[Any]:
        """The ``A`` and ``B`` variables of ``scenario`` (of every scenario when ``None``)."""
        scenarios = range(self.num_scenarios) if scenario is None else [scenario]
        return [
            w
            for t in scenarios
            for i in range(len(self.units))
            for w in (self.lora_a[i][t], self.lora_b[i][t])
        ]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario = split_scenario_inputs(inputs)
        c = self.compute_dtype
        seg = scenario_segments(scenario, self.num_scenarios)
        # Unknown rows (seg == P) get an all-zero one-hot: no low-rank term, backbone only.
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="zeros", dtype=c)
        h = ops.cast(x, c)
        for i in range(len(self.units)):
            a = ops.stack([ops.cast(w, c) for w in self.lora_a[i]])  # (P, d_in, r): A_t^T for every t
            b = ops.stack([ops.cast(w, c) for w in self.lora_b[i]])  # (P, r, d_out): B_t^T for every t
            # A_t x for the row's own t (others zeroed), then B_t A_t x in one contraction over
            # (t, r): no per-scenario product is formed, so a row's result does not depend on
            # how many scenarios exist, bit for bit (add_scenarios relies on it).
            down = ops.einsum("bi,sir->bsr", h, a) * onehot[:, :, None]
            low_rank = ops.einsum("bsr,sro->bo", down, b)
            backbone = ops.matmul(h, ops.cast(self.kernels[i], c)) + ops.cast(self.biases[i], c)  # W x + b
            h = self.activation(backbone + low_rank)
        return h

    def compute_output_shape(self, input_shape: Any) -> Any:
        x_shape, _ = split_scenario_inputs(input_shape)
        return (x_shape[0], self.units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            units=self.units,
            activation=self._activation_name,
            alpha=self.alpha,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            seed=self.seed,
        )
        return config
