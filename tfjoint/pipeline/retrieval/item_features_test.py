"""Item features of the retrieval pipeline: the kind chosen, its fallback, and the alignment."""

from __future__ import annotations

import pytest

from tfjoint.modality import minilm
from tfjoint.pipeline.retrieval import item_features


def test_the_default_kind_follows_the_model():
    assert item_features.check(None, "vbpr", "movielens-100k") == "minilm"
    assert item_features.check(None, "bpr_mf", "synthetic") == "none"
    with pytest.raises(ValueError, match="--item-texts must be a file"):
        item_features.check("hashed", "vbpr", "synthetic", "/no/such/file.tsv")


def test_minilm_falls_back_to_metadata_on_movielens_else_hashed_and_says_why(monkeypatch):
    def unavailable(*args, **kwargs):
        raise minilm.WeightsUnavailable("offline")

    monkeypatch.setattr(minilm, "ensure_weights", unavailable)
    kind, line = item_features.resolve("minilm", "movielens-100k")
    assert kind == "metadata" and line.startswith("item features: metadata") and "unavailable: offline" in line
    assert item_features.resolve("minilm", "synthetic")[0] == "hashed"
    assert item_features.resolve("metadata", "movielens-100k")[0] == "metadata"
