"""Core layers and conventions every family builds on: argument checks, the MLP, the feature
embedding (the ``embedding`` slot), the experts-and-gates mix, gate monitoring, the scenario
convention and the slot contracts.
"""

from tfjoint.layers.core.feature_embedding import FeatureEmbedding
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.core.raw_inputs import RawInputs

__all__ = [
    "FeatureEmbedding",
    "MLP",
    "RawInputs",
]
