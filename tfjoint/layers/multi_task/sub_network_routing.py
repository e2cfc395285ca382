"""Sub-network routing (SNR-Trans): layers of sub-networks joined by learned, sparse, gated transforms."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, dropout_rate, layer_units, non_negative, positive, positive_int
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register

# Keeps log(u) and log(1 - u) finite for the uniform noise of the hard-concrete sample.
_EPSILON = 1e-6


def hard_concrete(log_alpha: Any, beta: float, gamma: float, zeta: float, u: Any = None) -> Any:
    """The hard-concrete gate ``z`` of Louizos et al. (2018), as used by SNR (Ma et al., 2019, eq. 7).

    With uniform noise ``u``: ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``; without
    (inference): ``s = sigmoid(log_alpha)``. Then ``z = clip(s (zeta - gamma) + gamma, 0, 1)``.
    """
    log_alpha = ops.cast(log_alpha, "float32")
    if u is None:
        s = ops.sigmoid(log_alpha)
    else:
        u = ops.cast(u, "float32")
        s = ops.sigmoid((ops.log(u) - ops.log(1.0 - u) + log_alpha) / beta)
    return ops.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)


@register(
    "snr",
    slot="task_architecture",
    family="multi_task",
    reference="Ma et al., SNR: Sub-Network Routing for Flexible Parameter Sharing in Multi-Task "
    "Learning, AAAI 2019 (SNR-Trans)",
)
class SubNetworkRouting(keras.layers.Layer):
    """SNR-Trans: ``num_layers`` layers of sub-networks; each upper one reads gated transforms of the lower ones.

    Layer 0 holds ``num_sub_networks`` sub-networks on the input, ``v^0_j = f^0_j(x)``; the
    middle layers hold ``num_sub_networks`` each; the top layer holds one sub-network per
    task. Between consecutive layers (Ma et al., 2019, eqs. 4-8):

    - ``z_ij = hard_concrete(log_alpha_ij)``: a sample with seeded uniform noise in training,
      ``clip(sigmoid(log_alpha_ij) (zeta - gamma) + gamma, 0, 1)`` at inference;
    - ``u_i = sum_j z_ij W_ij v_j``, with one transform matrix ``W_ij`` per connection (Trans);
    - ``v'_i = f'_i(u_i)``, the upper sub-network.

    Task ``k``'s tower reads the ``k``-th top sub-network: ``y_k = h_k(v^{L-1}_k)``. During
    training ``l0_regularization * sum_ij sigmoid(log_alpha_ij - beta log(-gamma / zeta))``,
    the expected number of open connections, is added with ``add_loss``; a connection whose
    inference gate is 0 can be pruned. The noise is one sample per connection and batch.

    Args:
        task_names: names of the tasks, one top sub-network and tower each.
        num_sub_networks: sub-networks on every layer but the top one (``>= 1``).
        num_layers: layers of sub-networks, the top one included (``>= 2``).
        sub_network_units: hidden sizes of every sub-network; the transforms are square,
            ``sub_network_units[-1]`` by ``sub_network_units[-1]``.
        tower_units: hidden sizes of every task tower.
        dropout: dropout rate inside sub-networks and towers.
        l0_regularization: coefficient of the expected-L0 penalty on the connections (``>= 0``).
        beta: temperature of the hard-concrete distribution (``> 0``).
        gamma: lower end of the stretched interval (``< 0``).
        zeta: upper end of the stretched interval (``> 1``).
        seed: seed of the gate noise.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool; the gates are sampled and the penalty added only when True.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.

    Example:
    >>> layer = SubNetworkRouting(["click", "like"], num_sub_networks=3, seed=0)
    >>> outputs = layer(keras.ops.ones((2, 5)))
    >>> [tuple(z.shape) for z in layer.routing_gates()]
    [(2, 3)]

    Reference:
        Ma, Zhao, Yi, Chen, Hong, Chi. SNR: Sub-Network Routing for Flexible Parameter Sharing
        in Multi-Task Learning. AAAI 2019. Louizos, Welling, Kingma. Learning Sparse Neural
        Networks through L0 Regularization. ICLR 2018.
    """

    def __init__(
        self,
        task_names: list[str],
        num_sub_networks: int = 3,
        num_layers: int = 2,
        sub_network_units: list[int] | tuple[int, ...] = (32,),
        tower_units: list[int] | tuple[int, ...] = (32,),
        dropout: float = 0.0,
        l0_regularization: float = 1e-3,
        beta: float = 2 / 3,
        gamma: float = -0.1,
        zeta: float = 1.1,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_sub_networks = positive_int("num_sub_networks", num_sub_networks)
        self.num_layers = positive_int("num_layers", num_layers, minimum=2)
        self.sub_network_units = layer_units("sub_network_units", sub_network_units)
        self.tower_units = layer_units("tower_units", tower_units)
        self.dropout = dropout_rate(dropout)
        self.l0_regularization = non_negative("l0_regularization", l0_regularization)
        self.beta = positive("beta", beta)
        if gamma >= 0:
            raise ValueError(f"gamma must be < 0. Received: gamma={gamma}")
        if zeta <= 1:
            raise ValueError(f"zeta must be > 1. Received: zeta={zeta}")
        self.task_names = check_tasks(task_names)
        self.gamma = float(gamma)
        self.zeta = float(zeta)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="gate_seed_generator")

    def _width(self, layer: int) -> int:
        return len(self.task_names) if layer == self.num_layers - 1 else self.num_sub_networks

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        d = self.sub_network_units[-1]
        self.sub_networks = {}
        for layer in range(self.num_layers):
            shape = tuple(input_shape) if layer == 0 else (None, d)
            for i in range(self._width(layer)):
                name = f"sub_network_{layer}_{i}"
                sub = MLP(
                    self.sub_network_units,
                    dropout=self.dropout,
                    name=name,
                    dtype=self.dtype_policy,
                )
                sub.build(shape)
                self.sub_networks[name] = sub
        self.transforms = []
        self.log_alphas = []
        for layer in range(self.num_layers - 1):
            upper, lower = self._width(layer + 1), self._width(layer)
            # Var(W_ij) = 1/d, so that each W_ij v_j keeps the scale of v_j.
            self.transforms.append(
                self.add_weight(
                    name=f"transform_{layer}",
                    shape=(upper, lower, d, d),
                    initializer=keras.initializers.RandomUniform(-math.sqrt(3 / d), math.sqrt(3 / d)),
                )
            )
            # log_alpha = 0 opens every connection halfway (keep probability 1/2, as in Louizos et al.).
            self.log_alphas.append(
                self.add_weight(
                    name=f"log_alpha_{layer}",
                    shape=(upper, lower),
                    initializer=keras.initializers.RandomNormal(0.0, 0.01),
                    autocast=False,
                )
            )
        self.towers = {}
        for name in self.task_names:
            tower = MLP(
                self.tower_units,
                dropout=self.dropout,
                name=f"tower_{name}",
                dtype=self.dtype_policy,
            )
            tower.build((None, d))
            self.towers[name] = tower

    def _gates(self, layer: int, training: bool | None) -> Any:
        log_alpha = self.log_alphas[layer]
        u = None
        if training:
            u = keras.random.uniform(
                ops.shape(log_alpha), minval=_EPSILON, maxval=1.0 - _EPSILON, seed=self.seed_generator
            )
        return hard_concrete(log_alpha, self.beta, self.gamma, self.zeta, u)

    def routing_gates(self) -> list[Any]:
        """Inference gates ``z``, one ``(upper, lower)`` matrix per pair of consecutive layers."""
        return [self._gates(layer, training=False) for layer in range(self.num_layers - 1)]

    def l0_penalty(self) -> Any:
        """Expected number of open connections, ``sum_ij sigmoid(log_alpha_ij - beta log(-gamma / zeta))``."""
        shift = self.beta * math.log(-self.gamma / self.zeta)
        return sum(ops.sum(ops.sigmoid(ops.cast(a, "float32") - shift)) for a in self.log_alphas)

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        v = [
            self.sub_networks[f"sub_network_0_{j}"](inputs, training=training) for j in range(self._width(0))
        ]
        for layer in range(self.num_layers - 1):
            z = self._gates(layer, training)
            lower = ops.stack(v, axis=1)
            # W_ij v_j for every connection: (batch, upper, lower, d).
            transformed = ops.einsum("bjd,ijde->bije", lower, self.transforms[layer])
            # u_i = sum_j z_ij W_ij v_j.
            u = ops.einsum("ij,bije->bie", ops.cast(z, transformed.dtype), transformed)
            v = [
                self.sub_networks[f"sub_network_{layer + 1}_{i}"](u[:, i], training=training)
                for i in range(self._width(layer + 1))
            ]
        if training and self.l0_regularization > 0:
            self.add_loss(self.l0_regularization * self.l0_penalty())
        return {name: self.towers[name](v[k], training=training) for k, name in enumerate(self.task_names)}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            num_sub_networks=self.num_sub_networks,
            num_layers=self.num_layers,
            sub_network_units=self.sub_network_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            l0_regularization=self.l0_regularization,
            beta=self.beta,
            gamma=self.gamma,
            zeta=self.zeta,
            seed=self.seed,
        )
        return config
