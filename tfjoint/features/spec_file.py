"""A dataset spec as a plain dict, and the spec file (YAML or JSON) a user writes for their data.

:func:`spec_to_dict` and :func:`spec_from_dict` map a :class:`~tfjoint.features.DatasetSpec`
to a JSON-able dict and back (``spec_from_dict(spec_to_dict(s)) == s``): the pipeline passes
that dict to Transform and Trainer in their ``custom_config``, so no component looks a spec up
by name. :func:`load_spec_file` reads a user's file: the dict's keys, plus an optional
``source`` section that says how the columns of their CSV or Parquet files map onto the keys
(:class:`SourceSpec`)::

    name: shop
    categorical: [user_id, item_id, device]
    dense: [price]
    scenarios: [home, search, detail]
    tasks:
      - {name: click, type: binary}
      - {name: purchase, type: binary, parent: click}
    sequence: {item_feature: item_id, behaviors: [view, cart, buy], max_len: 8}
    tokens: [{name: title, max_len: 6}]
    vocabulary_budgets: {user_id: {top_k: 100000, num_oov_buckets: 1000}}   # optional
    source: {columns: {scenario: page, seq_items: history_items}, text: [title]}

A bad spec fails in one line that names the file and the key, e.g.
``shop.yaml: tasks[1].parent: 'clik' is not a task; tasks are ['click', 'purchase']``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tfjoint.features.specs import (
    SCENARIO_KEY,
    SEQUENCE_BEHAVIORS_KEY,
    SEQUENCE_ITEMS_KEY,
    DatasetSpec,
    SequenceSpec,
    TaskSpec,
    TokenFeature,
    VocabularyBudget,
)

RESERVED_KEYS = (SCENARIO_KEY, SEQUENCE_ITEMS_KEY, SEQUENCE_BEHAVIORS_KEY)
_FIELDS = {f.name for f in dataclasses.fields(DatasetSpec)}
_REQUIRED = ("name", "categorical", "dense", "tasks")
_TASK_FIELDS = {f.name for f in dataclasses.fields(TaskSpec)}


class SpecError(ValueError):
    """A spec file or dict that does not describe a dataset; the message names the key."""


def spec_to_dict(spec: DatasetSpec) -> dict[str, Any]:
    """Every field of ``spec`` as JSON-able lists, dicts, strings and numbers."""
    return {
        "name": spec.name,
        "categorical": list(spec.categorical),
        "dense": list(spec.dense),
        "tasks": [t.to_json() for t in spec.tasks],
        "scenarios": list(spec.scenarios),
        "sequence": None if spec.sequence is None else {
            "item_feature": spec.sequence.item_feature,
            "behaviors": list(spec.sequence.behaviors),
            "max_len": spec.sequence.max_len,
        },
        "tokens": [{"name": t.name, "max_len": t.max_len} for t in spec.tokens],
        "min_auc": dict(spec.min_auc),
        "max_rmse": dict(spec.max_rmse),
        "max_log_loss": spec.max_log_loss,
        "calibration_bounds": None if spec.calibration_bounds is None else list(spec.calibration_bounds),
        "vocabulary_budgets": {key: dataclasses.asdict(b) for key, b in spec.vocabulary_budgets.items()},
    }


def _fail(where: str, message: str) -> SpecError:
    return SpecError(f"{where}: {message}")


def _names(value: Any, where: str, allow_empty: bool = True) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, f"must be a list of non-empty strings. Received: {value!r}")
    if not value and not allow_empty:
        raise _fail(where, "must not be empty")
    duplicates = sorted({v for v in value if list(value).count(v) > 1})
    if duplicates:
        raise _fail(where, f"names must be unique. Received duplicates: {duplicates}")
    return tuple(value)


def _number(value: Any, where: str, integer: bool = False, minimum: float | None = None) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise _fail(where, f"must be {'an integer' if integer else 'a number'}. Received: {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(where, f"must be >= {minimum}. Received: {value!r}")
    return value


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a mapping. Received: {value!r}")
    return value


def _tasks(value: Any, where: str) -> tuple[TaskSpec, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(where, f"must be a non-empty list of {{name, type, parent, loss, weight}}. Received: {value!r}")
    tasks = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        raw = _mapping(raw, at)
        unknown = sorted(set(raw) - _TASK_FIELDS)
        if unknown:
            raise _fail(f"{at}.{unknown[0]}", f"is not a task key; task keys are {sorted(_TASK_FIELDS)}")
        if not isinstance(raw.get("name"), str) or not raw["name"]:
            raise _fail(f"{at}.name", f"must be a non-empty string. Received: {raw.get('name')!r}")
        if "weight" in raw:
            _number(raw["weight"], f"{at}.weight", minimum=0)
        for key in ("loss", "parent"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise _fail(f"{at}.{key}", f"must be a string. Received: {raw[key]!r}")
        if raw.get("type", "binary") not in ("binary", "regression"):
            raise _fail(f"{at}.type", f"must be 'binary' or 'regression'. Received: {raw['type']!r}")
        try:
            tasks.append(TaskSpec.from_json(raw))
        except (TypeError, ValueError) as e:
            raise _fail(at, str(e)) from None
    names = _names([t.name for t in tasks], f"{where}[*].name")
    for i, task in enumerate(tasks):
        if task.parent is not None and task.parent not in names:
            raise _fail(f"{where}[{i}].parent", f"{task.parent!r} is not a task; tasks are {list(names)}")
    parents = {t.name: t.parent for t in tasks}
    for task in tasks:
        seen, node = {task.name}, task.parent
        while node is not None:
            if node in seen:
                raise _fail(f"{where}[*].parent", f"the parents of {task.name!r} form a cycle through {node!r}")
            seen.add(node)
            node = parents[node]
    return tuple(tasks)


def _sequence(value: Any, where: str, categorical: tuple[str, ...]) -> SequenceSpec | None:
    if value is None:
        return None
    raw = _mapping(value, where)
    unknown = sorted(set(raw) - {"item_feature", "behaviors", "max_len"})
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", "is not a sequence key; sequence keys are ['behaviors', 'item_feature', 'max_len']")
    item = raw.get("item_feature")
    if item not in categorical:
        raise _fail(f"{where}.item_feature", f"must name a categorical feature {list(categorical)}. Received: {item!r}")
    behaviors = _names(raw.get("behaviors"), f"{where}.behaviors", allow_empty=False)
    max_len = _number(raw.get("max_len", 20), f"{where}.max_len", integer=True, minimum=1)
    return SequenceSpec(item_feature=item, behaviors=behaviors, max_len=max_len)


def _tokens(value: Any, where: str) -> tuple[TokenFeature, ...]:
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of {{name, max_len}}. Received: {value!r}")
    out = []
    for i, raw in enumerate(value):
        raw = _mapping(raw, f"{where}[{i}]")
        unknown = sorted(set(raw) - {"name", "max_len"})
        if unknown:
            raise _fail(f"{where}[{i}].{unknown[0]}", "is not a token key; token keys are ['max_len', 'name']")
        _names([raw.get("name")], f"{where}[{i}].name")
        out.append(TokenFeature(raw["name"], _number(raw.get("max_len"), f"{where}[{i}].max_len", integer=True, minimum=1)))
    return tuple(out)


def _thresholds(value: Any, where: str, tasks: tuple[TaskSpec, ...], kind: str) -> dict[str, float]:
    raw = _mapping(value, where)
    of_kind = [t.name for t in tasks if t.type == kind]
    for name, bound in raw.items():
        if name not in of_kind:
            raise _fail(f"{where}.{name}", f"is not a {kind} task; {kind} tasks are {of_kind}")
        _number(bound, f"{where}.{name}")
    return {str(k): float(v) for k, v in raw.items()}


def _budgets(value: Any, where: str, ids: tuple[str, ...]) -> dict[str, VocabularyBudget]:
    out = {}
    for key, budget in _mapping(value, where).items():
        if key not in ids:
            raise _fail(f"{where}.{key}", f"is not a categorical or token feature; those are {list(ids)}")
        fields = _mapping(budget, f"{where}.{key}")
        unknown = sorted(set(fields) - {"top_k", "num_oov_buckets"})
        if unknown or "top_k" not in fields:
            raise _fail(f"{where}.{key}", f"takes top_k (required) and num_oov_buckets. Received: {fields!r}")
        out[str(key)] = VocabularyBudget(**{k: _number(v, f"{where}.{key}.{k}", integer=True, minimum=1)
                                            for k, v in fields.items()})
    return out


def spec_from_dict(config: Any, where: str = "spec") -> DatasetSpec:
    """The :class:`DatasetSpec` of ``config`` (as :func:`spec_to_dict` writes it); a
    :class:`SpecError` naming ``where`` and the offending key otherwise."""
    config = _mapping(config, where)
    unknown = sorted(set(config) - _FIELDS)
    if unknown:
        raise _fail(f"{where}: {unknown[0]}", f"is not a spec key; spec keys are {sorted(_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise _fail(where, f"lacks the key {missing[0]!r} (required: {list(_REQUIRED)})")
    name = config["name"]
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{where}: name", f"must be a non-empty string. Received: {name!r}")
    categorical = _names(config["categorical"], f"{where}: categorical")
    dense = _names(config["dense"], f"{where}: dense")
    tasks = _tasks(config["tasks"], f"{where}: tasks")
    scenarios = _names(config.get("scenarios", ["all"]), f"{where}: scenarios", allow_empty=False)
    sequence = _sequence(config.get("sequence"), f"{where}: sequence", categorical)
    tokens = _tokens(config.get("tokens", []), f"{where}: tokens")
    seen: dict[str, str] = {}
    for group, keys in (("categorical", categorical), ("dense", dense), ("tokens", [t.name for t in tokens]),
                        ("tasks", [t.name for t in tasks])):
        for key in keys:
            if key in RESERVED_KEYS:
                raise _fail(f"{where}: {group}", f"{key!r} is reserved for the scenario and behavior sequence; rename it")
            if key in seen:
                raise _fail(f"{where}: {group}", f"{key!r} is also in {seen[key]}; every key names one column")
            seen[key] = group
    bounds = config.get("calibration_bounds", (0.5, 2.0))
    if bounds is not None:
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise _fail(f"{where}: calibration_bounds", f"must be [low, high] or null. Received: {bounds!r}")
        bounds = (float(_number(bounds[0], f"{where}: calibration_bounds[0]")),
                  float(_number(bounds[1], f"{where}: calibration_bounds[1]")))
    return DatasetSpec(
        name=name,
        categorical=categorical,
        dense=dense,
        tasks=tasks,
        scenarios=scenarios,
        sequence=sequence,
        tokens=tokens,
        min_auc=_thresholds(config.get("min_auc", {}), f"{where}: min_auc", tasks, "binary"),
        max_rmse=_thresholds(config.get("max_rmse", {}), f"{where}: max_rmse", tasks, "regression"),
        max_log_loss=float(_number(config.get("max_log_loss", 1.0), f"{where}: max_log_loss", minimum=0)),
        calibration_bounds=bounds,
        vocabulary_budgets=_budgets(config.get("vocabulary_budgets", {}), f"{where}: vocabulary_budgets",
                                    categorical + tuple(t.name for t in tokens)),
    )


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """How the columns of a user's CSV or Parquet files map onto a spec's keys.

    Args:
        columns: ``{spec key: file column}`` for keys whose column has another name (the
            scenario key is ``scenario``, the sequence keys ``seq_items`` and ``seq_behaviors``);
            any other key is read from the column of the same name.
        list_separator: separates the values of a sequence or token cell (``"a|b|c"``).
        text: token features whose column is free text: lowercased and split on whitespace.
        eval_fraction: the share of rows, drawn with a fixed seed, held out as the eval split.
    """

    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    list_separator: str = "|"
    text: tuple[str, ...] = ()
    eval_fraction: float = 0.2

    def column(self, key: str) -> str:
        return self.columns.get(key, key)


def source_from_dict(config: Any, spec: DatasetSpec, where: str = "spec") -> SourceSpec:
    at = f"{where}: source"
    raw = _mapping({} if config is None else config, at)
    fields = {f.name for f in dataclasses.fields(SourceSpec)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise _fail(f"{at}.{unknown[0]}", f"is not a source key; source keys are {sorted(fields)}")
    keys = list(spec.feature_keys) + list(spec.label_keys)
    columns = _mapping(raw.get("columns", {}), f"{at}.columns")
    for key, column in columns.items():
        if key not in keys:
            raise _fail(f"{at}.columns.{key}", f"is not a key of the spec; keys are {keys}")
        _names([column], f"{at}.columns.{key}")
    separator = raw.get("list_separator", "|")
    if not isinstance(separator, str) or len(separator) != 1:
        raise _fail(f"{at}.list_separator", f"must be one character. Received: {separator!r}")
    text = _names(raw.get("text", []), f"{at}.text")
    tokens = [t.name for t in spec.tokens]
    for name in text:
        if name not in tokens:
            raise _fail(f"{at}.text", f"{name!r} is not a token feature; token features are {tokens}")
    fraction = _number(raw.get("eval_fraction", 0.2), f"{at}.eval_fraction", minimum=0)
    if not 0 < fraction < 1:
        raise _fail(f"{at}.eval_fraction", f"must be in (0, 1). Received: {fraction!r}")
    return SourceSpec(dict(columns), separator, text, float(fraction))


def read_spec_text(path: str) -> Any:
    """The parsed content of a ``.yaml``/``.yml`` (PyYAML) or ``.json`` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--spec {path} is not a file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
        reason = " ".join(str(e).split())
        raise SpecError(f"{path}: not valid {'YAML' if path.endswith(('.yaml', '.yml')) else 'JSON'}: {reason}") from None


def load_spec_file(path: str) -> tuple[DatasetSpec, SourceSpec]:
    """The dataset spec and the column mapping of a user's spec file (YAML or JSON)."""
    config = _mapping(read_spec_text(path), path)
    config = dict(config)
    source = config.pop("source", None)
    spec = spec_from_dict(config, where=path)
    return spec, source_from_dict(source, spec, where=path)
