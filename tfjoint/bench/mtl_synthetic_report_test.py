"""The tables and figure of the synthetic MTL bench, on hand-made results."""

import pytest

from tfjoint.bench import mtl_correlation
from tfjoint.bench.mtl_budget import mean_std
from tfjoint.bench.mtl_synthetic_report import format_report, plot

ARCHITECTURES = ["shared_bottom", "mmoe"]
CORRELATIONS = [1.0, 0.0]
UNIFORM_GATES = {f"gate_{t}_expert_{i}": 0.125 for t in ("y1", "y2") for i in range(8)}
# Eval loss per (architecture, correlation), seeds 0 and 1.
LOSSES = {
    ("shared_bottom", 1.0): (0.20, 0.30),
    ("shared_bottom", 0.0): (0.50, 0.40),
    ("mmoe", 1.0): (0.10, 0.30),
    ("mmoe", 0.0): (0.20, 0.10),
}


def _bias() -> dict:
    def model(unclicked):
        return {
            "bias_unclicked": mean_std(unclicked),
            "bias_clicked": mean_std([0.01, 0.03]),
            "bias_all": mean_std([0.02, 0.02]),
            "bias_unclicked_minus_clicked": mean_std([u - c for u, c in zip(unclicked, [0.01, 0.03])]),
            "parameters": 100,
            "best_epochs": [2, 3],
        }

    return {
        "config": {"n": 1000, "seeds": [0, 1], "epochs": 4, "early_stopping": True},
        "data": {
            "n_eval": 200,
            "n_eval_unclicked": 180,
            "true_cvr_clicked": mean_std([0.40, 0.42]),
            "true_cvr_unclicked": mean_std([0.28, 0.30]),
            "clicked_rate_bias_unclicked": mean_std([0.12, 0.13]),
        },
        "models": {"esmm": model([0.010, 0.012]), "naive_cvr": model([0.080, 0.084])},
        # |esmm| - |naive_cvr|: -0.070, -0.072; 2 standard errors are far below 0.07.
        "excess": {"esmm": mean_std([-0.070, -0.072])},
    }


@pytest.fixture
def results():
    runs = [
        {
            "architecture": a,
            "correlation": c,
            "seed": s,
            "loss": value[s],
            "train_loss": 2 * value[s],
            "label_correlation": c,
            "gates": UNIFORM_GATES,
        }
        for (a, c), value in LOSSES.items()
        for s in (0, 1)
    ]
    out = mtl_correlation.summarize_correlation(runs, ARCHITECTURES, CORRELATIONS, [0, 1])
    config = {
        "seeds": 2,
        "correlations": CORRELATIONS,
        "architectures": ARCHITECTURES,
        "n_train": 100,
        "n_eval": 50,
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 0.003,
    }
    parameters = {a: {"total": 120, "task_architecture": 100} for a in ARCHITECTURES}
    out.update(config=config, parameters=parameters, selection_bias=_bias(), png=None, seconds=12.0)
    return out


def test_report_tables(results):
    report = format_report(results)
    lines = report.splitlines()
    # mmoe's loss at correlation 0: mean 0.15, sample std 0.05 * sqrt(2) = 0.071.
    row = next(line for line in lines if line.startswith("0 "))
    assert row.split()[-3:] == ["0.150", "±", "0.071"]
    # Gap growth of mmoe: +0.20 and +0.30 seed by seed.
    assert next(line for line in lines if line.startswith("0 minus 1") and "0.250" in line).split()[-3:] == [
        "+0.250",
        "±",
        "0.071",
    ]
    assert "0: 0.000 ± 0.000" in next(line for line in lines if line.startswith("MMoE gate separation"))
    assert "\nesmm " in report and "\nnaive_cvr " in report and "(reference)" in report
    assert "by more than 2 standard errors): esmm" in report
    assert report.endswith("wall time: 12 s")


def test_report_without_the_baseline_or_the_bias_experiment(results):
    results = {**results, "gap": {}, "selection_bias": None}
    report = format_report(results)
    assert "gap MSE" not in report and "selection bias" not in report


def test_plot_writes_a_png(results, tmp_path):
    path = plot(results, tmp_path / "figures" / "mtl.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
