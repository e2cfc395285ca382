"""Multi-modal layers (E^M): fusion of item modalities, and recommenders that read item content.

Fusion layers (slot ``modality_encoder``), each over the per-modality encodings of
:class:`ModalityFusion`, with a defined path for a missing modality:

- :class:`GatingFusion` (``gating_fusion``): sigmoid gates over the encodings.
- :class:`EarlyFusion` (``early_fusion``): concatenation and projection; a missing modality
  is imputed with a learned default.
- :class:`LateFusion` (``late_fusion``): a learned weighted mean over the present modalities.
- :class:`AttentionFusion` (``attention_fusion``): per-item attention over the present
  modalities.

Recommenders as modality encoders (slot ``modality_encoder``,
:mod:`~tfjoint.layers.multi_modal.item_content_encoders`), ``E^M`` from the item's content
alone, beside its id embedding:

- :class:`VisualContentEncoder` (``vbpr_encoder``): VBPR's content term ``E f_i``.
- :class:`BootstrapContentEncoder` (``bm3_encoder``): BM3's projected modality view, aligned
  with the item's id embedding by BM3's bootstrap loss (or InfoNCE) as an auxiliary loss.

A recommender as the behavior-sequence encoder (slot ``sequence_encoder``), reading every
history item's content (:class:`~tfjoint.layers.core.contracts.NeedsSequenceContent`):

- :class:`NoninvasiveSequenceEncoder` (``nova_encoder``): NOVA's non-invasive self-attention
  over the history, side information (positions, behaviors, item vectors) in the queries
  and keys only, the values from the item id embeddings.
- :class:`MultiModalMixerEncoder` (``mmmlp_encoder``): MMMLP's Feature Mixers over the
  history's id and item-vector sequences, then its Fusion Mixer.

Recommenders (slot ``retrieval_model``):

- :class:`VisualBayesianPersonalizedRanking` (``vbpr``): BPR-MF plus a linear embedding of
  fixed item features, which also scores cold items.
- :class:`FreezingAndDenoisingGraphs` (``freedom``): LightGCN on a degree-pruned user-item
  graph beside a frozen kNN item-item graph of the modality features; cold items score
  through their modality neighbours.
- :class:`BootstrapMultiModal` (``bm3``): LightGCN id views aligned with projected modality
  views by BM3's bootstrap loss (or InfoNCE, ``alignment="infonce"``), without negatives;
  :mod:`~tfjoint.layers.multi_modal.contrastive_alignment` holds the two losses.
- :class:`NoninvasiveSelfAttention` (``nova``): SASRec whose attention reads the item
  modality vectors (and positions) in its queries and keys only, the values from item ids.
- :class:`MultiModalMultilayerPerceptron` (``mmmlp``): MLP-Mixer stacks over the id and
  the modality sequences, a fusion mixer, SASRec's training.
"""

from tfjoint.layers.multi_modal.attention_fusion import AttentionFusion
from tfjoint.layers.multi_modal.bootstrap_multi_modal import BootstrapMultiModal
from tfjoint.layers.multi_modal.contrastive_alignment import ContrastiveAlignment
from tfjoint.layers.multi_modal.early_fusion import EarlyFusion
from tfjoint.layers.multi_modal.freezing_and_denoising_graphs import FreezingAndDenoisingGraphs
from tfjoint.layers.multi_modal.gating_fusion import GatingFusion
from tfjoint.layers.multi_modal.item_content_encoders import BootstrapContentEncoder, VisualContentEncoder
from tfjoint.layers.multi_modal.late_fusion import LateFusion
from tfjoint.layers.multi_modal.modality_fusion import ModalityFusion
from tfjoint.layers.multi_modal.multi_modal_mixer_encoder import MultiModalMixerEncoder
from tfjoint.layers.multi_modal.multi_modal_multilayer_perceptron import MultiModalMultilayerPerceptron
from tfjoint.layers.multi_modal.noninvasive_self_attention import NoninvasiveSelfAttention
from tfjoint.layers.multi_modal.noninvasive_sequence_encoder import NoninvasiveSequenceEncoder
from tfjoint.layers.multi_modal.visual_bayesian_personalized_ranking import VisualBayesianPersonalizedRanking

__all__ = [
    "AttentionFusion",
    "BootstrapContentEncoder",
    "BootstrapMultiModal",
    "ContrastiveAlignment",
    "EarlyFusion",
    "FreezingAndDenoisingGraphs",
    "GatingFusion",
    "LateFusion",
    "ModalityFusion",
    "MultiModalMixerEncoder",
    "MultiModalMultilayerPerceptron",
    "NoninvasiveSelfAttention",
    "NoninvasiveSequenceEncoder",
    "VisualContentEncoder",
    "VisualBayesianPersonalizedRanking",
]
