"""What the content-aware recommenders share: fixed item features, warm items, cold rows.

A model that reads a fixed feature vector ``f_i`` per item (VBPR, NOVA) stores it as a
non-trainable weight, marks the items with training rows as *warm* (``fit``), and replaces
the per-item id parameters of the *cold* items (never trained) as ``cold_start`` says when it
scores: ``"features"`` zeroes them (the item is known by its features only), ``"mean"``
replaces them by their mean over the warm items, ``"none"`` keeps the untrained rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

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
