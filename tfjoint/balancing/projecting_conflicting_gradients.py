"""Projecting conflicting gradients, PCGrad (Yu et al., NeurIPS 2020)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.balancing.task_balancer import TaskBalancer
from tfjoint.registry import register


@register(
    "pcgrad",
    slot="balancer",
    family="balancing",
    reference="Yu, Kumar, Gupta, Levine, Hausman, Finn, Gradient Surgery for Multi-Task Learning, NeurIPS 2020",
)
class ProjectingConflictingGradients(TaskBalancer):
    """Removes from each task gradient its component along every task gradient it conflicts with.

    Algorithm 1 of the paper, on the shared parameters, for tasks ``k = 1..K``:

    - ``g_i' = g_i`` (``projected = gradients[i]``);
    - for each ``j != i`` in a random order (a fresh permutation per task ``i`` and step, drawn
      from ``seed``; task order when ``shuffle=False``): if ``g_i' . g_j < 0`` then
      ``g_i' <- g_i' - (g_i' . g_j / ||g_j||^2) g_j`` (``coefficient`` below; note ``g_j`` is
      the *original* gradient of task ``j``, as in the authors' code);
    - the update is ``sum_i g_i'``.

    Args:
        shuffle: visit the other tasks in a random order (the paper) or in task order.
        seed: seed of the random order.
        target_task: see :class:`TaskBalancer` (unused: PCGrad treats tasks symmetrically).

    Example:
    >>> from tfjoint.features import TaskSpec
    >>> balancer = ProjectingConflictingGradients(seed=0)
    >>> balancer.bind([TaskSpec("click"), TaskSpec("like")])
    >>> g = balancer.combine_gradients([keras.ops.array([1.0, 0.0]), keras.ops.array([-1.0, 1.0])], {})
    >>> [round(float(v), 3) for v in g]
    [0.5, 1.5]

    Reference:
        Yu, Kumar, Gupta, Levine, Hausman, Finn. Gradient Surgery for Multi-Task Learning.
        NeurIPS 2020. https://arxiv.org/abs/2001.06782 (code: github.com/tianheyu927/PCGrad).
    """

    uses_task_gradients = True

    def __init__(self, shuffle: bool = True, seed: int | None = None, **kwargs: Any) -> None:
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed must be an integer or None. Received: seed={seed}")
        super().__init__(**kwargs)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="pcgrad_seed_generator")

    def project_conflicting(self, stacked: Any) -> Any:
        """The ``(K, P)`` projected gradients ``g_i'`` of the ``(K, P)`` stacked ``g_i``."""
        num_tasks = stacked.shape[0]
        squared_norms = ops.sum(stacked * stacked, axis=1)
        # ||g_j||^2 = 0 means g_i' . g_j = 0: never a conflict, so any non-zero denominator does.
        safe_squared_norms = ops.where(squared_norms > 0.0, squared_norms, 1.0)
        rows = []
        for i in range(num_tasks):
            order = ops.arange(num_tasks, dtype="int32")
            if self.shuffle:
                order = keras.random.shuffle(order, seed=self.seed_generator)
            projected = stacked[i]
            for position in range(num_tasks):
                j = order[position]
                other = ops.take(stacked, j, axis=0)
                inner = ops.sum(projected * other)
                conflict = ops.logical_and(inner < 0.0, ops.not_equal(j, i))
                coefficient = ops.where(conflict, inner / ops.take(safe_squared_norms, j), 0.0)
                projected = projected - coefficient * other
            rows.append(projected)
        return ops.stack(rows)

    def combine_gradients(self, gradients: list[Any], losses: dict[str, Any]) -> Any:
        stacked = ops.stack([ops.cast(g, "float32") for g in gradients])
        return ops.cast(ops.sum(self.project_conflicting(stacked), axis=0), gradients[0].dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(shuffle=self.shuffle, seed=self.seed)
        return config
