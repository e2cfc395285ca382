"""Multi-behavior layers (E^B): behavior-aware sequence encoders and multi-behavior recommenders.

- :class:`BehaviorPooling` (``behavior_pooling``, slot ``sequence_encoder``).
- :class:`BehaviorAwareAttention` (``behavior_attention``, slot ``sequence_encoder``): DIN's
  target attention over the sequence, pooled per behavior type.
- :class:`NeuralMultiTaskRecommendation` (``nmtr``, slot ``retrieval_model``): NMTR's
  per-behavior GMFs with cascaded predictions, fitted on an interaction log.
- :class:`MultiBehaviorGraphConvolutionNetwork` (``mbgcn``, slot ``retrieval_model``):
  MBGCN's behavior-aware propagation over the user-item and item-item graphs.
- :class:`MultiBehaviorSequenceEncoder` (``mbstr_encoder``, slot ``sequence_encoder``): MB-STR's
  encoder over the sequence with the candidate item appended.
- :class:`MultiBehaviorSequentialTransformer` (``mbstr``, slot ``retrieval_model``): MB-STR's
  behavior-pair attention, behavior-specific FFN and behavior-aware experts, cloze-trained
  (blocks: :class:`MultiBehaviorTransformerEncoder`, :class:`BehaviorAwareExperts`).
- :class:`ContrastiveMetaLearning` (``cml``, slot ``retrieval_model``): CML's per-behavior
  graph views with a meta-weighted contrast to the target behavior's view.
"""

from tfjoint.layers.multi_behavior.behavior_aware_attention import BehaviorAwareAttention
from tfjoint.layers.multi_behavior.behavior_pooling import BehaviorPooling
from tfjoint.layers.multi_behavior.contrastive_meta_learning import ContrastiveMetaLearning
from tfjoint.layers.multi_behavior.multi_behavior_graph_convolution_network import MultiBehaviorGraphConvolutionNetwork
from tfjoint.layers.multi_behavior.multi_behavior_sequential_transformer import MultiBehaviorSequentialTransformer
from tfjoint.layers.multi_behavior.multi_behavior_transformer import (
    BehaviorAwareExperts,
    BehaviorSpecificFeedForward,
    MultiBehaviorSequenceEncoder,
    MultiBehaviorTransformerEncoder,
)
from tfjoint.layers.multi_behavior.neural_multi_task_recommendation import NeuralMultiTaskRecommendation

__all__ = [
    "BehaviorAwareAttention",
    "BehaviorAwareExperts",
    "BehaviorSpecificFeedForward",
    "BehaviorPooling",
    "ContrastiveMetaLearning",
    "MultiBehaviorGraphConvolutionNetwork",
    "MultiBehaviorSequenceEncoder",
    "MultiBehaviorSequentialTransformer",
    "MultiBehaviorTransformerEncoder",
    "NeuralMultiTaskRecommendation",
]
