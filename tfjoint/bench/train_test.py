import json

import pytest

from tfjoint import cli
from tfjoint.bench import train
from tfjoint.features import ALIEXPRESS_SAMPLE
from tfjoint.joint import build_joint_model

SIZES = {k: 5 for k in ALIEXPRESS_SAMPLE.categorical}


def _dense(i, o):
    return 2 * i * o


def test_mmoe_flops_per_example_are_the_analytic_count():
    kwargs = {"num_experts": 3, "expert_units": [8, 4], "tower_units": [2]}
    model = build_joint_model(ALIEXPRESS_SAMPLE, SIZES, task_architecture="mmoe", embedding_dim=2,
                              component_kwargs={"task_architecture": kwargs}, numeric="raw", scenario_field=False)
    width = 16 * 2 + 63
    experts = 3 * (_dense(width, 8) + _dense(8, 4))
    gates = 2 * _dense(width, 3)
    towers_and_heads = 2 * (_dense(4, 2) + _dense(2, 1))
    assert train.forward_flops_per_example(model) == experts + gates + towers_and_heads
    assert train.training_flops_per_example(model) == 3 * (experts + gates + towers_and_heads)


def test_ple_flops_count_every_level_once():
    kwargs = {"num_levels": 2, "num_shared_experts": 1, "num_task_experts": 1, "expert_units": [4],
              "tower_units": [2]}
    model = build_joint_model(ALIEXPRESS_SAMPLE, SIZES, task_architecture="ple", embedding_dim=2,
                              component_kwargs={"task_architecture": kwargs})
    width = (16 + 1 + 63) * 2
    level_0 = 3 * _dense(width, 4) + 2 * _dense(width, 2) + _dense(width, 3)  # 3 experts, 2 task gates, shared gate
    level_1 = 3 * _dense(4, 4) + 2 * _dense(4, 2)  # no shared gate on the last level
    towers_and_heads = 2 * (_dense(4, 2) + _dense(2, 1))
    assert train.forward_flops_per_example(model) == level_0 + level_1 + towers_and_heads


def test_the_bench_runs_tiny_and_reports_every_number(tmp_path, capsys):
    out = tmp_path / "train.json"
    code = cli.main(["bench", "train", "--rows", "128", "--batch-size", "64", "--min-vocab", "10", "--max-vocab",
                     "30", "--architectures", "esmm", "--variants", "peer", "--optimizers", "lazy_adam",
                     "--precisions", "float32", "mixed_bfloat16", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["matmul_gflops"] > 0 and report["pipeline"]["ms_per_batch"] > 0
    result, bf16 = report["results"]
    assert (result["architecture"], result["variant"], result["optimizer"]) == ("esmm", "peer", "lazy_adam")
    assert (result["precision"], bf16["precision"]) == ("float32", "mixed_bfloat16")
    rates = report["matmul_gflops_by_dtype"]
    assert set(rates) == {"float32", "bfloat16"} and rates["float32"] == report["matmul_gflops"]
    # The bf16 model's fraction is of the bf16 matmul rate, measured in the same process.
    assert bf16["fraction_of_matmul_rate"] == pytest.approx(bf16["achieved_gflops"] / rates["bfloat16"])
    assert result["input_width"] == 16 * 16 + 63
    assert len(result["examples_per_second"]) == 1 and result["examples_per_second"][0] > 0
    model = train.build_model("esmm", "peer", train.Workload(rows=128, min_vocab=10, max_vocab=30))
    assert result["train_gflop_per_example"] * 1e9 == pytest.approx(train.training_flops_per_example(model))
    assert result["fraction_of_matmul_rate"] == pytest.approx(result["achieved_gflops"] / report["matmul_gflops"])
    printed = capsys.readouterr().out
    assert "| esmm | peer | lazy_adam | float32 | 319 |" in printed
    assert "- esmm peer lazy_adam mixed_bfloat16: " in printed  # its ratio to float32, per repeat


def test_bad_choices_fail_before_any_work():
    with pytest.raises(ValueError, match="architectures"):
        train.run_train_bench(train.Workload(rows=64, batch_size=64), architectures=["dcn"])
    with pytest.raises(ValueError, match="precisions"):
        train.run_train_bench(train.Workload(rows=64, batch_size=64), precisions=["bf16"])
    with pytest.raises(ValueError, match="rows"):
        train.Workload(rows=0)


def test_the_peer_mmoe_fits_conversion_on_every_row_as_the_peers_and_the_default_on_clicks():
    """DeepCTR's and torch-rechub's MMoE/PLE train conversion as a task of its own; the
    ``peer`` variant does too (all but ESMM), while the default conditions it on click."""
    import numpy as np

    workload = train.Workload(rows=64, min_vocab=5, max_vocab=5, batch_size=32)
    x, y = train.synthetic_data(workload)
    unclicked = {k: v[:32] for k, v in x.items()}
    y = {"click": np.zeros((32, 1), np.float32), "conversion": np.zeros((32, 1), np.float32)}
    losses = {}
    for variant in ("peer", "default"):
        model = train.build_model("mmoe", variant, workload)
        model.compile(optimizer="adam")
        logs = model.evaluate(unclicked, y, batch_size=32, verbose=0, return_dict=True)
        losses[variant] = logs["conversion_loss"]
    assert losses["peer"] > 0.01  # every row counts
    assert losses["default"] == 0.0  # no clicked row: nothing to fit
    assert train.spec_for("esmm", "peer").task("conversion").parent == "click"
