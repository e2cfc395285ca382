"""The peer-shaped model options of issue 17: raw numerics, no scenario field, BatchNorm."""

import keras
import numpy as np
import pytest

from tfjoint.features import ALIEXPRESS_SAMPLE, MOVIELENS_100K
from tfjoint.joint import build_joint_model
from tfjoint.layers.core.contracts import DENSE_INPUTS_KEY
from tfjoint.layers.core.feature_embedding import FeatureEmbedding
from tfjoint.testing import check_joint_model, fake_batch

SPEC = ALIEXPRESS_SAMPLE  # 16 categorical, 63 dense, one scenario
SIZES = {k: 7 for k in SPEC.categorical}
MMOE = {"task_architecture": {"num_experts": 2, "expert_units": [8], "tower_units": [4]}}


def _expert_input_width(model) -> int:
    return int(model.task_architecture.experts[0].dense_layers[0].kernel.shape[0])


@pytest.mark.parametrize(
    "options, width",
    [
        ({}, (16 + 1 + 63) * 16),
        ({"numeric": "raw"}, (16 + 1) * 16 + 63),
        ({"numeric": "raw", "scenario_field": False}, 16 * 16 + 63),
        ({"numeric": "normalized", "scenario_field": "auto"}, 16 * 16 + 63),
        ({"scenario_field": False}, (16 + 63) * 16),
    ],
)
def test_each_option_sets_the_expert_input_width(options, width):
    model = build_joint_model(SPEC, SIZES, component_kwargs=MMOE, **options)
    assert _expert_input_width(model) == width


def test_the_scenario_field_stays_on_a_multi_scenario_dataset_with_auto():
    sizes = {k: 5 for k in MOVIELENS_100K.categorical + tuple(t.name for t in MOVIELENS_100K.tokens)}
    on = build_joint_model(MOVIELENS_100K, sizes, scenario_field="auto")
    off = build_joint_model(MOVIELENS_100K, sizes, scenario_field=False)
    assert on.embedding.num_fields == off.embedding.num_fields + 1
    assert not any("embedding_scenario" in w.path for w in off.embedding.weights)


def test_raw_numerics_are_the_inputs_and_normalized_ones_are_standardized():
    x, _ = fake_batch(SPEC, n=64)
    raw = FeatureEmbedding(SIZES, list(SPEC.categorical), list(SPEC.dense), 1, numeric="raw")
    out = raw(x)
    expected = np.concatenate([x[k] for k in SPEC.dense], axis=1)
    np.testing.assert_array_equal(np.asarray(out[DENSE_INPUTS_KEY]), expected)
    assert tuple(out["fields"].shape) == (64, 17, 16)
    assert not any("dense_vectors" in w.path for w in raw.weights)
    norm = FeatureEmbedding(SIZES, list(SPEC.categorical), list(SPEC.dense), 1, numeric="normalized")
    values = np.asarray(norm(x, training=True)[DENSE_INPUTS_KEY])
    spread = expected.std(0) > 1e-3
    np.testing.assert_allclose(values.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(values.std(0)[spread], 1.0, atol=1e-2)


@pytest.mark.parametrize("arch", ["mmoe", "ple", "esmm"])
def test_the_peer_shaped_model_trains_saves_and_reloads(arch, tmp_path):
    units = {"mmoe": MMOE["task_architecture"], "ple": {"expert_units": [8], "tower_units": [4]},
             "esmm": {"tower_units": [8, 4]}}[arch]
    model, history, _ = check_joint_model(
        SPEC, SIZES, tmp_path, task_architecture=arch, component_kwargs={"task_architecture": units},
        numeric="normalized", scenario_field=False, batch_norm=True,
    )
    assert np.isfinite(history["loss"][-1])
    norms = [w for w in model.weights if "batch_norm" in w.path]
    assert norms, "batch_norm=True built no BatchNormalization"
    config = model.task_architecture.get_config()
    assert config["batch_norm"] is True


def test_options_a_component_cannot_take_are_refused_in_one_line():
    with pytest.raises(ValueError, match="batch_norm"):
        build_joint_model(SPEC, SIZES, task_architecture="hinet", batch_norm=True)
    with pytest.raises(ValueError, match="numeric"):
        build_joint_model(SPEC, SIZES, numeric="bucketized")
    with pytest.raises(ValueError, match="numeric"):
        build_joint_model(SPEC, SIZES, embedding=keras.layers.Identity(), numeric="raw")
    with pytest.raises(ValueError, match="task_tables"):
        build_joint_model(SPEC, SIZES, task_architecture="stem", numeric="raw")


def test_the_pipeline_hparams_reach_the_builder_and_are_checked():
    from tfjoint.pipeline import runners
    from tfjoint.pipeline.hparams import check_hparams

    spec = runners.get_dataset_spec("aliexpress-sample")
    runners.check_model(spec, "mmoe", {"numeric": "raw", "scenario_field": "auto", "batch_norm": True, "lazy_adam": True})
    with pytest.raises(ValueError, match="cannot build.*batch_norm"):
        runners.check_model(spec, "hinet", {"batch_norm": True})
    for key, value in [("numeric", "bucketized"), ("scenario_field", "yes"), ("lazy_adam", 1)]:
        with pytest.raises(ValueError, match=f"hparams '{key}'"):
            check_hparams({key: value})


def _table_spread(model) -> float:
    return float(np.std(model.embedding.tables[SPEC.categorical[0]].embeddings.numpy()))


def test_batch_norm_starts_the_tables_at_the_peers_spread_unless_one_is_given():
    # Keras's Uniform(-0.05, 0.05) start under BatchNorm cost 0.04 to 0.06 AUC after one epoch
    # of the issue-17 workload; DeepCTR and torch-rechub start at N(0, 1e-4)
    # (docs/training_speed.md, "BatchNorm and the embedding tables").
    sizes = {k: 500 for k in SPEC.categorical}
    plain = build_joint_model(SPEC, sizes, component_kwargs=MMOE)
    assert 0.02 < _table_spread(plain) < 0.04  # uniform(+-0.05): 0.05 / sqrt(3)
    normed = build_joint_model(SPEC, sizes, component_kwargs=MMOE, batch_norm=True)
    assert 0.8e-4 < _table_spread(normed) < 1.2e-4
    given = build_joint_model(SPEC, sizes, batch_norm=True, component_kwargs={
        **MMOE, "embedding": {"embeddings_initializer": keras.initializers.RandomNormal(stddev=0.5)}})
    assert 0.4 < _table_spread(given) < 0.6
