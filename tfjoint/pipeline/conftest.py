"""A tiny synthetic dataset and its tf.Transform graph, analysed once per session; and the
check that no test modifies its inputs (``_inputs_unchanged``, also used by tests/)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from tfjoint import features
from tfjoint.datasets.examples import write_tfrecords
from tfjoint.datasets import samples
from tfjoint.features import SYNTHETIC
from tfjoint.pipeline import runners
from tfjoint.pipeline.transform import fit_transform_graph

# Files up to this size are compared by content (sha256), larger ones by size and mtime only:
# the shared samples (../shared/data, 3 MB in 15 files) hash in milliseconds per test.
HASH_LIMIT_BYTES = 64 << 20


def fingerprint(path: str) -> dict[str, tuple]:
    """``{file: (size, mtime_ns, sha256 or None above HASH_LIMIT_BYTES)}`` of every file under
    ``path`` (or of ``path`` itself when it is a file; ``{}`` when it does not exist)."""
    if os.path.isfile(path):
        files = [path]
    else:
        files = [os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
    out = {}
    for f in sorted(files):
        st = os.stat(f)
        digest = None
        if st.st_size <= HASH_LIMIT_BYTES:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
        out[f] = (st.st_size, st.st_mtime_ns, digest)
    return out


class InputWatch:
    """Fingerprints of input folders and files, taken when first watched; ``changes()`` lists
    every file modified, added or removed since."""

    def __init__(self, before: dict[str, dict[str, tuple]] | None = None):
        self.before = dict(before or {})

    def watch(self, path) -> None:
        key = os.path.abspath(os.fspath(path))
        if key not in self.before:
            self.before[key] = fingerprint(key)

    def changes(self) -> list[str]:
        found = []
        for root, before in self.before.items():
            after = fingerprint(root)
            found += [f"modified {f}" for f in sorted(set(before) & set(after)) if before[f] != after[f]]
            found += [f"added {f}" for f in sorted(set(after) - set(before))]
            found += [f"removed {f}" for f in sorted(set(before) - set(after))]
        return found


@pytest.fixture(scope="session", autouse=True)
def _shared_data_fingerprint() -> dict[str, dict[str, tuple]]:
    """The shared real-data samples, fingerprinted once, before any session fixture runs a pipeline."""
    try:
        root = os.path.abspath(samples.shared_data_dir())
    except FileNotFoundError:
        return {}
    return {root: fingerprint(root)}


@pytest.fixture(autouse=True)
def _inputs_unchanged(_shared_data_fingerprint, monkeypatch):
    """A user file is never modified (issue 19): after each test, every file under the shared
    samples and under every data root the test gave the pipeline (``runners.check_data_root``,
    which ``pipeline run --data-root`` and ``run_local(data_root=...)`` go through; fingerprinted
    when first given) must be unchanged, with none added or removed. Yields the InputWatch, so
    a test can watch other inputs it passes."""
    inputs = InputWatch(_shared_data_fingerprint)
    check_data_root = runners.check_data_root

    def watched(data_root: str) -> str:
        inputs.watch(data_root)
        return check_data_root(data_root)

    monkeypatch.setattr(runners, "check_data_root", watched)
    yield inputs
    changed = inputs.changes()
    assert not changed, f"the test changed its inputs: {changed[:10]}"


def synthetic_frame(users, items, scenarios, seqs, tags) -> pd.DataFrame:
    """Raw rows of the synthetic dataset; dense ``x_i`` of row ``j`` is ``j * (i + 1)``."""
    n = len(users)
    frame = pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "user_segment": ["s0"] * n,
            features.SCENARIO_KEY: scenarios,
            features.SEQUENCE_ITEMS_KEY: [list(s) for s in seqs],
            features.SEQUENCE_BEHAVIORS_KEY: [[1 + (j % 3) for j in range(len(s))] for s in seqs],
            "item_tags": tags,
            "click": [1.0, 0.0, 1.0, 0.0][:n],
            "conversion": [1.0, 0.0, 0.0, 0.0][:n],
            "score": [1.0, 2.0, 3.0, 4.0][:n],
        }
    )
    for i in range(8):
        frame[f"x{i}"] = np.arange(n, dtype="float32") * (i + 1)
    return frame


@pytest.fixture(scope="session")
def tiny_transform(tmp_path_factory):
    """``TFTransformOutput`` of four training rows (users u1-u3, items a-c, scenarios 0-2)."""
    root = tmp_path_factory.mktemp("data")
    train = synthetic_frame(["u1", "u2", "u1", "u3"], ["a", "b", "a", "c"], [0, 1, 2, 0],
                            [[], ["a"], ["a", "b"], ["c", "a", "b"]], [["t1"], ["t1", "t2"], [], ["t3"]])
    write_tfrecords({"train": train, "eval": train}, SYNTHETIC, root)
    return fit_transform_graph(str(root), SYNTHETIC, str(tmp_path_factory.mktemp("tft")))
