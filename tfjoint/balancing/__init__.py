"""Loss and gradient balancing strategies (the ``balancer`` slot of the joint model)."""

from tfjoint.balancing.base import FixedWeights, TaskBalancer
from tfjoint.balancing.dwa import DynamicWeightAverage
from tfjoint.balancing.gradcraft import GradCraft
from tfjoint.balancing.gradnorm import GradientNormalization
from tfjoint.balancing.metabalance import MetaBalance
from tfjoint.balancing.pcgrad import ProjectingConflictingGradients
from tfjoint.balancing.uncertainty import UncertaintyWeighting

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
