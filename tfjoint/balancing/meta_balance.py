"""MetaBalance: auxiliary gradients rescaled toward the target's magnitude, per tensor (He et al., WWW 2022)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.balancing.task_balancer import NormAveragingBalancer
from tfjoint.registry import register

STRATEGIES = ("both", "reduce", "enlarge")


@register(
    "metabalance",
    slot="balancer",
    family="balancing",
    reference="He, Feng, Cheng, Ji, Guo, Caverlee, MetaBalance: Improving Multi-Task Recommendations via "
    "Adapting Gradient Magnitudes of Auxiliary Tasks, WWW 2022",
)
class MetaBalance(NormAveragingBalancer):
    """Moves each auxiliary task's gradient magnitude toward the target task's, per parameter tensor.

    With ``G_tar`` the target task's gradient and ``G_aux,i`` the auxiliary ones on the
    shared parameters, for each shared parameter tensor ``theta`` separately (Algorithm 1
    of the paper; the authors' ``metabalance.py`` loops over the parameters ``p`` of the
    shared parameter group, each with its own ``p.norms``):

    - moving averages of the magnitudes, ``m_k,theta <- beta m_k,theta + (1 - beta)
      ||G_k,theta||`` (``norm_averages``, shape ``(K, T)`` for ``T`` tensors; the state
      starts at zero as in the authors' code, and ``beta = 0`` uses the current norms);
    - ``G_aux,i,theta <- (G_aux,i,theta * m_tar,theta / m_aux,i,theta) * r
      + G_aux,i,theta * (1 - r)`` (``scale`` below, ``r = relax_factor``), applied where
      ``strategy`` says: ``"both"`` always (the paper's strategy C and what the authors'
      code does: a larger auxiliary gradient is reduced, a smaller one enlarged),
      ``"reduce"`` only when ``m_aux,i,theta > m_tar,theta`` (strategy A), ``"enlarge"``
      only when ``m_aux,i,theta < m_tar,theta`` (strategy B);
    - the update is ``G_tar + sum_i G_aux,i``.

    The model passes the tensor layout (:meth:`bind_gradient_layout`); the per-tensor state
    is created then, the first time (``T`` is only known once the model has split its
    parameters), and saved with the model. Without a layout the vector is one tensor.
    Where ``m_aux,i,theta = 0`` the ratio is taken as 1 (the authors' code divides by it).

    Args:
        relax_factor: ``r`` in ``[0, 1]``; ``1`` gives every adjusted auxiliary gradient the
            target's magnitude, ``0`` leaves it unchanged.
        beta: moving-average factor in ``[0, 1)``.
        strategy: ``"both"`` (the authors'), ``"reduce"`` or ``"enlarge"``.
        target_task: the target task; defaults to the model's first task.

    Example:
    >>> from tfjoint.features import TaskSpec
    >>> balancer = MetaBalance(relax_factor=1.0, beta=0.0)
    >>> balancer.bind([TaskSpec("click"), TaskSpec("like")])
    >>> balancer.bind_gradient_layout([1, 1], ["shared/a", "shared/b"])
    >>> g = balancer.combine_gradients([keras.ops.array([1.0, 2.0]), keras.ops.array([4.0, 1.0])], {})
    >>> [round(float(v), 3) for v in g]
    [2.0, 4.0]

    Reference:
        He, Feng, Cheng, Ji, Guo, Caverlee. MetaBalance: Improving Multi-Task Recommendations
        via Adapting Gradient Magnitudes of Auxiliary Tasks. WWW 2022.
        https://arxiv.org/abs/2203.06801 (code: github.com/facebookresearch/MetaBalance,
        ``metabalance.py``).
    """

    # The (K, T) state needs the tensor layout, which bind does not know.
    builds_on_bind = False

    def __init__(
        self, relax_factor: float = 0.7, beta: float = 0.9, strategy: str = "both", **kwargs: Any
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

    def build(self, input_shape: Any = None) -> None:
        """Creates ``norm_averages`` of shape ``input_shape = (K, T)``."""
        self.norm_averages = self.add_weight(
            shape=tuple(input_shape), initializer="zeros", trainable=False, name="norm_averages", dtype="float32"
        )
        self.built = True

    def bind_gradient_layout(self, sizes: list[int], layers: list[str]) -> None:
        super().bind_gradient_layout(sizes, layers)
        if not self.built:
            self.build((len(self.tasks), len(sizes)))
        elif tuple(self.norm_averages.shape) != (len(self.tasks), len(sizes)):
            raise ValueError(
                f"MetaBalance keeps norms for {self.norm_averages.shape[1]} tensors. Received: {len(sizes)} tensors"
            )

    def get_build_config(self) -> dict[str, Any]:
        return {"input_shape": list(self.norm_averages.shape)} if self.built else {}

    def build_from_config(self, config: dict[str, Any]) -> None:
        if config:
            self.build(tuple(config["input_shape"]))

    def combine_gradients(self, gradients: list[Any], losses: dict[str, Any]) -> Any:
        stacked = ops.stack([ops.cast(g, "float32") for g in gradients])
        if self.gradient_sizes is None:
            self.bind_gradient_layout([stacked.shape[1]], [""])
        norms = self.beta * self.norm_averages + (1.0 - self.beta) * self.tensor_norms(stacked)
        self.norm_averages.assign(norms)
        target = norms[self.target_index][None, :]
        adapt = ops.not_equal(ops.arange(len(gradients)), self.target_index)[:, None]
        if self.strategy == "reduce":
            adapt = ops.logical_and(adapt, norms > target)
        elif self.strategy == "enlarge":
            adapt = ops.logical_and(adapt, norms < target)
        # A zero gradient stays zero: its ratio is set to 1 rather than target / 0.
        ratio = ops.where(norms > 0.0, target / ops.where(norms > 0.0, norms, 1.0), 1.0)
        scale = ops.where(adapt, ratio * self.relax_factor + (1.0 - self.relax_factor), 1.0)
        per_entry = ops.take(scale, self.tensor_ids(stacked.shape[1]), axis=1)
        combined = ops.sum(stacked * per_entry, axis=0)
        return ops.cast(combined, gradients[0].dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(relax_factor=self.relax_factor, beta=self.beta, strategy=self.strategy)
        return config
