"""Top-K retrieval as a TF Serving SavedModel: the K best items computed inside the graph.

:func:`export_topk_model` writes a SavedModel of a fitted retrieval model
(:mod:`tfjoint.layers.retrieval`) and :func:`push` writes it under
``<base_path>/<name>/<version>/``, the layout that ``tensorflow/serving``'s
``--model_base_path`` and ``tfjoint serve`` watch. Every signature takes the serialized
``tf.Example`` batch the TF Serving Predict API carries (input ``examples``, a ``[None]``
string tensor; REST: ``{"instances": [{"b64": ...}, ...]}``) and uses only core TensorFlow
ops, so the export is valid for the real ``tensorflow/serving`` as well as for
:mod:`tfjoint.serving`.

Features of the example (all optional):

- ``user``: int64, the user index (0 .. num_users - 1) of the model's log. A missing
  ``user``, or an index outside that range, is a *cold user*.
- ``recent_items``: int64 list, the user's latest item indices of the model's trained
  behaviors, oldest first (sequence models: SASRec reads the last ``sequence_length`` of
  them; EASE reads the set of them as the user's row ``X_u``). Indices outside
  ``0 .. num_items - 1`` are dropped.
- ``exclude_items``: int64 list, item indices never returned (e.g. already bought).
- ``user_id``: bytes, the user's original id, when the export was given ``user_ids`` (the
  TFX retrieval pipeline passes its Transform vocabulary): looked up in the graph and used
  instead of ``user``; an id outside the vocabulary is a cold user. Integer ids are sent as
  their decimal string.

Signatures:

- ``serving_default`` -> ``top_k_items`` ``(batch, k)`` int64 item indices, best first;
  ``top_k_scores`` ``(batch, k)`` float32; ``top_k_item_ids`` ``(batch, k)`` (string or
  int64, ``item_ids[top_k_items]``) when ``item_ids`` is given. Excluded items get the
  score ``-inf`` before ``tf.math.top_k``; a row with fewer than ``k`` items left returns
  some excluded items with score ``-inf`` at its end. Ties go to the lower item index (as
  ``tf.math.top_k`` and a stable ``np.argsort(-scores)``).
- ``scores`` -> ``scores`` ``(batch, num_items)`` float32, every item's score (no
  exclusion): what an external evaluation or re-ranking reads.
- ``user_embedding`` -> ``user_embedding`` ``(batch, d)`` float32 (two-tower models only).
- ``item_embeddings`` -> ``item_embeddings`` ``(num_items, d)`` float32, row ``i`` for item
  index ``i``, plus ``item_ids`` ``(num_items,)`` when given (two-tower models only). Its
  ``examples`` input is ignored: send any one example (an empty one, ``b""``, will do);
  Predict needs an input. ``top_k_scores = user_embedding · item_embeddings^T`` row by row,
  so these two feed an external ANN index.

Models and the cold-user rule:

- BPR-MF, LightGCN (any :class:`~tfjoint.layers.retrieval.TwoTowerRecommender`), VBPR: the
  final user and item tables are copied into the export as variables (LightGCN: the
  propagated tables, so no graph is needed at serving; VBPR: ``[γ_u, θ_u, 1]`` and
  ``[γ_i, E f_i, β_i + β'·f_i]``, its item features thus fixed in the item table, cold items
  as its ``cold_start`` says). A cold user gets the mean of the
  final user table, ``(1/|U|) sum_u e_u``: a fixed, non-personalized vector (its scores are
  the items' mean score over the training users); ``recent_items`` is ignored.
- SASRec: the encoder runs in the graph on ``recent_items`` (+1, the last ``max_len``
  kept, left-padded with 0, as :meth:`score` builds the sequence from a log); ``user`` is
  ignored. A user with no ``recent_items`` is encoded from the all-padding sequence, which
  is also what ``score`` does for a user absent from ``history``. NOVA and MMMLP (SASRec
  subclasses) likewise, their candidate table ``M_i + E_c f_i`` in the graph.
- MB-STR: the encoder runs in the graph on ``recent_items`` with ``recent_behaviors``
  (int64 list, one behavior index per item, in the order of the model's ``behaviors``),
  the last ``max_len - 1`` kept, then the mask token with the target behavior, as
  :meth:`score` builds it from a log. A row whose ``recent_behaviors`` has another length
  than its ``recent_items`` (e.g. none sent) takes the target behavior for every item;
  pairs with an item or behavior out of range are dropped. The loaded SavedModel's
  ``behaviors`` attribute (a string tensor) names the behaviors in that order.
- ItemPop: the training counts for every user (``user`` and ``recent_items`` ignored); no
  embedding signatures.
- EASE: ``X_u B`` with ``X_u`` the binary row of ``recent_items`` (and ``score``'s
  popularity fallback for the items outside ``max_items``); no ``recent_items`` gives the
  all-zero row, as ``score`` for a user absent from ``history``; no embedding signatures.

Any other model raises a ValueError naming it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.retrieval import (
    EmbarrassinglyShallowAutoencoder,
    ItemPopularity,
    SelfAttentiveSequentialRecommendation,
    TwoTowerRecommender,
)
from tfjoint.layers.multi_behavior.multi_behavior_sequential_transformer import MultiBehaviorSequentialTransformer
from tfjoint.layers.multi_modal.visual_bayesian_personalized_ranking import VisualBayesianPersonalizedRanking

SIGNATURE_INPUT = "examples"
USER, RECENT_ITEMS, EXCLUDE_ITEMS, USER_ID = "user", "recent_items", "exclude_items", "user_id"
RECENT_BEHAVIORS = "recent_behaviors"
SUPPORTED = ("BPRMatrixFactorization", "LightGraphConvolutionNetwork", "SelfAttentiveSequentialRecommendation",
             "MultiBehaviorSequentialTransformer", "ItemPopularity", "EmbarrassinglyShallowAutoencoder",
             "VisualBayesianPersonalizedRanking")
TWO_TOWER = (TwoTowerRecommender, VisualBayesianPersonalizedRanking)  # models with final_tables()


def feature_spec() -> dict[str, Any]:
    """The ``tf.io.parse_example`` spec of a request (see the module docstring)."""
    return {
        USER: tf.io.FixedLenFeature([1], tf.int64, default_value=[-1]),
        RECENT_ITEMS: tf.io.RaggedFeature(tf.int64),
        EXCLUDE_ITEMS: tf.io.RaggedFeature(tf.int64),
        USER_ID: tf.io.FixedLenFeature([1], tf.string, default_value=[b""]),
        RECENT_BEHAVIORS: tf.io.RaggedFeature(tf.int64),
    }


def valid_items(items: tf.RaggedTensor, num_items: int) -> tf.RaggedTensor:
    """``items`` without the values outside ``[0, num_items)``."""
    return tf.ragged.boolean_mask(items, (items >= 0) & (items < num_items))


def left_padded(items: tf.RaggedTensor, length: int, width: int) -> tf.Tensor:
    """``(batch, width)`` int32: each row's last ``length`` items + 1, left-padded with 0
    (the layout of SASRec's ``last_items``)."""
    limits = tf.cast(items.row_limits(), tf.int64)[:, None]
    lengths = tf.minimum(tf.cast(items.row_lengths(), tf.int64), length)[:, None]
    source = limits - width + tf.range(width, dtype=tf.int64)[None, :]
    valid = source >= limits - lengths
    values = tf.concat([tf.zeros([1], tf.int64), items.values], axis=0)  # never gather from an empty tensor
    gathered = tf.gather(values, tf.where(valid, source + 1, 0))
    return tf.where(valid, tf.cast(gathered, tf.int32) + 1, 0)


def aligned_behaviors(items: tf.RaggedTensor, behaviors: tf.RaggedTensor, default: int) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """``(items, behaviors)`` with one behavior per item: a row whose ``behaviors`` has
    another length than its ``items`` (e.g. none sent) takes ``default`` for every item."""
    rows = tf.cast(items.value_rowids(), tf.int64)
    same = tf.equal(tf.cast(items.row_lengths(), tf.int64), tf.cast(behaviors.row_lengths(), tf.int64))
    same_value = tf.gather(same, rows)
    offset = tf.range(tf.shape(items.values, out_type=tf.int64)[0]) - tf.gather(tf.cast(items.row_starts(), tf.int64), rows)
    source = tf.gather(tf.cast(behaviors.row_starts(), tf.int64), rows) + offset
    values = tf.concat([tf.zeros([1], tf.int64), behaviors.values], axis=0)
    gathered = tf.gather(values, tf.where(same_value, source + 1, 0))
    return items, items.with_flat_values(tf.where(same_value, gathered, tf.cast(default, tf.int64)))


def multi_hot(items: tf.RaggedTensor, num_items: int) -> tf.Tensor:
    """``(batch, num_items)`` float32 with 1 at each row's items (duplicates count once)."""
    rows = tf.cast(items.value_rowids(), tf.int64)
    indices = tf.stack([rows, items.values], axis=1)
    shape = tf.stack([tf.cast(items.nrows(), tf.int64), tf.constant(num_items, tf.int64)])
    return tf.tensor_scatter_nd_max(tf.zeros(shape, tf.float32), indices, tf.ones_like(items.values, tf.float32))


class TopKModule(tf.Module):
    """What the SavedModel holds: the model's tables (or the model) and its scoring rule.

    ``user_vector(features)`` (two-tower models) and ``scores(features)`` map parsed
    features to ``(batch, d)`` and ``(batch, num_items)``; :func:`export_topk_model` wraps
    them in the signatures.
    """

    def __init__(self, model: Any, sequence_length: int | None) -> None:
        super().__init__(name="topk")
        if not isinstance(model, (*TWO_TOWER, SelfAttentiveSequentialRecommendation, MultiBehaviorSequentialTransformer,
                                  ItemPopularity, EmbarrassinglyShallowAutoencoder)):
            raise ValueError(f"export_topk_model supports {', '.join(SUPPORTED)}. Received: {type(model).__name__}")
        self.num_items = int(model.num_items)
        self.user_vector: Callable[[dict[str, Any]], tf.Tensor] | None = None
        self.item_table: Callable[[], tf.Tensor] | None = None
        if isinstance(model, SelfAttentiveSequentialRecommendation):
            self.init_sequence(model, sequence_length)
        elif isinstance(model, MultiBehaviorSequentialTransformer):
            self.init_behavior_sequence(model, sequence_length)
        elif sequence_length is not None:
            raise ValueError(f"sequence_length is for sequence models (SASRec, MB-STR). Received: sequence_length={sequence_length} for {type(model).__name__}")
        elif isinstance(model, TWO_TOWER):
            self.init_two_tower(model)
        elif isinstance(model, ItemPopularity):
            self.counts = tf.Variable(np.asarray(model.counts, np.float32), trainable=False, name="counts")
            self.scores = lambda features: tf.tile(self.counts[None, :], [tf.shape(features[USER])[0], 1])
        else:
            self.init_ease(model)
        if self.user_vector is not None:
            self.scores = lambda features: tf.matmul(
                tf.cast(self.user_vector(features), tf.float32), tf.cast(self.item_table(), tf.float32), transpose_b=True
            )

    def init_two_tower(self, model: Any) -> None:
        users, items = (np.asarray(t, np.float32) for t in model.final_tables())
        num_users = users.shape[0]
        self.user_table = tf.Variable(users, trainable=False, name="user_table")
        self.items = tf.Variable(items, trainable=False, name="item_table")
        self.cold_user = tf.Variable(users.mean(axis=0), trainable=False, name="cold_user")

        def user_vector(features: dict[str, Any]) -> tf.Tensor:
            user = features[USER][:, 0]
            known = (user >= 0) & (user < num_users)
            rows = tf.gather(self.user_table, tf.where(known, user, 0))
            return tf.where(known[:, None], rows, self.cold_user[None, :])

        self.user_vector, self.item_table = user_vector, lambda: tf.identity(self.items)

    def init_sequence(self, model: SelfAttentiveSequentialRecommendation, sequence_length: int | None) -> None:
        length = model.max_len if sequence_length is None else positive_int("sequence_length", sequence_length)
        if length > model.max_len:
            raise ValueError(f"sequence_length must be <= max_len={model.max_len}. Received: sequence_length={sequence_length}")
        self.model = model

        def user_vector(features: dict[str, Any]) -> tf.Tensor:
            sequences = left_padded(valid_items(features[RECENT_ITEMS], self.num_items), length, model.max_len)
            return model(sequences, training=False)[:, -1]

        self.user_vector = user_vector
        self.item_table = lambda: tf.convert_to_tensor(model.output_table())[1:]  # NOVA: M_i + E_c f_i

    def init_behavior_sequence(self, model: MultiBehaviorSequentialTransformer, sequence_length: int | None) -> None:
        model.require_behaviors()
        width = model.max_len - 1  # the last position is the query (mask token, target behavior)
        length = width if sequence_length is None else positive_int("sequence_length", sequence_length)
        if length > width:
            raise ValueError(f"sequence_length must be <= max_len - 1 = {width}. Received: sequence_length={sequence_length}")
        self.model = model
        # what recent_behaviors indexes; a variable, so that the SavedModel keeps it for evaluators
        self.behaviors = tf.Variable(model.behaviors, dtype=tf.string, trainable=False, name="behaviors")
        target = model.behaviors.index(model.target)
        num_behaviors = len(model.behaviors)

        def user_vector(features: dict[str, Any]) -> tf.Tensor:
            items, behaviors = aligned_behaviors(features[RECENT_ITEMS], features[RECENT_BEHAVIORS], target)
            keep = (items.values >= 0) & (items.values < self.num_items) & (behaviors.values >= 0) & (behaviors.values < num_behaviors)
            items, behaviors = (tf.ragged.boolean_mask(x, items.with_flat_values(keep)) for x in (items, behaviors))
            batch = tf.shape(items.row_lengths())[0]
            tokens = tf.concat([left_padded(items, length, width), tf.fill([batch, 1], model.mask_token)], axis=1)
            kinds = tf.concat([left_padded(behaviors, length, width), tf.fill([batch, 1], target + 1)], axis=1)
            return model.query_vectors(tokens, kinds)

        self.user_vector = user_vector
        self.item_table = lambda: tf.convert_to_tensor(model.item_table())

    def init_ease(self, model: EmbarrassinglyShallowAutoencoder) -> None:
        if model.weights is None:
            raise ValueError("EmbarrassinglyShallowAutoencoder exports after fit")
        kept = np.asarray(model.kept, np.int64)
        self.weights = tf.Variable(np.asarray(model.weights, np.float32), trainable=False, name="ease_weights")
        self.kept = tf.Variable(kept, trainable=False, name="kept_items")
        partial = len(kept) < self.num_items
        column = np.full(self.num_items, -1, np.int64)
        column[kept] = np.arange(len(kept))
        self.column = tf.Variable(column, trainable=False, name="kept_column")
        popularity = np.asarray(model.popularity, np.float32)
        self.fallback = tf.Variable(popularity / (popularity.max() + 1.0), trainable=False, name="fallback")

        def scores(features: dict[str, Any]) -> tf.Tensor:
            rows = tf.gather(multi_hot(valid_items(features[RECENT_ITEMS], self.num_items), self.num_items), self.kept, axis=1)
            kept_scores = tf.matmul(rows, self.weights)
            if not partial:
                return kept_scores
            spread = tf.gather(kept_scores, tf.maximum(self.column, 0), axis=1)
            others = tf.reduce_min(kept_scores, axis=1, keepdims=True) - 2.0 + self.fallback[None, :]
            return tf.where(self.column[None, :] >= 0, spread, others)

        self.scores = scores


def excluded(scores: tf.Tensor, items: tf.RaggedTensor) -> tf.Tensor:
    """``scores`` with ``-inf`` at each row's ``items``."""
    rows = tf.cast(items.value_rowids(), tf.int64)
    indices = tf.stack([rows, items.values], axis=1)
    return tf.tensor_scatter_nd_update(scores, indices, tf.fill(tf.shape(items.values), -np.inf))


def export_topk_model(
    model: Any,
    export_dir: str,
    *,
    k: int = 10,
    sequence_length: int | None = None,
    item_ids: Any = None,
    user_ids: Any = None,
) -> str:
    """Writes the top-K SavedModel of a fitted retrieval ``model`` to ``export_dir``.

    The signatures, their inputs and outputs and the cold-user rule of each model are in
    the module docstring; they are valid for the real ``tensorflow/serving``.

    Args:
        model: a fitted BPR-MF, LightGCN, VBPR, SASRec, MB-STR, ItemPop or EASE.
        export_dir: the SavedModel directory (TF Serving: ``<base>/<name>/<version>``;
            :func:`push` picks it).
        k: items returned per request, ``1 <= k <= num_items``.
        sequence_length: SASRec only: how many of the latest ``recent_items`` the encoder
            reads (default and maximum: the model's ``max_len``).
        item_ids: optional ``(num_items,)`` original ids (strings or integers), e.g. the
            log's ``item_ids``; adds ``top_k_item_ids`` and ``item_ids`` to the outputs.
        user_ids: optional ``(num_users,)`` original user ids; requests may then name the
            user by ``user_id`` (looked up in the graph) instead of its index ``user``.

    Returns:
        ``export_dir``.
    """
    module = TopKModule(model, sequence_length)
    k = positive_int("k", k)
    if k > module.num_items:
        raise ValueError(f"k must be <= num_items={module.num_items}. Received: k={k}")
    ids = None
    if item_ids is not None:
        ids = np.asarray(item_ids)
        if ids.shape != (module.num_items,):
            raise ValueError(f"item_ids must have shape ({module.num_items},). Received: shape={ids.shape}")
        if ids.dtype.kind in "iu":
            ids = ids.astype(np.int64)
        elif ids.dtype.kind in "USO":
            ids = np.array([str(i).encode() if not isinstance(i, bytes) else i for i in ids.tolist()], dtype=object)
        else:
            raise ValueError(f"item_ids must be strings or integers. Received: dtype={ids.dtype}")
        module.item_ids = tf.constant(ids)
    if user_ids is not None:
        module.user_lookup = user_lookup_table(user_ids, getattr(model, "num_users", None))
    spec = feature_spec()
    example_spec = tf.TensorSpec([None], tf.string, name=SIGNATURE_INPUT)

    def parse(examples: tf.Tensor) -> dict[str, Any]:
        features = tf.io.parse_example(examples, spec)
        features[EXCLUDE_ITEMS] = valid_items(features[EXCLUDE_ITEMS], module.num_items)
        if user_ids is not None:
            named = features[USER_ID] != b""
            features[USER] = tf.where(named, module.user_lookup.lookup(features[USER_ID]), features[USER])
        return features

    @tf.function(input_signature=[example_spec])
    def serve(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        features = parse(examples)
        scores = excluded(tf.cast(module.scores(features), tf.float32), features[EXCLUDE_ITEMS])
        top = tf.math.top_k(scores, k=k, sorted=True)
        out = {"top_k_items": tf.cast(top.indices, tf.int64), "top_k_scores": top.values}
        if ids is not None:
            out["top_k_item_ids"] = tf.gather(module.item_ids, top.indices)
        return out

    @tf.function(input_signature=[example_spec])
    def scores(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": tf.cast(module.scores(parse(examples)), tf.float32)}

    signatures = {"serving_default": serve.get_concrete_function(), "scores": scores.get_concrete_function()}
    if module.user_vector is not None:

        @tf.function(input_signature=[example_spec])
        def user_embedding(examples: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"user_embedding": tf.cast(module.user_vector(parse(examples)), tf.float32)}

        @tf.function(input_signature=[example_spec])
        def item_embeddings(examples: tf.Tensor) -> dict[str, tf.Tensor]:
            del examples  # Predict needs an input; the table does not depend on it
            out = {"item_embeddings": tf.cast(module.item_table(), tf.float32)}
            if ids is not None:
                out["item_ids"] = tf.identity(module.item_ids)
            return out

        signatures["user_embedding"] = user_embedding.get_concrete_function()
        signatures["item_embeddings"] = item_embeddings.get_concrete_function()
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir


def user_lookup_table(user_ids: Any, num_users: int | None) -> tf.lookup.StaticHashTable:
    """An in-graph table from original user id (bytes; integers as decimal strings) to index."""
    ids = np.asarray(user_ids)
    if ids.ndim != 1 or (num_users is not None and len(ids) != num_users):
        raise ValueError(f"user_ids must have shape ({num_users},). Received: shape={ids.shape}")
    if ids.dtype.kind not in "iuUSO":
        raise ValueError(f"user_ids must be strings or integers. Received: dtype={ids.dtype}")
    keys = [i if isinstance(i, bytes) else str(i).encode() for i in ids.tolist()]
    if len(set(keys)) != len(keys):
        raise ValueError("user_ids must be unique")
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, tf.string), tf.range(len(keys), dtype=tf.int64)
    )
    return tf.lookup.StaticHashTable(initializer, default_value=-1)


def push(model: Any, base_path: str, name: str, version: int | None = None, **kwargs: Any) -> str:
    """Exports ``model`` to ``<base_path>/<name>/<version>/`` and returns that directory.

    ``version`` defaults to the current Unix time in seconds, as the TFX Pusher, or one
    more than the newest version already there if that is later. The SavedModel is written
    to a hidden sibling and renamed into place, so a watching server never loads a partial
    copy. ``kwargs`` go to :func:`export_topk_model`.
    """
    model_dir = os.path.join(base_path, name)
    os.makedirs(model_dir, exist_ok=True)
    existing = [int(c) for c in os.listdir(model_dir) if c.isdigit()]
    if version is None:
        version = max([int(time.time()), *(v + 1 for v in existing)])
    elif int(version) < 0 or int(version) in existing:
        raise ValueError(f"version must be a new non-negative integer. Received: version={version}, existing={sorted(existing)}")
    target = os.path.join(model_dir, str(int(version)))
    staging = os.path.join(model_dir, f".staging-{int(version)}")
    shutil.rmtree(staging, ignore_errors=True)
    export_topk_model(model, staging, **kwargs)
    os.rename(staging, target)
    return target


__all__ = ["export_topk_model", "feature_spec", "push", "TopKModule"]
