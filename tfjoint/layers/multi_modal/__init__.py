"""Multi-modal layers (the ``modality_encoder`` slot, E^M): fusion of item modalities.
"""

from tfjoint.layers.multi_modal.gating_fusion import GatingFusion

__all__ = [
    "GatingFusion",
]
