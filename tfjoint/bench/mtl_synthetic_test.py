"""The quick MTL synthetic bench end to end, its setup's sanity, and its CLI flags."""

import argparse
import math

import keras
import numpy as np
import pytest

from tfjoint.bench import cli, mtl_synthetic
from tfjoint.datasets.synthetic import CLICK_KEY, TRUE_CVR_KEY, load_synthetic_frames, mmoe_regression

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
    for c in mtl_synthetic.QUICK["correlations"]:
        separations = [
            mtl_synthetic.gate_separation(r["gates"], num_experts) for r in mmoe_runs if r["correlation"] == c
        ]
        assert all(0.0 <= v <= 1.0 for v in separations)
        assert results["gate_separation"][f"{c:g}"]["values"] == pytest.approx(separations)


def test_gate_separation_is_the_total_variation_between_the_tasks_gates():
    alike = {f"gate_{t}_expert_{i}": 0.25 for t in mtl_synthetic.TASKS for i in range(4)}
    assert mtl_synthetic.gate_separation(alike, 4) == 0.0
    disjoint = {**alike, "gate_y1_expert_0": 0.5, "gate_y1_expert_1": 0.5, "gate_y1_expert_2": 0.0,
                "gate_y1_expert_3": 0.0, "gate_y2_expert_0": 0.0, "gate_y2_expert_1": 0.0,
                "gate_y2_expert_2": 0.5, "gate_y2_expert_3": 0.5}
    assert mtl_synthetic.gate_separation(disjoint, 4) == pytest.approx(1.0)


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
    reference = mtl_synthetic.NAIVE_REFERENCE
    assert set(bias["excess"]) == set(models) - {reference}
    for name, stats in bias["excess"].items():
        expected = [
            abs(run["models"][name]["bias_unclicked"]) - abs(run["models"][reference]["bias_unclicked"])
            for run in bias["runs"]
        ]
        assert stats["values"] == pytest.approx(expected)


def test_unclicked_impressions_have_a_lower_true_cvr_than_clicked_ones():
    # The selection the bias experiment rests on: click and conversion logits are correlated
    # (0.5), so a CVR fitted on clicked rows starts from a population whose true CVR is
    # higher than that of the unclicked rows it is applied to. The gap is about 0.10 at
    # every seed; its sampling noise at 2,000 eval rows is about 0.01.
    for seed in range(2):
        frames = load_synthetic_frames(
            n=10000,
            correlation=mtl_synthetic.BIAS_CORRELATION,
            seed=seed,
            click_intercept=mtl_synthetic.BIAS_CLICK_INTERCEPT,
        )
        for frame in frames.values():
            clicked = frame[CLICK_KEY].to_numpy() == 1.0
            true_cvr = frame[TRUE_CVR_KEY].to_numpy()
            assert true_cvr[clicked].mean() - true_cvr[~clicked].mean() > 0.05


def test_the_task_architecture_sees_the_raw_inputs():
    # As in the paper, the experts, gates and bottom read x itself: no learned per-input scale.
    spec = mtl_synthetic.regression_spec(input_dim=4)
    model = mtl_synthetic._build(spec, "mmoe", seed=0)
    x, y = mmoe_regression(16, 0.5, dim=4, seed=0)
    inputs, _ = next(iter(mtl_synthetic._regression_batches(x, y, spec, 16, seed=None)))
    merged = keras.Model(model.inputs, model.get_layer("flatten_fields").output)(inputs)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(merged), x, rtol=1e-6)
    assert model.count_params() == model.task_architecture.count_params() + 2 * (
        mtl_synthetic.ARCHITECTURE_KWARGS["mmoe"]["tower_units"][-1] + 1
    )


def test_quick_run_writes_a_png_and_a_report(quick):
    results, png = quick
    assert results["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    report = mtl_synthetic.format_report(results)
    for architecture in ARCHITECTURES:
        assert architecture in report
    assert "selection bias" in report
    # Every bias model has a row, and the growth of each gated model's gap is printed.
    for name in mtl_synthetic.QUICK["bias_models"]:
        assert f"\n{name} " in report
    assert "gap at 0 minus gap at 1" in report


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
    # A traced budget: the steps run `steps_per_execution` at a time, and a 4-batch epoch is
    # still exactly 4 updates.
    budget = mtl_synthetic.Budget(epochs=1, batch_size=8, learning_rate=1e-2)
    assert budget.compile_kwargs()["steps_per_execution"] > 4
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
    assert defaults["seeds"] == 3 and defaults["correlations"] == mtl_synthetic.CORRELATIONS
    assert defaults["selection_bias"] is True and defaults["output_png"] == cli.DEFAULT_PNG
    assert "scale" not in defaults and "sinusoid_seed" not in defaults


def test_naive_cvr_learns_from_clicked_rows_only():
    """The ESMM paper's BASE: only the conversion loss on clicked rows trains it, so what the
    unclicked rows hold (features, labels of the other tasks) cannot change its weights."""
    from tfjoint.datasets import synthetic
    from tfjoint.joint import build_joint_model
    from tfjoint.testing import fake_batch

    spec = mtl_synthetic._bias_spec("naive_cvr")
    assert {t.name: t.weight for t in spec.tasks} == {"click": 0.0, "conversion": 1.0, "score": 0.0}
    assert mtl_synthetic._bias_spec("esmm") is synthetic.SPEC
    x, _ = fake_batch(spec, n=64, seed=3)
    rng = np.random.default_rng(4)
    click = rng.integers(0, 2, (64, 1)).astype("float32")
    y = {"click": click, "conversion": click * rng.integers(0, 2, (64, 1)), "score": rng.normal(size=(64, 1))}
    unclicked = click[:, 0] == 0
    # The same rows with the unclicked ones' inputs and non-conversion labels redrawn.
    x2 = {k: v.copy() for k, v in x.items()}
    other, _ = fake_batch(spec, n=64, seed=5)
    for k in x2:
        x2[k][unclicked] = other[k][unclicked]
    y2 = {**y, "score": rng.normal(size=(64, 1))}

    def trained(inputs, labels):
        keras.utils.set_random_seed(0)
        model = build_joint_model(
            spec, {k: 8 for k in (*spec.categorical, *(t.name for t in spec.tokens), spec.sequence.item_feature)},
            task_architecture=mtl_synthetic._bias_architecture("naive_cvr"),
        )
        model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=True)
        model.fit(inputs, labels, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    first, second = trained(x, y), trained(x2, y2)
    assert any(not np.array_equal(a, b) for a, b in zip(first, trained(x, {**y, "conversion": 1 - y["conversion"]})))
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_less_biased_than_reference_needs_two_standard_errors_of_the_paired_difference():
    def excess(mean, std):
        return {"mean": mean, "std": std, "values": []}

    bias = {
        "config": {"seeds": [0, 1, 2]},
        # 2 SE of the paired difference over 3 seeds = 2 * std / sqrt(3).
        "excess": {
            "esmm": excess(-0.058, 0.010),  # -0.058 + 0.012 < 0: less biased
            "escm2": excess(-0.010, 0.020),  # -0.010 + 0.023 > 0: within noise
            "escm2_dr": excess(0.040, 0.010),  # more biased
        },
    }
    assert mtl_synthetic.less_biased_than_reference(bias) == ["esmm"]
    assert mtl_synthetic.less_biased_than_reference({**bias, "config": {"seeds": [0]}}) == []
