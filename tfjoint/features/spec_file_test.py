"""Spec files: every spec round-trips through its dict, and a bad spec fails in one line that
names the key."""

import json
import pathlib

import pytest

from tfjoint.features import DATASETS, TaskSpec
from tfjoint.features.spec_file import (
    SourceSpec,
    SpecError,
    load_spec_file,
    spec_from_dict,
    spec_to_dict,
)

SHOP = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "shop.yaml"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_builtin_spec_round_trips_through_json(name):
    spec = DATASETS[name]
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec


def test_the_shipped_yaml_spec_loads_with_its_column_mapping():
    spec, source = load_spec_file(str(SHOP))
    assert spec.name == "shop" and spec.label_keys == ("click", "purchase", "dwell")
    assert spec.task("purchase").parent == "click" and spec.task("dwell").type == "regression"
    assert spec.sequence.behaviors == ("view", "cart", "buy") and spec.tokens[0].name == "title"
    assert source.column("scenario") == "page" and source.column("user_id") == "user_id"
    assert source.text == ("title",) and source.eval_fraction == 0.25
    assert spec_from_dict(spec_to_dict(spec)) == spec


def _base():
    return {"name": "d", "categorical": ["user_id", "item_id"], "dense": ["price"],
            "tasks": [{"name": "click"}, {"name": "buy", "parent": "click"}]}


def _with(**changes):
    config = _base()
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    return config


BAD = [
    (_with(colour="red"), r"spec: colour: is not a spec key"),
    (_with(tasks=None), r"lacks the key 'tasks'"),
    (_with(dense="price"), r"spec: dense: must be a list of non-empty strings\. Received: 'price'"),
    (_with(tasks=[{"name": "click"}, {"name": "buy", "parent": "clik"}]),
     r"spec: tasks\[1\]\.parent: 'clik' is not a task; tasks are \['click', 'buy'\]"),
    (_with(tasks=[{"name": "click", "type": "ranking"}]), r"tasks\[0\]\.type: must be 'binary' or 'regression'"),
    (_with(tasks=[{"name": "click", "weight": -1}]), r"tasks\[0\]\.weight: must be >= 0"),
    (_with(tasks=[{"name": "click", "lr": 1}]), r"tasks\[0\]\.lr: is not a task key"),
    (_with(tasks=[{"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}]), r"form a cycle"),
    (_with(tasks=[{"name": "click"}, {"name": "click"}]), r"names must be unique\. Received duplicates: \['click'\]"),
    (_with(categorical=["user_id", "price"]), r"dense: 'price' is also in categorical"),
    (_with(categorical=["scenario"]), r"categorical: 'scenario' is reserved"),
    (_with(sequence={"item_feature": "sku", "behaviors": ["view"]}),
     r"sequence\.item_feature: must name a categorical feature \['user_id', 'item_id'\]\. Received: 'sku'"),
    (_with(sequence={"item_feature": "item_id", "behaviors": []}), r"sequence\.behaviors: must not be empty"),
    (_with(tokens=[{"name": "title", "max_len": 0}]), r"tokens\[0\]\.max_len: must be >= 1"),
    (_with(min_auc={"price": 0.6}), r"min_auc\.price: is not a binary task; binary tasks are \['click', 'buy'\]"),
    (_with(calibration_bounds=[0.5]), r"calibration_bounds: must be \[low, high\] or null"),
    (_with(vocabulary_budgets={"price": {"top_k": 5}}),
     r"vocabulary_budgets\.price: is not a categorical or token feature; those are \['user_id', 'item_id'\]"),
    (_with(vocabulary_budgets={"user_id": {"num_oov_buckets": 5}}), r"vocabulary_budgets\.user_id: takes top_k \(required\)"),
    (_with(vocabulary_budgets={"user_id": {"top_k": 0}}), r"vocabulary_budgets\.user_id\.top_k: must be >= 1"),
]


@pytest.mark.parametrize("config, message", BAD)
def test_a_bad_spec_fails_in_one_line_naming_the_key(config, message):
    with pytest.raises(SpecError, match=message) as info:
        spec_from_dict(config)
    assert "\n" not in str(info.value)


def test_a_vocabulary_budget_survives_the_dict_the_pipeline_passes_to_its_components():
    from tfjoint.features import VocabularyBudget

    spec = spec_from_dict(_with(vocabulary_budgets={"user_id": {"top_k": 40, "num_oov_buckets": 8}}))
    assert spec.vocabulary_budgets == {"user_id": VocabularyBudget(top_k=40, num_oov_buckets=8)}
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec


def test_a_good_spec_builds_the_dataclasses():
    spec = spec_from_dict(_with(scenarios=["home", "search"], min_auc={"click": 0.6}))
    assert spec.tasks == (TaskSpec("click"), TaskSpec("buy", parent="click"))
    assert spec.num_scenarios == 2 and spec.min_auc == {"click": 0.6}


@pytest.mark.parametrize("source, message", [
    ({"columns": {"sku": "item"}}, r"source\.columns\.sku: is not a key of the spec"),
    ({"text": ["price"]}, r"source\.text: 'price' is not a token feature"),
    ({"eval_fraction": 1.0}, r"source\.eval_fraction: must be in \(0, 1\)"),
    ({"list_separator": "||"}, r"source\.list_separator: must be one character"),
    ({"split": "x"}, r"source\.split: is not a source key"),
])
def test_a_bad_source_section_names_its_key(tmp_path, source, message):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({**_base(), "source": source}))
    with pytest.raises(SpecError, match=rf"^{path}: {message}"):
        load_spec_file(str(path))


def test_unparsable_files_and_missing_files_are_one_line(tmp_path):
    bad = tmp_path / "my.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=rf"^{bad}: not valid YAML") as info:
        load_spec_file(str(bad))
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="--spec .*nope.yaml is not a file"):
        load_spec_file(str(tmp_path / "nope.yaml"))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(SpecError, match=r"list\.json: must be a mapping"):
        load_spec_file(str(listed))


def test_source_defaults_read_each_key_from_its_own_column():
    assert SourceSpec().column("price") == "price" and SourceSpec().list_separator == "|"
