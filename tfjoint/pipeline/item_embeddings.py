"""``ItemTextEmbeddings``: a TFX component that encodes every item's text once, in Beam.

It runs :class:`tfjoint.modality.item_text.EncodeItemTexts` (all-MiniLM-L6-v2, or a hashed bag of
tokens when the weights cannot be had) on the pipeline's Beam settings and writes an
``ItemEmbeddings`` artifact: ``item_embeddings.tfrecord`` of ``{item_id: int64, embedding: float[D]}``
examples, with the encoder actually used, the width and the item count as custom properties. The
90 MB encoder and its tf-text ops thus stay out of the Transform and serving graphs; downstream
components read the vectors as a fixed item feature with
:func:`tfjoint.modality.item_text.load_item_vectors`.

Item texts come from ``items_path`` (a UTF-8 TSV of ``item_id<TAB>text`` lines) or, when it is empty,
from MovieLens-100K (``"Title (year). Genre, Genre"``).
"""

# No ``from __future__ import annotations``: TFX reads the component's annotations as types.
import os

import apache_beam as beam
from tfx.dsl.component.experimental.annotations import BeamComponentParameter, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.artifact import Artifact, Property, PropertyType

from tfjoint.modality import item_text

FILENAME = "item_embeddings.tfrecord"


class ItemEmbeddings(Artifact):
    """Per-item vectors of one modality (a TFRecord of ``item_id`` and ``embedding``)."""

    TYPE_NAME = "tfjoint.ItemEmbeddings"
    PROPERTIES = {"encoder": Property(type=PropertyType.STRING)}


def read_item_texts(items_path: str) -> list[tuple[int, str]]:
    """``(item_id, text)`` pairs of a TSV file, or of MovieLens-100K when ``items_path`` is empty."""
    if not items_path:
        from tfjoint.datasets import movielens

        return item_text.movielens_item_texts(movielens.load_raw_tables().items)
    pairs = []
    with open(items_path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            item_id, sep, text = line.rstrip("\n").partition("\t")
            if not sep or not item_id.strip().lstrip("-").isdigit():
                raise ValueError(f"{items_path}:{line_no}: expected 'item_id<TAB>text'")
            pairs.append((int(item_id), text))
    return pairs


@component(use_beam=True)
def ItemTextEmbeddings(  # noqa: N802 (a TFX component is named like a class)
    embeddings: OutputArtifact[ItemEmbeddings],
    items_path: Parameter[str] = "",
    encoder: Parameter[str] = "minilm",
    batch_size: Parameter[int] = 64,
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Encodes each item's text once and writes the vectors (module docstring)."""
    kind = item_text.resolve_encoder(encoder)
    pairs = read_item_texts(items_path)
    path = os.path.join(embeddings.uri, FILENAME)
    with beam_pipeline as p:
        item_text.add_encode_steps(p, pairs, path, kind, batch_size)
    ids, vectors = item_text.load_item_vectors(path)
    embeddings.encoder = kind
    embeddings.set_int_custom_property("dim", int(vectors.shape[1]))
    embeddings.set_int_custom_property("num_items", int(len(ids)))
