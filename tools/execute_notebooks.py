"""Executes the notebooks in place, so that they are committed with their outputs (tables,
plots) and a reader on GitHub sees the results without running them.

    .venv/bin/python tools/execute_notebooks.py [notebooks/NAME.ipynb ...]

TensorFlow's start-up noise on stderr is dropped from the stored outputs. The test suite
executes every notebook again (``tests/test_notebooks.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOISE = ("cuda", "cuFFT", "cuDNN", "cuBLAS", "TensorRT", "cpu_feature_guard", "AVX2", "rebuild TensorFlow",
         "WARNING:apache_beam", "local_rendezvous", "Unable to register", "oneDNN", "INFO:tensorflow")


def execute(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    clean(notebook)
    nbformat.write(notebook, path)
    print(f"executed {path}")


def clean(notebook: nbformat.NotebookNode) -> None:
    """Drops TensorFlow's and Beam's start-up and INFO noise from the stream outputs."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = "".join(line for line in output["text"].splitlines(True) if not any(n in line for n in NOISE))
        cell["outputs"] = [o for o in cell["outputs"] if not (o.get("output_type") == "stream" and not o["text"].strip())]


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    for name in sys.argv[1:] or sorted(str(p) for p in (root / "notebooks").glob("*.ipynb")):
        execute(Path(name))
