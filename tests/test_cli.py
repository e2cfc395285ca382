"""The command line: the registry listing, the schema check and the Kubeflow compile."""

from __future__ import annotations

import json

import pytest
import subprocess
import sys

from tfjoint import catalog, cli, registry
from tfjoint.pipeline.pipeline import COMPONENT_IDS


def test_models_json_lists_the_registry(capsys):
    assert cli.main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert all({"name", "family", "reference"} <= set(item) for item in listed)
    names = {item["name"] for item in listed}
    assert {"shared_bottom", "mmoe", "omoe", "feature_embedding", "behavior_pooling", "gating_fusion"} <= names
    assert names == {e.name for e in catalog.entries()}
    assert {item["family"] for item in listed} <= set(registry.FAMILIES)


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "tfjoint.cli", "models", "--json"], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out)


def test_schemas_match_the_feature_module(capsys):
    assert cli.main(["schema", "--check"]) == 0


def test_unknown_model_is_a_clear_error(tmp_path):
    try:
        cli.main(["pipeline", "compile", "--output", str(tmp_path / "x.json"), "--model", "nope"])
    except SystemExit as e:
        assert "unknown task_architecture 'nope'" in str(e) and "mmoe" in str(e)
    else:
        raise AssertionError("an unknown model must fail")


def test_kubeflow_compile_names_every_component(tmp_path):
    output = tmp_path / "pipeline.json"
    assert cli.main(["pipeline", "compile", "--runner", "kubeflow", "--output", str(output)]) == 0
    job = json.loads(output.read_text())
    spec = job.get("pipelineSpec", job)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(COMPONENT_IDS) <= set(tasks), sorted(tasks)
    trainer = json.dumps(tasks["Trainer"])
    assert "tfjoint.pipeline.trainer.run_fn" in trainer and '\\"model\\": \\"mmoe\\"' in trainer
    # one executor per component, and the step that applies the runtime parameters
    assert len(spec["deploymentSpec"]["executors"]) == len(COMPONENT_IDS) + 1


def test_kubeflow_compile_runs_the_trainer_on_n_vertex_workers(tmp_path, capsys):
    output = tmp_path / "pipeline.json"
    args = ["pipeline", "compile", "--output", str(output), "--trainer-workers", "3"]
    assert cli.main([*args, "--vertex-project", "my-project"]) == 0
    job = json.loads(output.read_text())
    trainer = json.loads(json.dumps(job.get("pipelineSpec", job)["root"]["dag"]["tasks"]["Trainer"]))
    text = json.dumps(trainer).replace("\\", "")
    # The Vertex extension's Trainer: a chief pool of 1 and a worker pool of 2 replicas.
    assert '"replica_count": 1' in text and '"replica_count": 2' in text and "my-project" in text
    executors = json.dumps(job.get("pipelineSpec", job)["deploymentSpec"]["executors"])
    assert "google_cloud_ai_platform" in executors
    assert cli.main(args) == 2
    assert "--vertex-project is needed" in capsys.readouterr().err


def test_a_component_by_import_path_reaches_the_trainer(tmp_path):
    """A user's own layer is named by its import path and lands in the Trainer's config."""
    output = tmp_path / "pipeline.json"
    path = "tfjoint.layers.multi_task.shared_bottom:SharedBottom"
    assert cli.main(["pipeline", "compile", "--output", str(output), "--model", path]) == 0
    job = json.loads(output.read_text())
    trainer = json.dumps(job.get("pipelineSpec", job)["root"]["dag"]["tasks"]["Trainer"])
    assert path in trainer
    try:
        cli.main(["pipeline", "compile", "--output", str(tmp_path / "y.json"), "--model", "tfjoint.nowhere:Thing"])
    except SystemExit as e:
        assert "tfjoint.nowhere:Thing" in str(e) and "importable" in str(e)
    else:
        raise AssertionError("an unimportable component must fail")


def test_beam_options_reach_every_beam_component_of_the_kubeflow_job(tmp_path):
    output = tmp_path / "pipeline.json"
    argv = ["pipeline", "compile", "--runner", "kubeflow", "--output", str(output),
            "--beam-arg=--runner=DataflowRunner", "--beam-arg=--region=europe-west1"]
    assert cli.main(argv) == 0
    text = output.read_text()
    assert "--runner=DataflowRunner" in text and "--region=europe-west1" in text


def test_beam_workers_reach_the_kubeflow_job_and_refuse_another_runner(tmp_path, capsys):
    output = tmp_path / "pipeline.json"
    assert cli.main(["pipeline", "compile", "--output", str(output), "--beam-workers", "3"]) == 0
    text = output.read_text()
    assert "--direct_running_mode=multi_processing" in text and "--direct_num_workers=3" in text
    code = cli.main(["pipeline", "compile", "--output", str(tmp_path / "x.json"), "--beam-workers", "3",
                     "--beam-arg=--runner=DataflowRunner"])
    err = capsys.readouterr().err
    assert code == 2 and "--beam-workers starts DirectRunner worker processes; with --runner=DataflowRunner" in err
    assert not (tmp_path / "x.json").exists()
