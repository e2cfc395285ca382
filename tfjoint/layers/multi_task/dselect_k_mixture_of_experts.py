"""DSelect-k: a differentiable, sparse mixture-of-experts gate per task."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, layer_units, non_negative, positive, positive_int, top_k
from tfjoint.layers.core.experts import mix_experts
from tfjoint.layers.core.gate_monitor import create_gate_trackers, track_gates
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register

# Keeps log(r) finite in the entropy of a selector whose weights are exactly 0, and floors
# the reachable mass in the unreachable-code penalty.
_EPSILON = 1e-6


def smooth_step(t: Any, gamma: float) -> Any:
    """The smooth-step ``S(t)``: 0 for ``t <= -gamma/2``, 1 for ``t >= gamma/2``, else
    ``-2/gamma^3 t^3 + 3/(2 gamma) t + 1/2`` (Hazimeh et al., 2021, eq. 4)."""
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return ops.where(t <= -gamma / 2, ops.zeros_like(t), ops.where(t >= gamma / 2, ops.ones_like(t), cubic))


def selector_entropy(r: Any) -> Any:
    """``sum -r log(r + 1e-6)`` over every axis of ``r``: the official ``EntropyRegularizer``
    (a sum over the batch, the selectors and the experts, not a mean)."""
    return -ops.sum(r * ops.log(r + _EPSILON))


def unreachable_penalty(r: Any) -> Any:
    """``sum_{b, i} 1 / sum_l r_{b,i,l}``: the official penalty on the mass that the selectors
    ``r`` (``(..., n)``, reachable codes only) put on codes that reach no expert.

    Its minimum, one per selector and example, is reached when no mass is lost; the
    reachable mass is floored at ``1e-6`` (the official code divides by it unguarded).
    """
    return ops.sum(1.0 / ops.maximum(ops.sum(r, axis=-1), _EPSILON))


@register(
    "dselect_k",
    slot="task_architecture",
    family="multi_task",
    reference="Hazimeh et al., DSelect-k: Differentiable Selection in the Mixture of Experts with "
    "Applications to Multi-Task Learning, NeurIPS 2021",
)
class DSelectKMixtureOfExperts(keras.layers.Layer):
    """Shared experts mixed per task by a per-example DSelect-k gate, then one tower per task.

    With ``n = num_experts`` experts ``f_l`` and ``m = ceil(log2 n)``, task ``k``'s gate on an
    example ``x`` (Hazimeh et al., 2021, section 3 and the per-example gate of section 3.3):

    - ``z^(i) = Z_k^(i) x`` in ``R^m``, for each of the ``k`` single-expert selectors ``i``;
    - ``r(z^(i))_l = prod_j S(z^(i)_j)^[bit j of l] (1 - S(z^(i)_j))^(1 - [bit j of l])`` for
      the experts ``l = 0 .. n-1`` (eq. 5): the weights of the ``2^m`` binary codes, of which
      only the first ``n`` (the reachable ones) are kept;
    - ``alpha = softmax(A_k x)`` in ``R^k``, the weights of the selectors (1 when ``k = 1``);
    - ``q = sum_i alpha_i r(z^(i))`` (eq. 6), and ``y_k = h_k(sum_l q_l f_l(x))``.

    Once every ``|z_j| >= gamma/2`` each selector is one-hot, so at most ``k`` experts get a
    nonzero weight. When ``n`` is not a power of two the codes ``n .. 2^m - 1`` select no
    expert: their mass is dropped, so ``sum_l q_l <= 1`` (``3/4`` at the initialisation for
    ``n = 3``), and during training the penalty ``sum_{b, i} 1 / sum_l r(z^(i)(x_b))_l`` is
    added (coefficient 1, summed over the batch, the selectors and the tasks). It stops
    the selectors from settling on an unreachable code and has no gradient once the
    reachable mass is 1. During training
    ``entropy_regularization * sum_{b, i, l} -r_l log(r_l + 1e-6)`` (summed over the batch,
    the selectors, the experts and the tasks) is also added; it drives the selectors to
    binary decisions. Both losses go through ``add_loss``. Gate logits, the smooth-step and
    the softmax are computed in float32.

    This follows the official code (google-research ``dselect_k_moe/dselect_k_moe.py``:
    ``DSelectKGate`` with example-conditioned routing, ``EntropyRegularizer`` with a constant
    schedule, and the initialisers ``U(-gamma/100, gamma/100)`` for ``Z`` and
    ``U(-0.05, 0.05)`` for ``A``). Bit ``j`` of an expert's code is its ``j``-th least
    significant bit (the official code reads the bits most significant first: a relabelling
    of the ``z`` coordinates with no effect). One deviation: the reachable mass in the
    penalty is floored at ``1e-6``, so a selector saturated on an unreachable code costs
    ``1e6`` instead of the official ``inf`` (which would turn the training loss into NaN).

    Args:
        task_names: names of the tasks, one gate and tower each.
        num_experts: number of shared experts ``n`` (``>= 2``).
        k: number of single-expert selectors per task, the most experts a task can use,
            in ``[1, num_experts]``.
        gamma: width of the cubic region of the smooth-step.
        entropy_regularization: coefficient of the selectors' entropy penalty (``>= 0``).
        expert_units: hidden sizes of every expert.
        tower_units: hidden sizes of every task tower.
        dropout: dropout rate inside experts and towers.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool; the entropy and unreachable-code penalties are added only
            when True.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = DSelectKMixtureOfExperts(["click", "like"], num_experts=4, k=2)
    >>> outputs = layer(keras.ops.ones((2, 5)))
    >>> tuple(layer.gate_weights(keras.ops.ones((2, 5)))["click"].shape)
    (2, 4)

    Reference:
        Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong, Chi. DSelect-k:
        Differentiable Selection in the Mixture of Experts with Applications to Multi-Task
        Learning. NeurIPS 2021.
    """

    def __init__(
        self,
        task_names: list[str],
        num_experts: int = 4,
        k: int = 2,
        gamma: float = 1.0,
        entropy_regularization: float = 1e-6,
        expert_units: list[int] | tuple[int, ...] = (64,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_experts = positive_int("num_experts", num_experts, minimum=2)
        self.k = top_k("k", k, num_experts)
        self.gamma = positive("gamma", gamma)
        self.entropy_regularization = non_negative("entropy_regularization", entropy_regularization)
        self.expert_units = layer_units("expert_units", expert_units)
        self.tower_units = layer_units("tower_units", tower_units)
        self.dropout = dropout_rate(dropout)
        self.task_names = check_tasks(task_names)
        self.num_binary = math.ceil(math.log2(self.num_experts))
        # bits[l, j] = bit j of expert l's code; the codes n .. 2^m - 1 reach no expert.
        codes = np.arange(self.num_experts)
        self._bits = ((codes[:, None] >> np.arange(self.num_binary)) & 1).astype("float32")
        self._power_of_2 = self.num_experts == 2**self.num_binary

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.experts = []
        for i in range(self.num_experts):
            expert = MLP(self.expert_units, dropout=self.dropout, name=f"expert_{i}", dtype=self.dtype_policy)
            expert.build(input_shape)
            self.experts.append(expert)
        # The paper's initialisation: selector logits start inside the cubic region.
        z_init = keras.initializers.RandomUniform(-self.gamma / 100, self.gamma / 100)
        self.selector_logits = {}
        self.selector_weights = {}
        for name in self.task_names:
            z = keras.layers.Dense(
                self.k * self.num_binary,
                kernel_initializer=z_init,
                bias_initializer=z_init,
                name=f"selector_logits_{name}",
                dtype="float32",
            )
            z.build(input_shape)
            self.selector_logits[name] = z
            if self.k == 1:
                continue  # A single selector has weight 1: there is nothing to learn.
            alpha = keras.layers.Dense(
                self.k,
                kernel_initializer="random_uniform",
                bias_initializer="random_uniform",
                name=f"selector_weights_{name}",
                dtype="float32",
            )
            alpha.build(input_shape)
            self.selector_weights[name] = alpha
        self.towers = {}
        for name in self.task_names:
            tower = MLP(self.tower_units, dropout=self.dropout, name=f"tower_{name}", dtype=self.dtype_policy)
            tower.build((None, self.expert_units[-1]))
            self.towers[name] = tower
        create_gate_trackers(self, {name: self.num_experts for name in self.task_names})

    def _gate(self, name: str, x: Any) -> tuple[Any, Any]:
        """Task ``name``'s ``(q, r)``: ``q`` is ``(batch, n)``, ``r`` is ``(batch, k, n)``."""
        z = ops.reshape(self.selector_logits[name](x), (-1, self.k, 1, self.num_binary))
        s = smooth_step(z, self.gamma)
        bits = ops.convert_to_tensor(self._bits)
        r = ops.prod(bits * s + (1.0 - bits) * (1.0 - s), axis=-1)
        if self.k == 1:
            alpha = ops.ones_like(r[:, :, 0])
        else:
            alpha = ops.softmax(self.selector_weights[name](x), axis=-1)
        q = ops.einsum("bi,bil->bl", alpha, r)
        return q, r

    def gate_weights(self, inputs: Any) -> dict[str, Any]:
        """``{task: q_k(x)}``, each ``(batch, num_experts)``, non-negative, summing to at most 1
        (exactly 1 when ``num_experts`` is a power of two)."""
        x = ops.cast(inputs, "float32")
        return {name: self._gate(name, x)[0] for name in self.task_names}

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        x = ops.cast(inputs, "float32")
        expert_outputs = ops.stack([e(inputs, training=training) for e in self.experts], axis=1)
        outputs = {}
        gates = {}
        for name in self.task_names:
            q, r = self._gate(name, x)
            gates[name] = q
            mixed = mix_experts(q, expert_outputs)
            outputs[name] = self.towers[name](mixed, training=training)
            if training:
                self._add_selector_losses(r)
        track_gates(self, gates)
        return outputs

    def _add_selector_losses(self, r: Any) -> None:
        """The official ``_add_regularization_loss`` on one task's selectors ``r`` (``(batch, k, n)``)."""
        if self.entropy_regularization > 0:
            self.add_loss(self.entropy_regularization * selector_entropy(r))
        if not self._power_of_2:
            self.add_loss(unreachable_penalty(r))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_experts=self.num_experts,
            k=self.k,
            gamma=self.gamma,
            entropy_regularization=self.entropy_regularization,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
        )
        return config
