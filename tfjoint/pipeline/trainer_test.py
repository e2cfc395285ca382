import types

import pytest
import tensorflow as tf

from tfjoint.pipeline import trainer


def test_strategy_follows_the_hardware(monkeypatch):
    assert trainer.pick_strategy() is tf.distribute.get_strategy()  # CPU only here

    def fake_devices(n):
        return lambda kind: [types.SimpleNamespace(name=f"/device:GPU:{i}") for i in range(n)] if kind == "GPU" else []

    monkeypatch.setattr(tf.config, "list_logical_devices", fake_devices(1))
    strategy = trainer.pick_strategy()
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    monkeypatch.setattr(tf.config, "list_logical_devices", fake_devices(2))
    created = []
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda: created.append("mirrored") or "mirrored")
    assert trainer.pick_strategy() == "mirrored"
    resolver_args = []
    monkeypatch.setattr(
        tf.distribute.cluster_resolver, "TPUClusterResolver", lambda tpu: resolver_args.append(tpu) or tpu
    )
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: None)
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: None)
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("tpu", r))
    monkeypatch.setenv("TPU_NAME", "my-tpu-node")
    assert trainer.pick_strategy() == ("tpu", "my-tpu-node")


def test_run_fn_refuses_keras_2(monkeypatch):
    from tfjoint.joint import model as joint_model

    monkeypatch.setattr(joint_model.keras, "__version__", "2.16.0")
    with pytest.raises(RuntimeError, match="needs Keras 3"):
        trainer.run_fn(types.SimpleNamespace(custom_config={"dataset": "synthetic", "model": "mmoe"}))


