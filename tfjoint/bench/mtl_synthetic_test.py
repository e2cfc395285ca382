"""The quick MTL synthetic bench end to end, and its CLI flags."""

import argparse
import math

import numpy as np
import pytest

from tfjoint.bench import cli, mtl_correlation, mtl_synthetic, selection_bias
from tfjoint.bench.mtl_synthetic_data import TASKS
from tfjoint.bench.mtl_synthetic_report import format_report

ARCHITECTURES = ("shared_bottom", "mmoe")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    png = tmp_path_factory.mktemp("bench") / "mtl.png"
    kwargs = {**mtl_synthetic.QUICK, "architectures": ARCHITECTURES}
    return mtl_synthetic.run_mtl_synthetic(output_png=png, verbose=False, **kwargs), png


def test_quick_run_has_a_finite_loss_for_every_correlation_architecture_and_seed(quick):
    results, _ = quick
    correlations = mtl_synthetic.QUICK["correlations"]
    seeds = range(mtl_synthetic.QUICK["seeds"])
    runs = {(r["correlation"], r["architecture"], r["seed"]): r for r in results["runs"]}
    assert sorted(runs) == sorted((c, a, s) for c in correlations for a in ARCHITECTURES for s in seeds)
    for run in runs.values():
        assert math.isfinite(run["loss"]) and run["loss"] > 0
        assert run["loss"] == pytest.approx(run["loss_y1"] + run["loss_y2"])
    for architecture in ARCHITECTURES:
        for c in correlations:
            stats = results["loss"][architecture][f"{c:g}"]
            assert len(stats["values"]) == len(seeds) and math.isfinite(stats["mean"]) and stats["std"] >= 0
    # The gap is paired by seed: shared-bottom's loss minus MMoE's, run by run.
    for c in correlations:
        expected = [runs[c, "shared_bottom", s]["loss"] - runs[c, "mmoe", s]["loss"] for s in seeds]
        assert results["gap"]["mmoe"][f"{c:g}"]["values"] == pytest.approx(expected)
    assert "shared_bottom" not in results["gap"]


def test_quick_run_reports_parameters_and_gates(quick):
    results, _ = quick
    for architecture in ARCHITECTURES:
        counts = results["parameters"][architecture]
        assert 0 < counts["task_architecture"] < counts["total"]
    mmoe_runs = [r for r in results["runs"] if r["architecture"] == "mmoe"]
    num_experts = mtl_correlation.ARCHITECTURE_KWARGS["mmoe"]["num_experts"]
    for run in mmoe_runs:
        # Per task, the mean gate weights over the experts sum to 1 (each gate is a softmax).
        for task in TASKS:
            total = sum(run["gates"][f"gate_{task}_expert_{i}"] for i in range(num_experts))
            assert total == pytest.approx(1.0, abs=1e-4)
    for c in mtl_synthetic.QUICK["correlations"]:
        separations = [
            mtl_correlation.gate_separation(r["gates"], num_experts)
            for r in mmoe_runs
            if r["correlation"] == c
        ]
        assert all(0.0 <= v <= 1.0 for v in separations)
        assert results["gate_separation"][f"{c:g}"]["values"] == pytest.approx(separations)


def test_quick_run_summarizes_the_trend_with_correlation_paired_by_seed(quick):
    results, _ = quick
    first, last = mtl_synthetic.QUICK["correlations"][0], mtl_synthetic.QUICK["correlations"][-1]
    runs = {(r["correlation"], r["architecture"], r["seed"]): r for r in results["runs"]}
    seeds = range(mtl_synthetic.QUICK["seeds"])
    for architecture in ARCHITECTURES:
        expected = [runs[last, architecture, s]["loss"] - runs[first, architecture, s]["loss"] for s in seeds]
        assert results["loss_change"][architecture]["values"] == pytest.approx(expected)
        for run in (runs[c, architecture, s] for c in (first, last) for s in seeds):
            assert math.isfinite(run["train_loss"]) and run["train_loss"] > 0
    # The growth of MMoE's advantage as correlation falls: its gap at the last correlation
    # minus its gap at the first, seed by seed.
    expected = [
        (runs[last, "shared_bottom", s]["loss"] - runs[last, "mmoe", s]["loss"])
        - (runs[first, "shared_bottom", s]["loss"] - runs[first, "mmoe", s]["loss"])
        for s in seeds
    ]
    assert results["gap_growth"]["mmoe"]["values"] == pytest.approx(expected)


