"""The config files under serving/ parse as the protos the real TF Serving reads."""

from __future__ import annotations

import os

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfjoint.serving import protos
from tfjoint.serving.batching import BatchingOptions

SERVING = os.path.join(os.path.dirname(__file__), "..", "..", "serving")


def _path(name: str) -> str:
    return os.path.join(SERVING, name)


def test_models_config():
    cfg = model_server_config_pb2.ModelServerConfig()
    with open(_path("models.config")) as fh:
        text_format.Parse(fh.read(), cfg)
    (mc,) = cfg.model_config_list.config
    assert (mc.name, mc.base_path, mc.model_platform) == ("movielens", "/models/movielens", "tensorflow")
    assert mc.model_version_policy.latest.num_versions == 1


def test_batching_and_monitoring_configs():
    b = protos.parse_text_file(_path("batching_parameters.txt"), protos.BatchingParameters)
    opts = BatchingOptions.from_proto(b)
    assert opts.max_batch_size == 128 and opts.num_batch_threads == 4
    m = protos.parse_text_file(_path("monitoring.config"), protos.MonitoringConfig)
    assert m.prometheus_config.enable and m.prometheus_config.path.startswith("/")
    with pytest.raises(ValueError):  # unknown fields are rejected, as by the real server
        text = "max_batch_sizes { value: 1 }"
        p = os.path.join(os.environ.get("TMPDIR", "/tmp"), "tfjoint_bad_batching.txt")
        with open(p, "w") as fh:
            fh.write(text)
        protos.parse_text_file(p, protos.BatchingParameters)


def test_ssl_config_fields():
    cfg = text_format.Parse(
        'server_key: "k" server_cert: "c" custom_ca: "a" client_verify: true', protos.SSLConfig()
    )
    assert cfg.client_verify and cfg.server_key == "k"


def test_deployment_manifests():
    with open(_path("kubernetes.yaml")) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"ConfigMap", "Deployment", "Service"} <= set(kinds)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("tensorflow/serving")
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert {p["port"] for p in kinds["Service"]["spec"]["ports"]} == {8500, 8501}
    cm = kinds["ConfigMap"]["data"]
    cfg = text_format.Parse(cm["models.config"], model_server_config_pb2.ModelServerConfig())
    assert cfg.model_config_list.config[0].name == "movielens"
    text_format.Parse(cm["batching_parameters.txt"], protos.BatchingParameters())
    text_format.Parse(cm["monitoring.config"], protos.MonitoringConfig())
    flags = {a.split("=")[0] for a in container["args"]}
    assert "--model_config_file" in flags and "--monitoring_config_file" in flags
    with open(_path("docker-compose.yaml")) as fh:
        compose = yaml.safe_load(fh)
    svc = compose["services"]["tf-serving"]
    assert svc["image"].startswith("tensorflow/serving")
    assert any(v.endswith(":/models:ro") for v in svc["volumes"])
