import math

import numpy as np
import pytest

from tfjoint.bench import mbr, topk
from tfjoint.datasets.interactions import synthetic_behaviors
from tfjoint.retrieval import leave_one_out


def test_standard_error_gap_matches_the_hand_computed_welch_standard_error():
    gap, se = mbr.standard_error_gap([0.5, 0.7, 0.6], [0.2, 0.3])
    # means 0.6 and 0.25; sample variances 0.01 and 0.005
    assert gap == pytest.approx(0.35)
    assert se == pytest.approx(math.sqrt(0.01 / 3 + 0.005 / 2))
    assert math.isnan(mbr.standard_error_gap([0.5], [0.2])[1])


def _run(hr):
    return {"full": {"HR@10": hr}}


def test_compare_marks_only_gaps_beyond_two_standard_errors():
    runs = {
        "nmtr": [_run(0.50), _run(0.52), _run(0.51)],
        "bpr_mf": [_run(0.30), _run(0.31), _run(0.29)],
        "mbgcn": [_run(0.30), _run(0.40), _run(0.20)],
        "lightgcn": [_run(0.25), _run(0.26), _run(0.24)],
    }
    out = mbr.compare(runs)
    assert out["nmtr"]["beats"] and out["nmtr"]["counterpart"] == "bpr_mf"
    # mbgcn's mean is higher but its seeds spread: gap 0.05, SE ~0.058
    assert out["mbgcn"]["gap"] == pytest.approx(0.05) and not out["mbgcn"]["beats"]
    assert "cml" not in out  # no runs of it


def test_default_models_pair_each_multi_behavior_model_with_its_counterpart():
    names = mbr.default_models()
    assert {"nmtr", "bpr_mf", "mbgcn", "lightgcn"} <= set(names)
    assert names.index("bpr_mf") > names.index("nmtr")


def test_one_table_per_signal_and_the_signal_reaches_the_generator(monkeypatch):
    seen = []

    def load_split(dataset, seed=0, signal=1.0):
        seen.append(signal)
        return leave_one_out(synthetic_behaviors(60, 300, signal=signal, seed=0))

    monkeypatch.setattr(topk, "load_split", load_split)
    monkeypatch.setitem(topk.BUDGET, "bpr_mf", ({"embedding_dim": 8}, {"epochs": 2, "batch_size": 64}))
    monkeypatch.setitem(topk.BUDGET, "nmtr", ({"embedding_dim": 8}, {"epochs": 2, "batch_size": 256}))
    report = mbr.run_mbr("synthetic", models=["nmtr", "bpr_mf"], seeds=2, signals=[1.0, 0.0], verbose=False)
    assert seen == [1.0, 0.0] and [r["signal"] for r in report["results"]] == [1.0, 0.0]
    for result in report["results"]:
        assert set(result["comparison"]) == {"nmtr"}
        for runs in result["runs"].values():
            assert all(np.isfinite(r["events_per_second"]) and r["events_per_second"] > 0 for r in runs)
    table = mbr.format_report(report)
    assert "**synthetic, signal 1**" in table and "**synthetic, signal 0**" in table
    assert "vs bpr_mf" in table


def test_bad_arguments_fail_before_training():
    with pytest.raises(ValueError, match="signals must lie in"):
        mbr.run_mbr("synthetic", models=["item_pop"], signals=[2.0])
    with pytest.raises(ValueError, match="unknown retrieval_model"):
        mbr.run_mbr("synthetic", models=["nope"])


def test_epochs_and_patience_replace_the_budget_of_trained_models_only(monkeypatch):
    assert topk.fit_budget("mbstr", epochs=20, patience=5)["epochs"] == 20
    assert topk.fit_budget("mbstr", epochs=20, patience=5)["patience"] == 5
    assert topk.fit_budget("mbstr")["epochs"] == topk.BUDGET["mbstr"][1]["epochs"]
    assert topk.fit_budget("item_pop", epochs=20, patience=5) == {}
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        topk.fit_budget("bpr_mf", epochs=0)

    monkeypatch.setattr(topk, "load_split", lambda dataset, seed=0, signal=1.0: leave_one_out(
        synthetic_behaviors(60, 300, signal=signal, seed=0)))
    monkeypatch.setitem(topk.BUDGET, "bpr_mf", ({"embedding_dim": 8}, {"epochs": 50, "batch_size": 64}))
    report = mbr.run_mbr("synthetic", models=["bpr_mf", "item_pop"], seeds=1, signals=[1.0], verbose=False, epochs=2)
    runs = report["results"][0]["runs"]
    assert [r["epochs_run"] for r in runs["bpr_mf"]] == [2]
    assert report["budget"]["bpr_mf"][1]["epochs"] == 2 and report["budget"]["item_pop"][1] == {}
    assert "- budget: epochs 2 for every model trained by epochs" in mbr.format_report(report)
