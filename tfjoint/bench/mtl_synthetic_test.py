"""The quick MTL synthetic bench end to end, its setup's sanity, and its CLI flags."""

import argparse
import math

import numpy as np
import pytest

from tfjoint.bench import cli, mtl_synthetic
from tfjoint.datasets.synthetic import mmoe_regression

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
    num_experts = mtl_synthetic.ARCHITECTURE_KWARGS["mmoe"]["num_experts"]
    for run in mmoe_runs:
        # Per task, the mean gate weights over the experts sum to 1 (each gate is a softmax).
        for task in mtl_synthetic.TASKS:
            total = sum(run["gates"][f"gate_{task}_expert_{i}"] for i in range(num_experts))
            assert total == pytest.approx(1.0, abs=1e-4)


def test_quick_run_measures_selection_bias_without_pinning_it(quick):
    results, _ = quick
    bias = results["selection_bias"]
    assert set(bias["models"]) == set(mtl_synthetic.QUICK["bias_models"])
    assert 0 < bias["config"]["n_eval_unclicked"] < bias["config"]["n_eval"]
    for stats in bias["models"].values():
        for key in ("bias_unclicked", "bias_clicked", "bias_all"):
            assert math.isfinite(stats[key])
        # The bias is the mean predicted pCVR minus the mean true CVR on the same rows.
        assert stats["bias_unclicked"] == pytest.approx(
            stats["mean_pcvr_unclicked"] - stats["mean_true_cvr_unclicked"], abs=1e-6
        )
        assert 0 < stats["mean_pcvr_unclicked"] < 1


def test_quick_run_writes_a_png_and_a_report(quick):
    results, png = quick
    assert results["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    report = mtl_synthetic.format_report(results)
    for architecture in ARCHITECTURES:
        assert architecture in report
    assert "selection bias" in report


def test_task_correlation_sets_the_label_correlation():
    # w1 = w2 at correlation 1: the labels are one noiseless label of variance V plus
    # independent N(0, 0.1^2) noise each, so their correlation is V / (V + 0.01), above 0.9
    # whenever V > 0.09 (V is 1 for the linear part alone; the sines move it, down to 0.33
    # over 30 seeds). At correlation 0 the two projections are independent, so the
    # population correlation is 0 and the sample one lies within a few 1/sqrt(n) = 0.014.
    for seed in range(2):
        _, y_related = mmoe_regression(5000, 1.0, seed=seed)
        _, y_unrelated = mmoe_regression(5000, 0.0, seed=seed)
        assert mtl_synthetic.label_correlation(y_related) > 0.9
        assert abs(mtl_synthetic.label_correlation(y_unrelated)) < 0.07


def test_reset_gives_the_fresh_model_of_the_seed():
    spec = mtl_synthetic.regression_spec(input_dim=4)
    budget = mtl_synthetic.Budget(epochs=1, batch_size=8, learning_rate=1e-2)
    trainer = mtl_synthetic._Reinitializable(spec, "shared_bottom", budget)
    x, y = mmoe_regression(32, 0.5, dim=4, seed=0)
    model = trainer.reset(1)
    model.fit(mtl_synthetic._regression_batches(x, y, spec, 8, seed=0), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 4
    model = trainer.reset(1)
    fresh = mtl_synthetic._build(spec, "shared_bottom", seed=1).get_weights()
    other = mtl_synthetic._build(spec, "shared_bottom", seed=2).get_weights()
    for restored, expected in zip(model.get_weights(), fresh):
        np.testing.assert_array_equal(restored, expected)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, other))
    assert int(model.optimizer.iterations.numpy()) == 0


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
        ]
    )
    assert args.func is cli.cmd_mtl_synthetic
    kwargs = cli._mtl_synthetic_kwargs(args)
    assert kwargs["seeds"] == 2 and kwargs["correlations"] == [1.0, 0.5] and kwargs["epochs"] == 3
    assert kwargs["architectures"] == ["mmoe", "ple"] and kwargs["output_png"] == "out/fig.png"
    assert kwargs["selection_bias"] is False and args.json == "out/r.json"
    # --quick sizes what the flags leave unset.
    assert kwargs["n_train"] == mtl_synthetic.QUICK["n_train"]
    defaults = cli._mtl_synthetic_kwargs(parser.parse_args(["bench", "mtl-synthetic"]))
    assert defaults["seeds"] == 3 and defaults["correlations"] == mtl_synthetic.CORRELATIONS
    assert defaults["selection_bias"] is True and defaults["output_png"] == cli.DEFAULT_PNG
