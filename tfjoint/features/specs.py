"""The spec types of a joint dataset and the keys every module shares.

Every dataset that tfjoint trains on is described by a :class:`DatasetSpec` (the built-in
ones are in :mod:`tfjoint.features.builtin`). Loaders write ``tf.Example`` records with
exactly these keys, ``tfjoint/schemas/<dataset>.pbtxt`` is generated from the specs by
:mod:`tfjoint.features.schema` (and a test checks they agree), the tf.Transform
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
  ``1..V`` = vocabulary entries and ``V + 1`` = out-of-vocabulary (``V + 1..V + b``, hashed,
  with a :class:`VocabularyBudget` of ``b`` buckets), so an unknown id always takes a
  defined path;
- sequences and token lists are padded or truncated to their fixed ``max_len``;
- dense features are z-scored; ``scenario`` is clipped to ``[0, num_scenarios]`` where
  ``num_scenarios`` is the unknown-scenario fallback;
- labels pass through unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

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
            label is 1 (see :meth:`defined_rows`).
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

    @property
    def row_weight_key(self) -> str | None:
        """The label whose value weights each row of this task: the parent's, or ``None``
        for a root task (every row counts). The Evaluator's example-weight key."""
        return self.parent

    def defined_rows(self, labels: Mapping[str, Any]) -> Any:
        """The ``float32`` weight, 0 or 1, of each row for this task: the rows it is defined on.

        A root task is defined on every row (all ones); a task with a ``parent`` only on the
        rows whose parent label is 1, so its weight is the parent's label. Labels are
        consistent along a chain (a child label is 0 wherever its parent's is), so a
        grandchild needs only its direct parent's label.

        Args:
            labels: label columns by task name, each ``(n,)`` or ``(n, 1)``; it must hold
                this task's label (for a root task) or its parent's (for a child).

        Returns:
            ``(n,)`` float32: a numpy array when the column read is a numpy array (or a list),
            otherwise a tensor computed with ``keras.ops`` (works on any backend and in a
            traced function).
        """
        column = labels[self.row_weight_key or self.name]
        if isinstance(column, (np.ndarray, np.generic, list, tuple)):
            flat = np.reshape(np.asarray(column, dtype="float32"), (-1,))
            return flat if self.row_weight_key else np.ones_like(flat)
        from keras import ops

        flat = ops.cast(ops.reshape(column, (-1,)), "float32")
        return flat if self.row_weight_key else ops.ones_like(flat)

    def outside_domain(self, values: Any) -> np.ndarray:
        """A boolean mask of the label ``values`` outside this task's domain: a binary label
        must be 0 or 1, a regression label finite."""
        values = np.asarray(values, dtype="float64")
        return ~np.isin(values, (0.0, 1.0)) if self.type == "binary" else ~np.isfinite(values)

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
class VocabularyBudget:
    """A cap on one id feature's vocabulary, for ids too many to embed one by one.

    Transform keeps the ``top_k`` most frequent training values (indices ``1..V``, ``V <=
    top_k``) and hashes every other value into one of ``num_oov_buckets`` buckets (indices
    ``V + 1..V + num_oov_buckets``): the hashing trick (Weinberger et al., Feature Hashing
    for Large Scale Multitask Learning, ICML 2009) for the long tail only. The model's
    table then has ``V + num_oov_buckets + 1`` rows whatever the number of raw ids, and
    Transform reports the fraction of training values that fell outside the ``top_k``.
    """

    top_k: int
    num_oov_buckets: int = 1

    def __post_init__(self) -> None:
        for name in ("top_k", "num_oov_buckets"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VocabularyBudget {name} must be an integer >= 1. Received: {name}={value!r}")


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
    # Per categorical or token feature, a cap on its vocabulary (see VocabularyBudget); a
    # feature not named keeps every training value and one out-of-vocabulary index.
    vocabulary_budgets: Mapping[str, VocabularyBudget] = dataclasses.field(default_factory=dict)

    @property
    def default_model_name(self) -> str:
        """The served model name when none is given: the dataset name with ``_`` for ``-``."""
        return self.name.replace("-", "_")

    @property
    def num_scenarios(self) -> int:
        return len(self.scenarios)

    @property
    def label_keys(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def vocabulary_budget(self, key: str) -> VocabularyBudget | None:
        """The budget of id feature ``key`` in ``vocabulary_budgets``; None (every training
        value, one out-of-vocabulary index) when it has none."""
        unknown = sorted(set(self.vocabulary_budgets) - set(self.categorical) - {t.name for t in self.tokens})
        if unknown:
            raise ValueError(f"vocabulary_budgets names {unknown}, not categorical or token features of {self.name}")
        return self.vocabulary_budgets.get(key)

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
