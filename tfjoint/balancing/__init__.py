"""Loss and gradient balancing strategies (the ``balancer`` slot of the joint model)."""

from tfjoint.balancing.base import FixedWeights, TaskBalancer
from tfjoint.balancing.uncertainty import UncertaintyWeighting

__all__ = ["FixedWeights", "TaskBalancer", "UncertaintyWeighting"]
