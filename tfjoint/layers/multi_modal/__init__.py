"""Multi-modal layers (E^M): fusion of item modalities, and recommenders that read item content.

- :class:`GatingFusion` (``gating_fusion``, slot ``modality_encoder``).
- :class:`VisualBayesianPersonalizedRanking` (``vbpr``, slot ``retrieval_model``): BPR-MF
  plus a linear embedding of fixed item features, which also scores cold items.
"""

from tfjoint.layers.multi_modal.gating_fusion import GatingFusion
from tfjoint.layers.multi_modal.visual_bayesian_personalized_ranking import VisualBayesianPersonalizedRanking

__all__ = [
    "GatingFusion",
    "VisualBayesianPersonalizedRanking",
]
