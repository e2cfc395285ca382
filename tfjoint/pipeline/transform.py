"""The tf.Transform ``preprocessing_fn`` shared by every dataset.

It turns raw ``tf.Example`` features into the transformed format documented in
:mod:`tfjoint.features`. The same graph runs in the Transform component, inside the serving
signature of every exported model, and in :func:`analyze_and_transform` for notebooks, so
training and serving cannot disagree on features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from tfjoint import features
from tfjoint.features import DatasetSpec, get_dataset_spec
from tfjoint.features.spec_file import spec_from_dict
from tfjoint.layers.core.scenarios import map_unknown, unknown_scenario


def _to_index(ids: Any, vocabulary: Any, num_oov_buckets: int = 1) -> Any:
    # Vocabulary entries map to 1..V and unknown values to V + 1 (or, with a vocabulary
    # budget, hash into V + 1..V + num_oov_buckets), so 0 stays free for padding.
    index = tft.apply_vocabulary(ids, vocabulary, num_oov_buckets=num_oov_buckets)
    if isinstance(index, tf.SparseTensor):
        return tf.sparse.map_values(tf.add, index, tf.constant(1, index.dtype))
    return index + 1


def _vocabulary(ids: Any, key: str, spec: DatasetSpec) -> Any:
    """The vocabulary of ``key``: every training value, or the ``top_k`` most frequent of
    its :class:`~tfjoint.features.VocabularyBudget`."""
    budget = spec.vocabulary_budget(key)
    return tft.vocabulary(ids, vocab_filename=key, top_k=budget.top_k if budget else None)


def _buckets(spec: DatasetSpec, key: str) -> int:
    budget = spec.vocabulary_budget(key)
    return budget.num_oov_buckets if budget else 1


OOV_COUNTS_SUFFIX = "__oov_counts"
"""Vocabulary file ``<feature>__oov_counts`` of a budgeted feature: the training counts of
``in`` (values in its ``top_k``) and ``oov`` (values hashed into a bucket)."""


def _report_oov_rate(ids: Any, vocabulary: Any, spec: DatasetSpec, key: str) -> None:
    """For a budgeted feature, counts its training values inside and outside the ``top_k``
    (a frequency vocabulary of the in/out indicator: a second analysis pass, after the
    vocabulary), written as a Transform asset; :func:`oov_rates` reads it."""
    if spec.vocabulary_budget(key) is None:
        return
    raw = tft.apply_vocabulary(ids, vocabulary, default_value=-1)
    values = raw.values if isinstance(raw, tf.SparseTensor) else tf.reshape(raw, (-1,))
    tft.vocabulary(tf.where(values < 0, "oov", "in"), vocab_filename=key + OOV_COUNTS_SUFFIX, store_frequency=True)


def oov_rates(tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec) -> dict[str, float]:
    """``{feature: fraction of its training values hashed into OOV buckets}`` of every
    feature with a vocabulary budget (the collision-prone tail), from the Transform output."""
    rates = {}
    for key in spec.vocabulary_budgets:
        counts = {}
        for line in tf_transform_output.vocabulary_by_name(key + OOV_COUNTS_SUFFIX):
            count, label = line.split(b" ", 1)
            counts[label.decode()] = float(count)
        rates[key] = counts.get("oov", 0.0) / max(sum(counts.values()), 1.0)
    return rates


def _pad(sparse: tf.SparseTensor, max_len: int) -> tf.Tensor:
    dense = tf.sparse.to_dense(sparse, default_value=tf.cast(features.PAD_INDEX, sparse.dtype))
    dense = dense[:, :max_len]
    dense = tf.pad(dense, [[0, 0], [0, max_len - tf.shape(dense)[1]]])
    return tf.reshape(dense, [-1, max_len])


DENSE_CLIP = 10.0  # z-scores beyond +-10 standard deviations are clipped


def robust_z_score(values: Any, clip: float = DENSE_CLIP) -> Any:
    """``clip_[-clip, clip]((x - mean) / std)`` with mean and std over the *finite* training
    values, and NaN or +-inf imputed with the mean (so 0 after scaling).

    The same graph runs inside the serving signature, so a request with NaN, inf or 1e30 in
    a dense feature gets a bounded input (0, or +-``clip``) instead of an unbounded score.
    ExampleValidator reports non-finite training values as anomalies (the schema disallows
    them); this policy keeps one bad row from turning a whole column's statistics into NaN.
    """
    x = tf.cast(values, tf.float32)
    finite = tf.math.is_finite(x)
    mean, var = tft.mean(x), tft.var(x)  # tf.Transform's mean and var skip non-finite values
    std = tf.sqrt(var)
    z = (tf.where(finite, x, mean) - mean) / tf.where(std > 0, std, tf.ones_like(std))
    return tf.clip_by_value(z, -clip, clip)


def preprocess(inputs: dict[str, Any], spec: DatasetSpec) -> dict[str, Any]:
    """Transforms raw features of ``spec``; see :mod:`tfjoint.features` for the format."""
    outputs: dict[str, Any] = {}
    vocabularies = {key: _vocabulary(inputs[key], key, spec) for key in spec.categorical}
    for key in spec.categorical:
        outputs[key] = _to_index(inputs[key], vocabularies[key], _buckets(spec, key))
        _report_oov_rate(inputs[key], vocabularies[key], spec, key)
    for key in spec.dense:
        outputs[key] = robust_z_score(inputs[key])
    # An unseen scenario becomes the unknown id, served through each model's fallback path.
    outputs[features.SCENARIO_KEY] = map_unknown(tf.cast(inputs[features.SCENARIO_KEY], tf.int64), spec.num_scenarios)
    if spec.sequence:
        max_len = spec.sequence.max_len
        item = spec.sequence.item_feature
        items = _to_index(inputs[features.SEQUENCE_ITEMS_KEY], vocabularies[item], _buckets(spec, item))
        outputs[features.SEQUENCE_ITEMS_KEY] = _pad(items, max_len)
        behaviors = tf.cast(inputs[features.SEQUENCE_BEHAVIORS_KEY], tf.int64)
        outputs[features.SEQUENCE_BEHAVIORS_KEY] = _pad(behaviors, max_len)
    for token in spec.tokens:
        vocabulary = _vocabulary(inputs[token.name], token.name, spec)
        index = _to_index(inputs[token.name], vocabulary, _buckets(spec, token.name))
        outputs[token.name] = _pad(index, token.max_len)
        _report_oov_rate(inputs[token.name], vocabulary, spec, token.name)
    for task in spec.tasks:
        outputs[task.name] = tf.cast(inputs[task.name], tf.float32)
    return outputs


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """TFX Transform entry point; ``custom_config["dataset_spec"]`` is the dataset spec as a
    dict (:func:`tfjoint.features.spec_file.spec_to_dict`)."""
    return preprocess(inputs, spec_from_dict(custom_config["dataset_spec"]))


def vocabulary_sizes(tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec) -> dict[str, int]:
    """``V`` of every categorical and token feature, read from the Transform output. With
    ``b`` OOV buckets (a vocabulary budget) it is ``V + b - 1``: the model's ``V + 2``-row
    tables then cover padding, the entries and every bucket."""
    keys = list(spec.categorical) + [t.name for t in spec.tokens]
    return {key: int(tf_transform_output.vocabulary_size_by_name(key)) + _buckets(spec, key) - 1 for key in keys}


def serving_feature_spec(tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec) -> dict[str, Any]:
    """The raw feature spec with which the serving signatures parse requests.

    Labels are not serving inputs and are dropped. Every scalar feature is optional: a
    request that lacks one gets a default that the transform sends down its defined
    missing-value path, instead of failing the whole batch:

    - the scenario: the unknown id ``num_scenarios``, served through each model's fallback;
    - a categorical feature: ``""``, which is not in the vocabulary (``tft.vocabulary``
      drops empty strings), so it becomes the out-of-vocabulary index;
    - a dense feature: ``0.0`` in raw units (then z-scored with the training statistics);
    - any other scalar: ``0``.

    Variable-length features (sequences, tokens) are already optional: a missing one is
    empty, i.e. all padding.
    """
    raw = tf_transform_output.raw_feature_spec()
    out: dict[str, Any] = {}
    for key, feature in raw.items():
        if key in spec.label_keys:
            continue
        if isinstance(feature, tf.io.FixedLenFeature) and feature.default_value is None:
            if key == features.SCENARIO_KEY:
                value: Any = unknown_scenario(spec.num_scenarios)
            elif feature.dtype == tf.string:
                value = b""
            else:
                value = feature.dtype.as_numpy_dtype(0)
            size = 1
            for dim in feature.shape:
                size *= int(dim)
            feature = tf.io.FixedLenFeature(feature.shape, feature.dtype, default_value=[value] * size)
        out[key] = feature
    return out


def fit_transform_graph(data_root: str, spec: DatasetSpec, output_dir: str,
                        beam_args: list[str] | None = None) -> tft.TFTransformOutput:
    """Analyzes ``data_root/train/*`` (Beam DirectRunner in-process, or the runner that
    ``beam_args`` name, e.g. :func:`tfjoint.pipeline.runners.beam_worker_args`) and writes the
    transform graph to ``output_dir``: the Transform component's work, for notebooks and
    tests, with the same ``preprocessing_fn``."""
    import glob
    import os
    import tempfile

    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.public import tfxio

    from tfjoint.features.schema import build_schema

    files = sorted(glob.glob(os.path.join(data_root, "train", "*")))
    if not files:
        raise FileNotFoundError(f"no training files under {data_root}/train")
    source = tfxio.TFExampleRecord(file_pattern=files, schema=build_schema(spec))
    with tempfile.TemporaryDirectory() as tmp:
        options = PipelineOptions(beam_args or [])
        with beam.Pipeline(options=options) as pipeline, tft_beam.Context(temp_dir=tmp, force_tf_compat_v1=False):
            raw = pipeline | "Read" >> source.BeamSource()
            transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(
                lambda inputs: preprocess(inputs, spec)
            )
            _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    # The raw schema too, as the Transform component writes it: raw_feature_spec() reads it.
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(build_schema(spec)),
        os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    return tft.TFTransformOutput(output_dir)


def transformed_dataset(
    tf_transform_output: tft.TFTransformOutput,
    files: list[str],
    spec: DatasetSpec,
    batch_size: int = 256,
    shuffle: bool = False,
) -> tf.data.Dataset:
    """``(features, labels)`` batches from raw ``tf.Example`` files through the transform
    graph, exactly as the serving signature transforms them."""
    raw_spec = tf_transform_output.raw_feature_spec()
    layer = tf_transform_output.transform_features_layer()
    labels = set(spec.label_keys)

    def apply(serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        transformed = layer(tf.io.parse_example(serialized, raw_spec))
        return (
            {k: v for k, v in transformed.items() if k not in labels},
            {k: transformed[k] for k in spec.label_keys},
        )

    dataset = tf.data.TFRecordDataset(files)
    if shuffle:
        dataset = dataset.shuffle(10 * batch_size, seed=0)
    return dataset.batch(batch_size).map(apply).prefetch(tf.data.AUTOTUNE)


def materialize(dataset: tf.data.Dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A finite ``(features, labels)`` dataset as two dicts of numpy arrays."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append({k: v.numpy() for k, v in x.items()})
        ys.append({k: v.numpy() for k, v in y.items()})
    return ({k: np.concatenate([b[k] for b in xs]) for k in xs[0]}, {k: np.concatenate([b[k] for b in ys]) for k in ys[0]})


def transformed_arrays(
    dataset: str, work_dir: str, dataset_kwargs: dict[str, Any] | None = None
) -> tuple[DatasetSpec, dict[str, int], tuple[dict, dict], tuple[dict, dict]]:
    """A built-in dataset written under ``work_dir``, its transform analysed in-process (the
    pipeline's ``preprocessing_fn``), and its train and eval splits transformed in memory:
    ``(spec, vocabulary sizes, (x, y) train, (x, y) eval)``, ready for ``model.fit``."""
    import os

    from tfjoint.datasets import write_dataset

    spec = get_dataset_spec(dataset)
    root = write_dataset(dataset, os.path.join(work_dir, "data"), **(dataset_kwargs or {}))
    output = fit_transform_graph(str(root), spec, os.path.join(work_dir, "transform"))
    splits = [
        materialize(transformed_dataset(output, [os.path.join(root, split, "data.tfrecord")], spec, batch_size=4096))
        for split in ("train", "eval")
    ]
    return spec, vocabulary_sizes(output, spec), splits[0], splits[1]
