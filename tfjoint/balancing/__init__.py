"""Loss and gradient balancing strategies (the ``balancer`` slot of the joint model)."""

from tfjoint.balancing.task_balancer import FixedWeights, TaskBalancer
from tfjoint.balancing.dynamic_weight_average import DynamicWeightAverage
from tfjoint.balancing.grad_craft import GradCraft
from tfjoint.balancing.gradient_normalization import GradientNormalization
from tfjoint.balancing.meta_balance import MetaBalance
from tfjoint.balancing.projecting_conflicting_gradients import ProjectingConflictingGradients
from tfjoint.balancing.uncertainty_weighting import UncertaintyWeighting

__all__ = [
    "DynamicWeightAverage",
    "FixedWeights",
    "GradCraft",
    "GradientNormalization",
    "MetaBalance",
    "ProjectingConflictingGradients",
    "TaskBalancer",
    "UncertaintyWeighting",
]
