"""AESM2: automatic expert selection for multi-scenario and multi-task learning (Zou et al., SIGIR 2022)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import (
    check_tasks,
    dropout_rate,
    last_dim,
    layer_units,
    non_negative,
    positive_int,
    top_k,
)
from tfjoint.layers.core.contracts import ScenarioAware
from tfjoint.layers.core.experts import mix_experts
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

# A finite "minus infinity" for the logits of unselected experts: exp() of it is exactly 0
# in float32, and it keeps the softmax gradient free of inf - inf.
_MASKED_LOGIT = -1e9


def kl_divergence(p: Any, log_q: Any, axis: int) -> Any:
    """``KL(p || q) = sum p (log p - log q)`` along ``axis``, with ``0 log 0 = 0``."""
    positive = p > 0
    log_p = ops.log(ops.where(positive, p, ops.ones_like(p)))
    return ops.sum(ops.where(positive, p * (log_p - log_q), ops.zeros_like(p)), axis=axis)


def _top_k_mask(scores: Any, k: int) -> Any:
    """1.0 on the ``k`` largest ``scores`` of each row, 0.0 elsewhere; ``scores`` is ``(batch, E)``."""
    indices = ops.top_k(scores, k, sorted=False)[1]
    return ops.sum(ops.one_hot(indices, ops.shape(scores)[-1], dtype=scores.dtype), axis=1)


def select_experts(
    gate_logits: Any,
    own_gate: Any,
    top_k_specific: int,
    top_k_shared: int,
    noise: Any = None,
) -> dict[str, Any]:
    """AESM2's expert selection for one layer (Zou et al., 2022; the rule of the official code).

    ``G = gate_logits`` stacks the logits of every gate ``g_j`` of the layer (one per scenario,
    or one per task), ``(batch, n_g, n_e)``. Per row:

    - ``G~ = softmax_j(G + noise)``: column ``G~[:, k]`` is expert ``k``'s distribution over
      the gates (softmax over the gate axis, as in the official code);
    - ``KL_sp[k] = KL(onehot(own_gate) || G~[:, k])`` and ``KL_sh[k] = KL(uniform || G~[:, k])``;
    - the specific experts are ``TopK_{top_k_specific}(-KL_sp)``, the shared ones
      ``TopK_{top_k_shared}(-KL_sh)`` (the two sets may overlap; their union is used);
    - the weights are the row's own gate, ``softmax(g_own)``, renormalized over the union:
      unselected experts get exactly 0.

    A row whose ``own_gate`` is ``n_g`` (an unknown scenario) has no one-hot reference: it
    selects the shared experts only and its own gate is the mean of the ``n_g`` gates'
    logits (the gate of the uniform reference).

    Args:
        gate_logits: ``(batch, n_g, n_e)`` float32 logits, without noise.
        own_gate: ``(batch,)`` int, the row's gate in ``[0, n_g]``.
        top_k_specific: number of specific experts per row.
        top_k_shared: number of shared experts per row.
        noise: optional ``(batch, n_g, n_e)``, added to ``gate_logits`` for the selection
            and the KL terms only (the official code mixes with the noiseless gate).

    Returns:
        Dict with ``weights`` ``(batch, n_e)``, the 0/1 masks ``specific`` and ``shared``
        ``(batch, n_e)`` (``specific`` is all 0 on unknown rows), and ``specific_kl`` and
        ``shared_kl``, the ``(batch, n_e)`` divergences of every expert.
    """
    num_gates = ops.shape(gate_logits)[1]
    noisy = gate_logits if noise is None else gate_logits + noise
    log_q = ops.log_softmax(noisy, axis=1)  # log G~, each column a distribution over gates
    onehot = ops.one_hot(own_gate, num_gates, dtype=gate_logits.dtype)  # all 0 when unknown
    uniform = ops.ones_like(onehot) / ops.cast(num_gates, gate_logits.dtype)
    specific_kl = kl_divergence(onehot[:, :, None], log_q, axis=1)
    shared_kl = kl_divergence(uniform[:, :, None], log_q, axis=1)
    known = ops.cast(own_gate < num_gates, gate_logits.dtype)[:, None]
    specific = _top_k_mask(-specific_kl, top_k_specific) * known
    shared = _top_k_mask(-shared_kl, top_k_shared)
    selected = ops.maximum(specific, shared)
    own = ops.einsum("bg,bge->be", onehot, gate_logits)
    own = ops.where(known > 0, own, ops.mean(gate_logits, axis=1))
    weights = ops.softmax(ops.where(selected > 0, own, _MASKED_LOGIT), axis=-1)
    return {
        "weights": weights,
        "specific": specific,
        "shared": shared,
        "specific_kl": specific_kl,
        "shared_kl": shared_kl,
    }


@register(
    "aesm2",
    slot="task_architecture",
    family="multi_scenario",
    reference="Zou, Hu, Zhao, Ding, Liu, Li, Sun. Automatic Expert Selection for Multi-Scenario and "
    "Multi-Task Search, SIGIR 2022",
)
class AutomaticExpertSelection(ScenarioAware, keras.layers.Layer):
    """AESM2: multi-scenario layers, then multi-task layers, each choosing its experts by KL.

    Every layer has ``num_experts`` experts ``E_k`` (MLPs) and one gate per scenario (on a
    multi-scenario layer) or per task (on a multi-task layer). With the row's scenario
    embedding ``s`` (zeros for an unknown scenario) and ``h^0 = x`` (Zou et al., 2022):

    - multi-scenario layer ``l``: ``g_j = S_j[h^{l-1}, s]`` for every scenario ``j``, a linear
      map per scenario (``call``: the ``scenario_layer_{l}_gates`` Dense, reshaped to
      ``(batch, P, num_experts)``); :func:`select_experts` with the row's scenario as the
      one-hot reference gives the weights ``w``; ``h^l = sum_k w_k E_k(h^{l-1})``;
    - multi-task layer ``l``: for task ``t``, ``g_j = T_j[h_t^{l-1}, s, tau_t]`` for every task
      ``j`` (``tau_t`` a task embedding, ``h_t^0`` the last multi-scenario output; the gates
      and experts of a layer are shared by the tasks, as in the official code), task ``t``
      as the one-hot reference, ``h_t^l = sum_k w_k E_k(h_t^{l-1})``;
    - ``y_t = tower_t(h_t^L)``.

    Expert selection: in training, seeded Gaussian noise of ``noise_stddev`` (the official
    code's ``noise_scale * num_experts``) is added to the gate logits; ``G~`` is their softmax
    over the gates, so column ``G~[:, k]`` is expert ``k``'s distribution over the
    scenarios/tasks. It is compared with the one-hot reference of the row's own scenario/task
    and with the uniform reference: the ``top_k_specific`` experts of smallest
    ``KL(onehot || G~[:, k])`` (TopK of ``-KL``) are the specific experts and the
    ``top_k_shared`` of smallest ``KL(uniform || G~[:, k])`` the shared ones. The row mixes
    the union with its own gate's softmax renormalized over it; every other expert gets
    exactly 0. As in the official code the noise drives the selection and the KL terms
    only, and the mixing weights come from the noiseless logits.

    The auxiliary loss of the paper (``add_loss``, training only) pulls the selected experts
    toward their references: ``specific_kl_weight * sum_l mean KL_sp`` over the selected
    specific experts (of known-scenario rows) ``+ shared_kl_weight * sum_l mean KL_sh`` over
    the selected shared experts, on every layer.

    An unknown scenario (any id outside ``[0, num_scenarios)``) has no scenario gate and no
    one-hot reference: on the multi-scenario layers it uses only the shared experts (by the
    uniform reference), weighted by the mean of the ``P`` gates' logits, and its scenario
    embedding is zero everywhere.

    Deviations: the official code puts batch normalization in the gates and experts and
    builds the gate mask by multiplication (which flips the sign of negative logits); here the
    gates are plain linear maps, as in the paper's ``g_j = S_j[x, s]``, and unselected
    experts are masked out. Gate logits, the softmax and the KL terms are float32.

    The mean mixing weight per expert is tracked for every multi-scenario layer (metrics
    ``gate_scenario_layer_{l}_expert_{k}``) and for every task on the last multi-task layer
    (``gate_{task}_expert_{k}``).

    Args:
        task_names: names of the tasks, one gate on every multi-task layer and a tower each.
        num_scenarios: number of known scenarios ``P``.
        num_scenario_layers: multi-scenario layers (``>= 1``).
        num_task_layers: multi-task layers (``>= 1``).
        num_experts: experts on every layer (``>= 1``).
        top_k_specific: scenario-/task-specific experts selected per row, in ``[1, num_experts]``.
        top_k_shared: shared experts selected per row, in ``[1, num_experts]``.
        expert_units: hidden sizes of every expert.
        tower_units: hidden sizes of every task tower.
        scenario_embedding_dim: size of the scenario embedding ``s``.
        task_embedding_dim: size of the task embedding ``tau_t``.
        noise_stddev: standard deviation of the training noise on the gate logits (``>= 0``).
        specific_kl_weight: coefficient of the specific KL loss (``>= 0``).
        shared_kl_weight: coefficient of the shared KL loss (``>= 0``).
        dropout: dropout rate inside experts and towers.
        seed: seed of the gate noise.

    Call arguments:
        inputs: ``[inputs, scenario]`` or ``{"inputs": (batch, d), "scenario": (batch, 1) int}``.
        training: Python bool; noise and the KL loss only when True.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = AutomaticExpertSelection(["click", "buy"], num_scenarios=2, num_experts=3, seed=0)
    >>> x = keras.ops.ones((3, 5))
    >>> out = layer([x, keras.ops.array([[0], [1], [2]])])
    >>> tuple(out["buy"].shape)
    (3, 32)

    Reference:
        Zou, Hu, Zhao, Ding, Liu, Li, Sun. Automatic Expert Selection for Multi-Scenario and
        Multi-Task Search. SIGIR 2022.
    """


    def __init__(
        self,
        task_names: list[str],
        num_scenarios: int,
        num_scenario_layers: int = 1,
        num_task_layers: int = 1,
        num_experts: int = 4,
        top_k_specific: int = 1,
        top_k_shared: int = 1,
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        scenario_embedding_dim: int = 8,
        task_embedding_dim: int = 8,
        noise_stddev: float = 0.1,
        specific_kl_weight: float = 1e-2,
        shared_kl_weight: float = 1e-2,
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = check_tasks(task_names)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.num_scenario_layers = positive_int("num_scenario_layers", num_scenario_layers)
        self.num_task_layers = positive_int("num_task_layers", num_task_layers)
        self.num_experts = positive_int("num_experts", num_experts)
        self.scenario_embedding_dim = positive_int("scenario_embedding_dim", scenario_embedding_dim)
        self.task_embedding_dim = positive_int("task_embedding_dim", task_embedding_dim)
        self.top_k_specific = top_k("top_k_specific", top_k_specific, num_experts)
        self.top_k_shared = top_k("top_k_shared", top_k_shared, num_experts)
        self.noise_stddev = non_negative("noise_stddev", noise_stddev)
        self.specific_kl_weight = non_negative("specific_kl_weight", specific_kl_weight)
        self.shared_kl_weight = non_negative("shared_kl_weight", shared_kl_weight)
        self.expert_units = layer_units("expert_units", expert_units)
        self.tower_units = layer_units("tower_units", tower_units)
        self.dropout = dropout_rate(dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="gate_seed_generator")

    def _layer_names(self) -> list[str]:
        return [f"scenario_layer_{i}" for i in range(self.num_scenario_layers)] + [
            f"task_layer_{i}" for i in range(self.num_task_layers)
        ]

    def build(self, input_shape: Any) -> None:
        dim = last_dim(split_scenario_inputs(input_shape)[0], input_shape)
        self.scenario_embedding = build_scenario_embedding(
            self.num_scenarios, self.scenario_embedding_dim, self.dtype_policy
        )
        self.task_embedding = keras.layers.Embedding(
            len(self.task_names), self.task_embedding_dim, name="task_embedding", dtype=self.dtype_policy
        )
        self.task_embedding.build((None,))
        self.experts = {}
        self.gates = {}
        width = dim
        for layer in self._layer_names():
            for k in range(self.num_experts):
                name = f"{layer}_expert_{k}"
                expert = MLP(
                    self.expert_units,
                    dropout=self.dropout,
                    seed=self.seed,
                    name=name,
                    dtype=self.dtype_policy,
                )
                expert.build((None, width))
                self.experts[name] = expert
            if layer.startswith("scenario"):
                num_gates, gate_in = self.num_scenarios, width + self.scenario_embedding_dim
            else:
                num_gates = len(self.task_names)
                gate_in = width + self.scenario_embedding_dim + self.task_embedding_dim
            # One Dense holding every gate of the layer side by side: num_gates linear maps.
            gate = keras.layers.Dense(num_gates * self.num_experts, name=f"{layer}_gates", dtype="float32")
            gate.build((None, gate_in))
            self.gates[layer] = gate
            width = self.expert_units[-1]
        self.towers = {}
        for task in self.task_names:
            tower = MLP(
                self.tower_units,
                dropout=self.dropout,
                seed=self.seed,
                name=f"tower_{task}",
                dtype=self.dtype_policy,
            )
            tower.build((None, width))
            self.towers[task] = tower
        tracked = {f"scenario_layer_{i}": self.num_experts for i in range(self.num_scenario_layers)}
        create_gate_trackers(self, {**tracked, **{t: self.num_experts for t in self.task_names}})

    def _layer(
        self, layer: str, h: Any, gate_input: Any, own_gate: Any, training: bool | None
    ) -> tuple[Any, dict[str, Any]]:
        """One AESM2 layer: gates, selection, ``sum_k w_k E_k(h)``."""
        num_gates = self.num_scenarios if layer.startswith("scenario") else len(self.task_names)
        logits = self.gates[layer](ops.cast(gate_input, "float32"))
        logits = ops.reshape(logits, (-1, num_gates, self.num_experts))
        noise = None
        if training and self.noise_stddev > 0:
            noise = keras.random.normal(ops.shape(logits), stddev=self.noise_stddev, seed=self.seed_generator)
        selection = select_experts(logits, own_gate, self.top_k_specific, self.top_k_shared, noise)
        experts = ops.stack(
            [self.experts[f"{layer}_expert_{k}"](h, training=training) for k in range(self.num_experts)],
            axis=1,
        )
        mixed = mix_experts(selection["weights"], experts)
        return mixed, selection

    def _forward(
        self, inputs: Any, training: bool | None
    ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[dict[str, Any], Any]]]:
        """Returns ``(task features, {tracked key: weights}, [(selection, known rows), ...])``."""
        x, scenario = split_scenario_inputs(inputs)
        seg = scenario_segments(scenario, self.num_scenarios)
        known = ops.cast(seg < self.num_scenarios, self.compute_dtype)[:, None]
        s = embed_known_scenarios(self.scenario_embedding, seg, self.compute_dtype)
        weights, selections = {}, []
        h = x
        for i in range(self.num_scenario_layers):
            layer = f"scenario_layer_{i}"
            h, selection = self._layer(layer, h, ops.concatenate([h, s], axis=-1), seg, training)
            weights[layer] = selection["weights"]
            selections.append((selection, known[:, 0]))
        features = {t: h for t in self.task_names}
        all_rows = ops.ones_like(known[:, 0])
        for i in range(self.num_task_layers):
            for t, task in enumerate(self.task_names):
                task_id = ops.full_like(seg, t)
                gate_input = ops.concatenate([features[task], s, self.task_embedding(task_id)], axis=-1)
                features[task], selection = self._layer(
                    f"task_layer_{i}", features[task], gate_input, task_id, training
                )
                weights[task] = selection["weights"]
                selections.append((selection, all_rows))
        return features, weights, selections

    def gate_weights(self, inputs: Any) -> dict[str, Any]:
        """Inference mixing weights ``(batch, num_experts)``: one entry per multi-scenario layer
        (``scenario_layer_{l}``) and one per task (its last multi-task layer); 0 on unselected experts."""
        return self._forward(inputs, training=False)[1]

    def kl_loss(self, selections: list[tuple[dict[str, Any], Any]]) -> Any:
        """``specific_kl_weight * sum_l mean KL_sp + shared_kl_weight * sum_l mean KL_sh`` over the
        selected experts of every layer (the specific term over known-scenario rows only)."""
        total = ops.zeros((), "float32")
        for selection, rows in selections:
            rows = ops.cast(rows, "float32")[:, None]
            specific = selection["specific"] * rows
            total += (
                self.specific_kl_weight
                * ops.sum(selection["specific_kl"] * specific)
                / ops.maximum(ops.sum(specific), 1.0)
            )
            shared = selection["shared"]
            total += self.shared_kl_weight * ops.sum(selection["shared_kl"] * shared) / ops.sum(shared)
        return total

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        features, weights, selections = self._forward(inputs, training)
        track_gates(self, weights)
        if training and (self.specific_kl_weight > 0 or self.shared_kl_weight > 0):
            self.add_loss(self.kl_loss(selections))
        return {t: self.towers[t](features[t], training=training) for t in self.task_names}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_scenarios=self.num_scenarios,
            num_scenario_layers=self.num_scenario_layers,
            num_task_layers=self.num_task_layers,
            num_experts=self.num_experts,
            top_k_specific=self.top_k_specific,
            top_k_shared=self.top_k_shared,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            scenario_embedding_dim=self.scenario_embedding_dim,
            task_embedding_dim=self.task_embedding_dim,
            noise_stddev=self.noise_stddev,
            specific_kl_weight=self.specific_kl_weight,
            shared_kl_weight=self.shared_kl_weight,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config
