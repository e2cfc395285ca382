"""Every notebook runs top to bottom (the quick start loads the pipeline's .keras model)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, synthetic_run, monkeypatch):
    monkeypatch.setenv("TFJOINT_KERAS_MODEL", synthetic_run.keras_model_path)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(
        o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    if path.stem == "quickstart":
        assert synthetic_run.keras_model_path in outputs
        assert "tasks: ['click', 'conversion', 'score']" in outputs
    if path.stem == "multi_behavior":
        assert "test: full ranking, training buys masked, validation-selected epoch" in outputs
    if path.stem == "multi_modal":
        assert "chance on cold items: HR@10 =" in outputs


def test_there_is_a_quickstart():
    assert any(p.stem == "quickstart" for p in NOTEBOOKS)
    assert os.path.getsize(NOTEBOOKS[0]) > 0
