"""Multi-task architectures (the ``task_architecture`` slot): shared bottom, independent towers
(ESMM's BASE), MMoE/OMoE, CGC/PLE, DSelect-k, SNR, STEM, ESMM/ESCM2, AITM.
"""

from tfjoint.layers.multi_task.adaptive_information_transfer_multi_task import AdaptiveInformationTransferMultiTask
from tfjoint.layers.multi_task.dselect_k_mixture_of_experts import DSelectKMixtureOfExperts
from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceMultiTask, EntireSpaceCounterfactualMultiTask
from tfjoint.layers.multi_task.independent_task_towers import IndependentTaskTowers
from tfjoint.layers.multi_task.multi_gate_mixture_of_experts import MultiGateMixtureOfExperts, OneGateMixtureOfExperts
from tfjoint.layers.multi_task.progressive_layered_extraction import ProgressiveLayeredExtraction, CustomizedGateControl
from tfjoint.layers.multi_task.shared_and_task_specific_embeddings import SharedAndTaskSpecificEmbeddings
from tfjoint.layers.multi_task.shared_bottom import SharedBottom
from tfjoint.layers.multi_task.sub_network_routing import SubNetworkRouting

__all__ = [
    "AdaptiveInformationTransferMultiTask",
    "CustomizedGateControl",
    "DSelectKMixtureOfExperts",
    "EntireSpaceCounterfactualMultiTask",
    "EntireSpaceMultiTask",
    "IndependentTaskTowers",
    "MultiGateMixtureOfExperts",
    "OneGateMixtureOfExperts",
    "ProgressiveLayeredExtraction",
    "SharedAndTaskSpecificEmbeddings",
    "SharedBottom",
    "SubNetworkRouting",
]
