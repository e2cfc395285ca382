"""Multi-behavior layers (E^B): behavior-aware sequence encoders (the ``sequence_encoder``
slot) and MBGCN (``mbgcn``, the ``retrieval_model`` slot).
"""

from tfjoint.layers.multi_behavior.behavior_pooling import BehaviorPooling
from tfjoint.layers.multi_behavior.multi_behavior_graph_convolution_network import MultiBehaviorGraphConvolutionNetwork

__all__ = [
    "BehaviorPooling",
    "MultiBehaviorGraphConvolutionNetwork",
]
