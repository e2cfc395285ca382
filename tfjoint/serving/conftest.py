"""Fixtures of the serving unit tests: a small SavedModel with the pipeline's signature shape
(defined in toy.py, which ``tfjoint bench serve-faults`` uses too)."""

from __future__ import annotations

import pytest

from tfjoint.serving.toy import FEATURES, add_version, export_toy, raw_examples, serialized  # noqa: F401


@pytest.fixture(scope="session")
def toy_export(tmp_path_factory) -> str:
    """One exported toy model; tests copy it into version directories."""
    return export_toy(str(tmp_path_factory.mktemp("toy") / "export"))


@pytest.fixture()
def base_path(tmp_path, toy_export) -> str:
    """A model base path holding versions 1 and 2 of the toy model."""
    bp = str(tmp_path / "toy")
    add_version(bp, 1, toy_export)
    add_version(bp, 2, toy_export)
    return bp
