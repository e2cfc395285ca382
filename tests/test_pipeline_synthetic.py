"""End to end: the local TFX pipeline on the synthetic dataset, judged by its Evaluator output
and by what it pushed."""

from __future__ import annotations

import glob
import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma

from tfjoint.features import SCENARIO_FALLBACK_KEY, SCENARIO_KEY, SYNTHETIC
from tfjoint.pipeline import evaluation, runners

BINARY = ("auc", "binary_crossentropy", "calibration", "example_count")
REGRESSION = ("root_mean_squared_error", "mean_absolute_error", "example_count")


def test_evaluator_reports_every_metric_per_scenario_and_task_and_blesses(synthetic_run):
    table = evaluation.metric_table(synthetic_run.evaluation_dir, SYNTHETIC)
    assert set(table) == {"overall", *SYNTHETIC.scenarios}
    for slice_name, by_task in table.items():
        for task in SYNTHETIC.tasks:
            wanted = BINARY if task.type == "binary" else REGRESSION
            missing = [m for m in wanted if m not in by_task.get(task.name, {})]
            assert not missing, f"{slice_name}/{task.name} lacks {missing}"
    overall = table["overall"]
    # The synthetic click signal is learnable (a logistic model reaches ~0.78 AUC).
    assert overall["click"]["auc"] > 0.7
    assert 0.7 < overall["click"]["calibration"] < 1.4
    # conversion is judged only where click = 1: its (weighted) count is the number of clicks.
    assert overall["conversion"]["example_count"] < overall["click"]["example_count"]
    clicks = overall["click"]["mean_label"] * overall["click"]["example_count"]
    assert abs(overall["conversion"]["example_count"] - clicks) < 0.5
    assert evaluation.is_blessed(synthetic_run.evaluation_dir)


def test_pushed_model_has_tf_serving_layout_and_both_signatures(synthetic_run):
    pushed = synthetic_run.pushed_dir
    assert pushed is not None
    version = os.path.basename(pushed)
    assert version.isdigit()
    assert os.path.basename(os.path.dirname(pushed)) == "synthetic"
    assert os.path.exists(os.path.join(pushed, "saved_model.pb"))
    loaded = tf.saved_model.load(pushed)
    assert set(loaded.signatures) == {"serving_default", "serving_auxiliary", "transform_features"}
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["examples"]
    assert set(serve.structured_outputs) == set(SYNTHETIC.label_keys)
    auxiliary = loaded.signatures["serving_auxiliary"].structured_outputs
    assert set(auxiliary) == {*SYNTHETIC.label_keys, SCENARIO_FALLBACK_KEY}
    # The Trainer wrote TF Serving's warmup file from real held-out records.
    from tfjoint.serving.warmup import read_warmup_requests

    logs = read_warmup_requests(pushed)
    assert len(logs) >= 1
    request = logs[0].predict_log.request
    assert request.model_spec.name == "synthetic" and "examples" in request.inputs
    assert request.inputs["examples"].tensor_shape.dim[0].size > 0


def test_serving_signature_matches_the_keras_model_on_transformed_features(synthetic_run):
    files = sorted(glob.glob(os.path.join(synthetic_run.data_root, "eval", "*")))
    serialized = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(files).take(64)])
    loaded = tf.saved_model.load(synthetic_run.pushed_dir)
    served = loaded.signatures["serving_default"](examples=serialized)
    transformed = loaded.signatures["transform_features"](examples=serialized)
    model = keras.saving.load_model(synthetic_run.keras_model_path)
    direct = model.predict({k: transformed[k] for k in model.inputs_spec}, verbose=0)
    for task in SYNTHETIC.label_keys:
        np.testing.assert_allclose(served[task].numpy(), direct[task], atol=1e-5)
    rows = runners.score_examples(synthetic_run.pushed_dir, synthetic_run.data_root, SYNTHETIC, 3)
    assert len(rows) == 3 and all(0.0 <= r["click_pred"] <= 1.0 for r in rows)


