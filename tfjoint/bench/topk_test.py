import numpy as np
import pytest

from tfjoint.bench import topk
from tfjoint.datasets.interactions import synthetic_behaviors
from tfjoint.retrieval import leave_one_out


@pytest.fixture
def tiny_split(monkeypatch):
    split = leave_one_out(synthetic_behaviors(60, 300, signal=1.0, seed=0))
    monkeypatch.setattr(topk, "load_split", lambda dataset, seed=0: split)
    return split


def test_report_has_both_protocols_and_validation_selected_epochs(tiny_split, monkeypatch):
    monkeypatch.setitem(topk.BUDGET, "bpr_mf", ({"embedding_dim": 8}, {"epochs": 3, "batch_size": 64}))
    report = topk.run_topk("synthetic", models=["item_pop", "bpr_mf"], seeds=2, verbose=False)
    assert set(report["runs"]) == {"item_pop", "bpr_mf"} and len(report["runs"]["bpr_mf"]) == 2
    assert report["users"] == int((tiny_split.test_items >= 0).sum())
    assert "full ranking" in report["protocols"]["full"] and "99 sampled" in report["protocols"]["sampled"]
    for run in report["runs"]["bpr_mf"]:
        assert 1 <= run["best_epoch"] <= 3
        for protocol in topk.PROTOCOLS:
            assert set(topk.REPORTED) <= set(run[protocol])
            assert 0.0 <= run[protocol]["NDCG@10"] <= run[protocol]["HR@10"] <= 1.0
    # ItemPop is deterministic: the same numbers for every seed under full ranking.
    full = [r["full"]["NDCG@10"] for r in report["runs"]["item_pop"]]
    assert full[0] == full[1]
    table = topk.format_report(report)
    assert "| bpr_mf |" in table and "full/NDCG@10" in table and "sampled/HR@10" in table


def test_the_test_numbers_come_from_the_validation_selected_epoch(tiny_split, monkeypatch):
    # The selected epoch is the best validation one; the test numbers are computed after
    # fit restored its weights, so re-scoring the fitted model gives them again.
    monkeypatch.setitem(topk.BUDGET, "bpr_mf", ({"embedding_dim": 8}, {"epochs": 4, "batch_size": 64}))
    out = topk.fit_and_score("bpr_mf", tiny_split, seed=0)
    assert out["valid"]["NDCG@10"] == pytest.approx(max(out["valid_curve"]))
    assert out["valid_curve"].index(max(out["valid_curve"])) + 1 == out["best_epoch"]


def test_nmtr_runs_in_the_bench_on_every_behavior(tiny_split, monkeypatch):
    assert "nmtr" in topk.BUDGET
    monkeypatch.setitem(topk.BUDGET, "nmtr", ({"embedding_dim": 8}, {"epochs": 2, "batch_size": 256}))
    out = topk.fit_and_score("nmtr", tiny_split, seed=0)
    assert 1 <= out["best_epoch"] <= 2 and 0.0 <= out["full"]["HR@10"] <= 1.0


def test_bad_arguments_fail_before_training(tiny_split):
    with pytest.raises(ValueError, match="dataset must be one of"):
        topk.run_topk("nope")
    with pytest.raises(ValueError, match="unknown retrieval_model"):
        topk.run_topk("synthetic", models=["no_such_model"])
    with pytest.raises(ValueError, match="seeds must be"):
        topk.run_topk("synthetic", models=["item_pop"], seeds=0)


def test_the_default_models_leave_out_the_multi_modal_ones():
    # they need item features, which only bench mmr's datasets have
    names = topk.check_arguments("synthetic", None, 1)
    assert "bpr_mf" in names and "vbpr" not in names
