"""The preprocessing_fn on a tiny hand-written dataset: vocabularies, OOV, padding,
z-scores, the scenario fallback."""

import numpy as np
import pytest
import tensorflow as tf

from tfjoint import features
from tfjoint.datasets.examples import frame_to_examples
from tfjoint.features import SYNTHETIC
from tfjoint.pipeline.conftest import synthetic_frame
from tfjoint.pipeline.transform import serving_feature_spec, transformed_dataset, vocabulary_sizes


@pytest.fixture(scope="module")
def transformed(tiny_transform, tmp_path_factory):
    output = tiny_transform
    serving = synthetic_frame(
        ["u1", "zzz"], ["a", "never-seen"], [1, 2], [["b", "zzz"], []], [["t2", "nope"], []]
    )
    serialized = list(frame_to_examples(serving, SYNTHETIC))
    # A scenario the model never saw (the writer refuses one, so edit the record).
    example = tf.train.Example.FromString(serialized[1])
    example.features.feature[features.SCENARIO_KEY].int64_list.value[:] = [7]
    serialized[1] = example.SerializeToString()
    path = tmp_path_factory.mktemp("serve") / "x.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in serialized:
            writer.write(record)
    x, y = next(iter(transformed_dataset(output, [str(path)], SYNTHETIC, batch_size=2)))
    return output, {k: v.numpy() for k, v in x.items()}, {k: v.numpy() for k, v in y.items()}


def test_vocabularies(transformed):
    output, _, _ = transformed
    sizes = vocabulary_sizes(output, SYNTHETIC)
    assert sizes["user_id"] == 3 and sizes["item_id"] == 3 and sizes["item_tags"] == 3


def test_ids_are_shifted_and_unknown_ids_take_the_oov_index(transformed):
    output, x, _ = transformed
    v_user = vocabulary_sizes(output, SYNTHETIC)["user_id"]
    v_item = vocabulary_sizes(output, SYNTHETIC)["item_id"]
    assert 1 <= x["user_id"][0, 0] <= v_user
    assert x["user_id"][1, 0] == v_user + 1
    assert x["item_id"][1, 0] == v_item + 1
    assert x["user_id"].shape == (2, 1)


def test_sequences_are_padded_and_share_the_item_vocabulary(transformed):
    output, x, _ = transformed
    v_item = vocabulary_sizes(output, SYNTHETIC)["item_id"]
    max_len = SYNTHETIC.sequence.max_len
    seq = x[features.SEQUENCE_ITEMS_KEY]
    assert seq.shape == (2, max_len)
    assert 1 <= seq[0, 0] <= v_item and seq[0, 1] == v_item + 1
    assert np.all(seq[0, 2:] == features.PAD_INDEX) and np.all(seq[1] == features.PAD_INDEX)
    behaviors = x[features.SEQUENCE_BEHAVIORS_KEY]
    assert list(behaviors[0, :3]) == [1, 2, 0]
    tags = x["item_tags"]
    assert tags.shape == (2, SYNTHETIC.tokens[0].max_len) and tags[0, 1] == 4 and tags[1, 0] == 0


def test_unknown_scenario_takes_the_fallback(transformed):
    _, x, _ = transformed
    assert list(x[features.SCENARIO_KEY][:, 0]) == [1, SYNTHETIC.num_scenarios]