def test_unknown_scenario_takes_the_shared_path_and_is_flagged(synthetic_run):
    files = sorted(glob.glob(os.path.join(synthetic_run.data_root, "eval", "*")))
    records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files).take(8)]
    for i, example in enumerate(records[:4]):
        example.features.feature[SCENARIO_KEY].int64_list.value[:] = [SYNTHETIC.num_scenarios + 7 * i]
    serialized = tf.constant([e.SerializeToString() for e in records])
    loaded = tf.saved_model.load(synthetic_run.pushed_dir)
    served = loaded.signatures["serving_auxiliary"](examples=serialized)
    np.testing.assert_array_equal(served[SCENARIO_FALLBACK_KEY].numpy()[:, 0], [1, 1, 1, 1, 0, 0, 0, 0])
    for task in SYNTHETIC.label_keys:
        assert np.all(np.isfinite(served[task].numpy()))


class _Broken(tf.Module):
    """A model that predicts a confident constant: it must not be blessed."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        ones = tf.ones([tf.shape(examples)[0], 1])
        return {"click": 0.999 * ones, "conversion": 0.999 * ones, "score": 100.0 * ones}


def test_evaluator_config_refuses_a_broken_model(synthetic_run, tmp_path):
    broken = _Broken()
    model_dir = str(tmp_path / "broken")
    tf.saved_model.save(broken, model_dir, signatures={"serving_default": broken.serve.get_concrete_function()})
    config = evaluation.eval_config(SYNTHETIC)
    output = str(tmp_path / "eval")
    tfma.run_model_analysis(
        eval_shared_model=tfma.default_eval_shared_model(eval_saved_model_path=model_dir, eval_config=config),
        eval_config=config,
        data_location=os.path.join(synthetic_run.data_root, "eval", "*"),
        output_path=output,
    )
    assert not evaluation.is_blessed(output)
    failed = {
        (f.metric_key.name, f.metric_key.output_name)
        for v in tfma.load_validation_result(output).metric_validations_per_slice
        for f in v.failures
    }
    assert ("auc", "click") in failed and ("binary_crossentropy", "click") in failed
    assert ("root_mean_squared_error", "score") in failed


def test_the_pipeline_trains_the_full_joint_model_with_every_family(synthetic_run):
    from tfjoint import catalog
    from tfjoint.bench.joint import FULL

    model = keras.saving.load_model(synthetic_run.keras_model_path)
    layers = {
        "sequence_encoder": model.sequence_encoder,
        "modality_encoder": model.modality_encoder,
        "scenario_adapter": model.scenario_adapter,
        "task_architecture": model.task_architecture,
        "balancer": model.balancer,
    }
    for slot, layer in layers.items():
        assert type(layer) is catalog.get(FULL[slot], slot=slot).cls, slot


def test_a_rerun_with_only_the_trainer_changed_reuses_every_component_before_it(
        synthetic_run, synthetic_run_args, tmp_path, capsys):
    """TFX caching (``enable_cache``): the data, statistics, schema and Transform of the first
    run are reused; the Trainer, Evaluator and Pusher run again, and run_local returns this
    run's outputs, not the newest folders on disk."""
    metadata = os.path.join(synthetic_run_args["pipeline_root"], "metadata.sqlite")
    first = runners.run_outputs(metadata)
    assert first["evaluation"] == synthetic_run.evaluation_dir
    capsys.readouterr()
    args = {**synthetic_run_args, "serving_dir": str(tmp_path / "serving"),
            "hparams": {**synthetic_run_args["hparams"], "epochs": 1}}
    rerun = runners.run_local(**args)
    again = runners.run_outputs(metadata)
    assert "transformed_examples" not in first  # the Trainer transforms the raw examples itself
    for key in ("examples", "statistics", "schema", "anomalies", "transform_graph"):
        assert again[key] == first[key], key
    assert rerun.model_run_dir == again["model_run"] != first["model_run"]
    assert rerun.evaluation_dir == again["evaluation"] != first["evaluation"]
    started = [line for line in capsys.readouterr().out.splitlines() if line.endswith(" ...")]
    assert started == ["[tfjoint] Trainer ...", "[tfjoint] Evaluator ...", "[tfjoint] Pusher ..."], started
    # A third run of the first run's arguments reuses the first run's model and evaluation.
    third = runners.run_local(**{**synthetic_run_args, "serving_dir": str(tmp_path / "serving")})
    assert (third.model_run_dir, third.evaluation_dir) == (synthetic_run.model_run_dir, synthetic_run.evaluation_dir)
