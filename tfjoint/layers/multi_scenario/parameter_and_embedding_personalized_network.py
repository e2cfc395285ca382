"""PEPNet: embedding and parameter personalization through Gate NUs (Chang et al., KDD 2023)."""

from __future__ import annotations

from typing import Any, ClassVar

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, layer_units, positive, positive_int
from tfjoint.layers.core.contracts import NeedsEmbeddings, ScenarioAware
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.scenarios import (
    build_scenario_embedding,
    check_num_scenarios,
    embed_known_scenarios,
    scenario_segments,
)
from tfjoint.registry import register

_KEYS = ("inputs", "scenario", "fields")


class _GateNeuralUnit(keras.layers.Layer):
    """Gate NU: ``delta = gamma * sigmoid(W_2 relu(W_1 x + b_1) + b_2)``, in ``[0, gamma]``."""

    def __init__(self, units: int, hidden_units: int, gamma: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.hidden_units = int(hidden_units)
        self.gamma = float(gamma)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.hidden = keras.layers.Dense(
            self.hidden_units, activation="relu", name="hidden", dtype=self.dtype_policy
        )
        self.hidden.build(input_shape)
        self.logits = keras.layers.Dense(self.units, name="logits", dtype=self.dtype_policy)
        self.logits.build((None, self.hidden_units))

    def call(self, inputs: Any) -> Any:
        return self.gamma * ops.sigmoid(self.logits(self.hidden(inputs)))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(units=self.units, hidden_units=self.hidden_units, gamma=self.gamma)
        return config


def _split(inputs: Any) -> tuple[Any, Any, Any]:
    if not isinstance(inputs, dict) or set(inputs) != set(_KEYS):
        received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(f"expected a dict with the keys {list(_KEYS)}. Received: {received}")
    return inputs["inputs"], inputs["scenario"], inputs["fields"]


@register(
    "pepnet",
    slot="task_architecture",
    family="multi_scenario",
    reference="Chang, Zhang, Hui, Leng, Niu, Song, Gai. PEPNet: Parameter and Embedding Personalized "
    "Network for Infusing with Personalized Prior Information, KDD 2023",
)
class ParameterAndEmbeddingPersonalizedNetwork(ScenarioAware, NeedsEmbeddings, keras.layers.Layer):
    """PEPNet: a domain-conditioned gate on the fields (EPNet), prior-conditioned gates in the towers (PPNet).

    With ``E`` the field embeddings ``(batch, num_fields, emb_dim)``, ``z_d`` the embedding of
    the sample's domain and ``sg`` the stop-gradient (Chang et al., 2023, sec. 3; each
    equation is one line of ``call``):

    - Gate NU (eqs. 1-2): ``U(x) = gamma * sigmoid(W_2 relu(W_1 x + b_1) + b_2)``, in
      ``[0, gamma]`` (``gamma = 2`` by default: a gate can amplify as well as suppress);
    - EPNet (eqs. 3-4): ``delta_domain = U_ep(z_d ⊕ sg(E))`` and ``O_ep = delta_domain ⊗ E``.
      The gate has one value **per field** (shape ``(batch, num_fields, 1)`` when applied):
      every embedding ``E_i`` is scaled by its own scalar ``delta_domain_i``, as in the paper
      where ``delta_domain`` has one entry per feature;
    - PPNet (eqs. 5-7): ``O_prior = ⊕_{i in prior_fields} E_i`` and for the hidden layer
      ``l`` of the tower of task ``t``,
      ``H_t^(l) = U_pp^(t,l)(O_prior ⊕ sg(O_ep)) ⊗ f(H_t^(l-1) W_t^(l) + b_t^(l))``, with
      ``H_t^(0)`` the tower input. Every ``(task, layer)`` has its own Gate NU.

    The towers read ``flatten(O_ep) ⊕ E_merge`` when ``use_merged_inputs`` (the default: the
    behavior and modality encodings in ``E_merge``, and any scenario adapter's output, reach
    the towers; ``E_merge`` also repeats the un-gated fields), else ``flatten(O_ep)`` only,
    as in the paper. Returns ``{task: H_t^(L)}``, the last gated hidden layer of each tower.

    Deviations from the paper: each ``(task, layer)`` gate is an independent Gate NU (the
    paper splits the output of one Gate NU per layer into ``T`` task parts, which also
    shares the gate's ReLU layer across tasks), and the gate multiplies each hidden layer's
    output, not the tower's input.

    Fields follow the joint model's order: ``spec.categorical`` in order, then the
    scenario, then ``spec.dense``. ``prior_fields`` indexes that axis: for
    ``MOVIELENS_100K`` (``user_id, item_id, gender, occupation, scenario, release_year``) the
    user and item id priors are ``prior_fields=[0, 1]``.

    An unknown domain (any id outside ``[0, num_scenarios)``) has a zero domain embedding:
    the EPNet gate then sees only ``sg(E)`` through the shared Gate NU. PPNet has no
    domain-specific parameters. The mean EPNet gate per field is logged as
    ``gate_epnet_expert_<i>`` (``i`` being the field index).

    Args:
        task_names: names of the tasks, one tower each.
        num_scenarios: number of known domains ``P``.
        tower_units: hidden sizes of every task tower, each layer gated by its own Gate NU.
        gate_units: hidden width of every Gate NU.
        gamma: the Gate NU's scale ``gamma`` (``> 0``).
        prior_fields: indices into the fields axis of the prior embeddings of PPNet (the
            user/item/author ids in the paper); ``None`` takes every field.
        scenario_embedding_dim: size of the domain embedding ``z_d``.
        use_merged_inputs: whether the towers also read ``E_merge``.
        activation: ``f``, the activation of every tower layer.
        dropout: dropout rate after every tower layer.
        seed: seed of the dropout layers.

    Call arguments:
        inputs: ``{"inputs": E_merge (batch, d), "scenario": (batch, 1) int,
            "fields": E (batch, num_fields, emb_dim)}``.
        training: Python bool, whether dropout is active.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = ParameterAndEmbeddingPersonalizedNetwork(["click"], num_scenarios=2, tower_units=[4])
    >>> out = layer({
    ...     "inputs": keras.ops.ones((3, 5)),
    ...     "scenario": keras.ops.array([[0], [1], [2]]),
    ...     "fields": keras.ops.ones((3, 2, 4)),
    ... })
    >>> tuple(out["click"].shape)
    (3, 4)

    Reference:
        Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with
        Personalized Prior Information, KDD 2023.
    """

    extra_inputs: ClassVar[tuple[str, ...]] = ("fields",)

    def __init__(
        self,
        task_names: list[str],
        num_scenarios: int,
        tower_units: list[int] | tuple[int, ...] = (64, 32),
        gate_units: int = 64,
        gamma: float = 2.0,
        prior_fields: list[int] | tuple[int, ...] | None = None,
        scenario_embedding_dim: int = 8,
        use_merged_inputs: bool = True,
        activation: str = "relu",
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = check_tasks(task_names)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.tower_units = layer_units("tower_units", tower_units)
        self.gate_units = positive_int("gate_units", gate_units)
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.gamma = positive("gamma", gamma)
        if prior_fields is not None:
            prior_fields = [int(i) for i in prior_fields]
            if not prior_fields or min(prior_fields) < 0 or len(set(prior_fields)) != len(prior_fields):
                raise ValueError(
                    "prior_fields must be None or a non-empty list of distinct non-negative field "
                    f"indices. Received: prior_fields={prior_fields}"
                )
        self.prior_fields = prior_fields
        self.dropout = dropout_rate(dropout)
        self.use_merged_inputs = bool(use_merged_inputs)
        self.activation = activation
        self.seed = seed

    def _gate(self, name: str, units: int, input_dim: int) -> _GateNeuralUnit:
        # Gates run in float32, like every gate of the package.
        gate = _GateNeuralUnit(units, self.gate_units, self.gamma, name=name, dtype="float32")
        gate.build((None, input_dim))
        return gate

    def build(self, input_shape: Any) -> None:
        x_shape, _, fields_shape = _split(input_shape)
        if len(fields_shape) != 3 or None in tuple(fields_shape[1:]) or x_shape[-1] is None:
            raise ValueError(
                "inputs needs a known last dimension and fields the shape (batch, num_fields, emb_dim). "
                f"Received: input_shape={input_shape}"
            )
        num_fields, emb_dim = int(fields_shape[1]), int(fields_shape[2])
        prior = self.prior_fields if self.prior_fields is not None else list(range(num_fields))
        if max(prior) >= num_fields:
            raise ValueError(
                f"prior_fields must index the {num_fields} fields. Received: prior_fields={self.prior_fields}"
            )
        self._prior_indices = prior
        self.scenario_embedding = build_scenario_embedding(
            self.num_scenarios, self.scenario_embedding_dim, self.dtype_policy
        )
        flat_dim = num_fields * emb_dim
        self.epnet_gate = self._gate("epnet_gate", num_fields, self.scenario_embedding_dim + flat_dim)
        ppnet_input_dim = len(prior) * emb_dim + flat_dim
        self.tower_layers = {}
        self.tower_dropouts = {}
        self.ppnet_gates = {}
        for task in self.task_names:
            shape: tuple[int | None, ...] = (
                None,
                flat_dim + (int(x_shape[-1]) if self.use_merged_inputs else 0),
            )
            for i, width in enumerate(self.tower_units):
                name = f"{task}_{i}"
                dense = keras.layers.Dense(
                    width, activation=self.activation, name=f"tower_{name}", dtype=self.dtype_policy
                )
                dense.build(shape)
                shape = (None, width)
                self.tower_layers[name] = dense
                self.tower_dropouts[name] = keras.layers.Dropout(
                    self.dropout, seed=self.seed, name=f"tower_dropout_{name}", dtype=self.dtype_policy
                )
                self.ppnet_gates[name] = self._gate(f"ppnet_gate_{name}", width, ppnet_input_dim)
        create_gate_trackers(self, {"epnet": num_fields})

    def _domain_embedding(self, scenario: Any) -> Any:
        """``z_d`` per row, zeros for an unknown domain."""
        seg = scenario_segments(scenario, self.num_scenarios)
        return embed_known_scenarios(self.scenario_embedding, seg, self.compute_dtype)

    def domain_gate(self, scenario: Any, fields: Any) -> Any:
        """EPNet's ``delta_domain = U_ep(z_d ⊕ sg(E))``, ``(batch, num_fields)`` float32 in [0, gamma]."""
        flat = ops.reshape(ops.cast(fields, self.compute_dtype), (-1, fields.shape[1] * fields.shape[2]))
        gate_input = ops.concatenate([self._domain_embedding(scenario), ops.stop_gradient(flat)], axis=-1)
        return self.epnet_gate(ops.cast(gate_input, "float32"))

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        x, scenario, fields = _split(inputs)
        c = self.compute_dtype
        fields = ops.cast(fields, c)
        flat_dim = fields.shape[1] * fields.shape[2]
        delta_domain = self.domain_gate(scenario, fields)  # U_ep(z_d ⊕ sg(E))
        track_gates(self, {"epnet": delta_domain})
        o_ep = ops.reshape(fields * ops.cast(delta_domain, c)[:, :, None], (-1, flat_dim))  # delta ⊗ E
        prior = ops.take(fields, self._prior_indices, axis=1)
        o_prior = ops.reshape(prior, (-1, len(self._prior_indices) * fields.shape[2]))  # ⊕ E_prior
        gate_input = ops.cast(ops.concatenate([o_prior, ops.stop_gradient(o_ep)], axis=-1), "float32")
        tower_input = ops.concatenate([o_ep, ops.cast(x, c)], axis=-1) if self.use_merged_inputs else o_ep
        outputs = {}
        for task in self.task_names:
            h = tower_input
            for i in range(len(self.tower_units)):
                name = f"{task}_{i}"
                h = self.tower_dropouts[name](self.tower_layers[name](h), training=training)
                h = h * ops.cast(self.ppnet_gates[name](gate_input), c)  # U_pp(O_prior ⊕ sg(O_ep)) ⊗ H
            outputs[task] = h
        return outputs

    def compute_output_shape(self, input_shape: Any) -> dict[str, tuple[int | None, ...]]:
        x_shape, _, _ = _split(input_shape)
        return {task: (x_shape[0], self.tower_units[-1]) for task in self.task_names}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_scenarios=self.num_scenarios,
            tower_units=self.tower_units,
            gate_units=self.gate_units,
            gamma=self.gamma,
            prior_fields=self.prior_fields,
            scenario_embedding_dim=self.scenario_embedding_dim,
            use_merged_inputs=self.use_merged_inputs,
            activation=self.activation,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config
