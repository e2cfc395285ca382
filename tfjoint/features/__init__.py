"""Dataset specs, the built-in dataset catalog and their TFMD schemas.

- :mod:`tfjoint.features.specs`: the spec types (:class:`DatasetSpec`, :class:`TaskSpec`,
  ...) and the feature, scenario and sequence keys; a task spec owns the rows it is
  defined on (:meth:`TaskSpec.defined_rows`).
- :mod:`tfjoint.features.builtin`: the built-in datasets, their Evaluator thresholds,
  :data:`DATASETS` and :func:`get_dataset_spec`.
- :mod:`tfjoint.features.spec_file`: a spec as a dict (:func:`spec_to_dict`,
  :func:`spec_from_dict`) and a user's spec file, YAML or JSON (:func:`load_spec_file`).
- :mod:`tfjoint.features.schema`: the curated ``tfjoint/schemas/*.pbtxt`` (package data) generated from the specs
  (imported on its own: it needs ``tensorflow_metadata``).

Every name is re-exported here, so ``from tfjoint.features import MOVIELENS_100K, TaskSpec``
works.
"""

from tfjoint.features.builtin import (
    ALI_CCP_SAMPLE,
    ALIEXPRESS_SAMPLE,
    CENSUS_SAMPLE,
    DATASETS,
    DOUBAN_SAMPLE,
    MOVIELENS_100K,
    SYNTHETIC,
    get_dataset_spec,
)
from tfjoint.features.spec_file import SourceSpec, SpecError, load_spec_file, spec_from_dict, spec_to_dict
from tfjoint.features.specs import (
    PAD_INDEX,
    SCENARIO_FALLBACK_KEY,
    SCENARIO_KEY,
    SEQUENCE_BEHAVIORS_KEY,
    SEQUENCE_ITEMS_KEY,
    TIMESTAMP_KEY,
    DatasetSpec,
    SequenceSpec,
    VocabularyBudget,
    TaskSpec,
    TaskType,
    TokenFeature,
)

__all__ = [
    "ALIEXPRESS_SAMPLE",
    "ALI_CCP_SAMPLE",
    "CENSUS_SAMPLE",
    "DATASETS",
    "DOUBAN_SAMPLE",
    "DatasetSpec",
    "MOVIELENS_100K",
    "PAD_INDEX",
    "SCENARIO_FALLBACK_KEY",
    "SCENARIO_KEY",
    "SEQUENCE_BEHAVIORS_KEY",
    "SEQUENCE_ITEMS_KEY",
    "SYNTHETIC",
    "SequenceSpec",
    "SourceSpec",
    "SpecError",
    "VocabularyBudget",
    "TIMESTAMP_KEY",
    "TaskSpec",
    "TaskType",
    "TokenFeature",
    "get_dataset_spec",
    "load_spec_file",
    "spec_from_dict",
    "spec_to_dict",
]