def test_quick_run_measures_selection_bias_without_pinning_it(quick):
    results, _ = quick
    bias = results["selection_bias"]
    models = mtl_synthetic.QUICK["bias_models"]
    seeds = list(range(mtl_synthetic.QUICK["seeds"]))
    assert set(bias["models"]) == set(models) and bias["config"]["seeds"] == seeds
    assert [run["seed"] for run in bias["runs"]] == seeds
    data = bias["data"]
    assert 0 < data["n_eval_unclicked"] < data["n_eval"]
    for run in bias["runs"]:
        for stats in run["models"].values():
            for key in ("bias_unclicked", "bias_clicked", "bias_all"):
                assert math.isfinite(stats[key])
            # The bias is the mean predicted pCVR minus the mean true CVR on the same rows.
            assert stats["bias_unclicked"] == pytest.approx(
                stats["mean_pcvr_unclicked"] - stats["mean_true_cvr_unclicked"], abs=1e-6
            )
            assert 0 < stats["mean_pcvr_unclicked"] < 1
            # Each model is read at its best epoch on the held-out validation rows.
            assert 1 <= stats["best_epoch"] <= mtl_synthetic.QUICK["bias_epochs"]
    for name in models:
        values = [run["models"][name]["bias_unclicked"] for run in bias["runs"]]
        assert bias["models"][name]["bias_unclicked"]["values"] == pytest.approx(values)
        assert bias["models"][name]["bias_unclicked"]["mean"] == pytest.approx(np.mean(values))
    # Each model's |bias| on unclicked rows against the naive CVR model's, seed by seed.
    reference = selection_bias.NAIVE_REFERENCE
    assert set(bias["excess"]) == set(models) - {reference}
    for name, stats in bias["excess"].items():
        expected = [
            abs(run["models"][name]["bias_unclicked"]) - abs(run["models"][reference]["bias_unclicked"])
            for run in bias["runs"]
        ]
        assert stats["values"] == pytest.approx(expected)


def test_quick_run_writes_a_png_and_a_report(quick):
    results, png = quick
    assert results["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    report = format_report(results)
    for architecture in ARCHITECTURES:
        assert architecture in report
    assert "selection bias" in report
    # Every bias model has a row, and the growth of each gated model's gap is printed.
    for name in mtl_synthetic.QUICK["bias_models"]:
        assert f"\n{name} " in report
    assert "gap at 0 minus gap at 1" in report


def test_cli_flags():
    parser = argparse.ArgumentParser(prog="tfjoint")
    cli.add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "bench",
            "mtl-synthetic",
            "--quick",
            "--seeds",
            "2",
            "--correlations",
            "1",
            "0.5",
            "--architectures",
            "mmoe",
            "ple",
            "--epochs",
            "3",
            "--output",
            "out/fig.png",
            "--json",
            "out/r.json",
            "--no-selection-bias",
            "--scale",
            "3",
            "--sinusoid-seed",
            "0",
        ]
    )
    assert args.func is cli.cmd_mtl_synthetic
    kwargs = cli._mtl_synthetic_kwargs(args)
    assert kwargs["seeds"] == 2 and kwargs["correlations"] == [1.0, 0.5] and kwargs["epochs"] == 3
    assert kwargs["architectures"] == ["mmoe", "ple"] and kwargs["output_png"] == "out/fig.png"
    assert kwargs["selection_bias"] is False and args.json == "out/r.json"
    assert kwargs["scale"] == 3.0 and kwargs["sinusoid_seed"] == 0
    # --quick sizes what the flags leave unset.
    assert kwargs["n_train"] == mtl_synthetic.QUICK["n_train"]
    defaults = cli._mtl_synthetic_kwargs(parser.parse_args(["bench", "mtl-synthetic"]))
    assert defaults["seeds"] == 3 and defaults["correlations"] == mtl_correlation.CORRELATIONS
    assert defaults["selection_bias"] is True and defaults["output_png"] == cli.DEFAULT_PNG
    assert "scale" not in defaults and "sinusoid_seed" not in defaults
