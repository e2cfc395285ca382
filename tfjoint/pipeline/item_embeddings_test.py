"""The ItemTextEmbeddings component runs its Beam step in a TFX pipeline and writes per-item vectors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from tfx import v1 as tfx

from tfjoint.modality import item_text
from tfjoint.pipeline.item_embeddings import FILENAME, ItemTextEmbeddings, read_item_texts


def test_a_pipeline_run_writes_one_vector_per_item_with_the_encoder_used(tmp_path):
    items = tmp_path / "items.tsv"
    items.write_text("3\tToy Story (1995)\n1\tHeat (1995)\n2\tToy Story 2 (1999)\n", encoding="utf-8")
    root = str(tmp_path / "root")
    component = ItemTextEmbeddings(items_path=str(items), encoder="hashed", batch_size=2)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="item-embeddings-test",
        pipeline_root=root,
        components=[component],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(root, "metadata.sqlite")
        ),
        beam_pipeline_args=["--direct_num_workers=1"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    [path] = [os.path.join(d, FILENAME) for d, _, files in os.walk(root) if FILENAME in files]
    ids, vectors = item_text.load_item_vectors(path)
    assert ids.tolist() == [1, 2, 3]
    want = item_text.HashedBagEncoder().encode(["Heat (1995)", "Toy Story 2 (1999)", "Toy Story (1995)"])
    np.testing.assert_allclose(vectors, want, atol=1e-6)


def test_item_text_files_must_be_id_tab_text(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tok\nnot-an-id text\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected 'item_id<TAB>text'"):
        read_item_texts(str(bad))
