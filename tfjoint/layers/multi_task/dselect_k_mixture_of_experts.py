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

# Keeps log(r) finite in the entropy of a selector whose weights are exactly 0.
_EPSILON = 1e-6


def smooth_step(t: Any, gamma: float) -> Any:
    """The smooth-step ``S(t)``: 0 for ``t <= -gamma/2``, 1 for ``t >= gamma/2``, else
    ``-2/gamma^3 t^3 + 3/(2 gamma) t + 1/2`` (Hazimeh et al., 2021, eq. 4)."""
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return ops.where(t <= -gamma / 2, ops.zeros_like(t), ops.where(t >= gamma / 2, ops.ones_like(t), cubic))


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
    - ``r(z^(i))_c = prod_j S(z^(i)_j)^[bit j of c] (1 - S(z^(i)_j))^(1 - [bit j of c])`` over
      the ``2^m`` binary codes ``c`` (eq. 5), a distribution over codes;
    - ``alpha = softmax(A_k x)`` in ``R^k``, the weights of the selectors (1 when ``k = 1``);
    - ``q = sum_i alpha_i r(z^(i))`` (eq. 6), and ``y_k = h_k(sum_l q_l f_l(x))``.

    Once every ``|z_j| >= gamma/2`` each selector is one-hot, so at most ``k`` experts get a
    nonzero weight. Code ``c`` selects expert ``c mod n``: when ``n`` is not a power of two
    the surplus codes fold onto the first experts, so ``q`` always sums to 1 (the paper
    instead adds a penalty that keeps the unreachable codes' mass at zero). During training
    ``entropy_regularization * sum_i H(r(z^(i)))``, summed over tasks and averaged over the
    batch, is added with ``add_loss``; it drives the selectors to binary decisions.
    Gate logits, the smooth-step and the softmax are computed in float32.

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
        training: Python bool; the entropy penalty is added only when True.

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
        codes = np.arange(2**self.num_binary)
        # bits[c, j] = bit j of code c; fold[c, l] = 1 when code c selects expert l = c mod n.
        self._bits = ((codes[:, None] >> np.arange(self.num_binary)) & 1).astype("float32")
        self._fold = (codes[:, None] % self.num_experts == np.arange(self.num_experts)).astype("float32")

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
        r_codes = ops.prod(bits * s + (1.0 - bits) * (1.0 - s), axis=-1)
        r = ops.matmul(r_codes, ops.convert_to_tensor(self._fold))
        if self.k == 1:
            alpha = ops.ones_like(r[:, :, 0])
        else:
            alpha = ops.softmax(self.selector_weights[name](x), axis=-1)
        q = ops.einsum("bi,bil->bl", alpha, r)
        return q, r

    def gate_weights(self, inputs: Any) -> dict[str, Any]:
        """``{task: q_k(x)}``, each ``(batch, num_experts)``, non-negative and summing to 1."""
        x = ops.cast(inputs, "float32")
        return {name: self._gate(name, x)[0] for name in self.task_names}

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        x = ops.cast(inputs, "float32")
        expert_outputs = ops.stack([e(inputs, training=training) for e in self.experts], axis=1)
        outputs = {}
        entropy = ops.zeros((), "float32")
        gates = {}
        for name in self.task_names:
            q, r = self._gate(name, x)
            gates[name] = q
            entropy = entropy + ops.mean(ops.sum(-r * ops.log(r + _EPSILON), axis=(1, 2)))
            mixed = mix_experts(q, expert_outputs)
            outputs[name] = self.towers[name](mixed, training=training)
        track_gates(self, gates)
        if training and self.entropy_regularization > 0:
            self.add_loss(self.entropy_regularization * entropy)
        return outputs

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
