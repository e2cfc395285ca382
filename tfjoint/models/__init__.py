"""Model components (each registered in :mod:`tfjoint.registry`) and the joint-model builder."""

from tfjoint.models.adaptive_domain_interest import AdaptiveDomainInterest
from tfjoint.models.adaptive_information_transfer import AdaptiveInformationTransferMultiTask
from tfjoint.models.automatic_expert_selection import AutomaticExpertSelection
from tfjoint.models.behavior_pooling import BehaviorPooling
from tfjoint.models.cascade import ConditionalFromJoint
from tfjoint.models.dselect_k import DSelectKMixtureOfExperts
from tfjoint.models.entire_space import EntireSpaceCounterfactualMultiTask, EntireSpaceMultiTask
from tfjoint.models.feature_embedding import FeatureEmbedding
from tfjoint.models.gating_fusion import GatingFusion
from tfjoint.models.hierarchical_information_extraction import HierarchicalInformationExtractionNetwork
from tfjoint.models.hierarchical_scenario_network import HierarchicalScenarioNetwork
from tfjoint.models.hyper_network_adapter import HyperNetworkAdapter
from tfjoint.models.joint import JointModel, build_joint_model, input_shapes
from tfjoint.models.mixture_of_experts import MultiGateMixtureOfExperts, OneGateMixtureOfExperts
from tfjoint.models.mlp import MLP
from tfjoint.models.multi_domain_mixture_of_experts import MultiDomainMultiTaskMixtureOfExperts
from tfjoint.models.multi_scenario_lora import MultiScenarioLowRankAdaptation
from tfjoint.models.multi_scenario_multi_task_meta_learner import MultiScenarioMultiTaskMetaLearner
from tfjoint.models.parameter_and_embedding_personalized_network import ParameterAndEmbeddingPersonalizedNetwork
from tfjoint.models.partitioned_normalization import PartitionedNormalization
from tfjoint.models.progressive_layered_extraction import CustomizedGateControl, ProgressiveLayeredExtraction
from tfjoint.models.scenario_aware_ranking import ScenarioAwareRankingNetwork
from tfjoint.models.shared_and_task_specific_embeddings import SharedAndTaskSpecificEmbeddings
from tfjoint.models.shared_bottom import SharedBottom
from tfjoint.models.star import StarTopologyFullyConnected
from tfjoint.models.sub_network_routing import SubNetworkRouting

__all__ = [
    "MLP",
    "AdaptiveDomainInterest",
    "AdaptiveInformationTransferMultiTask",
    "AutomaticExpertSelection",
    "BehaviorPooling",
    "ConditionalFromJoint",
    "CustomizedGateControl",
    "DSelectKMixtureOfExperts",
    "EntireSpaceCounterfactualMultiTask",
    "EntireSpaceMultiTask",
    "FeatureEmbedding",
    "GatingFusion",
    "HierarchicalInformationExtractionNetwork",
    "HierarchicalScenarioNetwork",
    "HyperNetworkAdapter",
    "JointModel",
    "MultiDomainMultiTaskMixtureOfExperts",
    "MultiGateMixtureOfExperts",
    "MultiScenarioLowRankAdaptation",
    "MultiScenarioMultiTaskMetaLearner",
    "OneGateMixtureOfExperts",
    "ParameterAndEmbeddingPersonalizedNetwork",
    "PartitionedNormalization",
    "ProgressiveLayeredExtraction",
    "ScenarioAwareRankingNetwork",
    "SharedAndTaskSpecificEmbeddings",
    "SharedBottom",
    "StarTopologyFullyConnected",
    "SubNetworkRouting",
    "build_joint_model",
    "input_shapes",
]
