"""The single source of feature, label, scenario and sequence keys.

Every dataset that tfjoint trains on is described here by a :class:`DatasetSpec`. Loaders
write ``tf.Example`` records with exactly these keys, ``schemas/<dataset>.pbtxt`` is
generated from these specs (and a test checks they agree), the tf.Transform
``preprocessing_fn`` and the model builder read them, and the Evaluator config is derived
from them. No other module spells a feature key as a string literal.

Raw ``tf.Example`` format (what ExampleGen ingests):

- categorical features: one ``bytes`` value (ids are written as their decimal string);
- dense features: one ``float`` value;
- ``scenario``: one ``int64`` in ``[0, num_scenarios)``;
- behavior sequence: ``seq_items`` (``bytes``, variable length, ids in the vocabulary of
  the dataset's item feature) and ``seq_behaviors`` (``int64``, same length, behavior type
  ids starting at 1);
- token features (title tokens, genres, ...): ``bytes``, variable length;
- one ``float`` label per task, keyed by the task name.

Transformed format (what the Keras model consumes), produced by
:func:`tfjoint.pipeline.transform.preprocessing_fn`:

- categorical ids and token/sequence ids become ``int64`` indices with ``0`` = padding,
  ``1..V`` = vocabulary entries and ``V + 1`` = out-of-vocabulary, so an unknown id always
  takes a defined path;
- sequences and token lists are padded or truncated to their fixed ``max_len``;
- dense features are z-scored; ``scenario`` is clipped to ``[0, num_scenarios]`` where
  ``num_scenarios`` is the unknown-scenario fallback;
- labels pass through unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

SCENARIO_KEY = "scenario"
SEQUENCE_ITEMS_KEY = "seq_items"
SEQUENCE_BEHAVIORS_KEY = "seq_behaviors"
TIMESTAMP_KEY = "timestamp"
SCENARIO_FALLBACK_KEY = "scenario_fallback"
"""Serving output: 1 where the request's scenario was unknown and took the shared path."""

PAD_INDEX = 0
"""Index of padding in every transformed id feature."""

TaskType = Literal["binary", "regression"]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One prediction task of a joint model.

    Args:
        name: task name; also the label key and the output key of the model.
        type: ``"binary"`` (sigmoid output, binary cross-entropy) or ``"regression"``
            (linear output, mean squared error).
        loss: loss name; defaults to the task type's natural loss.
        weight: weight ``w_k`` of this task's loss in the joint objective.
        parent: name of the task this one is conditioned on (a cascade, e.g. ``like``
            given ``watch``). The task's loss and metrics only count rows whose parent
            label is 1.
    """

    name: str
    type: TaskType = "binary"
    loss: str | None = None
    weight: float = 1.0
    parent: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ("binary", "regression"):
            raise ValueError(
                f"task type must be 'binary' or 'regression'. Received: type={self.type!r}"
            )
        if self.weight < 0:
            raise ValueError(f"task weight must be >= 0. Received: weight={self.weight}")
        if self.parent == self.name:
            raise ValueError(f"a task cannot be its own parent. Received: {self.name!r}")

    @property
    def loss_name(self) -> str:
        if self.loss:
            return self.loss
        return "binary_crossentropy" if self.type == "binary" else "mean_squared_error"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, config: dict) -> TaskSpec:
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """A behavior sequence: the user's earlier items with one behavior type per item."""

    item_feature: str
    behaviors: tuple[str, ...]
    max_len: int = 20

    @property
    def num_behaviors(self) -> int:
        return len(self.behaviors)