def test_serving_default_returns_tasks_only_and_serves_requests_missing_features(tiny_transform, tmp_path):
    import numpy as np

    from tfjoint.datasets.examples import frame_to_examples
    from tfjoint.features import SCENARIO_FALLBACK_KEY, SCENARIO_KEY, SYNTHETIC
    from tfjoint.joint import build_joint_model
    from tfjoint.pipeline.conftest import synthetic_frame
    from tfjoint.pipeline.transform import vocabulary_sizes

    sizes = vocabulary_sizes(tiny_transform, SYNTHETIC)
    model = build_joint_model(SYNTHETIC, sizes, task_architecture="esmm")
    trainer.export_serving_model(model, tiny_transform, SYNTHETIC, str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    tasks = {t.name for t in SYNTHETIC.tasks}
    assert set(loaded.signatures["serving_default"].structured_outputs) == tasks
    assert set(loaded.signatures["serving_auxiliary"].structured_outputs) == {
        *tasks, "conversion_joint", SCENARIO_FALLBACK_KEY
    }

    frame = synthetic_frame(["u1", "u2"], ["a", "b"], [1, 2], [["b"], []], [["t1"], []])
    full, missing = (tf.train.Example.FromString(e) for e in frame_to_examples(frame, SYNTHETIC))
    del missing.features.feature[SCENARIO_KEY]
    del missing.features.feature["x3"]
    unknown = tf.train.Example()  # the same row, its scenario unknown and x3 = 0 given explicitly
    unknown.CopyFrom(missing)
    unknown.features.feature[SCENARIO_KEY].int64_list.value[:] = [99]
    unknown.features.feature["x3"].float_list.value[:] = [0.0]
    for label in SYNTHETIC.label_keys:  # labels are not serving inputs
        del unknown.features.feature[label]
    examples = tf.constant([e.SerializeToString() for e in (full, missing, unknown)])
    served = {k: v.numpy() for k, v in loaded.signatures["serving_default"](examples=examples).items()}
    auxiliary = loaded.signatures["serving_auxiliary"](examples=examples)
    transformed = loaded.signatures["transform_features"](examples=examples)
    unknown_id = SYNTHETIC.num_scenarios
    assert transformed[SCENARIO_KEY].numpy()[:, 0].tolist() == [1, unknown_id, unknown_id]
    assert auxiliary[SCENARIO_FALLBACK_KEY].numpy()[:, 0].tolist() == [0, 1, 1]
    direct = model.predict({k: transformed[k] for k in model.inputs_spec}, verbose=0)
    for task in tasks:
        assert np.all(np.isfinite(served[task]))
        # The request without a scenario gets the unknown-scenario prediction.
        np.testing.assert_allclose(served[task][1], served[task][2], rtol=1e-6)
        np.testing.assert_allclose(served[task], direct[task], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(auxiliary[task].numpy(), served[task])


def test_a_cluster_refuses_gradient_level_balancers(monkeypatch):
    import json

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="balancer 'pcgrad' combines per-task gradients"):
        trainer._check_multi_worker_balancer("pcgrad")
    trainer._check_multi_worker_balancer("fixed")
    monkeypatch.delenv("TF_CONFIG")
    trainer._check_multi_worker_balancer("pcgrad")  # one worker: every balancer


def test_a_bfloat16_model_exports_a_float32_serving_signature(tiny_transform, tmp_path):
    import numpy as np

    from tfjoint.datasets.examples import frame_to_examples
    from tfjoint.features import SYNTHETIC
    from tfjoint.joint import build_joint_model
    from tfjoint.pipeline.conftest import synthetic_frame
    from tfjoint.pipeline.transform import vocabulary_sizes

    sizes = vocabulary_sizes(tiny_transform, SYNTHETIC)
    model = build_joint_model(SYNTHETIC, sizes, task_architecture="esmm", precision="mixed_bfloat16")
    trainer.export_serving_model(model, tiny_transform, SYNTHETIC, str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    served_dtypes = {k: v.dtype for k, v in loaded.signatures["serving_default"].structured_outputs.items()}
    assert served_dtypes == {t.name: tf.float32 for t in SYNTHETIC.tasks}
    auxiliary = loaded.signatures["serving_auxiliary"].structured_outputs
    assert auxiliary["conversion_joint"].dtype == tf.float32  # ESMM's pCTCVR
    frame = synthetic_frame(["u1", "u2"], ["a", "b"], [1, 2], [["b"], []], [["t1"], []])
    examples = tf.constant(list(frame_to_examples(frame, SYNTHETIC)))
    served = loaded.signatures["serving_default"](examples=examples)
    assert all(np.all(np.isfinite(v.numpy())) for v in served.values())


def test_the_trainer_trains_on_the_transformed_features_the_model_serves(tiny_transform, tmp_path):
    """Transform writes no transformed examples (``materialize=False``, issue 17): the
    Trainer's input pipeline applies the transform graph to ImportExampleGen's raw records.
    Its batches must be what the exported ``transform_features`` signature gives for the same
    records, i.e. what Transform would have written: ids, not raw strings; z-scores, not raw
    values; and the pipeline must hand the Trainer the raw examples."""
    import numpy as np
    from tfx_bsl.public import tfxio

    from tfjoint.datasets.examples import frame_to_examples, write_tfrecords
    from tfjoint.features import SYNTHETIC
    from tfjoint.joint import build_joint_model
    from tfjoint.pipeline.conftest import synthetic_frame
    from tfjoint.pipeline.pipeline import create_pipeline
    from tfjoint.pipeline.transform import vocabulary_sizes

    frame = synthetic_frame(["u1", "u2", "u9", "u3"], ["a", "b", "c", "zz"], [0, 1, 2, 2],
                            [["b"], [], ["a", "c"], ["zz"]], [["t1"], [], ["t2", "t9"], ["t3"]])
    root = write_tfrecords({"train": frame, "eval": frame}, SYNTHETIC, tmp_path / "data")
    factory = lambda files, options, schema: tfxio.TFExampleRecord(files, schema=schema).TensorFlowDataset(options)  # noqa: E731
    fn_args = types.SimpleNamespace(data_accessor=types.SimpleNamespace(tf_dataset_factory=factory))
    model = build_joint_model(SYNTHETIC, vocabulary_sizes(tiny_transform, SYNTHETIC), task_architecture="mmoe")
    model_keys = list(model.inputs_spec)
    batches = list(trainer._dataset(fn_args, [str(root / "train" / "data.tfrecord")], tiny_transform, SYNTHETIC, 4, model_keys))
    assert len(batches) == 1
    x, y = batches[0]
    assert set(x) == set(model_keys) and set(y) == set(SYNTHETIC.label_keys)

    trainer.export_serving_model(model, tiny_transform, SYNTHETIC, str(tmp_path / "export"))
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["transform_features"](
        examples=tf.constant(list(frame_to_examples(frame, SYNTHETIC))))
    # The input pipeline shuffles: match rows by their dense feature (x1 = 0, 2, 4, 6 raw).
    order, served_order = np.argsort(x["x1"].numpy()[:, 0]), np.argsort(served["x1"].numpy()[:, 0])
    assert x["user_id"].dtype == tf.int64 and x["x1"].numpy().max() < 2  # indices and z-scores
    for key, value in x.items():
        np.testing.assert_allclose(value.numpy()[order], served[key].numpy()[served_order], rtol=1e-6, err_msg=key)
    for key, value in y.items():  # labels are not serving inputs: the raw rows' (frame order = x1 order)
        np.testing.assert_allclose(value.numpy()[order, 0], frame[key].to_numpy(), err_msg=key)

    pipeline = create_pipeline(pipeline_name="p", pipeline_root=str(tmp_path / "root"), data_root=str(root),
                               dataset=SYNTHETIC, model="mmoe", serving_dir=str(tmp_path / "serving"))
    components = {c.id: c for c in pipeline.components}
    assert "transformed_examples" not in components["Transform"].outputs
    assert components["Trainer"].inputs["examples"] is components["ImportExampleGen"].outputs["examples"]
