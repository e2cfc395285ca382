"""Deploying: the compiled Kubeflow job names nothing of this machine, only the image the
Dockerfile builds; the runtime parameters reach the Trainer; the package carries its schemas."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from tfjoint import DEFAULT_IMAGE, IMAGE_PACKAGE_DIR, cli
from tfjoint.features import DATASETS
from tfjoint.pipeline import runtime

ROOT = Path(__file__).resolve().parents[1]
# An absolute POSIX path inside a JSON string (not the tail of a URL such as gs://bucket/x).
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.\\-])/(?:[\w.@+-]+/)*[\w.@*+-]+")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    output = tmp_path_factory.mktemp("kfp") / "pipeline.json"
    argv = ["pipeline", "compile", "--runner", "kubeflow", "--output", str(output), "--epochs", "3",
            "--data-root", "gs://bucket/data", "--serving-dir", "gs://bucket/serving", "--model-name", "movielens",
            "--beam-arg=--runner=DataflowRunner"]
    assert cli.main(argv) == 0
    return json.loads(output.read_text())


def test_the_compiled_job_names_no_local_path(job):
    text = json.dumps(job)
    local = {str(ROOT), os.getcwd(), sys.prefix, tempfile.gettempdir(), str(Path.home()), "/work", "/home", "/tmp"}
    assert not [p for p in local if p in text]
    paths = set(ABSOLUTE_PATH.findall(text))
    assert paths, "the schema must be named by its path inside the image"
    assert all(p.startswith(IMAGE_PACKAGE_DIR + "/") for p in paths), sorted(paths)
    schema_gen = json.dumps(job["pipelineSpec"]["root"]["dag"]["tasks"]["ImportSchemaGen"])
    assert f"{IMAGE_PACKAGE_DIR}/schemas/movielens-100k.pbtxt" in schema_gen


def test_the_pusher_writes_where_the_serving_configs_look(job):
    """serving/models.config's movielens, under the compiled --serving-dir."""
    pusher = json.dumps(job["pipelineSpec"]["root"]["dag"]["tasks"]["Pusher"])
    assert "gs://bucket/serving/movielens" in pusher


def test_every_step_runs_in_the_package_image(job):
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {DEFAULT_IMAGE}
    assert "--runner=DataflowRunner" in json.dumps(executors["Transform_executor"])


def test_every_executor_class_the_job_names_is_importable(job):
    """What the image's entry point imports, tfjoint's own step included."""
    import importlib

    executors = job["pipelineSpec"]["deploymentSpec"]["executors"].values()
    paths = [args[args.index("--executor_class_path") + 1] for e in executors
             if "--executor_class_path" in (args := e["container"].get("args", []))]
    assert "tfjoint.pipeline.runtime.RuntimeOverrides_Executor" in paths
    for path in paths:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_data_root_epochs_and_model_are_runtime_parameters(job):
    spec = job["pipelineSpec"]
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == set(runtime.PARAMETER_NAMES)
    defaults = job["runtimeConfig"]["parameters"]
    assert defaults == {"data_root": {"stringValue": "gs://bucket/data"}, "epochs": {"intValue": "3"},
                        "model": {"stringValue": "mmoe"}}
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ImportExampleGen"]["inputs"]["parameters"]["input_base"] == {"componentInputParameter": "data_root"}
    overrides = tasks["RuntimeOverrides"]["inputs"]["parameters"]
    assert {k: v["componentInputParameter"] for k, v in overrides.items()} == {n: n for n in runtime.PARAMETER_NAMES}
    trainer_inputs = tasks["Trainer"]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"]
    assert trainer_inputs["producerTask"] == "RuntimeOverrides"


