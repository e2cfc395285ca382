"""Dataset loaders: every dataset of :data:`tfjoint.features.DATASETS` as frames or TFRecords.

``load_frames(name)`` returns ``{"train": DataFrame, "eval": DataFrame}`` with one column
per key of the dataset's spec; ``write_dataset(name, output_dir)`` writes them as the
``train/`` and ``eval/`` TFRecord splits that TFX's ImportExampleGen reads.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import pandas as pd

from tfjoint import features
from tfjoint.datasets import movielens, samples, synthetic
from tfjoint.datasets.examples import frame_to_examples, parse_feature_spec, write_tfrecords

LOADERS: dict[str, Callable[..., dict[str, pd.DataFrame]]] = {
    features.MOVIELENS_100K.name: movielens.load_movielens_frames,
    features.SYNTHETIC.name: synthetic.load_synthetic_frames,
    features.ALI_CCP_SAMPLE.name: samples.load_ali_ccp_frames,
    features.DOUBAN_SAMPLE.name: samples.load_douban_frames,
    features.ALIEXPRESS_SAMPLE.name: samples.load_aliexpress_frames,
    features.CENSUS_SAMPLE.name: samples.load_census_frames,
}

__all__ = [
    "LOADERS",
    "frame_to_examples",
    "load_frames",
    "parse_feature_spec",
    "write_dataset",
    "write_tfrecords",
]


def load_frames(name: str, **kwargs) -> dict[str, pd.DataFrame]:
    """``{"train": ..., "eval": ...}`` frames of dataset ``name``; kwargs go to its loader.

    Raises:
        ValueError: ``name`` is not one of ``features.DATASETS``.
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(LOADERS)}")
    return LOADERS[name](**kwargs)


def write_dataset(name: str, output_dir: str | os.PathLike, **kwargs) -> pathlib.Path:
    """Load dataset ``name`` and write ``output_dir/{train,eval}/data.tfrecord``.

    Returns:
        ``output_dir``, the ``input_base`` of ImportExampleGen.
    """
    return write_tfrecords(load_frames(name, **kwargs), features.get_dataset_spec(name), output_dir)
