"""Per-item text embeddings computed once by a Beam step, and precomputed dense modality vectors.

Item texts (MovieLens: ``"Toy Story (1995). Animation, Children's, Comedy"``) are encoded by
all-MiniLM-L6-v2 (:mod:`tfjoint.modality.minilm`); when its weights are absent and cannot be
fetched the step says so in one line and falls back to a hashed bag of tokens:

    v = sum_{w in tokens(text)} s(w) e_{h(w) mod D},   v <- v / max(||v||_2, 1e-12)

with ``h`` a stable hash and ``s(w) = +-1`` a second hash bit (the signed "hashing trick",
Weinberger et al., ICML 2009). Vectors are written as TFRecords of ``tf.train.Example``
``{item_id: int64, embedding: float[D]}``; :func:`load_item_vectors` reads them (or ``.npz`` files
of ``item_ids`` and ``vectors``) for any modality of any width.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import re

import apache_beam as beam
import numpy as np

from tfjoint.modality import minilm

LOG = logging.getLogger(__name__)
_TOKEN = re.compile(r"[a-z0-9]+")


class HashedBagEncoder:
    """Signed hashed bag of lower-cased word tokens, L2-normalised (the no-weights fallback)."""

    def __init__(self, dim: int = minilm.DIM):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim

    def encode(self, texts, batch_size: int = 64) -> np.ndarray:
        del batch_size
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                h = int.from_bytes(hashlib.md5(token.encode()).digest()[:8], "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def aligned_vectors(vocabulary, ids, vectors: np.ndarray) -> tuple[np.ndarray, int]:
    """``(features (len(vocabulary), D), missing)``: row ``i`` is the vector of
    ``vocabulary[i]`` among ``ids`` (keys compared as str; bytes decoded), zeros for an entry
    without one (its modality is then masked as missing); ``missing`` counts those."""
    keys = [k.decode() if isinstance(k, bytes) else str(k) for k in np.asarray(ids).tolist()]
    row = {k: n for n, k in enumerate(keys)}
    out = np.zeros((len(vocabulary), vectors.shape[1]), np.float32)
    missing = 0
    for i, item in enumerate(np.asarray(vocabulary).tolist()):
        n = row.get(item.decode() if isinstance(item, bytes) else str(item))
        if n is None:
            missing += 1
        else:
            out[i] = vectors[n]
    return out, missing


def dataset_item_texts(dataset: str) -> dict[str, str]:
    """``{item_id: text}`` of a built-in dataset with item texts (MovieLens-100K: title, year
    and genres, as :func:`movielens_item_texts`)."""
    if dataset != "movielens-100k":
        raise ValueError(f"item texts are known for movielens-100k only. Received: dataset={dataset!r}")
    from tfjoint.datasets import movielens

    return {str(i): text for i, text in movielens_item_texts(movielens.load_raw_tables().items)}


def text_encoder(kind: str = "minilm", cache_dir: str | os.PathLike | None = None, download: bool = True):
    """``"minilm"`` (falls back to ``"hashed"`` with a one-line warning when weights are missing)."""
    if kind not in ("minilm", "hashed"):
        raise ValueError(f"text encoder must be 'minilm' or 'hashed', got {kind!r}")
    if kind == "minilm":
        try:
            return minilm.load_minilm(cache_dir, download)
        except minilm.WeightsUnavailable as err:
            LOG.warning("MiniLM weights unavailable (%s); falling back to a hashed bag of tokens", err)
    return HashedBagEncoder()


def movielens_item_texts(items, genres: bool = True) -> list[tuple[int, str]]:
    """``(item_id, "Title (year). Genre, Genre")`` from MovieLens' ``items`` table."""
    out = []
    for item_id, row in items.iterrows():
        text = row["title"] if np.isnan(row["release_year"]) else f"{row['title']} ({int(row['release_year'])})"
        if genres and len(row["genres"]):
            text += ". " + ", ".join(row["genres"])
        out.append((int(item_id), text))
    return out


class _EncodeBatch(beam.DoFn):
    def __init__(self, kind, cache_dir):
        self.kind, self.cache_dir, self.encoder = kind, cache_dir, None

    def setup(self):
        self.encoder = text_encoder(self.kind, self.cache_dir)  # once per worker

    def process(self, batch):
        vectors = self.encoder.encode([text for _, text in batch], batch_size=len(batch))
        for (item_id, _), vector in zip(batch, vectors):
            yield item_id, vector


