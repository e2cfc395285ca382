"""Bring your own data (issue 16): a user-written spec and a CSV through the whole pipeline, as
docs/your_data.md runs them; and the flags' and the data's errors, before any component runs."""

from __future__ import annotations

import glob
import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tfjoint import cli
from tfjoint.features.spec_file import load_spec_file, spec_to_dict

DATA = pathlib.Path(__file__).resolve().parent / "data"
SPEC_FILE = str(DATA / "shop.yaml")
CSV = str(DATA / "shop.csv")


def _fails(argv, capsys) -> str:
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    assert code not in (0, None)
    captured = capsys.readouterr()
    return str(code) + captured.err


@pytest.mark.parametrize("extra, says", [
    (["--dataset", "synthetic", "--data", CSV], "--dataset and --spec are mutually exclusive"),
    ([], "needs its data: --data"),
    (["--data", CSV, "--data-root", str(DATA)], "--data and --data-root are mutually exclusive"),
])
def test_pipeline_run_refuses_conflicting_flags_before_any_component(tmp_path, capsys, extra, says):
    out = _fails(["pipeline", "run", "--spec", SPEC_FILE, *extra, "--pipeline-root", str(tmp_path / "p")], capsys)
    assert says in out and "Traceback" not in out
    assert not (tmp_path / "p").exists()