def test_kfp_reads_the_pipeline_spec(job):
    """``kfp.Client().create_run_from_pipeline_package`` parses the spec as this proto."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.input_definitions.parameters) == set(runtime.PARAMETER_NAMES)


def test_runtime_overrides_reach_the_trainer_config(tmp_path):
    """The step writes the run's values as the Trainer's one hyperparameters file, and
    ``run_fn``'s config takes them over the compiled ``custom_config``."""
    from tfx.types.standard_artifacts import HyperParameters

    artifact = HyperParameters()
    artifact.uri = str(tmp_path)
    runtime.RuntimeOverrides_Executor().Do(
        {}, {"overrides_file": [artifact]}, {"data_root": "gs://b/other", "epochs": 7, "model": "ple"})
    assert os.listdir(tmp_path) == [runtime.OVERRIDES_FILENAME]  # the Trainer reads the only file
    written = json.loads((tmp_path / runtime.OVERRIDES_FILENAME).read_text())
    compiled = {"dataset": "synthetic", "model": "mmoe", "epochs": 2, "warmup_examples": "gs://b/data/eval/*"}
    config = runtime.merged_config(compiled, written)
    assert config == {"dataset": "synthetic", "model": "ple", "epochs": 7, "warmup_examples": "gs://b/other/eval/*"}
    assert runtime.merged_config(compiled, None) == compiled
    with pytest.raises(ValueError, match="epochs must be an integer > 0. Received: 0"):
        runtime.overrides("gs://b", 0, "mmoe")


def test_the_wheel_carries_every_schema(tmp_path):
    """A non-editable install (what the Dockerfile does) has the schemas ImportSchemaGen reads."""
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info into the source
    shutil.copytree(ROOT / "tfjoint", src / "tfjoint", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    str(src), "-w", str(tmp_path)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("tfjoint-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"tfjoint/schemas/{name}.pbtxt" for name in DATASETS} <= names


def _docker_unavailable() -> str | None:
    """Why no image can be built here (no docker, or no reachable daemon), or None."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the docker daemon did not answer `docker info` within 30 s"
    if info.returncode != 0:
        said = [line.strip() for line in info.stderr.splitlines() if line.strip()]
        return f"the docker daemon is not reachable ({said[-1] if said else f'docker info: exit {info.returncode}'})"
    return None


DOCKER_UNAVAILABLE = _docker_unavailable()


@pytest.mark.skipif(DOCKER_UNAVAILABLE is not None, reason=f"cannot build the image here: {DOCKER_UNAVAILABLE}")
def test_the_dockerfile_builds_the_image_the_pipeline_names():
    """Builds the image (the Dockerfile checks the package path and the schemas) and runs the
    compile's schema path inside it."""
    subprocess.run(["docker", "build", "-t", DEFAULT_IMAGE, str(ROOT)], check=True, timeout=3600)
    probe = ("import os; from tfjoint.features import get_dataset_spec; "
             "from tfjoint.features.schema import image_schema_path; "
             "print(os.path.isfile(image_schema_path(get_dataset_spec('movielens-100k'))))")
    out = subprocess.run(["docker", "run", "--rm", DEFAULT_IMAGE, "python", "-c", probe],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    assert out.strip().endswith("True")


def test_a_users_spec_compiles_into_the_job_with_its_schema(tmp_path, capsys):
    """`compile --spec`: the spec itself travels in the job (as in a local run) and
    ImportSchemaGen reads the schema the user staged; without one, one line and exit 2."""
    spec_file = str(ROOT / "tests" / "data" / "shop.yaml")
    output = tmp_path / "shop.json"
    base = ["pipeline", "compile", "--output", str(output), "--spec", spec_file, "--data-root", "gs://b/shop"]
    assert cli.main(base) == 2
    assert "needs its schema where the job runs: --schema" in capsys.readouterr().err
    assert not output.exists()
    assert cli.main([*base, "--schema", "gs://b/shop.pbtxt"]) == 0
    text = output.read_text()
    assert "gs://b/shop.pbtxt" in text and str(ROOT) not in text and "/tmp" not in text
    job = json.loads(text)["pipelineSpec"]
    assert "gs://b/shop.pbtxt" in json.dumps(job["root"]["dag"]["tasks"]["ImportSchemaGen"])
    # The Transform and Trainer configs carry the spec itself (its categorical columns).
    assert text.count('\\"categorical\\": [\\"user_id\\", \\"item_id\\", \\"device\\"]') >= 2, text[:2000]
