"""Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.balancing.task_balancer import TaskBalancer
from tfjoint.registry import register


@register(
    "uncertainty",
    slot="balancer",
    family="balancing",
    reference="Kendall et al., Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry "
    "and Semantics, CVPR 2018",
)
class UncertaintyWeighting(TaskBalancer):
    """Learns one log-variance ``s_k = log sigma_k^2`` per task and minimises
    ``sum_k c_k exp(-s_k) L_k + s_k / 2``, with ``c_k = 1/2`` for regression tasks (eq. 5 of
    the paper, Gaussian likelihood) and ``c_k = 1`` for binary tasks (eq. 10, a likelihood
    with a temperature). ``s`` is trained by the model's optimizer with everything else.
    """

    def build(self, input_shape: Any = None) -> None:
        self.log_variance = self.add_weight(
            shape=(len(self.tasks),), initializer="zeros", name="log_variance", dtype="float32"
        )
        self.built = True

    def weight_losses(self, losses: dict[str, Any], training: bool = True) -> dict[str, Any]:
        terms = {}
        for i, task in enumerate(self.tasks):
            s = self.log_variance[i]
            scale = 0.5 if task.type == "regression" else 1.0
            terms[task.name] = scale * ops.exp(-s) * ops.cast(losses[task.name], "float32") + 0.5 * s
        return terms
