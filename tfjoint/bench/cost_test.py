"""The cost model's arithmetic and the log lines it reads (issue 18)."""

import pytest

from tfjoint.bench.cost import component_seconds, format_model, model


def test_component_seconds_reads_the_pipeline_progress_lines():
    log = "[tfjoint] Transform ...\n[tfjoint] Transform done in 62 s (CPU 41 s)\nnoise\n[tfjoint] Evaluator done in 9 s (CPU 8 s)\n"
    assert component_seconds(log) == {"Transform": (62, 41), "Evaluator": (9, 8)}


def test_the_model_turns_cpu_seconds_per_million_into_machines_and_hours():
    # 3,600 CPU-s per 1M examples at 1e9 a day is 1,000 vCPU-hours; in a 6 h window on
    # 4-vCPU workers that is 1000 / 24 workers.
    per_million = {"transform": 3600.0, "evaluator": 360.0, "training": 7200.0, "serving": 864.0}
    out = model(per_million, window_h=6, vcpus=4, workers=5, train_vcpus=8, efficiency=0.5, peak=2, utilization=0.5)
    assert out["transform"]["vcpu_hours"] == pytest.approx(1000)
    assert out["transform"]["dataflow_workers"] == pytest.approx(1000 / 24)
    assert out["evaluator"]["vcpu_hours"] == pytest.approx(100)
    assert out["training"]["vcpu_hours"] == pytest.approx(2000)
    assert out["training"]["hours"] == pytest.approx(2000 / (5 * 8 * 0.5))
    # 1e9 / 86,400 s = 11,574 predictions/s; x2 peak x 864e-6 CPU-s each / 0.5 utilization = 40 vCPUs.
    assert out["serving"]["vcpus"] == pytest.approx(1e9 / 86400 * 2 * 864e-6 / 0.5)
    assert out["serving"]["replicas"] == pytest.approx(out["serving"]["vcpus"] / 8)
    doubled = model({k: 2 * v for k, v in per_million.items()}, window_h=6, vcpus=4, workers=5)
    assert doubled["transform"]["dataflow_workers"] == pytest.approx(2 * out["transform"]["dataflow_workers"])
    text = format_model(per_million, {k: f"cmd-{k}" for k in per_million}, out)
    assert text.count("\n") == 5 and "cmd-serving" in text and "41.7 Dataflow workers" in text
