"""Every notebook runs top to bottom, and its committed outputs are those of its current code
(the quick start loads the pipeline's .keras model)."""

from __future__ import annotations

import os
from pathlib import Path

import importlib.util

import nbformat
import pytest
from nbclient import NotebookClient

_RUNNER = Path(__file__).resolve().parents[1] / "tools" / "execute_notebooks.py"
_SPEC = importlib.util.spec_from_file_location("execute_notebooks", _RUNNER)
execute_notebooks = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(execute_notebooks)
NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED_TEXT = {
    "quickstart": "tasks: ['click', 'conversion', 'score']",
    "multi_behavior": "test: full ranking, training buys masked, validation-selected epoch",
    "multi_modal": "chance on cold items: HR@10 =",
    "joint": "gRPC Predict matches the in-process signature",
}


def output_kinds(notebook: nbformat.NotebookNode) -> list[list[str]]:
    """Per code cell, the kinds of its outputs (stdout text, a table, a PNG, ...), in order."""
    kinds = []
    for cell in (c for c in notebook.cells if c.cell_type == "code"):
        cell_kinds = []
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                if output["name"] == "stdout":
                    cell_kinds.append("stdout")
            elif output["output_type"] == "error":
                cell_kinds.append("error")
            else:
                cell_kinds.append("+".join(sorted(k for k in output.get("data", {}) if k != "text/plain")) or "text")
        kinds.append([k for i, k in enumerate(cell_kinds) if i == 0 or k != cell_kinds[i - 1]])
    return kinds


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_and_its_committed_outputs_are_current(path, synthetic_run, monkeypatch):
    monkeypatch.setenv("TFJOINT_KERAS_MODEL", synthetic_run.keras_model_path)
    monkeypatch.setenv("TFJOINT_EVALUATION_DIR", synthetic_run.evaluation_dir)
    committed = nbformat.read(path, as_version=4)
    counts = [c.get("execution_count") for c in committed.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name} is not committed executed top to bottom (execution counts {counts}); "
        f"run: .venv/bin/python tools/execute_notebooks.py {path}")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    execute_notebooks.clean(notebook)  # as committed: without TensorFlow's start-up noise
    assert output_kinds(committed) == output_kinds(notebook), (
        f"{path.name}'s committed outputs are not those of its code; run: .venv/bin/python tools/execute_notebooks.py {path}")
    outputs = "".join(
        o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    if path.stem == "quickstart":
        assert synthetic_run.keras_model_path in outputs
        assert f"{synthetic_run.evaluation_dir} blessed: True" in outputs  # the TFMA result, read back
    if path.stem in EXPECTED_TEXT:
        assert EXPECTED_TEXT[path.stem] in outputs


def test_there_is_a_quickstart():
    assert any(p.stem == "quickstart" for p in NOTEBOOKS)
    assert os.path.getsize(NOTEBOOKS[0]) > 0
