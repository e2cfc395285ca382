"""GradCraft: magnitude adjustment, then global direction deconfliction (Bai et al., KDD 2024)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.balancing.task_balancer import NormAveragingBalancer
from tfjoint.registry import register

_FLOAT32_EPS = 1.1920929e-07


@register(
    "gradcraft",
    slot="balancer",
    family="balancing",
    reference="Bai, Zhang, Feng, Lu, Zang, Lei, Song, GradCraft: Elevating Multi-task Recommendations "
    "through Holistic Gradient Crafting, KDD 2024",
)
class GradCraft(NormAveragingBalancer):
    """Aligns every task gradient's norm toward the largest, then removes each gradient's
    conflict with *all* the gradients it conflicts with at once.

    On the full parameter vector, for tasks ``k = 1..K`` (section 3 of the paper and the
    authors' ``GlobalPCGradMagnitudePositive`` solver, ``solvers/
    global_pc_grad_magnitude_positive.py``, whose optimizer holds every parameter of the
    model): ``g_k`` is task ``k``'s gradient on every parameter that some task reaches,
    zeros where ``k`` does not (``gradient_scope = "all"``: task-specific parameters
    included, unlike the other gradient-level balancers, see
    :mod:`tfjoint.balancing.task_gradients`), and the result is applied to all of them.

    1. Magnitude adjustment. ``m_k <- beta m_k + (1 - beta) ||g_k||`` (``norms``; the
       authors run ``beta = 0``), then
       ``g_k <- tau g_k max_j m_j / m_k + (1 - tau) g_k`` (``adjusted``, ``tau = relax_factor``).
    2. Direction deconfliction, for each ``i`` separately and on the *adjusted* gradients:
       ``J_i = {j : g_i . g_j < 0}`` and ``G_i`` the ``|J_i| x P`` matrix of those ``g_j``.
       GradCraft looks for ``g_i' = g_i + G_i^T w_i`` with
       ``G_i g_i' = epsilon ||g_i|| [||g_j||]_{j in J_i}``, i.e.
       ``w_i = (G_i G_i^T)^+ (-G_i g_i + epsilon ||g_i|| [||g_j||]_j)`` (``weights``). With
       ``epsilon = 0`` this projects ``g_i`` onto the orthogonal complement of the span of
       all its conflicting gradients, so ``g_i' . g_j = 0`` for every ``j in J_i`` (PCGrad's
       sequential projections only guarantee this for the last one). The authors invert
       ``G_i G_i^T``; here the pseudo-inverse (through ``eigh``, tasks that do not conflict
       masked out) also covers linearly dependent conflicting gradients.
    3. The update, with ``reduction="mean"`` (the authors' solver): ``mean_i g_i'`` on the
       parameter tensors that every task's gradient reaches (non-zero), ``sum_i g_i'`` on
       the others; ``reduction="sum"``: ``sum_i g_i'`` everywhere, the plain sum the other
       balancers use.

    Args:
        relax_factor: ``tau`` in ``[0, 1]``: how far each norm moves toward the largest.
        beta: moving-average factor of the norms in ``[0, 1)``.
        epsilon: ``>= 0``; after deconfliction ``g_i' . g_j = epsilon ||g_i|| ||g_j||``, a
            small positive cosine with each formerly conflicting gradient.
        reduction: ``"mean"`` (the authors') or ``"sum"``, see step 3.
        target_task: see :class:`TaskBalancer` (unused: GradCraft treats tasks symmetrically).

    Example:
    >>> from tfjoint.features import TaskSpec
    >>> balancer = GradCraft(relax_factor=0.0)
    >>> balancer.bind([TaskSpec("click"), TaskSpec("like")])
    >>> balancer.bind_gradient_layout([1, 1], ["shared/kernel", "like/kernel"])
    >>> g = balancer.combine_gradients([keras.ops.array([1.0, 0.0]), keras.ops.array([-1.0, 1.0])], {})
    >>> [round(float(v), 3) for v in g]
    [0.25, 1.5]

    Reference:
        Bai, Zhang, Feng, Lu, Zang, Lei, Song. GradCraft: Elevating Multi-task
        Recommendations through Holistic Gradient Crafting. KDD 2024.
        https://arxiv.org/abs/2407.19682 (code: github.com/baiyimeng/GradCraft).
    """


    gradient_scope = "all"

    def __init__(
        self,
        relax_factor: float = 0.1,
        beta: float = 0.0,
        epsilon: float = 0.0,
        reduction: str = "mean",
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= relax_factor <= 1.0:
            raise ValueError(f"relax_factor must be in [0, 1]. Received: relax_factor={relax_factor}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1). Received: beta={beta}")
        if epsilon < 0.0:
            raise ValueError(f"epsilon must be >= 0. Received: epsilon={epsilon}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum'. Received: reduction={reduction!r}")
        super().__init__(**kwargs)
        self.relax_factor = float(relax_factor)
        self.beta = float(beta)
        self.epsilon = float(epsilon)
        self.reduction = reduction

    def adjust_magnitudes(self, stacked: Any) -> Any:
        """Step 1 on the ``(K, P)`` stacked gradients; updates the norm moving averages."""
        norms = self.moving_norms(stacked)
        # A zero gradient stays zero: its ratio is set to 1 rather than max / 0.
        ratio = ops.where(norms > 0.0, ops.max(norms) / ops.where(norms > 0.0, norms, 1.0), 1.0)
        scale = self.relax_factor * ratio + (1.0 - self.relax_factor)
        return stacked * scale[:, None]

    def deconflict(self, adjusted: Any) -> Any:
        """Step 2: the ``(K, P)`` deconflicted gradients ``g_i'``."""
        gram = ops.matmul(adjusted, ops.transpose(adjusted))
        conflicts = ops.cast(gram < 0.0, gram.dtype)  # row i: the mask of J_i (never i itself).
        # G_i G_i^T for every i at once, rows and columns outside J_i zeroed: (K, K, K).
        systems = gram[None, :, :] * conflicts[:, :, None] * conflicts[:, None, :]
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        right_hand_sides = conflicts * (-gram + self.epsilon * norms[:, None] * norms[None, :])
        eigenvalues, eigenvectors = ops.eigh(systems)
        tolerance = ops.max(ops.abs(eigenvalues), axis=1, keepdims=True) * (
            10.0 * len(self.tasks) * _FLOAT32_EPS
        )
        keep = eigenvalues > tolerance
        inverse_eigenvalues = ops.where(keep, 1.0 / ops.where(keep, eigenvalues, 1.0), 0.0)
        # w_i = V diag(1 / lambda) V^T b_i, the pseudo-inverse solution.
        coordinates = ops.einsum("iml,im->il", eigenvectors, right_hand_sides) * inverse_eigenvalues
        weights = ops.einsum("ikl,il->ik", eigenvectors, coordinates) * conflicts
        return adjusted + ops.matmul(weights, adjusted)

    def combine_gradients(self, gradients: list[Any], losses: dict[str, Any]) -> Any:
        stacked = ops.stack([ops.cast(g, "float32") for g in gradients])
        crafted = self.deconflict(self.adjust_magnitudes(stacked))
        merged = ops.sum(crafted, axis=0)
        if self.reduction == "mean":
            # The tensors every task reaches, from the gradients before crafting (the authors' has_grad).
            everyone = ops.all(self.tensor_norms(stacked) > 0.0, axis=0)
            merged = ops.where(ops.take(everyone, self.tensor_ids(stacked.shape[1])), merged / len(gradients), merged)
        return ops.cast(merged, gradients[0].dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(relax_factor=self.relax_factor, beta=self.beta, epsilon=self.epsilon, reduction=self.reduction)
        return config
