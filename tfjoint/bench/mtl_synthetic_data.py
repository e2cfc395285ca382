"""The data of both experiments of ``tfjoint bench mtl-synthetic``.

- The MMoE paper's two-task regression (:func:`tfjoint.datasets.synthetic.mmoe_regression`)
  as joint-model inputs: :func:`regression_spec` and :func:`regression_batches`.
- The impressions of the selection-bias experiment
  (:func:`tfjoint.datasets.synthetic.load_synthetic_frames`) through the package's own
  tf.Transform graph, run in-process: :func:`transformed_impressions`.
"""

from __future__ import annotations

import glob
import os
import pathlib
import tempfile
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tfjoint import features
from tfjoint.datasets import synthetic
from tfjoint.datasets.examples import write_tfrecords
from tfjoint.features import DatasetSpec, TaskSpec

TASKS = ("y1", "y2")
INPUT_DIM = 100
# The generator's label noise is N(0, 0.1^2) per task (the paper's N(0, 0.01)), so no model
# can get MSE(y1) + MSE(y2) below 2 * 0.01 on fresh rows.
NOISE_FLOOR = 2 * 0.1**2

Arrays = dict[str, np.ndarray]


def regression_spec(input_dim: int = INPUT_DIM) -> DatasetSpec:
    """The two-task regression of the MMoE paper as a dataset spec: ``input_dim`` dense
    features, no ids, one scenario."""
    return DatasetSpec(
        name="mmoe-synthetic",
        categorical=(),
        dense=tuple(f"x{i}" for i in range(input_dim)),
        tasks=tuple(TaskSpec(name, "regression") for name in TASKS),
        scenarios=("all",),
    )


def label_correlation(y: np.ndarray) -> float:
    """Pearson correlation of the two tasks' labels ``y[:, 0]`` and ``y[:, 1]``."""
    return float(np.corrcoef(y[:, 0], y[:, 1])[0, 1])


def regression_batches(
    x: np.ndarray, y: np.ndarray, spec: DatasetSpec, batch_size: int, seed: int | None
) -> tf.data.Dataset:
    """``(inputs, labels)`` batches in the model's input format; shuffled when ``seed`` is set.

    The rows are shuffled once and the batches cached, and only the order of the batches
    changes every epoch: splitting 100 columns per batch anew every epoch costs more than
    the model's step.
    """
    keys = list(spec.dense)

    def to_inputs(xb: tf.Tensor, yb: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        inputs = dict(zip(keys, tf.split(xb, len(keys), axis=1)))
        inputs[features.SCENARIO_KEY] = tf.zeros((tf.shape(xb)[0], 1), tf.int64)
        return inputs, {name: yb[:, i : i + 1] for i, name in enumerate(TASKS)}

    dataset = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.float32)))
    if seed is not None:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=False)
    dataset = dataset.batch(batch_size).map(to_inputs).cache()
    if seed is not None:
        dataset = dataset.shuffle(-(-len(x) // batch_size), seed=seed)
    return dataset.prefetch(tf.data.AUTOTUNE)


def materialize(dataset: tf.data.Dataset) -> tuple[Arrays, Arrays]:
    """The ``(features, labels)`` batches of ``dataset`` concatenated into numpy arrays."""
    batches = list(dataset.as_numpy_iterator())
    return tuple(
        {k: np.concatenate([batch[i][k] for batch in batches]) for k in batches[0][i]} for i in (0, 1)
    )


def take_rows(arrays: Arrays, rows: slice) -> Arrays:
    """``rows`` of every array of ``arrays``."""
    return {k: v[rows] for k, v in arrays.items()}


def observed_conversions(frame: pd.DataFrame) -> np.ndarray:
    """Where a conversion is observed (the clicked impressions): the rows the conversion
    task is defined on, as a boolean mask."""
    conversion = synthetic.SPEC.task(synthetic.CONVERSION_KEY)
    labels = {key: frame[key].to_numpy() for key in synthetic.SPEC.label_keys}
    return conversion.defined_rows(labels) == 1.0


class Impressions(NamedTuple):
    """The impressions of one seed: raw frames and their transformed arrays."""

    frames: dict[str, pd.DataFrame]
    # ``{"train" | "eval": (features, labels)}``, the rows in the frames' order.
    splits: dict[str, tuple[Arrays, Arrays]]
    vocab_sizes: dict[str, int]


def transformed_impressions(n: int, seed: int, correlation: float, click_intercept: float) -> Impressions:
    """Draws ``n`` impressions (see :func:`tfjoint.datasets.synthetic.load_synthetic_frames`)
    and runs them through the package's tf.Transform graph, fitted on their training split."""
    spec = synthetic.SPEC
    frames = synthetic.load_synthetic_frames(
        n=n, correlation=correlation, seed=seed, click_intercept=click_intercept
    )
    # Imported on use: tf.Transform is slow to import and only this experiment needs it.
    from tfjoint.pipeline.transform import fit_transform_graph, transformed_dataset, vocabulary_sizes

    with tempfile.TemporaryDirectory() as tmp:
        root = write_tfrecords(frames, spec, pathlib.Path(tmp) / "data")
        transform = fit_transform_graph(str(root), spec, os.path.join(tmp, "transform"))
        vocab_sizes = vocabulary_sizes(transform, spec)
        splits = {
            split: materialize(
                transformed_dataset(
                    transform, sorted(glob.glob(str(root / split / "*"))), spec, batch_size=1024
                )
            )
            for split in ("train", "eval")
        }
    # The eval records are written in the frame's order and read back unshuffled; check it,
    # since the ground truth `true_cvr` is matched to predictions by position.
    eval_frame, eval_labels = frames["eval"], splits["eval"][1]
    if not (
        np.array_equal(eval_labels[synthetic.CLICK_KEY].ravel(), eval_frame[synthetic.CLICK_KEY].to_numpy())
        and np.allclose(
            eval_labels[synthetic.SCORE_KEY].ravel(), eval_frame[synthetic.SCORE_KEY].to_numpy(), atol=1e-4
        )
    ):
        raise RuntimeError("transformed eval rows are not in the order of the eval frame")
    return Impressions(frames, splits, vocab_sizes)
