"""HierRec: explicit and implicit scenario-aware modules with generated weights (Gao et al., 2024)."""

from __future__ import annotations

from typing import Any, ClassVar

import keras
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, layer_units, positive_int
from tfjoint.layers.core.contracts import NeedsEmbeddings
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    scenario_one_hot,
    scenario_segments,
    split_context_inputs,
)
from tfjoint.registry import register

_INPUT_KEYS = ("inputs", "scenario", "fields")


def _split_inputs(inputs: Any) -> tuple[Any, ...]:
    """``(E_merge, scenario, fields)`` from ``{"inputs", "scenario", "fields"}``."""
    return split_context_inputs(inputs, _INPUT_KEYS)


class _ScenarioOrientedModule(keras.layers.Layer):
    """Dense layers whose kernels and biases a linear generator makes from a condition ``SC``.

    Layer ``l``: ``W_l(SC) = reshape(SC G_l + g_l, (in, out))``, ``b_l(SC) = SC B_l + c_l``,
    ``h_{l+1} = activation(h_l W_l(SC) + b_l(SC))``, per sample. ``g_l`` (the generator's
    bias, kept in kernel shape so it can be initialized like a kernel) is the layer every
    condition starts from; ``SC = 0`` gives exactly ``(g_l, c_l)``.
    """

    def __init__(self, units: list[int], activation: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = list(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_dim: int, condition_dim: int) -> None:
        self.kernel_generators, self.kernel_bases, self.bias_generators, self.bias_bases = [], [], [], []
        fan_in = input_dim
        for i, u in enumerate(self.units):
            self.kernel_generators.append(
                self.add_weight(
                    shape=(condition_dim, fan_in * u),
                    initializer="glorot_uniform",
                    name=f"kernel_generator_{i}",
                )
            )
            self.kernel_bases.append(
                self.add_weight(shape=(fan_in, u), initializer="glorot_uniform", name=f"kernel_base_{i}")
            )
            self.bias_generators.append(
                self.add_weight(
                    shape=(condition_dim, u), initializer="glorot_uniform", name=f"bias_generator_{i}"
                )
            )
            self.bias_bases.append(self.add_weight(shape=(u,), initializer="zeros", name=f"bias_base_{i}"))
            fan_in = u

    def generate(self, condition: Any) -> list[tuple[Any, Any]]:
        """``[(W_l(SC), b_l(SC))]`` for a ``(batch, c)`` condition: ``(batch, in, out)``, ``(batch, out)``."""
        c = self.compute_dtype
        condition = ops.cast(condition, c)
        weights = []
        for g, g0, b, b0 in zip(
            self.kernel_generators, self.kernel_bases, self.bias_generators, self.bias_bases
        ):
            fan_in, units = g0.shape
            kernel = ops.matmul(condition, ops.cast(g, c)) + ops.reshape(ops.cast(g0, c), (1, fan_in * units))
            weights.append(
                (
                    ops.reshape(kernel, (-1, fan_in, units)),
                    ops.matmul(condition, ops.cast(b, c)) + ops.cast(b0, c),
                )
            )
        return weights

    def call(self, inputs: Any, condition: Any) -> Any:
        h = inputs
        for kernel, bias in self.generate(condition):
            h = self.activation(ops.einsum("bi,bio->bo", h, kernel) + bias)
        return h


@register(
    "hierrec",
    slot="scenario_adapter",
    family="multi_scenario",
    reference="Gao et al., HierRec: Scenario-Aware Hierarchical Modeling for Multi-scenario "
    "Recommendations, CIKM 2024 (arXiv:2309.02061)",
)
class HierarchicalScenarioNetwork(NeedsEmbeddings, keras.layers.Layer):
    """HierRec: a shared tower, then explicit and implicit scenario-oriented modules.

    The building block is the *scenario-oriented module*: dense layers whose weights are
    generated from a scenario condition ``SC`` by one generator shared by every scenario,
    ``W_l(SC) = reshape(SC G_l + g_l, (in, out))``, ``b_l(SC) = SC B_l + c_l`` and
    ``h_{l+1} = sigma(h_l W_l(SC) + b_l(SC))``, applied per sample with an einsum. No
    weight of the module has a scenario axis: scenarios differ only through ``SC``.

    Following the official code, the modules are stacked (``call`` in this order):

    1. shared tower: ``h_0 = MLP_shared(E_merge)``;
    2. explicit module, ``SC_ex = e_s`` (the sample's scenario embedding):
       ``h_ex = SOM_ex(h_0; e_s)``;
    3. implicit field weights, one set per head ``k``: ``e_s`` is split into
       ``num_implicit_heads`` equal slices ``e_s^k`` and
       ``w^k = softmax(e_s^k A_k + a_k)`` over the ``F`` fields, so ``sum_f w^k_f = 1``;
    4. implicit condition: the fields re-weighted, ``w^k_f e_f``, go through a one-head
       self-attention over fields (``use_field_attention``) and are flattened,
       ``SC_im^k = flatten(Attn([w^k_f e_f]_f))`` of size ``F * embedding_dim``;
    5. implicit module, one generator shared by the heads:
       ``h_im^k = SOM_im(h_ex; SC_im^k)``;
    6. output: ``MLP_out(concat_k h_im^k)``.

    The official code flattens the re-weighted fields (after the attention) rather than
    summing them, which keeps which field each vector came from; this layer does the same,
    so ``SC_im`` is ``F * embedding_dim`` wide, not ``embedding_dim``.

    Deviations from the official code: the generator's bias ``g_l`` is initialized like a
    kernel (glorot) rather than uniformly, so at initialization every condition yields a
    usable layer close to ``g_l``; the shared tower reads ``E_merge`` (the joint model's
    merged representation) rather than only the field embeddings; the generated layers use
    ``generated_activation``, which defaults to ``"linear"`` as in the official code (it
    applies none between them); the fused output ends at the ``MLP_out`` hidden layer, the
    joint model's task architecture and heads sit above it.

    An unknown scenario (any id outside ``[0, num_scenarios)``) has a zero scenario
    embedding, ``e_s = 0``: the explicit module then uses the shared layers ``(g_l, c_l)``
    and every head's field weights are ``softmax(a_k)``; all of those are trained by every
    row. The implicit condition still comes from the sample's own fields.

    Args:
        num_scenarios: number of known scenarios ``P``.
        shared_units: hidden sizes of the shared tower ``MLP_shared``.
        explicit_units: sizes of the explicit module's generated layers.
        implicit_units: sizes of the implicit module's generated layers.
        num_implicit_heads: number of implicit heads ``K``; must divide
            ``scenario_embedding_dim``.
        output_units: hidden sizes of ``MLP_out`` over the concatenated heads.
        scenario_embedding_dim: size of the scenario embedding ``e_s``.
        generated_activation: ``sigma``, the activation of every generated layer.
        use_field_attention: whether the re-weighted fields go through self-attention.
        dropout: dropout rate of the MLPs and the field attention.
        seed: seed of the dropout layers.

    Call arguments:
        inputs: ``{"inputs": (batch, d) float, "scenario": (batch, 1) int,
            "fields": (batch, F, embedding_dim) float}``.
        training: Python bool.

    Returns:
        ``(batch, output_units[-1])``.

    Example:
    >>> layer = HierarchicalScenarioNetwork(num_scenarios=2, scenario_embedding_dim=4)
    >>> out = layer({
    ...     "inputs": keras.ops.ones((3, 5)),
    ...     "scenario": keras.ops.array([[0], [1], [2]]),
    ...     "fields": keras.ops.ones((3, 4, 6)),
    ... })
    >>> tuple(out.shape)
    (3, 32)

    Reference:
        Gao, Chen, Zhu, Zhao, Li, Wang, Wang, Guo, Tang. HierRec: Scenario-Aware
        Hierarchical Modeling for Multi-scenario Recommendations. CIKM 2024
        (arXiv:2309.02061, "Scenario-Aware Hierarchical Dynamic Network for Multi-Scenario
        Recommendation"). Official code: github.com/Applied-Machine-Learning-Lab/HierRec.
    """

    extra_inputs: ClassVar[tuple[str, ...]] = ("fields",)

    def __init__(
        self,
        num_scenarios: int,
        shared_units: list[int] | tuple[int, ...] = (64,),
        explicit_units: list[int] | tuple[int, ...] = (32, 32),
        implicit_units: list[int] | tuple[int, ...] = (32, 32),
        num_implicit_heads: int = 2,
        output_units: list[int] | tuple[int, ...] = (32,),
        scenario_embedding_dim: int = 8,
        generated_activation: str = "linear",
        use_field_attention: bool = True,
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.shared_units = layer_units("shared_units", shared_units)
        self.explicit_units = layer_units("explicit_units", explicit_units)
        self.implicit_units = layer_units("implicit_units", implicit_units)
        self.output_units = layer_units("output_units", output_units)
        self.num_implicit_heads = positive_int("num_implicit_heads", num_implicit_heads)
        if scenario_embedding_dim < 1 or scenario_embedding_dim % num_implicit_heads:
            raise ValueError(
                "scenario_embedding_dim must be a positive multiple of num_implicit_heads. Received: "
                f"scenario_embedding_dim={scenario_embedding_dim}, num_implicit_heads={num_implicit_heads}"
            )
        self.scenario_embedding_dim = int(scenario_embedding_dim)
        self.dropout = dropout_rate(dropout)
        keras.activations.get(generated_activation)  # an unknown name raises here, not in build
        self.generated_activation = generated_activation
        self.use_field_attention = bool(use_field_attention)
        self.seed = seed

    def build(self, input_shape: Any) -> None:
        x_shape, _, fields_shape = _split_inputs(input_shape)
        dim, num_fields, field_dim = x_shape[-1], fields_shape[-2], fields_shape[-1]
        if dim is None or num_fields is None or field_dim is None:
            raise ValueError(
                f"the last dimensions of inputs and fields must be known. Received: input_shape={input_shape}"
            )
        self.shared_tower = MLP(
            self.shared_units,
            dropout=self.dropout,
            seed=self.seed,
            name="shared_tower",
            dtype=self.dtype_policy,
        )
        self.shared_tower.build((None, dim))
        self.scenario_embedding = build_scenario_embedding(
            self.num_scenarios, self.scenario_embedding_dim, self.dtype_policy
        )
        self.explicit_module = _ScenarioOrientedModule(
            self.explicit_units, self.generated_activation, name="explicit_module", dtype=self.dtype_policy
        )
        self.explicit_module.build(self.shared_units[-1], self.scenario_embedding_dim)
        # One field-weight layer per head, each reading its own slice of e_s; float32 softmax.
        self.field_weight_layers = []
        for k in range(self.num_implicit_heads):
            layer = keras.layers.Dense(num_fields, name=f"field_weights_{k}", dtype="float32")
            layer.build((None, self.scenario_embedding_dim // self.num_implicit_heads))
            self.field_weight_layers.append(layer)
        if self.use_field_attention:
            self.field_attention = keras.layers.MultiHeadAttention(
                num_heads=1,
                key_dim=field_dim,
                dropout=self.dropout,
                seed=self.seed,
                name="field_attention",
                dtype=self.dtype_policy,
            )
            self.field_attention.build((None, num_fields, field_dim), (None, num_fields, field_dim))
        self.implicit_module = _ScenarioOrientedModule(
            self.implicit_units, self.generated_activation, name="implicit_module", dtype=self.dtype_policy
        )
        self.implicit_module.build(self.explicit_units[-1], num_fields * field_dim)
        self.output_tower = MLP(
            self.output_units,
            dropout=self.dropout,
            seed=self.seed,
            name="output_tower",
            dtype=self.dtype_policy,
        )
        self.output_tower.build((None, self.num_implicit_heads * self.implicit_units[-1]))

    def scenario_condition(self, scenario: Any) -> Any:
        """``SC_ex = e_s``, ``(batch, scenario_embedding_dim)``; zero for an unknown scenario."""
        seg = scenario_segments(scenario, self.num_scenarios)
        # Rows of the unknown id P get an all-zero one-hot, hence a zero embedding.
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="zeros", dtype=self.compute_dtype)
        return ops.matmul(onehot, ops.cast(self.scenario_embedding.embeddings, self.compute_dtype))

    def field_weights(self, scenario: Any) -> Any:
        """``w^k = softmax(e_s^k A_k + a_k)`` over fields for every head: ``(batch, K, F)``, float32."""
        e_s = ops.cast(self.scenario_condition(scenario), "float32")
        part = self.scenario_embedding_dim // self.num_implicit_heads
        logits = [
            layer(e_s[:, k * part : (k + 1) * part]) for k, layer in enumerate(self.field_weight_layers)
        ]
        return ops.softmax(ops.stack(logits, axis=1), axis=-1)

    def implicit_condition(self, scenario: Any, fields: Any, training: bool | None = None) -> Any:
        """``SC_im^k = flatten(Attn([w^k_f e_f]_f))`` for every head: ``(batch, K, F * embedding_dim)``."""
        fields = ops.cast(fields, self.compute_dtype)
        _, num_fields, field_dim = fields.shape
        weights = ops.cast(self.field_weights(scenario), self.compute_dtype)
        weighted = ops.reshape(weights[:, :, :, None] * fields[:, None], (-1, num_fields, field_dim))
        if self.use_field_attention:
            weighted = self.field_attention(weighted, weighted, training=training)
        return ops.reshape(weighted, (-1, self.num_implicit_heads, num_fields * field_dim))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario, fields = _split_inputs(inputs)
        heads = self.num_implicit_heads
        h = self.shared_tower(x, training=training)
        h = self.explicit_module(h, self.scenario_condition(scenario))
        condition = self.implicit_condition(scenario, fields, training=training)
        # Every head transforms the same h_ex with its own generated layers: fold heads into the batch.
        h = ops.reshape(ops.repeat(h[:, None], heads, axis=1), (-1, self.explicit_units[-1]))
        h = self.implicit_module(h, ops.reshape(condition, (-1, condition.shape[-1])))
        h = ops.reshape(h, (-1, heads * self.implicit_units[-1]))
        return self.output_tower(h, training=training)

    def compute_output_shape(self, input_shape: Any) -> Any:
        x_shape, _, _ = _split_inputs(input_shape)
        return (x_shape[0], self.output_units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            shared_units=self.shared_units,
            explicit_units=self.explicit_units,
            implicit_units=self.implicit_units,
            num_implicit_heads=self.num_implicit_heads,
            output_units=self.output_units,
            scenario_embedding_dim=self.scenario_embedding_dim,
            generated_activation=self.generated_activation,
            use_field_attention=self.use_field_attention,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config
