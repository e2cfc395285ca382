"""Multi-scenario layers: scenario adapters (partitioned normalization, STAR, SAR-Net, ADI, HAMUR,
HierRec, M-LoRA) and scenario-aware task architectures (PEPNet, M2M, HiNet, AESM2, M3oE).
"""

from tfjoint.layers.multi_scenario.adaptive_domain_interest import AdaptiveDomainInterest
from tfjoint.layers.multi_scenario.automatic_expert_selection import AutomaticExpertSelection
from tfjoint.layers.multi_scenario.hierarchical_information_extraction_network import HierarchicalInformationExtractionNetwork
from tfjoint.layers.multi_scenario.hierarchical_scenario_network import HierarchicalScenarioNetwork
from tfjoint.layers.multi_scenario.hyper_network_adapter import HyperNetworkAdapter
from tfjoint.layers.multi_scenario.multi_domain_multi_task_mixture_of_experts import MultiDomainMultiTaskMixtureOfExperts
from tfjoint.layers.multi_scenario.multi_scenario_low_rank_adaptation import MultiScenarioLowRankAdaptation
from tfjoint.layers.multi_scenario.multi_scenario_multi_task_meta_learner import MultiScenarioMultiTaskMetaLearner
from tfjoint.layers.multi_scenario.parameter_and_embedding_personalized_network import ParameterAndEmbeddingPersonalizedNetwork
from tfjoint.layers.multi_scenario.partitioned_normalization import PartitionedNormalization
from tfjoint.layers.multi_scenario.scenario_aware_ranking_network import ScenarioAwareRankingNetwork
from tfjoint.layers.multi_scenario.star_topology_fully_connected import StarTopologyFullyConnected

__all__ = [
    "AdaptiveDomainInterest",
    "AutomaticExpertSelection",
    "HierarchicalInformationExtractionNetwork",
    "HierarchicalScenarioNetwork",
    "HyperNetworkAdapter",
    "MultiDomainMultiTaskMixtureOfExperts",
    "MultiScenarioLowRankAdaptation",
    "MultiScenarioMultiTaskMetaLearner",
    "ParameterAndEmbeddingPersonalizedNetwork",
    "PartitionedNormalization",
    "ScenarioAwareRankingNetwork",
    "StarTopologyFullyConnected",
]
