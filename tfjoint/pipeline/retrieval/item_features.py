"""Fixed item features for the retrieval pipeline's feature models (VBPR), aligned to Transform's
item vocabulary.

Kinds (the ``item_features`` hparam, ``--item-features``):

- ``minilm``: all-MiniLM-L6-v2 embeddings (384 dims) of each item's text, computed once by the
  :func:`~tfjoint.pipeline.item_embeddings.ItemTextEmbeddings` component (Beam) before the
  Trainer; MovieLens-100K's text is ``"Title (year). Genre, Genre"``, other datasets need a TSV
  of ``item_id<TAB>text`` (``--item-texts``);
- ``hashed``: the same component with the signed hashed bag of tokens (no weights needed);
- ``metadata``: MovieLens-100K's 19 genre flags and standardized release year
  (:func:`tfjoint.datasets.multimodal.movielens_multimodal`), computed in the Trainer;
- ``none``: no features (id-only models).

The encoder and its tf-text ops never enter the Transform or serving graphs: the Trainer reads
the vectors, orders them by the item vocabulary (row ``i`` for item index ``i``; an item
without a vector gets zeros, counted in the training summary) and the model keeps them as a
fixed table, which the export folds into its item table.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import numpy as np

KINDS = ("minilm", "hashed", "metadata", "none")
TEXT_KINDS = ("minilm", "hashed")
TEXT_DATASET = "movielens-100k"  # the only built-in dataset with item texts and metadata
COMPONENT_ID = "ItemTextEmbeddings"


def takes_features(model: str) -> bool:
    """Whether the registered retrieval model ``model`` is built with ``item_features``."""
    from tfjoint import catalog

    return "item_features" in inspect.signature(catalog.get(model, slot="retrieval_model").cls.__init__).parameters


def check(kind: str | None, model: str, dataset: str, item_texts: str = "") -> str:
    """The kind to use (``None``: ``minilm`` for a feature model, else ``none``); a bad
    combination is a ValueError of one line naming the flag."""
    feature_model = takes_features(model)
    if kind is None:
        kind = "minilm" if feature_model else "none"
    if kind not in KINDS:
        raise ValueError(f"--item-features must be one of {KINDS}. Received: {kind!r}")
    if feature_model and kind == "none":
        raise ValueError(f"--item-features none: model {model!r} needs item features ({', '.join(KINDS[:3])})")
    if not feature_model and kind != "none":
        raise ValueError(f"--item-features {kind}: model {model!r} takes no item features (use none)")
    if kind == "metadata" and dataset != TEXT_DATASET:
        raise ValueError(f"--item-features metadata needs --dataset {TEXT_DATASET} (genres and year). Received: {dataset}")
    if kind in TEXT_KINDS and dataset != TEXT_DATASET and not item_texts:
        raise ValueError(f"--item-features {kind} needs --item-texts (a TSV of item_id<TAB>text) for --dataset {dataset}")
    if item_texts and not os.path.isfile(item_texts):
        raise ValueError(f"--item-texts must be a file. Received: {item_texts}")
    return kind


def resolve(kind: str, dataset: str) -> tuple[str, str]:
    """``(kind actually used, one line saying which and why)``: ``minilm`` falls back to
    ``metadata`` on MovieLens-100K, else to ``hashed``, when the MiniLM weights cannot be had."""
    if kind == "minilm":
        from tfjoint.modality import minilm

        try:
            where = minilm.ensure_weights()
        except minilm.WeightsUnavailable as err:
            fallback = "metadata" if dataset == TEXT_DATASET else "hashed"
            return fallback, f"item features: {fallback} ({describe(fallback)}), because the MiniLM weights are unavailable: {err}"
        return kind, f"item features: minilm ({describe(kind)}), weights found in {where}"
    return kind, f"item features: {kind} ({describe(kind)}), by --item-features (default: minilm for feature models, else none)"


def describe(kind: str) -> str:
    return {
        "minilm": "all-MiniLM-L6-v2 text embeddings, 384 dims, by the ItemTextEmbeddings component",
        "hashed": "signed hashed bag of tokens of the item text, 384 dims, by the ItemTextEmbeddings component",
        "metadata": "MovieLens genres and standardized year, 20 dims",
        "none": "id-only model",
    }[kind]


def load_for_vocabulary(config: dict[str, Any], item_ids: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The Trainer's fixed item features for the vocabulary ``item_ids`` and a summary;
    ``(None, ...)`` for ``none``."""
    kind = config.get("item_features", "none")
    if kind == "none":
        return None, {"kind": "none"}
    if kind == "metadata":
        from tfjoint.datasets.multimodal import movielens_multimodal

        data = movielens_multimodal(cold_fraction=0.0)
        ids, vectors, source = data.log.item_ids, data.item_features, "tfjoint.datasets.multimodal.movielens_multimodal"
    elif kind in TEXT_KINDS:
        from tfjoint.modality.item_text import load_item_vectors
        from tfjoint.pipeline.item_embeddings import FILENAME
        from tfjoint.pipeline.runners import latest_version

        source = os.path.join(latest_version(os.path.join(config["item_features_dir"], "*")), FILENAME)
        ids, vectors = load_item_vectors(source)
    else:
        raise ValueError(f"item_features must be one of {KINDS}. Received: {kind!r}")
    from tfjoint.modality.item_text import aligned_vectors

    features, missing = aligned_vectors(item_ids, ids, vectors)
    if missing == len(features):
        raise ValueError(f"no item of the vocabulary has a vector in {source} (item ids differ?)")
    if missing:
        logging.warning("tfjoint: %d of %d items have no %s vector; they get zeros", missing, len(features), kind)
    return features, {"kind": kind, "source": source, "dim": int(features.shape[1]), "items": len(features), "missing": missing}