def test_a_bad_spec_file_and_bad_rows_are_one_line_before_any_component(tmp_path, capsys):
    spec = tmp_path / "my.yaml"
    spec.write_text((DATA / "shop.yaml").read_text().replace("parent: click", "parent: clik"))
    out = _fails(["pipeline", "run", "--spec", str(spec), "--data", CSV, "--pipeline-root", str(tmp_path / "p")], capsys)
    assert f"{spec}: tasks[1].parent: 'clik' is not a task" in out
    lines = (DATA / "shop.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",ios,", ",ios,", 1).split(",")
    lines[5][3] = "cheap"  # the price column of data row 5
    lines[5] = ",".join(lines[5])
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    out = _fails(["pipeline", "run", "--spec", SPEC_FILE, "--data", str(tmp_path / "bad.csv"),
                  "--pipeline-root", str(tmp_path / "p")], capsys)
    assert "column 'price' (dense) has 1 values that are not finite numbers: first at row 5 (line 6), 'cheap'" in out
    assert len(out.strip().splitlines()) == 1
    assert not glob.glob(str(tmp_path / "p" / "*" / "*"))  # no component ran


def test_the_spec_travels_to_transform_and_trainer_as_a_dict_not_a_name(tmp_path):
    from tfjoint.pipeline.pipeline import create_pipeline

    spec, _ = load_spec_file(SPEC_FILE)
    pipeline = create_pipeline(pipeline_name="p", pipeline_root=str(tmp_path), data_root=str(tmp_path), dataset=spec,
                               model="mmoe", serving_dir=str(tmp_path), schema_file=str(tmp_path / "s.pbtxt"))
    by_id = {c.id: c for c in pipeline.components}
    for component in ("Transform", "Trainer"):
        config = by_id[component].exec_properties["custom_config"]
        config = json.loads(config) if isinstance(config, str) else config
        assert config["dataset_spec"] == spec_to_dict(spec), component


def test_a_csv_with_a_user_written_spec_trains_pushes_and_serves(tmp_path, capsys, _inputs_unchanged):
    """The worked example of docs/your_data.md: `tfjoint pipeline run --spec --data`, 1 epoch;
    the pushed model answers over gRPC as its signature does in-process; the user's files are
    only read. One run checks issue 18's route too (a second full pipeline run would cost CI
    minutes): the spec gets a vocabulary budget and every Beam component runs on two worker
    processes (`--beam-workers 2`); the budget must reach Transform (a top-k vocabulary), the
    Trainer (its OOV rate) and the served model (unseen ids hash into distinct OOV buckets)."""
    import tensorflow_transform as tft

    from tfjoint.pipeline import runners
    from tfjoint.serving.client import ServingClient
    from tfjoint.serving.server import serve_in_background

    _inputs_unchanged.watch(DATA)

    top_k, buckets = 20, 4  # shop.csv has 60 users
    spec_file = tmp_path / "shop_budget.yaml"
    spec_file.write_text((DATA / "shop.yaml").read_text()
                         + f"vocabulary_budgets: {{user_id: {{top_k: {top_k}, num_oov_buckets: {buckets}}}}}\n")
    summary = tmp_path / "run.json"
    code = cli.main(["pipeline", "run", "--spec", str(spec_file), "--data", CSV, "--epochs", "1", "--batch-size", "64",
                     "--beam-workers", "2", "--pipeline-root", str(tmp_path / "pipeline"),
                     "--serving-dir", str(tmp_path / "serving"), "--score", "3", "--json", str(summary)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "== shop / mmoe: Evaluator metrics" in out and "pushed SavedModel" in out
    # Observability: a short epoch line per epoch without the gate metrics, which TensorBoard
    # gets, a gate summary, the heatmap and the model card next to the Evaluator's table.
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch 1/1")]
    assert len(epoch_lines) == 1 and "click loss" in epoch_lines[0] and "gate_" not in epoch_lines[0], out
    assert len(epoch_lines[0]) < 400 and "tensorboard --logdir" in out and "mean gate weight per expert" in out
    assert (tmp_path / "pipeline" / "evaluation_heatmap.png").stat().st_size > 0
    card = (tmp_path / "pipeline" / "model_card.md").read_text()
    assert "# Model card: shop / mmoe" in card and "blessed: True" in card and "click/AUC" in card
    run = json.loads(summary.read_text())
    pushed = run["pushed_dir"]
    assert os.path.basename(os.path.dirname(pushed)) == "shop"
    spec, _ = load_spec_file(SPEC_FILE)
    assert set(run["metrics"]) == {"overall", *spec.scenarios}  # sliced by the CSV's page column
    eval_files = sorted(glob.glob(str(tmp_path / "pipeline" / "data" / "shop" / "eval" / "*")))
    examples = [r.numpy() for r in tf.data.TFRecordDataset(eval_files).take(8)]
    assert len(examples) == 8
    local = tf.saved_model.load(pushed).signatures["serving_default"](examples=tf.constant(examples))
    assert set(local) == set(spec.label_keys)
    with serve_in_background(model_name="shop", model_base_path=os.path.dirname(pushed), port=0, rest_api_port=0,
                             file_system_poll_wait_seconds=0) as server:
        client = ServingClient(server.grpc_target, "shop", timeout=60)
        client.wait_until_available()
        served = client.predict(examples)
        client.close()
    for task in spec.label_keys:
        np.testing.assert_allclose(served[task], local[task].numpy(), atol=1e-6)
    clicks = np.ravel(served["click"])
    assert np.all((clicks > 0) & (clicks < 1)) and np.ptp(clicks) > 0  # probabilities that depend on the row

    # The vocabulary budget, end to end.
    outputs = runners.run_outputs(str(tmp_path / "pipeline" / "metadata.sqlite"))
    assert len(tft.TFTransformOutput(outputs["transform_graph"]).vocabulary_by_name("user_id")) == top_k
    trained = json.loads((pathlib.Path(outputs["model_run"]) / "training_summary.json").read_text())
    assert 0 < trained["oov_rates"]["user_id"] < 1
    example = tf.train.Example.FromString(examples[0])
    unseen = []
    for i in range(16):
        example.features.feature["user_id"].bytes_list.value[:] = [f"never-seen-{i}".encode()]
        unseen.append(example.SerializeToString())
    signatures = tf.saved_model.load(pushed).signatures
    ids = np.ravel(signatures["transform_features"](examples=tf.constant(unseen))["user_id"].numpy())
    assert set(ids) <= set(range(top_k + 1, top_k + buckets + 1)) and len(set(ids)) > 1, ids
    clicks = np.ravel(signatures["serving_default"](examples=tf.constant(unseen))["click"].numpy())
    assert len(set(np.round(clicks, 6))) > 1, clicks  # one OOV row (no budget) would give one value


def test_the_schema_is_generated_from_the_spec_or_given_and_checked(tmp_path):
    from tfjoint.features import SYNTHETIC
    from tfjoint.features.schema import build_schema, schema_path
    from tfjoint.pipeline.runners import pipeline_schema

    spec, _ = load_spec_file(SPEC_FILE)
    generated = pipeline_schema(spec, None, str(tmp_path))
    assert generated == str(tmp_path / "schema" / "shop.pbtxt")
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    assert text_format.Parse(pathlib.Path(generated).read_text(), schema_pb2.Schema()) == build_schema(spec)
    assert pipeline_schema(SYNTHETIC, None, str(tmp_path)) == str(schema_path(SYNTHETIC))
    assert pipeline_schema(spec, generated, str(tmp_path / "other")) == generated
    partial = tmp_path / "partial.pbtxt"
    partial.write_text('feature { name: "user_id" type: BYTES }\n')
    with pytest.raises(ValueError, match=r"--schema .*partial\.pbtxt lacks the spec's feature\(s\) \['click', "):
        pipeline_schema(spec, str(partial), str(tmp_path))
    partial.write_text("feature { nme: 1 }\n")
    with pytest.raises(ValueError, match=r"is not a TFMD Schema in text format"):
        pipeline_schema(spec, str(partial), str(tmp_path))


def test_hparams_cannot_replace_the_spec_that_travels_to_the_components():
    from tfjoint.pipeline.hparams import check_hparams

    with pytest.raises(ValueError, match=r"--hparams may not set \['dataset_spec'\]"):
        check_hparams({"dataset_spec": {"name": "other"}})
