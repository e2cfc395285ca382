"""The shipped TF Serving configs: the local one serves what `make demo` pushes, as shipped;
the container ones (models.config, docker-compose.yaml, kubernetes.yaml) agree."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfjoint.serving.client import ServingClient
from tfjoint.serving.conftest import add_version, serialized, toy_export  # noqa: F401 - a fixture
from tfjoint.serving.server import read_model_config, serve_in_background

ROOT = Path(__file__).resolve().parents[1]
SERVING = ROOT / "serving"


def _demo_push_dir() -> str:
    """Where `make demo` pushes: <--serving-dir>/<--model-name>, read from the Makefile."""
    make = (ROOT / "Makefile").read_text()
    runs = re.search(r"^RUNS \?= (\S+)$", make, re.M).group(1)
    serving_dir = re.search(r"--serving-dir (\S+)", make).group(1).replace("$(RUNS)", runs)
    model_name = re.search(r"--model-name (\S+)", make).group(1)
    return f"{serving_dir}/{model_name}"


def _config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_the_local_config_serves_what_make_demo_pushes(tmp_path, toy_export, monkeypatch):
    (model,) = _config((SERVING / "models.local.config").read_text()).model_config_list.config
    assert model.base_path == _demo_push_dir()
    monkeypatch.chdir(tmp_path)  # a checkout after `make demo` (a toy model stands in)
    add_version(str(tmp_path / _demo_push_dir()), 1, toy_export)
    assert read_model_config(str(SERVING / "models.local.config")).model_config_list.config[0].base_path == str(
        tmp_path / _demo_push_dir())
    with serve_in_background(model_config_file=str(SERVING / "models.local.config"), port=0, rest_api_port=None,
                             file_system_poll_wait_seconds=0) as server:
        with ServingClient(server.grpc_target, model.name, timeout=30) as client:
            assert client.status()[0]["state"] == "AVAILABLE"
            assert client.predict(serialized(2))["click"].shape == (2, 1)


def test_the_container_configs_agree():
    container = _config((SERVING / "models.config").read_text())
    local = _config((SERVING / "models.local.config").read_text())
    (c,), (l,) = container.model_config_list.config, local.model_config_list.config
    assert (c.name, c.model_version_policy) == (l.name, l.model_version_policy)
    configmap, deployment, _ = yaml.safe_load_all((SERVING / "kubernetes.yaml").read_text())
    for name in ("models.config", "batching_parameters.txt", "monitoring.config"):
        shipped = (SERVING / name).read_text()
        assert re.sub(r"#.*\n", "", shipped).split() == configmap["data"][name].split(), name
    compose = yaml.safe_load((SERVING / "docker-compose.yaml").read_text())["services"]["tf-serving"]
    mount = next(v for v in compose["volumes"] if v.endswith(":/models:ro"))
    assert mount == f"../{Path(_demo_push_dir()).parent}:/models:ro"
    assert c.base_path == f"/models/{Path(_demo_push_dir()).name}"
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in compose["command"]] == args
