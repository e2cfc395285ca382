"""AITM: adaptive information transfer between sequentially dependent tasks."""

from __future__ import annotations

from typing import Any, ClassVar

import keras
from keras import ops

from tfjoint.layers.core.arguments import check_tasks, non_negative
from tfjoint.layers.core.contracts import CascadeArchitecture, weighted_mean
from tfjoint.layers.core.mlp import MLP
from tfjoint.registry import register


@register(
    "aitm",
    slot="task_architecture",
    family="multi_task",
    reference="Xi et al., Modeling the Sequential Dependence among Audience Multi-step Conversions "
    "with Multi-task Learning in Targeted Display Advertising, KDD 2021",
)
class AdaptiveInformationTransferMultiTask(CascadeArchitecture, keras.layers.Layer):
    """AITM: task towers chained by Adaptive Information Transfer (AIT) modules.

    With ``q_t`` the tower output of task ``t`` (tasks in their sequential order):
    ``z_1 = q_1``; for ``t > 1`` the transferred information is ``p_{t-1} = g_{t-1}(z_{t-1})``
    and ``z_t = AIT(p_{t-1}, q_t) = sum_{u in {p_{t-1}, q_t}} w_u h_1(u)`` with
    ``w_u = softmax_u(<h_2(u), h_3(u)> / sqrt(k))`` (eqs. 2-4 of the paper). The joint model's
    head turns ``z_t`` into ``y_hat_t``, the probability of reaching step ``t`` from an
    impression (the entire space), so ``cascade_mode = "direct"``: the model serves it as
    ``<task>_joint`` and the conditional ``<task> = y_hat_t / y_hat_{t-1}``. A cascade step's
    loss is the cross-entropy over all impressions plus the behavioral expectation
    calibrator ``alpha * mean(max(y_hat_t - y_hat_{t-1}, 0))`` (eqs. 5-7).

    Args:
        task_names: the tasks in their sequential order (impression -> click -> ...).
        tower_units: hidden sizes of every tower; ``k = tower_units[-1]``.
        calibrator_weight: ``alpha``.
        dropout: dropout rate inside the towers.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool.

    Returns:
        Dict ``{task: z_t (batch, k)}``.
    """

    cascade_mode: ClassVar[str] = "direct"

    def __init__(
        self,
        task_names: list[str],
        tower_units: list[int] | tuple[int, ...] = (64, 32),
        calibrator_weight: float = 0.6,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.calibrator_weight = non_negative("calibrator_weight", calibrator_weight)
        self.task_names = check_tasks(task_names)
        self.tower_units = list(tower_units)
        self.dropout = dropout

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        k = self.tower_units[-1]
        self.towers, self.transfers = {}, {}
        self.query, self.key, self.value = {}, {}, {}
        for i, name in enumerate(self.task_names):
            tower = MLP(self.tower_units, dropout=self.dropout, name=f"tower_{name}", dtype=self.dtype_policy)
            tower.build(input_shape)
            self.towers[name] = tower
            if i == 0:
                continue
            transfer = keras.layers.Dense(k, activation="relu", name=f"transfer_{name}", dtype=self.dtype_policy)
            transfer.build((None, k))
            self.transfers[name] = transfer
            # h_1 (values), h_2 and h_3 (the two sides of the attention score).
            for j, table in ((1, self.value), (2, self.query), (3, self.key)):
                h = keras.layers.Dense(k, use_bias=False, name=f"ait_{name}_h{j}", dtype=self.dtype_policy)
                h.build((None, 2, k))
                table[name] = h

    def task_weights(self, task: str) -> list[Any]:
        """Task ``task``'s tower and its AIT module (transfer ``g_{t-1}``, ``h_1``, ``h_2``,
        ``h_3``): everything but the shared input is a task's own in AITM."""
        tables = (self.transfers, self.value, self.query, self.key)
        layers = [self.towers[task]] + [table[task] for table in tables if task in table]
        return [w for layer in layers for w in layer.trainable_weights]

    def transfer_weights(self, previous: Any, own: Any, name: str) -> tuple[Any, Any]:
        """``(w, z)`` of the AIT module of task ``name``: ``w`` ``(batch, 2)`` over
        ``[p_{t-1}, q_t]`` and ``z_t``."""
        h1, h2, h3 = self.value[name], self.query[name], self.key[name]
        units = ops.stack([self.transfers[name](previous), own], axis=1)
        scores = ops.sum(ops.cast(h2(units), "float32") * ops.cast(h3(units), "float32"), axis=-1)
        weights = ops.softmax(scores / (self.tower_units[-1] ** 0.5), axis=1)
        return weights, ops.sum(ops.cast(weights, units.dtype)[..., None] * h1(units), axis=1)

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        previous = None
        for name in self.task_names:
            own = self.towers[name](inputs, training=training)
            z = own if previous is None else self.transfer_weights(previous, own, name)[1]
            outputs[name] = previous = z
        return outputs

    def cascade_step_loss(
        self,
        task: str,
        *,
        parent_label: Any,
        label: Any,
        parent_joint: Any,
        conditional: Any,
        joint: Any,
        outputs: dict[str, Any],
        sample_weight: Any = None,
    ) -> Any:
        """Cross-entropy of ``y_hat_t`` over all impressions plus the calibrator, each a
        mean over rows weighted by ``sample_weight`` (``None``: the plain mean)."""
        calibrator = weighted_mean(ops.relu(joint - parent_joint), sample_weight)
        bce = weighted_mean(keras.losses.binary_crossentropy(label, joint), sample_weight)
        return bce + self.calibrator_weight * calibrator

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            task_names=self.task_names,
            tower_units=self.tower_units,
            calibrator_weight=self.calibrator_weight,
            dropout=self.dropout,
        )
        return config