class EncodeItemTexts(beam.PTransform):
    """``PCollection[(item_id, text)] -> PCollection[(item_id, float32 vector)]``, batch of 64."""

    def __init__(self, kind: str = "minilm", batch_size: int = 64, cache_dir: str | None = None):
        super().__init__()
        if kind not in ("minilm", "hashed"):
            raise ValueError(f"text encoder must be 'minilm' or 'hashed', got {kind!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.kind, self.batch_size, self.cache_dir = kind, batch_size, cache_dir

    def expand(self, pcoll):
        return (
            pcoll
            | "Batch" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
            | "Encode" >> beam.ParDo(_EncodeBatch(self.kind, self.cache_dir))
        )


def _to_example(item_id: int, vector) -> bytes:
    import tensorflow as tf

    feature = {
        "item_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(item_id)])),
        "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(vector).tolist())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class WriteItemEmbeddings(beam.PTransform):
    """Writes ``(item_id, vector)`` pairs to one TFRecord file ``path``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = str(path)

    def expand(self, pcoll):
        return (
            pcoll
            | "ToExample" >> beam.MapTuple(_to_example)
            | "Write" >> beam.io.WriteToTFRecord(self.path, shard_name_template="")
        )


def add_encode_steps(pipeline, pairs, path, kind: str = "minilm", batch_size: int = 64):
    """Adds ``Create | EncodeItemTexts | WriteItemEmbeddings`` to a Beam ``pipeline``."""
    return (
        pipeline
        | "ItemTexts" >> beam.Create(list(pairs))
        | "EncodeItemTexts" >> EncodeItemTexts(kind, batch_size)
        | "WriteItemEmbeddings" >> WriteItemEmbeddings(path)
    )


def encode_to_tfrecord(pairs, path, kind: str = "minilm", batch_size: int = 64) -> str:
    """Runs the encode steps on the DirectRunner; returns ``path``."""
    with beam.Pipeline(argv=["--runner=DirectRunner"]) as p:
        add_encode_steps(p, pairs, path, kind, batch_size)
    return str(path)


def resolve_encoder(kind: str) -> str:
    """``kind``, or ``"hashed"`` (with a one-line warning) when MiniLM's weights cannot be had."""
    if kind not in ("minilm", "hashed"):
        raise ValueError(f"text encoder must be 'minilm' or 'hashed', got {kind!r}")
    if kind == "minilm":
        try:
            minilm.ensure_weights()
        except minilm.WeightsUnavailable as err:
            LOG.warning("MiniLM weights unavailable (%s); falling back to a hashed bag of tokens", err)
            return "hashed"
    return kind


def load_item_vectors(path: str | os.PathLike, feature: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids int64 [N], vectors float32 [N, D])`` of precomputed item features of any width.

    ``path``: a TFRecord of ``{item_id, <feature>}`` examples, or an ``.npz`` with ``item_ids`` and
    ``vectors``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no item vectors at {path}")
    if path.suffix == ".npz":
        with np.load(path) as data:
            missing = {"item_ids", "vectors"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {sorted(missing)}")
            ids, vectors = data["item_ids"].astype(np.int64), data["vectors"].astype(np.float32)
    else:
        import tensorflow as tf

        ids, rows = [], []
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            f = tf.train.Example.FromString(record).features.feature
            ids.append(f["item_id"].int64_list.value[0])
            rows.append(np.asarray(f[feature].float_list.value, np.float32))
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"{path}: vectors of several widths {sorted({len(r) for r in rows})}")
        ids, vectors = np.asarray(ids, np.int64), np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"{path}: expected item_ids [N] and vectors [N, D], got {ids.shape}, {vectors.shape}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate item ids")
    order = np.argsort(ids)
    return ids[order], vectors[order]


def movielens_title_embeddings(cache_dir: str | os.PathLike | None = None, kind: str = "minilm"):
    """MovieLens-100K title(+genre) embeddings, computed by the Beam step once and cached."""
    from tfjoint.datasets import movielens

    cache = pathlib.Path(cache_dir) if cache_dir is not None else movielens.default_cache_dir()
    kind = resolve_encoder(kind)
    path = cache / f"{kind}_title_genre_embeddings.tfrecord"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        encode_to_tfrecord(movielens_item_texts(movielens.load_raw_tables(cache).items), tmp, kind)
        os.replace(tmp, path)
    return load_item_vectors(path)