def test_dense_features_are_z_scored_with_training_statistics(transformed):
    _, x, y = transformed
    train_x1 = np.arange(4, dtype="float32") * 2
    expected = (np.array([0.0, 2.0]) - train_x1.mean()) / train_x1.std()
    np.testing.assert_allclose(x["x1"][:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(y["score"][:, 0], [1.0, 2.0])


def test_serving_spec_gives_missing_scalar_features_their_missing_value_path(tiny_transform):
    output = tiny_transform
    spec = serving_feature_spec(output, SYNTHETIC)
    assert not set(SYNTHETIC.label_keys) & set(spec)
    full = tf.train.Example.FromString(
        next(iter(frame_to_examples(synthetic_frame(["u1"], ["a"], [1], [["b"]], [["t1"]]), SYNTHETIC)))
    )
    empty = tf.train.Example()  # every feature missing
    parsed = tf.io.parse_example([full.SerializeToString(), empty.SerializeToString()], spec)
    x = {k: v.numpy() for k, v in output.transform_features_layer()(parsed).items()}
    sizes = vocabulary_sizes(output, SYNTHETIC)
    assert x[features.SCENARIO_KEY][:, 0].tolist() == [1, SYNTHETIC.num_scenarios]  # unknown scenario
    for key in SYNTHETIC.categorical:
        assert 1 <= x[key][0, 0] <= sizes[key] and x[key][1, 0] == sizes[key] + 1, key  # "" is OOV
    train_x1 = np.arange(4, dtype="float32") * 2
    np.testing.assert_allclose(x["x1"][1, 0], (0.0 - train_x1.mean()) / train_x1.std(), rtol=1e-5)  # raw 0
    assert np.all(x[features.SEQUENCE_ITEMS_KEY][1] == features.PAD_INDEX)


def test_dense_z_scores_ignore_non_finite_values_impute_them_and_clip_outliers(tmp_path):
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from tfjoint.pipeline.transform import DENSE_CLIP, robust_z_score

    train = [{"x": v} for v in (1.0, 2.0, 3.0, float("nan"), float("inf"), float("inf"))]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec({"x": tf.io.FixedLenFeature([], tf.float32)})
    )
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=False):
        (_, _), transform_fn = (train, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: {"z": robust_z_score(inputs["x"])}
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "fn"))
    layer = tft.TFTransformOutput(str(tmp_path / "fn")).transform_features_layer()
    served = np.array([1.0, 2.0, 3.0, np.nan, np.inf, -np.inf, 1e30, -1e30], np.float32)
    z = layer({"x": tf.constant(served)})["z"].numpy()
    # Mean 2 and std sqrt(2/3) over the finite training values only; non-finite -> the mean.
    std = np.sqrt(2.0 / 3.0)
    np.testing.assert_allclose(z, [-1 / std, 0, 1 / std, 0, 0, 0, DENSE_CLIP, -DENSE_CLIP], rtol=1e-5)


def test_a_vocabulary_budget_hashes_the_tail_into_oov_buckets_and_reports_its_rate(tmp_path):
    import dataclasses

    from tfjoint.datasets.examples import write_tfrecords
    from tfjoint.features import VocabularyBudget
    from tfjoint.pipeline.conftest import synthetic_frame
    from tfjoint.pipeline.transform import fit_transform_graph, oov_rates

    # u1 is the only user seen twice: top_k=1 keeps it, u2 and u3 (half the rows) hash.
    spec = dataclasses.replace(SYNTHETIC, vocabulary_budgets={"user_id": VocabularyBudget(top_k=1, num_oov_buckets=4)})
    users = ["u1", "u2", "u1", "u3"]
    train = synthetic_frame(users, ["a", "b", "a", "c"], [0, 1, 2, 0], [[], [], [], []], [[], [], [], []])
    write_tfrecords({"train": train, "eval": train}, spec, tmp_path / "data")
    output = fit_transform_graph(str(tmp_path / "data"), spec, str(tmp_path / "tft"))
    assert output.vocabulary_by_name("user_id") == [b"u1"]
    sizes = vocabulary_sizes(output, spec)
    assert sizes["user_id"] == 1 + 4 - 1 and sizes["item_id"] == 3  # unbudgeted: unchanged
    assert oov_rates(output, spec) == {"user_id": pytest.approx(0.5)}
    import pandas as pd

    served = users + [f"new{i}" for i in range(40)]
    serving = pd.concat([synthetic_frame(served[i : i + 4], ["a"] * 4, [0] * 4, [[]] * 4, [[]] * 4) for i in range(0, 44, 4)])
    path = tmp_path / "serve.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in frame_to_examples(serving, spec):
            writer.write(record)
    x, _ = next(iter(transformed_dataset(output, [str(path)], spec, batch_size=44)))
    ids = x["user_id"].numpy()[:, 0]
    assert ids[0] == ids[2] == 1
    # The tail lands in the buckets 2..5, the rows of a (sizes + 2)-row table; 40 new ids
    # use more than one bucket (a single OOV index would put them all on 2).
    tail = [ids[1], ids[3], *ids[4:]]
    assert set(tail) <= {2, 3, 4, 5} and len(set(tail)) > 1


def test_a_vocabulary_budget_must_name_an_id_feature():
    import dataclasses

    from tfjoint.features import VocabularyBudget

    spec = dataclasses.replace(SYNTHETIC, vocabulary_budgets={"x0": VocabularyBudget(top_k=5)})
    with pytest.raises(ValueError, match=r"vocabulary_budgets names \['x0'\]"):
        spec.vocabulary_budget("user_id")
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        VocabularyBudget(top_k=0)
