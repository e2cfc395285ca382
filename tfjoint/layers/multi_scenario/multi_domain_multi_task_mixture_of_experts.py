"""M3oE: shared, domain and task expert views fused per domain-task pair (Zhang et al., SIGIR 2024)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, last_dim, layer_units, positive_int
from tfjoint.layers.core.contracts import ScenarioAware
from tfjoint.layers.core.experts import build_gate, softmax_gate
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.scenarios import (
    check_num_scenarios,
    per_scenario_dense,
    scenario_one_hot,
    scenario_segments,
    split_scenario_inputs,
    star_weights,
)
from tfjoint.registry import register


def _own_and_others(balance_logits: Any, size: int) -> Any:
    """``(size, size)`` mixing matrix: ``beta_i`` on the diagonal, ``(1 - beta_i) / (size - 1)`` elsewhere."""
    beta = ops.sigmoid(ops.cast(balance_logits, "float32"))[:, None]
    eye = ops.eye(size, dtype="float32")
    return beta * eye + (1.0 - beta) / (size - 1) * (1.0 - eye)


@register(
    "m3oe",
    slot="task_architecture",
    family="multi_scenario",
    reference="Zhang et al., M3oE: Multi-Domain Multi-Task Mixture-of-Experts Recommendation "
    "Framework, SIGIR 2024",
)
class MultiDomainMultiTaskMixtureOfExperts(ScenarioAware, keras.layers.Layer):
    """M3oE: domain representation, three expert views and a tower per (task, domain) pair.

    For a sample of domain ``d`` and every task ``t`` (Zhang et al., 2024, sec. 3; the
    lines of ``call`` follow this order):

    - domain representation: ``W_hat_d = W_d ⊙ W_sh``,
      ``h = f_DR(x) = x W_hat_d + b_d + b_sh``;
    - shared view: ``S_{t,d}(h) = sum_i g_{t,d}(h)_i E^sh_i(h)`` with one softmax gate
      ``g_{t,d}(h) = softmax(h G_{t,d} + c_{t,d})`` per (task, domain) pair over the
      ``num_shared_experts`` shared experts;
    - domain view (first-level fusion): ``D_d(h) = beta_d E^D_d(h) +
      (1 - beta_d) / (P - 1) sum_{j != d} E^D_j(h)``, one expert per domain;
    - task view (first-level fusion): ``T_t(h) = beta_t E^T_t(h) +
      (1 - beta_t) / (K - 1) sum_{k != t} E^T_k(h)``, one expert per task;
    - second-level fusion, as written in DESIGN.md:
      ``h_{t,d} = S_{t,d}(h) + alpha_d T_t(h) + alpha_t D_d(h)`` where ``alpha_d`` (one
      per domain) multiplies the **task** view and ``alpha_t`` (one per task) multiplies
      the **domain** view;
    - ``y_{t,d} = tower_{t,d}(h_{t,d})``: each row uses its own domain's tower.

    ``alpha`` and ``beta`` are ``sigmoid`` of learned logits (initialized at 0, i.e. 0.5).
    The paper searches them with AutoML (bi-level optimization); here they are plain
    weights trained with the rest of the model. The official code uses one global scalar
    for each of ``alpha_D`` (on the domain view), ``alpha_T`` (on the task view),
    ``beta_D`` and ``beta_T``; a learned value per domain and per task contains that
    case (all ``alpha_d`` equal, all ``alpha_t`` equal). With one domain (one task) the
    domain (task) view is that domain's (task's) expert alone.

    Other deviations from the official code: ``W_d`` is initialized to ones (every domain
    starts as the shared layer, as in STAR) where the code draws it like ``W_sh``; the
    code's extra MLP and skip connection on top of ``f_DR`` are left out (the experts are
    MLPs); the code stops the gradient into the gate input, here it flows.

    Unknown domain: a scenario id outside ``[0, num_scenarios)`` has no parameters of its
    own. The official code has no such path (an unknown id keeps ``emb = 0`` and a
    prediction of 0). Here its tower output is the mean of the ``P`` known domains' tower
    outputs, each computed on the shared representation:

    - ``h = x W_sh + b_sh`` (``f_DR`` without ``W_d, b_d``);
    - ``h_{t,d} = S_{t,d}(h) + alpha_d T_t(h) + alpha_t D_d(h)`` for every known ``d``,
      with domain ``d``'s gate, ``alpha_d`` and domain view, as above;
    - ``z_t = (1 / P) sum_d tower_{t,d}(h_{t,d})``, the layer's output.

    The joint model's head for task ``t`` is one linear map shared by the domains (then a
    sigmoid for a binary task), so the served value is the head applied to the mean tower
    output: the mean of the ``P`` domains' **logits** (then the sigmoid), not the mean of
    their probabilities; for a regression task it is the mean of their predictions.

    Every parameter on this path is trained by rows of known domains: ``W_sh, b_sh`` enter
    every ``W_hat_d``, and each known domain's gate, ``alpha_d``, ``beta_d``, expert and
    tower are trained by that domain's rows; only ``W_d, b_d`` are left out. The joint
    model's ``unknown_scenario_rate`` also trains the path itself on rows whose domain it
    hides. The outputs of
    the towers are averaged, rather than one tower applied to the mean of the ``h_{t,d}``,
    so that each tower sees its own domain's fusion, the input it is trained on. Averaging
    over ``d`` is linear up to the towers: the mean of the ``h_{t,d}`` is ``S`` with the
    mean gate ``(1 / P) sum_d g_{t,d}(h)``, plus the mean ``alpha_d`` times ``T_t(h)``, plus
    ``alpha_t`` times the mean of the domain views. With one domain, an unknown row is
    domain 0 with ``h = x W_sh + b_sh``.

    The gate weights of each row's own (task, domain) gate (the mean of the ``P`` gates of
    its task for an unknown domain) are reported per task and shared expert through
    :mod:`tfjoint.layers.core.gate_monitor`.

    Args:
        task_names: names of the tasks.
        num_scenarios: number of known domains ``P``.
        representation_units: width of ``f_DR``.
        num_shared_experts: number of shared experts.
        expert_units: hidden sizes of every expert (shared, domain and task).
        tower_units: hidden sizes of every (task, domain) tower.
        dropout: dropout rate inside experts and towers.
        seed: seed of the dropout layers.

    Call arguments:
        inputs: ``[inputs, scenario]`` (or ``{"inputs", "scenario"}``) with inputs
            ``(batch, d)`` float and scenario ``(batch, 1)`` int.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = MultiDomainMultiTaskMixtureOfExperts(["click", "like"], num_scenarios=2)
    >>> out = layer([keras.ops.ones((3, 5)), keras.ops.array([[0], [1], [2]])])
    >>> tuple(out["click"].shape)
    (3, 32)

    Reference:
        Zhang, Liu, Yu, Cai, Zhao, Zhang, Liu, Liu, Zhao, Hu, Jiang, Gai. M3oE:
        Multi-Domain Multi-Task Mixture-of-Experts Recommendation Framework. SIGIR 2024.
        Official code: github.com/Applied-Machine-Learning-Lab/M3oE.
    """


    def __init__(
        self,
        task_names: list[str],
        num_scenarios: int,
        representation_units: int = 64,
        num_shared_experts: int = 4,
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_names = check_tasks(task_names)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.representation_units = positive_int("representation_units", representation_units)
        self.num_shared_experts = positive_int("num_shared_experts", num_shared_experts)
        self.expert_units = layer_units("expert_units", expert_units)
        self.tower_units = layer_units("tower_units", tower_units)
        self.dropout = dropout_rate(dropout)
        self.seed = seed

    def _domain_names(self) -> list[str]:
        """Suffixes of the per-domain gates and towers, one per known domain."""
        return [f"domain_{p}" for p in range(self.num_scenarios)]

    def _mlp(self, units: list[int], name: str, input_dim: int) -> MLP:
        mlp = MLP(units, dropout=self.dropout, seed=self.seed, name=name, dtype=self.dtype_policy)
        mlp.build((None, input_dim))
        return mlp

    def build(self, input_shape: Any) -> None:
        dim = last_dim(split_scenario_inputs(input_shape)[0], input_shape)
        p, r, k = self.num_scenarios, self.representation_units, len(self.task_names)
        self.shared_kernel = self.add_weight(
            shape=(dim, r), initializer="glorot_uniform", name="shared_kernel"
        )
        self.shared_bias = self.add_weight(shape=(r,), initializer="zeros", name="shared_bias")
        self.domain_kernel = self.add_weight(shape=(p, dim, r), initializer="ones", name="domain_kernel")
        self.domain_bias = self.add_weight(shape=(p, r), initializer="zeros", name="domain_bias")
        self.shared_experts = [
            self._mlp(self.expert_units, f"shared_expert_{i}", r) for i in range(self.num_shared_experts)
        ]
        self.domain_experts = [self._mlp(self.expert_units, f"domain_expert_{d}", r) for d in range(p)]
        self.task_experts = {t: self._mlp(self.expert_units, f"task_expert_{t}", r) for t in self.task_names}
        self.gates, self.towers = {}, {}
        for t in self.task_names:
            for suffix in self._domain_names():
                self.gates[f"{t}_{suffix}"] = build_gate(self.num_shared_experts, f"gate_{t}_{suffix}", (None, r))
                self.towers[f"{t}_{suffix}"] = self._mlp(
                    self.tower_units, f"tower_{t}_{suffix}", self.expert_units[-1]
                )
        # With one domain (task) there is no other expert to balance against: no beta.
        if p > 1:
            self.domain_balance_logits = self.add_weight(
                shape=(p,), initializer="zeros", name="domain_balance_logits"
            )
        if k > 1:
            self.task_balance_logits = self.add_weight(
                shape=(k,), initializer="zeros", name="task_balance_logits"
            )
        self.domain_alpha_logits = self.add_weight(
            shape=(p,), initializer="zeros", name="domain_alpha_logits"
        )
        self.task_alpha_logits = self.add_weight(shape=(k,), initializer="zeros", name="task_alpha_logits")
        create_gate_trackers(self, {t: self.num_shared_experts for t in self.task_names})

    def domain_representation_weights(self) -> tuple[Any, Any]:
        """``(W_hat_d, b_d + b_sh)`` for every domain, row ``P`` being the shared ``(W_sh, b_sh)``.

        Shapes ``(P + 1, d, representation_units)`` and ``(P + 1, representation_units)``.
        """
        return star_weights(self.shared_kernel, self.shared_bias, self.domain_kernel, self.domain_bias)

    def domain_view_weights(self) -> Any:
        """``(P, P)``: row ``d`` holds the weights of ``D_d`` over the domain experts."""
        if self.num_scenarios == 1:
            return ops.ones((1, 1), "float32")
        return _own_and_others(self.domain_balance_logits, self.num_scenarios)

    def task_view_weights(self) -> Any:
        """``(K, K)``: row ``t`` holds the weights of ``T_t`` over the task experts."""
        if len(self.task_names) == 1:
            return ops.ones((1, 1), "float32")
        return _own_and_others(self.task_balance_logits, len(self.task_names))

    def domain_mixture(self, scenario: Any) -> Any:
        """``(batch, P)`` float32 weight of each known domain's prediction in each row's output.

        The one-hot of a known domain; ``1 / P`` for every domain on an unknown one.
        """
        seg = scenario_segments(scenario, self.num_scenarios)
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="shared")
        return onehot[:, : self.num_scenarios] + onehot[:, self.num_scenarios :] / self.num_scenarios

    def _representation(self, x: Any, scenario: Any) -> Any:
        """``f_DR(x)`` with each row's own ``W_hat_d``, ``(W_sh, b_sh)`` for an unknown domain."""
        seg = scenario_segments(scenario, self.num_scenarios)
        onehot = scenario_one_hot(seg, self.num_scenarios, unknown="shared", dtype=self.compute_dtype)
        w, b = self.domain_representation_weights()
        c = self.compute_dtype
        return per_scenario_dense(ops.cast(x, c), ops.cast(w, c), ops.cast(b, c), onehot)

    def _gates(self, h: Any) -> dict[str, Any]:
        """``{task: g_{t,d}(h)}`` for every known domain ``d``: ``(batch, P, num_shared_experts)`` float32."""
        h = ops.cast(h, "float32")
        return {
            t: ops.stack(
                [softmax_gate(self.gates[f"{t}_{s}"], h) for s in self._domain_names()], axis=1
            )
            for t in self.task_names
        }

    def _fuse(
        self, x: Any, scenario: Any, training: bool | None
    ) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """``({task: h_{t,d}}, {task: g}, mixture)``.

        ``h_{t,d}`` is ``(batch, P, expert_units[-1])``: every known domain's fusion on each
        row's own ``h`` (a known row uses only its own domain's). ``g`` is each row's own
        gate, ``(batch, num_shared_experts)``, the mean gate for an unknown domain.
        ``mixture`` is :meth:`domain_mixture`.
        """
        c = self.compute_dtype
        mixture = self.domain_mixture(scenario)
        h = self._representation(x, scenario)
        per_domain_gates = self._gates(h)
        shared = ops.stack([e(h, training=training) for e in self.shared_experts], axis=1)
        domain = ops.stack([e(h, training=training) for e in self.domain_experts], axis=1)
        task = ops.stack([self.task_experts[t](h, training=training) for t in self.task_names], axis=1)
        domain_views = ops.einsum("dj,bje->bde", ops.cast(self.domain_view_weights(), c), domain)
        task_views = ops.einsum("tk,bke->bte", ops.cast(self.task_view_weights(), c), task)
        alpha_domain = ops.cast(ops.sigmoid(self.domain_alpha_logits), c)[None, :, None]
        alpha_task = ops.cast(ops.sigmoid(self.task_alpha_logits), c)
        fused, gates = {}, {}
        for i, t in enumerate(self.task_names):
            mixed_shared = ops.einsum("bde,bef->bdf", ops.cast(per_domain_gates[t], c), shared)
            fused[t] = mixed_shared + alpha_domain * task_views[:, i][:, None] + alpha_task[i] * domain_views
            gates[t] = ops.einsum("bd,bde->be", mixture, per_domain_gates[t])
        return fused, gates, mixture

    def gate_weights(self, inputs: Any) -> dict[str, Any]:
        """``{task: g_{t,d}(h)}``: each row's own (task, domain) gate, the mean gate if unknown."""
        x, scenario = split_scenario_inputs(inputs)
        return self._fuse(x, scenario, training=False)[1]

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        x, scenario = split_scenario_inputs(inputs)
        fused, gates, mixture = self._fuse(x, scenario, training)
        track_gates(self, gates)
        mixture = ops.cast(mixture, self.compute_dtype)
        outputs = {}
        for t in self.task_names:
            towers = ops.stack(
                [
                    self.towers[f"{t}_{s}"](fused[t][:, d], training=training)
                    for d, s in enumerate(self._domain_names())
                ],
                axis=1,
            )
            outputs[t] = ops.einsum("bs,bsu->bu", mixture, towers)
        return outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_scenarios=self.num_scenarios,
            representation_units=self.representation_units,
            num_shared_experts=self.num_shared_experts,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config
