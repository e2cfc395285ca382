"""The built-in dataset catalog: every dataset tfjoint ships, with its Evaluator thresholds.

:data:`DATASETS` maps each spec's name to it; :func:`get_dataset_spec` looks one up by name.
"""

from __future__ import annotations

from tfjoint.features.specs import DatasetSpec, SequenceSpec, TaskSpec, TokenFeature

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
    """The built-in spec named ``name``; a ``ValueError`` that lists the known names if none."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}. Known datasets: {sorted(DATASETS)}"
        ) from None
