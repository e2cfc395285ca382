"""What the content-aware recommenders share: fixed item features, warm items, cold rows.

A model that reads a fixed feature vector ``f_i`` per item (VBPR, NOVA, MMMLP) stores it as a
non-trainable weight, marks the items with training rows as *warm* (``fit``), and replaces
the per-item id parameters of the *cold* items (never trained) as ``cold_start`` says when it
scores: ``"features"`` zeroes them (the item is known by its features only), ``"mean"``
replaces them by their mean over the warm items, ``"none"`` keeps the untrained rows.

:class:`ContentSequenceModel` is what the SASRec-based ones (NOVA, MMMLP) share on top of
SASRec: the feature and warm-item weights, the candidate table ``M_i + E_c f_i`` and the
training on warm negatives.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import positive_int
from tfjoint.layers.retrieval.base import check_catalog, training_rows

COLD_START = ("features", "mean", "none")


def check_cold_start(cold_start: str) -> str:
    """``cold_start`` if it is one of :data:`COLD_START`; a one-line ValueError otherwise."""
    if cold_start not in COLD_START:
        raise ValueError(f"cold_start must be one of {COLD_START}. Received: cold_start={cold_start!r}")
    return cold_start


def check_item_features(features: Any, num_items: int, feature_dim: int | None) -> np.ndarray:
    """``features`` as a finite float32 ``(num_items, F)`` array (``F = feature_dim`` if given)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != num_items or features.shape[1] < 1:
        raise ValueError(
            f"item_features must have shape (num_items={num_items}, F >= 1). Received: shape={features.shape}"
        )
    if feature_dim is not None and int(feature_dim) != features.shape[1]:
        raise ValueError(f"feature_dim must equal item_features.shape[1]={features.shape[1]}. Received: feature_dim={feature_dim}")
    if not np.isfinite(features).all():
        raise ValueError("item_features must be finite. Received: NaN or inf entries")
    return features


def content_embedding(features: Any, projection: Any) -> Any:
    """VBPR's item content term ``θ_i = E f_i``: ``features`` ``(..., F)`` times ``projection``
    ``(F, D)`` (``E`` stored transposed), a linear map without bias, so an item without
    content (``f_i = 0``) gets 0. Shared by VBPR's scores and its joint-model encoder."""
    return ops.matmul(features, projection)


def warm_flags(items: np.ndarray, num_items: int) -> np.ndarray:
    """``(num_items,)`` float32: 1 for the items of ``items`` (those with training rows)."""
    return np.isin(np.arange(num_items), np.unique(items)).astype(np.float32)


def set_item_content(model: Any, train: Any, item_features: Any = None) -> None:
    """Before ``model.fit(train)``: checks the catalog, assigns ``item_features`` (when given)
    to ``model.item_features`` and marks the items with rows of ``model.behaviors`` warm."""
    check_catalog(train, model.num_items)
    if item_features is not None:
        model.item_features.assign(check_item_features(item_features, model.num_items, model.feature_dim))
    rows = training_rows(train, model.behaviors)
    if not len(rows.items):
        raise ValueError("the training log has no rows of the trained behaviors")
    model.warm_items.assign(warm_flags(rows.items, model.num_items))


def cold_adjusted(cold_start: str, warm: Any, *tables: Any) -> tuple[Any, ...]:
    """Each per-item table (rows = items, any trailing shape) with its cold rows (``warm = 0``)
    replaced as ``cold_start`` says (module docstring); warm rows unchanged."""
    if cold_start == "none":
        return tables
    out = []
    for table in tables:
        w = ops.reshape(ops.cast(warm, table.dtype), (-1,) + (1,) * (len(table.shape) - 1))
        if cold_start == "features":
            out.append(table * w)
        else:
            mean = ops.sum(table * w, axis=0, keepdims=True) / ops.maximum(ops.sum(w), 1.0)
            out.append(table * w + (1.0 - w) * mean)
    return tuple(out)


def check_content_arguments(
    model: str, num_items: int, item_features: Any, feature_dim: int | None, cold_start: str
) -> tuple[np.ndarray | None, int]:
    """``(item_features, feature_dim)`` checked (features as float32, or None when only
    ``feature_dim`` is given); ``model`` names the model in the errors."""
    num_items = positive_int("num_items", num_items)
    if item_features is None and feature_dim is None:
        raise ValueError(f"{model} needs item_features or feature_dim. Received: both None")
    if item_features is not None:
        item_features = check_item_features(item_features, num_items, feature_dim)
        feature_dim = item_features.shape[1]
    check_cold_start(cold_start)
    return item_features, positive_int("feature_dim", feature_dim)


class ContentSequenceModel:
    """Mixin for a SASRec subclass that knows items by a fixed feature vector too (NOVA, MMMLP).

    :meth:`build_content` adds the non-trainable ``item_features`` ``f_i`` and ``warm_items``
    weights and the candidate projection ``E_c`` (no bias). The candidate table is
    ``M_i + E_c f_i`` (:meth:`output_table`), the id rows of the cold items replaced as
    ``cold_start`` says (:func:`cold_adjusted`); :meth:`fit` marks the warm items (training
    rows of the trained behaviors) and draws the negatives among them only
    (:meth:`negative_pool`), so a cold item's id row never receives a gradient.
    """

    def build_content(self, item_features: np.ndarray | None, feature_dim: int, cold_start: str) -> None:
        self.feature_dim, self.cold_start = feature_dim, cold_start
        self.item_features = self.add_weight(
            shape=(self.num_items, feature_dim), initializer="zeros", trainable=False, name="item_features"
        )
        self.warm_items = self.add_weight(shape=(self.num_items,), initializer="ones", trainable=False, name="warm_items")
        if item_features is not None:
            self.item_features.assign(item_features)
        init = keras.initializers.GlorotUniform(self.seed)
        self.content_projection = keras.layers.Dense(self.hidden_dim, use_bias=False, kernel_initializer=init, name="content_projection")
        self.content_projection.build((None, feature_dim))

    def sequence_features(self, sequences: Any) -> Any:
        """``f_{i_t}`` per position ``(batch, L, F)`` (row 0 of the features at padding)."""
        return ops.take(self.item_features, ops.maximum(ops.cast(sequences, "int32") - 1, 0), axis=0)

    def output_table(self) -> Any:
        """``M_i + E_c f_i`` per item (cold id rows per ``cold_start``), padding row 0."""
        (ids,) = cold_adjusted(self.cold_start, self.warm_items, self.item_embedding.embeddings[1:])
        rows = ids + self.content_projection(self.item_features)
        return ops.concatenate([ops.zeros_like(rows[:1]), rows], axis=0)

    def negative_pool(self, rows: InteractionLog) -> np.ndarray:
        """The warm items (index + 1): a cold item is never a negative."""
        return np.flatnonzero(np.asarray(self.warm_items) > 0) + 1

    def fit(self, train: InteractionLog, *, item_features: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Sets the warm items (and ``item_features`` when given), then SASRec's training."""
        set_item_content(self, train, item_features)
        return super().fit(train, **kwargs)  # type: ignore[misc]

    def content_config(self) -> dict[str, Any]:
        """``feature_dim`` and ``cold_start`` (the features are saved as a weight)."""
        return {"feature_dim": self.feature_dim, "cold_start": self.cold_start}
