"""The input embedding E: id fields, dense fields, the scenario, sequences and tokens."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from tfjoint import features
from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.core.contracts import (
    DENSE_INPUTS_KEY,
    SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY,
    SEQUENCE_ITEMS_KEY,
    sequence_tokens_key,
    task_fields_key,
)
from tfjoint.layers.core.embedding_table import EmbeddingTable
from tfjoint.layers.core.raw_inputs import dense_values
from tfjoint.layers.core.scenarios import map_unknown
from tfjoint.registry import register

NUMERIC_MODES = ("embedded", "raw", "normalized")


@register(
    "feature_embedding",
    slot="embedding",
    family="core",
    reference="Wang et al., Joint Modeling in Recommendations: A Survey, 2025 (E in E_merge = U(E, E^B, E^M))",
)
@keras.saving.register_keras_serializable(package="tfjoint")
class FeatureEmbedding(keras.layers.Layer):
    """Embeds every transformed feature of a joint dataset into ``embedding_dim`` vectors.

    Ids use the transformed-index convention of :mod:`tfjoint.features` (``0`` = padding,
    ``V + 1`` = out of vocabulary), so a table has ``V + 2`` rows. A dense feature ``x_j``
    becomes ``x_j * v_j`` with a learned vector ``v_j`` (``numeric="embedded"``, the
    default), or is output as it is beside the fields (``numeric="raw"``), or after a
    ``BatchNormalization`` (``numeric="normalized"``), as DeepCTR and torch-rechub feed
    dense features. The embedded form multiplies the first layer's input width by
    ``embedding_dim`` per dense feature, but a ``Dense`` over ``x_j v_j`` is a linear map
    of ``x_j``: the first layer has the same capacity, at about ``embedding_dim`` times its
    FLOPs for those inputs. It stays the default because it is what every tfjoint result
    was measured with (the profile of issue 17 found AUCs within +-0.013 either way); the
    raw form is the fast one (docs/training_speed.md). The scenario has its own table
    with one extra row: the unknown-scenario fallback; ``scenario_field=False`` leaves it
    out of the fields (the scenario input stays, for scenario-aware components; on a
    dataset with one scenario the field is a constant). Behavior-sequence items share the
    table of the item feature, and each position adds the embedding of its behavior type.

    With ``task_tables`` (asked for by a
    :class:`~tfjoint.layers.core.contracts.NeedsTaskEmbeddings` task architecture such as
    STEM), every task listed also gets its own table per categorical field, its own
    scenario table and its own dense vectors, and the fields embedded by them are output
    under ``fields_<task>``; the gradient of a loss that reads only ``fields_<task>``
    reaches only that task's tables. Sequences and tokens stay shared. Without
    ``task_tables`` (the default) the layer has exactly the variables and outputs it had
    before the argument existed.

    Args:
        vocab_sizes: vocabulary size ``V`` of every categorical and token feature.
        categorical: categorical feature keys, in order.
        dense: dense feature keys, in order.
        num_scenarios: number of known scenarios.
        embedding_dim: size of every embedding.
        sequence_item_feature: categorical feature whose table embeds ``seq_items``, or
            ``None`` when the dataset has no behavior sequence.
        num_behaviors: number of behavior types of the sequence.
        tokens: token feature keys (each has its own table).
        embeddings_initializer: initializer of the tables; each table draws with its own
            copy (see ``_fresh_initializer``).
        task_tables: task names that get their own field tables (default none).
        item_vectors: ``{name: width}`` of fixed item vectors (e.g. MiniLM title embeddings,
            computed offline): one frozen table per name, indexed by
            ``item_vector_feature``, filled with :meth:`set_item_vectors`; each vector is
            projected to ``embedding_dim`` by a learned ``Dense`` and output as a one-token
            modality ``tokens_<name>`` (mask 0 for an item whose row is all zero: padding,
            out of vocabulary, or no vector given).
        item_vector_feature: the categorical feature the vectors index (default:
            ``sequence_item_feature``).
        numeric: how dense features enter: ``"embedded"`` (``x_j v_j`` fields, default),
            ``"raw"`` or ``"normalized"`` (``(batch, len(dense))`` under ``dense_inputs``).
        scenario_field: whether the scenario is an embedded field (default True).
        sequence_content: also output every history position's content (asked for by a
            :class:`~tfjoint.layers.core.contracts.NeedsSequenceContent` sequence encoder
            such as NOVA's): ``sequence_items`` and ``sequence_behavior_embeddings``
            ``(batch, max_len, embedding_dim)``, the two terms of ``sequence``, and per item vector
            ``sequence_tokens_<name>`` ``(batch, max_len, 1, embedding_dim)`` with its mask
            ``sequence_tokens_<name>_mask`` ``(batch, max_len, 1)``, the same projected
            vectors as ``tokens_<name>``, looked up by each history item's id. Needs the
            sequence and ``item_vectors`` indexed by the sequence's item feature.

    Call arguments:
        inputs: dict of transformed features keyed as in :mod:`tfjoint.features`.

    Returns:
        A dict with ``fields`` ``(batch, num_fields, embedding_dim)``; when the dataset has
        a sequence, ``sequence`` ``(batch, max_len, embedding_dim)``, ``behaviors``
        ``(batch, max_len)`` behavior ids and ``sequence_mask`` (1.0 on real items) and
        ``target`` ``(batch, embedding_dim)``, the candidate item; and for each token
        feature ``tokens_<name>`` and ``tokens_mask_<name>``; for each task of
        ``task_tables``, ``fields_<task>`` shaped like ``fields``; for each item vector
        ``tokens_<name>`` ``(batch, 1, embedding_dim)`` and ``tokens_mask_<name>``; with
        ``numeric`` raw or normalized, ``dense_inputs`` ``(batch, len(dense))``
        (:data:`~tfjoint.layers.core.contracts.DENSE_INPUTS_KEY`) instead of dense fields.
    """

    def __init__(
        self,
        vocab_sizes: dict[str, int],
        categorical: list[str],
        dense: list[str],
        num_scenarios: int,
        embedding_dim: int = 16,
        sequence_item_feature: str | None = None,
        num_behaviors: int = 0,
        tokens: list[str] | tuple[str, ...] = (),
        embeddings_initializer: Any = "uniform",
        task_tables: list[str] | tuple[str, ...] = (),
        item_vectors: dict[str, int] | None = None,
        item_vector_feature: str | None = None,
        numeric: str = "embedded",
        scenario_field: bool = True,
        sequence_content: bool = False,
        **kwargs: Any,
    ) -> None:
        if numeric not in NUMERIC_MODES:
            raise ValueError(f"numeric must be one of {NUMERIC_MODES}. Received: numeric={numeric!r}")
        if not isinstance(scenario_field, bool):
            raise ValueError(f"scenario_field must be True or False. Received: scenario_field={scenario_field!r}")
        if not categorical and not scenario_field and (numeric != "embedded" or not dense):
            raise ValueError(
                "FeatureEmbedding needs at least one field: categorical features, the scenario field or "
                f"embedded dense features. Received: categorical=[], scenario_field=False, numeric={numeric!r}"
            )
        if task_tables and numeric != "embedded":
            raise ValueError(
                f"task_tables embed every field per task, so numeric must be 'embedded'. Received: numeric={numeric!r}"
            )
        super().__init__(**kwargs)
        self.numeric = numeric
        self.scenario_field = scenario_field
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.num_scenarios = positive_int("num_scenarios", num_scenarios)
        missing = [k for k in [*categorical, *tokens] if k not in vocab_sizes]
        if missing:
            raise ValueError(f"vocab_sizes has no entry for {missing}. Received keys: {sorted(vocab_sizes)}")
        if sequence_item_feature is not None and sequence_item_feature not in categorical:
            raise ValueError(
                "sequence_item_feature must be one of the categorical features. "
                f"Received: sequence_item_feature={sequence_item_feature!r}"
            )
        self.vocab_sizes = {k: int(v) for k, v in vocab_sizes.items()}
        self.categorical = list(categorical)
        self.dense = list(dense)
        self.sequence_item_feature = sequence_item_feature
        self.num_behaviors = int(num_behaviors)
        self.tokens = list(tokens)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        if (
            isinstance(task_tables, str)
            or len(set(task_tables)) != len(task_tables)
            or not all(isinstance(t, str) and t for t in task_tables)
        ):
            raise ValueError(
                f"task_tables must be unique non-empty task names. Received: task_tables={task_tables}"
            )
        self.task_tables = list(task_tables)
        self.item_vectors = {str(k): positive_int(f"item_vectors[{k!r}]", v) for k, v in (item_vectors or {}).items()}
        self.item_vector_feature = item_vector_feature or (sequence_item_feature if self.item_vectors else None)
        if self.item_vectors and self.item_vector_feature not in self.categorical:
            raise ValueError(
                "item_vectors need an item feature among the categorical features (item_vector_feature, or "
                f"the sequence item feature). Received: item_vector_feature={self.item_vector_feature!r}"
            )
        clash = [k for k in self.item_vectors if k in self.tokens]
        if clash:
            raise ValueError(f"item_vectors names must differ from the token features. Received: {clash}")
        self.sequence_content = bool(sequence_content)
        if self.sequence_content and (
            sequence_item_feature is None or not self.item_vectors or self.item_vector_feature != sequence_item_feature
        ):
            raise ValueError(
                "sequence_content looks each history item's vectors up by its id, so it needs a sequence and "
                "item_vectors indexed by its item feature (pipeline: --item-text-encoder minilm|hashed). Received: "
                f"sequence_item_feature={sequence_item_feature!r}, item_vectors={sorted(self.item_vectors)}, "
                f"item_vector_feature={self.item_vector_feature!r}"
            )

    def _table(self, name: str, rows: int) -> EmbeddingTable:
        """A ``(rows, embedding_dim)`` table drawn with its own copy of the initializer."""
        layer = EmbeddingTable(
            rows,
            self.embedding_dim,
            embeddings_initializer=self._fresh_initializer(),
            name=name,
            dtype=self.dtype_policy,
        )
        layer.build((None,))
        return layer

    def build(self, input_shape: Any) -> None:
        self._tables_drawn = 0  # seeds the copies of a seeded initializer (see _fresh_initializer)
        self.tables = {k: self._table(f"embedding_{k}", self.vocab_sizes[k] + 2) for k in self.categorical}
        self.token_tables = {k: self._table(f"embedding_{k}", self.vocab_sizes[k] + 2) for k in self.tokens}
        if self.scenario_field:
            self.scenario_table = self._table("embedding_scenario", self.num_scenarios + 1)
        if self.sequence_item_feature is not None:
            self.behavior_table = self._table("embedding_behavior", self.num_behaviors + 1)
        if self.dense and self.numeric == "normalized":
            self.dense_norm = keras.layers.BatchNormalization(name="dense_batch_norm", dtype=self.dtype_policy)
            self.dense_norm.build((None, len(self.dense)))
        if self.dense and self.numeric == "embedded":
            self.dense_vectors = self.add_weight(
                shape=(len(self.dense), self.embedding_dim),
                initializer="glorot_uniform",
                name="dense_vectors",
            )
        rows = self.vocab_sizes[self.item_vector_feature] + 2 if self.item_vectors else 0
        self.item_vector_tables, self.item_vector_projections = {}, {}
        for name, width in self.item_vectors.items():
            table = EmbeddingTable(rows, width, embeddings_initializer="zeros", trainable=False, name=f"vectors_{name}")
            table.build((None,))
            projection = keras.layers.Dense(self.embedding_dim, name=f"project_{name}", dtype=self.dtype_policy)
            projection.build((None, width))
            self.item_vector_tables[name], self.item_vector_projections[name] = table, projection
        # Created after the shared weights, so that without task tables nothing changes.
        # Flat dicts: a .keras file saves the layers of a dict, not of a dict of dicts.
        self.task_field_tables = {}
        self.task_scenario_tables = {}
        self.task_dense_vectors = {}
        for task in self.task_tables:
            for k in self.categorical:
                self.task_field_tables[f"{task}/{k}"] = self._table(f"embedding_{k}_{task}", self.vocab_sizes[k] + 2)
            if self.scenario_field:
                self.task_scenario_tables[task] = self._table(f"embedding_scenario_{task}", self.num_scenarios + 1)
            if self.dense:
                self.task_dense_vectors[task] = self.add_weight(
                    shape=(len(self.dense), self.embedding_dim),
                    initializer="glorot_uniform",
                    name=f"dense_vectors_{task}",
                )

    def _fresh_initializer(self) -> Any:
        """A copy of ``embeddings_initializer`` with its own seed: a fresh one when it is
        unseeded, else its seed plus the number of tables drawn before (reproducible).

        A Keras initializer fixes its seed when it is created, and its draws are stateless:
        the one instance would start every table with the same rows (row ``i`` of every
        field equal), which cost the peer-shaped ESMM (BatchNorm) 0.007 to 0.013 click AUC
        in one epoch of the issue-17 workload (docs/training_speed.md).
        """
        config = keras.initializers.serialize(self.embeddings_initializer)
        seed = config.get("config", {}).get("seed") if isinstance(config, dict) else None
        if isinstance(seed, int):
            config = {**config, "config": {**config["config"], "seed": seed + self._tables_drawn}}
        self._tables_drawn += 1
        return keras.initializers.deserialize(config)

    @staticmethod
    def _ids(x: Any, out_of_range: int | None = None) -> Any:
        """int32 ids; with ``out_of_range``, any id outside ``[0, out_of_range)`` becomes it.

        The transform already maps unknown values to the OOV index; this keeps raw Keras
        use (notebooks, hand-made batches) on the same defined path instead of a failed
        gather.
        """
        ids = ops.cast(x, "int32")
        if out_of_range is None:
            return ids
        inside = ops.logical_and(ids >= 0, ids < out_of_range)
        return ops.where(inside, ids, ops.full_like(ids, out_of_range))

    def _fields(
        self, inputs: dict[str, Any], tables: list[Any], scenario_table: Any, dense_vectors: Any
    ) -> Any:
        """``(batch, num_fields, d)``: the categorical fields, the scenario, the embedded dense fields."""
        # Categorical ids: 0 = padding, 1..V vocabulary, V + 1 = OOV (anything larger too).
        fields = [
            table(self._ids(inputs[k][:, 0], self.vocab_sizes[k] + 1))
            for k, table in zip(self.categorical, tables)
        ]
        if self.scenario_field:
            # Scenario ids: 0..P-1 known, P = unknown (any id outside [0, P) too).
            scenario = map_unknown(ops.cast(inputs[features.SCENARIO_KEY][:, 0], "int32"), self.num_scenarios)
            fields.append(scenario_table(scenario))
        if not self.dense or self.numeric != "embedded":
            return ops.stack(fields, axis=1)
        values = dense_values(inputs, self.dense, self.compute_dtype)
        dense = values[:, :, None] * ops.cast(dense_vectors, self.compute_dtype)[None]
        return ops.concatenate([ops.stack(fields, axis=1), dense], axis=1) if fields else dense

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> dict[str, Any]:
        shared = [self.tables[k] for k in self.categorical]
        vectors = self.dense_vectors if self.dense and self.numeric == "embedded" else None
        scenario_table = self.scenario_table if self.scenario_field else None
        out: dict[str, Any] = {"fields": self._fields(inputs, shared, scenario_table, vectors)}
        if self.dense and self.numeric != "embedded":
            values = dense_values(inputs, self.dense, self.compute_dtype)
            out[DENSE_INPUTS_KEY] = self.dense_norm(values, training=training) if self.numeric == "normalized" else values
        for task in self.task_tables:
            tables = [self.task_field_tables[f"{task}/{k}"] for k in self.categorical]
            vectors = self.task_dense_vectors.get(task)
            scenario_table = self.task_scenario_tables.get(task)
            out[task_fields_key(task)] = self._fields(inputs, tables, scenario_table, vectors)
        if self.sequence_item_feature is not None:
            table = self.tables[self.sequence_item_feature]
            oov = self.vocab_sizes[self.sequence_item_feature] + 1
            items = self._ids(inputs[features.SEQUENCE_ITEMS_KEY], oov)
            behaviors = self._ids(inputs[features.SEQUENCE_BEHAVIORS_KEY])
            item_embeddings, behavior_embeddings = table(items), self.behavior_table(behaviors)
            out["sequence"] = item_embeddings + behavior_embeddings
            out["behaviors"] = behaviors
            out["sequence_mask"] = ops.cast(ops.not_equal(items, features.PAD_INDEX), self.compute_dtype)
            out["target"] = table(self._ids(inputs[self.sequence_item_feature][:, 0], oov))
            if self.sequence_content:
                out[SEQUENCE_ITEMS_KEY], out[SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY] = item_embeddings, behavior_embeddings
                for name in self.item_vectors:
                    key = sequence_tokens_key(name)
                    out[key], out[f"{key}_mask"] = self._item_vector_tokens(name, items)
        for k in self.tokens:
            ids = self._ids(inputs[k], self.vocab_sizes[k] + 1)
            out[f"tokens_{k}"] = self.token_tables[k](ids)
            out[f"tokens_mask_{k}"] = ops.cast(ops.not_equal(ids, features.PAD_INDEX), self.compute_dtype)
        if self.item_vectors:
            ids = self._ids(inputs[self.item_vector_feature][:, 0], self.vocab_sizes[self.item_vector_feature] + 1)
            for name in self.item_vectors:
                out[f"tokens_{name}"], out[f"tokens_mask_{name}"] = self._item_vector_tokens(name, ids)
        return out

    def _item_vector_tokens(self, name: str, ids: Any) -> tuple[Any, Any]:
        """Item vector ``name`` of ``ids`` (any shape ``S``) as a one-token modality: the
        projected vectors ``S + (1, d)`` and the mask ``S + (1,)``, 0 for an all-zero row."""
        vectors = self.item_vector_tables[name](ids)
        present = ops.cast(ops.sum(ops.abs(ops.cast(vectors, "float32")), axis=-1) > 0, self.compute_dtype)
        return self.item_vector_projections[name](vectors)[..., None, :], present[..., None]

    def set_item_vectors(self, name: str, vectors: Any) -> None:
        """Fills the frozen table ``name`` from ``vectors`` ``(V, width)``, row ``i`` for
        vocabulary index ``i`` of ``item_vector_feature`` (transformed id ``i + 1``); padding
        and out-of-vocabulary rows stay zero (their mask is 0)."""
        if name not in self.item_vectors:
            raise ValueError(f"unknown item vectors {name!r}; this layer has {sorted(self.item_vectors)}")
        size, width = self.vocab_sizes[self.item_vector_feature], self.item_vectors[name]
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (size, width):
            raise ValueError(f"item vectors {name!r} must have shape ({size}, {width}). Received: {vectors.shape}")
        table = np.zeros((size + 2, width), np.float32)
        table[1 : size + 1] = vectors
        self.item_vector_tables[name].embeddings.assign(table)

    @property
    def num_fields(self) -> int:
        dense = len(self.dense) if self.numeric == "embedded" else 0
        return len(self.categorical) + int(self.scenario_field) + dense

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            vocab_sizes=self.vocab_sizes,
            categorical=self.categorical,
            dense=self.dense,
            num_scenarios=self.num_scenarios,
            embedding_dim=self.embedding_dim,
            sequence_item_feature=self.sequence_item_feature,
            num_behaviors=self.num_behaviors,
            tokens=self.tokens,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
            task_tables=self.task_tables,
            item_vectors=self.item_vectors,
            item_vector_feature=self.item_vector_feature,
            numeric=self.numeric,
            scenario_field=self.scenario_field,
            sequence_content=self.sequence_content,
        )
        return config
