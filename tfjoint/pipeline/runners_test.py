import os
import time

from tfjoint.pipeline.runners import component_progress


def test_progress_reports_components_in_start_order(tmp_path, capsys):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "A", "out", "1"))  # an earlier run: not reported
    with component_progress(root, ("A", "B", "C")):
        now = time.time()
        for name, started in (("C", now - 3), ("B", now - 2), ("A", now - 1)):
            path = os.path.join(root, name, "out", "2")
            os.makedirs(path)
            os.utime(path, (started, started))
        time.sleep(1.2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[tfjoint]")]
    assert lines[0] == "[tfjoint] C ..." and lines[1].startswith("[tfjoint] C done in 1 s (CPU ")
    assert lines[2] == "[tfjoint] B ..." and lines[3].startswith("[tfjoint] B done in 1 s (CPU ")
    assert lines[4] == "[tfjoint] A ..." and lines[5].startswith("[tfjoint] A done in")


def test_progress_reports_a_component_that_starts_just_before_the_end(tmp_path, capsys):
    with component_progress(str(tmp_path), ("A", "B")):
        os.makedirs(os.path.join(tmp_path, "A", "out", "1"))
        time.sleep(1.2)
        os.makedirs(os.path.join(tmp_path, "B", "out", "1"))  # then the pipeline returns at once
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[tfjoint]")]
    assert lines[-2:] == ["[tfjoint] B ...", lines[-1]] and lines[-1].startswith("[tfjoint] B done in 0 s"), lines


def test_progress_says_a_long_component_is_still_running(tmp_path, capsys):
    with component_progress(str(tmp_path), ("A",), every_s=0.6):
        os.makedirs(os.path.join(tmp_path, "A", "out", "1"))
        time.sleep(3.2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[tfjoint]")]
    assert lines[0] == "[tfjoint] A ..." and lines[-1].startswith("[tfjoint] A done in")
    running = lines[1:-1]
    assert len(running) >= 2 and all(line.startswith("[tfjoint] A running, ") for line in running), lines


def test_score_examples_leaves_a_label_undefined_where_the_parent_label_is_0(tmp_path):
    import numpy as np
    import tensorflow as tf

    from tfjoint.features import MOVIELENS_100K
    from tfjoint.pipeline.runners import score_examples

    watch, like, rating = [1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [5.0, 0.0, 2.0]
    os.makedirs(tmp_path / "data" / "eval")
    with tf.io.TFRecordWriter(str(tmp_path / "data" / "eval" / "part-0")) as writer:
        for values in zip(watch, like, rating):
            feature = {
                name: tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                for name, value in zip(("watch", "like", "rating"), values)
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, examples):
            ones = tf.ones([tf.shape(examples)[0], 1])
            return {"watch": 0.25 * ones, "like": 0.5 * ones, "rating": 3.0 * ones}

    model = Model()
    tf.saved_model.save(model, str(tmp_path / "model"), signatures={"serving_default": model.serve})
    rows = score_examples(str(tmp_path / "model"), str(tmp_path / "data"), MOVIELENS_100K, count=5)
    assert [r["watch_label"] for r in rows] == watch
    assert [r["like_label"] for r in rows] == [1.0, None, 0.0]
    assert [r["rating_label"] for r in rows] == [5.0, None, 2.0]
    assert [r["like_pred"] for r in rows] == [0.5] * 3 and np.allclose([r["rating_pred"] for r in rows], 3.0)


def test_an_incompatible_combination_fails_before_any_component_runs(tmp_path):
    import pytest

    from tfjoint.pipeline import runners

    # Douban's sample has no behavior sequence, which SAR-Net reads; STEM needs per-task tables.
    with pytest.raises(ValueError, match=r"cannot build the joint model of douban-sample \(task_architecture=mmoe.*scenario_adapter=sar_net"):
        runners.run_local(dataset="douban-sample", model="mmoe", pipeline_root=str(tmp_path / "p"),
                          serving_dir=str(tmp_path / "s"), hparams={"scenario_adapter": "sar_net"})
    assert not (tmp_path / "p").exists()  # nothing was written
    runners.check_model(runners.get_dataset_spec("movielens-100k"), "ple", {"scenario_adapter": "star"})


def test_nova_encoder_needs_the_item_text_vectors_the_trainer_gives():
    import pytest

    from tfjoint.pipeline import runners

    spec = runners.get_dataset_spec("movielens-100k")
    with pytest.raises(ValueError, match="nova_encoder reads each history item's content.*--item-text-encoder"):
        runners.check_model(spec, "mmoe", {"sequence_encoder": "nova_encoder"})
    runners.check_model(spec, "mmoe", {"sequence_encoder": "nova_encoder", "item_text_encoder": "hashed"})


def test_the_curated_schema_makes_nan_inf_and_out_of_domain_labels_anomalies(tmp_path):
    import numpy as np
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from tfjoint.features import SYNTHETIC
    from tfjoint.features.schema import build_schema
    from tfjoint.pipeline import runners

    dense, label = SYNTHETIC.dense[0], SYNTHETIC.tasks[0].name
    # NaN as a value of the record (a DataFrame would read it as a missing value).
    path = str(tmp_path / "bad.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for x, y in ((0.5, 0.0), (np.nan, 1.0), (np.inf, 7.0), (1.0, 1.0)):
            ex = tf.train.Example()
            ex.features.feature[dense].float_list.value.append(x)
            ex.features.feature[label].float_list.value.append(y)
            writer.write(ex.SerializeToString())
    anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_tfrecord(path), build_schema(SYNTHETIC))
    kinds = {name: {r.type for r in info.reason} for name, info in anomalies.anomaly_info.items()}
    assert {anomalies_pb2.AnomalyInfo.FLOAT_TYPE_HAS_NAN, anomalies_pb2.AnomalyInfo.FLOAT_TYPE_HAS_INF} <= kinds[dense]
    assert anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT in kinds[label]
    # What the ExampleValidator writes, read back per split.
    run = tmp_path / "ExampleValidator" / "anomalies" / "7"
    for split, found in (("train", anomalies), ("eval", anomalies_pb2.Anomalies())):
        (run / f"Split-{split}").mkdir(parents=True)
        (run / f"Split-{split}" / "SchemaDiff.pb").write_bytes(found.SerializeToString())
    read = runners.read_anomalies(str(tmp_path))
    assert read["eval"] == [] and any(line.startswith(f"{dense}: ") for line in read["train"])


def test_a_user_data_root_is_never_written_and_an_incomplete_one_is_an_error(tmp_path, capsys):
    import hashlib

    from tfjoint import cli

    user = tmp_path / "mydata"
    (user / "train").mkdir(parents=True)
    record = user / "train" / "data.tfrecord"
    record.write_bytes(b"my own records")
    before = hashlib.sha256(record.read_bytes()).hexdigest()
    argv = ["pipeline", "run", "--dataset", "synthetic", "--pipeline-root", str(tmp_path / "p"),
            "--serving-dir", str(tmp_path / "s")]
    assert cli.main([*argv, "--data-root", str(user)]) == 2
    assert "has no eval/* files" in capsys.readouterr().err
    assert cli.main([*argv, "--data-root", str(tmp_path / "mydta")]) == 2  # misspelt
    assert "is not a directory" in capsys.readouterr().err
    assert hashlib.sha256(record.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in user.rglob("*")) == ["data.tfrecord", "train"]
    assert not (tmp_path / "mydta").exists() and not (tmp_path / "p").exists()
