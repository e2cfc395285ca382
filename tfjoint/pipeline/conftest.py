"""A tiny synthetic dataset and its tf.Transform graph, analysed once per session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfjoint import features
from tfjoint.datasets.examples import write_tfrecords
from tfjoint.features import SYNTHETIC
from tfjoint.pipeline.transform import fit_transform_graph


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
