"""MetaBalance: auxiliary gradients rescaled toward the target's magnitude (He et al., WWW 2022)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.balancing.task_balancer import NormAveragingBalancer
from tfjoint.registry import register

STRATEGIES = ("reduce", "enlarge", "both")


@register(
    "metabalance",
    slot="balancer",
    family="balancing",
    reference="He, Feng, Cheng, Ji, Guo, Caverlee, MetaBalance: Improving Multi-Task Recommendations via "
    "Adapting Gradient Magnitudes of Auxiliary Tasks, WWW 2022",
)
class MetaBalance(NormAveragingBalancer):
    """Moves each auxiliary task's gradient magnitude toward the target task's.

    With ``G_tar`` the target task's gradient and ``G_aux,i`` the auxiliary ones on the
    shared parameters (Algorithm 1 of the paper):

    - moving averages of the magnitudes, ``m_k <- beta m_k + (1 - beta) ||G_k||``
      (``norms`` below; the state starts at zero as in the authors' code, which scales all
      tasks alike, and ``beta = 0`` uses the current norms);
    - ``G_aux,i <- (G_aux,i * m_tar / m_aux,i) * r + G_aux,i * (1 - r)`` (``scale`` below, with
      ``r = relax_factor``), applied where ``strategy`` says: ``"reduce"`` only when
      ``m_aux,i > m_tar`` (the paper's strategy A), ``"enlarge"`` only when
      ``m_aux,i < m_tar`` (strategy B), ``"both"`` always (strategy C, what the authors'
      code does);
    - the update is ``G_tar + sum_i G_aux,i``.

    The magnitudes are those of the whole shared-parameter vector, not of each parameter
    tensor as in the authors' code (the balancer sees one flattened vector per task).

    Args:
        relax_factor: ``r`` in ``[0, 1]``; ``1`` gives every adjusted auxiliary gradient the
            target's magnitude, ``0`` leaves it unchanged.
        beta: moving-average factor in ``[0, 1)``.
        strategy: ``"reduce"``, ``"enlarge"`` or ``"both"``.
        target_task: the target task; defaults to the model's first task.

    Example:
    >>> from tfjoint.features import TaskSpec
    >>> balancer = MetaBalance(relax_factor=1.0, beta=0.0)
    >>> balancer.bind([TaskSpec("click"), TaskSpec("like")])
    >>> g = balancer.combine_gradients([keras.ops.array([1.0, 0.0]), keras.ops.array([0.0, 4.0])], {})
    >>> [round(float(v), 3) for v in g]
    [1.0, 1.0]

    Reference:
        He, Feng, Cheng, Ji, Guo, Caverlee. MetaBalance: Improving Multi-Task Recommendations
        via Adapting Gradient Magnitudes of Auxiliary Tasks. WWW 2022.
        https://arxiv.org/abs/2203.06801 (code: github.com/facebookresearch/MetaBalance).
    """


    def __init__(
        self, relax_factor: float = 0.7, beta: float = 0.9, strategy: str = "reduce", **kwargs: Any
    ) -> None:
        if not 0.0 <= relax_factor <= 1.0:
            raise ValueError(f"relax_factor must be in [0, 1]. Received: relax_factor={relax_factor}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1). Received: beta={beta}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={strategy!r}")
        super().__init__(**kwargs)
        self.relax_factor = float(relax_factor)
        self.beta = float(beta)
        self.strategy = strategy

    def combine_gradients(self, gradients: list[Any], losses: dict[str, Any]) -> Any:
        stacked = ops.stack([ops.cast(g, "float32") for g in gradients])
        norms = self.moving_norms(stacked)
        target = norms[self.target_index]
        adapt = ops.not_equal(ops.arange(len(gradients)), self.target_index)
        if self.strategy == "reduce":
            adapt = ops.logical_and(adapt, norms > target)
        elif self.strategy == "enlarge":
            adapt = ops.logical_and(adapt, norms < target)
        # A zero gradient stays zero: its ratio is set to 1 rather than target / 0.
        ratio = ops.where(norms > 0.0, target / ops.where(norms > 0.0, norms, 1.0), 1.0)
        scale = ops.where(adapt, ratio * self.relax_factor + (1.0 - self.relax_factor), 1.0)
        combined = ops.sum(stacked * scale[:, None], axis=0)
        return ops.cast(combined, gradients[0].dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(relax_factor=self.relax_factor, beta=self.beta, strategy=self.strategy)
        return config
