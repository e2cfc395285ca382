"""Multi-behavior layers (the ``sequence_encoder`` slot, E^B): behavior-aware sequence encoders.
"""

from tfjoint.layers.multi_behavior.behavior_pooling import BehaviorPooling

__all__ = [
    "BehaviorPooling",
]
