"""Top-K retrieval models (the ``retrieval_model`` slot, family ``retrieval``).

Each model fits on an :class:`~tfjoint.features.interactions.InteractionLog` and scores users
against the whole catalog (the protocol is in :mod:`tfjoint.layers.retrieval.base`):

- :class:`ItemPopularity` (``item_pop``): training counts.
- :class:`BPRMatrixFactorization` (``bpr_mf``): ``p_u · q_i`` with BPR (or a softmax).
- :class:`LightGraphConvolutionNetwork` (``lightgcn``): mean of linear graph propagations.
- :class:`SelfAttentiveSequentialRecommendation` (``sasrec``): causal self-attention.
- :class:`EmbarrassinglyShallowAutoencoder` (``ease``): the closed-form item-item model.
"""

from tfjoint.layers.retrieval.base import Recommender
from tfjoint.layers.retrieval.bpr_matrix_factorization import BPRMatrixFactorization
from tfjoint.layers.retrieval.embarrassingly_shallow_autoencoder import EmbarrassinglyShallowAutoencoder
from tfjoint.layers.retrieval.item_popularity import ItemPopularity
from tfjoint.layers.retrieval.light_graph_convolution_network import LightGraphConvolutionNetwork
from tfjoint.layers.retrieval.self_attentive_sequential_recommendation import SelfAttentiveSequentialRecommendation
from tfjoint.layers.retrieval.two_tower import TwoTowerRecommender

__all__ = [
    "BPRMatrixFactorization",
    "EmbarrassinglyShallowAutoencoder",
    "ItemPopularity",
    "LightGraphConvolutionNetwork",
    "Recommender",
    "SelfAttentiveSequentialRecommendation",
    "TwoTowerRecommender",
]