@dataclasses.dataclass(frozen=True)
class TokenFeature:
    """A variable-length bag of string tokens (title words, genres): one modality."""

    name: str
    max_len: int


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Every key of one joint dataset, and how its Evaluator judges a model."""

    name: str
    categorical: tuple[str, ...]
    dense: tuple[str, ...]
    tasks: tuple[TaskSpec, ...]
    scenarios: tuple[str, ...] = ("all",)
    sequence: SequenceSpec | None = None
    tokens: tuple[TokenFeature, ...] = ()
    # Lower bounds on AUC of binary tasks and upper bounds on RMSE of regression tasks,
    # checked on the overall slice by the Evaluator before it blesses a model.
    min_auc: dict[str, float] = dataclasses.field(default_factory=dict)
    max_rmse: dict[str, float] = dataclasses.field(default_factory=dict)
    max_log_loss: float = 1.0
    # Calibration (mean prediction / mean label) bounds of binary tasks; None skips the check
    # (the tiny real samples have too few positives for it to mean anything).
    calibration_bounds: tuple[float, float] | None = (0.5, 2.0)

    @property
    def num_scenarios(self) -> int:
        return len(self.scenarios)

    @property
    def label_keys(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"unknown task {name!r}; {self.name} has {self.label_keys}")

    @property
    def feature_keys(self) -> tuple[str, ...]:
        """Model input keys (raw and transformed names are the same)."""
        keys = list(self.categorical) + list(self.dense) + [SCENARIO_KEY]
        if self.sequence:
            keys += [SEQUENCE_ITEMS_KEY, SEQUENCE_BEHAVIORS_KEY]
        keys += [t.name for t in self.tokens]
        return tuple(keys)


# ---------------------------------------------------------------------------------------
# The datasets.

MOVIELENS_100K = DatasetSpec(
    name="movielens-100k",
    categorical=("user_id", "item_id", "gender", "occupation"),
    dense=("release_year",),
    tasks=(
        TaskSpec("watch", "binary"),
        TaskSpec("like", "binary", parent="watch"),
        TaskSpec("rating", "regression", parent="watch", weight=0.5),
    ),
    scenarios=("age<25", "age25-34", "age>=35"),
    sequence=SequenceSpec(item_feature="item_id", behaviors=("like", "neutral", "dislike")),
    tokens=(TokenFeature("title_tokens", 8), TokenFeature("genres", 6)),
    min_auc={"watch": 0.75, "like": 0.6},
    max_rmse={"rating": 1.3},
    max_log_loss=0.7,
)

SYNTHETIC = DatasetSpec(
    name="synthetic",
    categorical=("user_id", "item_id", "user_segment"),
    dense=tuple(f"x{i}" for i in range(8)),
    tasks=(
        TaskSpec("click", "binary"),
        TaskSpec("conversion", "binary", parent="click"),
        TaskSpec("score", "regression", weight=0.5),
    ),
    scenarios=("home", "search", "detail"),
    sequence=SequenceSpec(item_feature="item_id", behaviors=("view", "cart", "buy"), max_len=10),
    tokens=(TokenFeature("item_tags", 4),),
    min_auc={"click": 0.65, "conversion": 0.6},
    max_rmse={"score": 1.5},
    max_log_loss=0.7,
)

ALI_CCP_SAMPLE = DatasetSpec(
    name="ali-ccp-sample",
    categorical=tuple(
        "f" + k
        for k in "101 121 122 124 125 126 127 128 129 205 206 207 210 216 508 509 702 853".split()
    )
    + ("f109_14", "f110_14", "f127_14", "f150_14"),
    dense=("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"),
    tasks=(TaskSpec("click", "binary"), TaskSpec("purchase", "binary", parent="click")),
    scenarios=("scenario1", "scenario2", "scenario3"),
    # 50 evaluation rows cannot show ranking skill; the Evaluator only refuses a model
    # whose probabilities are badly off.
    max_log_loss=1.0,
    calibration_bounds=None,
)

DOUBAN_SAMPLE = DatasetSpec(
    name="douban-sample",
    categorical=("user_id", "item_id", "living_place", "time_bin"),
    dense=("join_year",),
    tasks=(TaskSpec("rating", "binary"),),
    # The three Douban domains are the scenarios (Scenario-Wise-Rec's multi-domain setup).
    scenarios=("movie", "book", "music"),
    max_log_loss=1.0,
    calibration_bounds=None,
)

ALIEXPRESS_SAMPLE = DatasetSpec(
    name="aliexpress-sample",
    categorical=tuple(f"categorical_{i}" for i in range(1, 17)),
    dense=tuple(f"numerical_{i}" for i in range(1, 64)),
    tasks=(TaskSpec("click", "binary"), TaskSpec("conversion", "binary", parent="click")),
    max_log_loss=1.0,
    calibration_bounds=None,
)

CENSUS_SAMPLE = DatasetSpec(
    name="census-sample",
    categorical=(
        "class_of_worker", "industry_code", "occupation_code", "education",
        "enrolled_in_edu_inst_last_wk", "major_industry_code", "major_occupation_code",
        "race", "hispanic_origin", "sex", "member_of_a_labor_union", "reason_for_unemployment",
        "full_or_part_time_employment_stat", "tax_filer_status",
        "region_of_previous_residence", "state_of_previous_residence",
        "detailed_household_and_family_stat", "detailed_household_summary_in_household",
        "migration_code_change_in_msa", "migration_code_change_in_reg",
        "migration_code_move_within_reg", "live_in_this_house_1_year_ago",
        "migration_prev_res_in_sunbelt", "family_members_under_18", "country_of_birth_father",
        "country_of_birth_mother", "country_of_birth_self", "citizenship",
        "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
        "veterans_benefits", "year",
    ),
    dense=(
        "age", "wage_per_hour", "capital_gains", "capital_losses", "divdends_from_stocks",
        "num_persons_worked_for_employer", "weeks_worked_in_year",
    ),
    tasks=(TaskSpec("income", "binary"), TaskSpec("marital", "binary")),
    max_log_loss=1.0,
    calibration_bounds=None,
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (MOVIELENS_100K, SYNTHETIC, ALI_CCP_SAMPLE, DOUBAN_SAMPLE, ALIEXPRESS_SAMPLE, CENSUS_SAMPLE)
}


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}. Known datasets: {sorted(DATASETS)}"
        ) from None
