import pytest

from tfjoint.bench import mmr
from tfjoint.datasets.multimodal import synthetic_multimodal
from tfjoint.retrieval import cold_start


def test_default_models_are_the_multi_modal_ones_then_their_counterparts_then_item_pop():
    names = mmr.default_models()
    multi = [n for n in names if n in mmr.COUNTERPARTS]
    assert {"vbpr", "nova", "mmmlp", "freedom", "bm3"} <= set(multi) and names[: len(multi)] == multi
    counterparts = names[len(multi):-1]
    assert counterparts == list(dict.fromkeys(mmr.COUNTERPARTS[n] for n in multi))
    assert set(counterparts) == {"bpr_mf", "sasrec", "lightgcn", "bm3_ids"}
    assert mmr.COUNTERPARTS["bm3"] == "bm3_ids" and mmr.ALSO_COMPARED["bm3"] == ("lightgcn",)
    assert names[-1] == "item_pop"


def test_the_infonce_variant_is_bm3_with_the_infonce_alignment(monkeypatch):
    built = {}

    def build(name, *args, **kwargs):
        built.update(kwargs, name=name)
        raise StopIteration

    monkeypatch.setattr(mmr.builtin, "build_model", build)
    split = cold_start.cold_start_split(synthetic_multimodal(20, 30, signal=1.0, seed=0, feature_dim=4, buys_per_user=4))
    with pytest.raises(StopIteration):
        mmr.fit_and_score("bm3_infonce", split, seed=0)
    assert built["name"] == "bm3" and built["alignment"] == "infonce" and mmr.COUNTERPARTS["bm3_infonce"] == "bm3_ids"
    assert mmr.check_arguments("synthetic", ["bm3_infonce"], 1, [1.0]) == ["bm3_infonce"]


def test_bm3_ids_never_reads_the_item_features_and_bm3_does(monkeypatch):
    """BM3's id-only counterpart is fitted and scored the same when every feature is NaN (BM3
    itself refuses NaN features), so its cold items rank without them; BM3 with other features
    scores differently."""
    import dataclasses

    import numpy as np

    small = ({"embedding_dim": 4, "dropout": 0.0, "reg_weight": 0.1, "cl_weight": 0.5}, {"epochs": 3, "batch_size": 64})
    for name in ("bm3", "bm3_ids"):
        monkeypatch.setitem(mmr.BUDGET, name, small)
    split = cold_start.cold_start_split(synthetic_multimodal(40, 50, signal=1.0, seed=0, feature_dim=4, buys_per_user=6))
    nan = dataclasses.replace(split, item_features=np.full_like(split.item_features, np.nan))
    shuffled = dataclasses.replace(split, item_features=split.item_features[::-1].copy())

    def scores(name, s):
        return {p: v for p, v in mmr.fit_and_score(name, s, seed=0).items() if p != "seconds"}

    ids = scores("bm3_ids", split)
    assert scores("bm3_ids", nan) == ids and ids["epochs_run"] == 3
    with pytest.raises(ValueError, match="item_features must be finite"):
        mmr.fit_and_score("bm3", nan, seed=0)
    assert scores("bm3", shuffled)["cold"] != scores("bm3", split)["cold"]


def test_a_dataset_budget_replaces_the_budget_on_that_dataset_only(monkeypatch):
    built = []

    def build(name, *args, **kwargs):
        built.append(kwargs["cl_weight"])
        raise StopIteration

    monkeypatch.setattr(mmr.builtin, "build_model", build)
    monkeypatch.setitem(mmr.DATASET_BUDGET, ("bm3", "synthetic"), {"cl_weight": 0.7})
    split = cold_start.cold_start_split(synthetic_multimodal(20, 30, signal=1.0, seed=0, feature_dim=4, buys_per_user=4))
    for dataset in ("synthetic", "movielens-100k", None):
        with pytest.raises(StopIteration):
            mmr.fit_and_score("bm3", split, seed=0, dataset=dataset)
    default = mmr.BUDGET["bm3"][0]["cl_weight"]
    assert built == [0.7, default, default] and default != 0.7
    assert mmr.budget("bm3", "synthetic")[0]["cl_weight"] == 0.7 and mmr.BUDGET["bm3"][0]["cl_weight"] == default


def test_one_table_per_signal_with_warm_and_cold_columns(monkeypatch):
    seen = []

    def load(dataset, seed=0, signal=1.0):
        seen.append(signal)
        return cold_start.cold_start_split(synthetic_multimodal(60, 80, signal=signal, seed=0, feature_dim=8, buys_per_user=6))

    monkeypatch.setattr(mmr, "load_cold_start_split", load)
    monkeypatch.setitem(mmr.BUDGET, "vbpr", ({"embedding_dim": 4, "content_dim": 4}, {"epochs": 2, "batch_size": 64}))
    monkeypatch.setitem(mmr.BUDGET, "bpr_mf", ({"embedding_dim": 4}, {"epochs": 2, "batch_size": 64}))
    report = mmr.run_mmr("synthetic", models=["vbpr", "bpr_mf", "item_pop"], seeds=2, signals=[1.0, 0.0], verbose=False)
    assert seen == [1.0, 0.0] and [r["signal"] for r in report["results"]] == [1.0, 0.0]
    for result in report["results"]:
        assert list(result["runs"]) == ["vbpr", "bpr_mf", "item_pop"] and result["cold_items"] == 16
        for runs in result["runs"].values():
            assert len(runs) == 2
            assert all(0.0 <= r[p][m] <= 1.0 for r in runs for p in ("warm", "cold") for m in ("HR@10", "NDCG@10"))
        # ItemPop scores every cold item 0: ties count against the target
        assert all(r["cold"]["HR@10"] == 0.0 for r in result["runs"]["item_pop"])
        assert set(result["comparison"]) == {"vbpr"}
        assert set(result["comparison"]["vbpr"]) == {"counterpart", "warm", "cold", "cold_vs_floor"}
    table = mmr.format_report(report)
    assert "vs counterpart: cold HR@10 gap (SE)" in table and "vs item_pop: cold HR@10 gap (SE)" in table
    assert "**synthetic, signal 1**" in table and "**synthetic, signal 0**" in table
    assert "cold/HR@10" in table and "Chance on cold items: HR@10 = 0.6250" in table


def test_bad_arguments_fail_before_loading_data(monkeypatch):
    monkeypatch.setattr(mmr, "load_cold_start_split", lambda *a, **k: pytest.fail("loaded data"))
    with pytest.raises(ValueError, match="signals must be values in"):
        mmr.run_mmr("synthetic", signals=[2.0])
    with pytest.raises(ValueError, match="unknown retrieval_model"):
        mmr.run_mmr("synthetic", models=["nope"])
    with pytest.raises(ValueError, match="dataset must be one of"):
        mmr.run_mmr("retailrocket")
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        mmr.run_mmr("synthetic", seeds=0)


def test_the_command_line_runs_the_bench(monkeypatch, capsys):
    from tfjoint import cli

    calls = {}

    def run(**kwargs):
        calls.update(kwargs)
        return {"dataset": "synthetic", "seeds": 1, "selection": "s", "results": []}

    monkeypatch.setattr(mmr, "run_mmr", run)
    args = ["bench", "mmr", "--dataset", "synthetic", "--models", "vbpr", "--seeds", "1", "--signals", "0.5"]
    assert cli.main(args) == 0
    assert calls == {"dataset": "synthetic", "models": ["vbpr"], "seeds": 1, "signals": [0.5]}


def test_sequence_models_read_the_event_order_and_nova_gets_the_item_features(monkeypatch):
    data = synthetic_multimodal(40, 50, signal=1.0, seed=0, feature_dim=8, buys_per_user=6)
    split = cold_start.cold_start_split(data)
    monkeypatch.setitem(mmr.BUDGET, "nova", ({"max_len": 6, "hidden_dim": 8}, {"epochs": 1, "batch_size": 64}))
    monkeypatch.setitem(mmr.BUDGET, "sasrec", ({"max_len": 6, "hidden_dim": 8}, {"epochs": 1, "batch_size": 64}))
    seen = {}
    for name in ("nova", "sasrec"):
        out = mmr.fit_and_score(name, split, seed=0)
        seen[name] = out
        assert out["epochs_run"] == 1 and 0.0 <= out["cold"]["HR@10"] <= 1.0
    report = {"nova": [seen["nova"]] * 2, "sasrec": [seen["sasrec"]] * 2}
    assert mmr.compare(report)["nova"]["counterpart"] == "sasrec"


def test_compare_gives_the_hr_gap_to_bpr_mf_in_standard_errors():
    def run(warm, cold):
        return {"warm": {"HR@10": warm}, "cold": {"HR@10": cold}}

    runs = {
        "vbpr": [run(0.5, 0.6), run(0.6, 0.7), run(0.7, 0.8)],
        "bpr_mf": [run(0.5, 0.1), run(0.5, 0.1)],
        "item_pop": [run(0.1, 0.0)] * 2,
    }
    out = mmr.compare(runs)
    assert set(out) == {"vbpr"} and out["vbpr"]["counterpart"] == "bpr_mf"
    assert out["vbpr"]["cold_vs_floor"]["gap"] == pytest.approx(0.7) and out["vbpr"]["cold_vs_floor"]["beats"]
    # warm: means 0.6 vs 0.5, sample variance 0.01 and 0: SE sqrt(0.01 / 3)
    assert out["vbpr"]["warm"]["gap"] == pytest.approx(0.1) and not out["vbpr"]["warm"]["beats"]
    assert out["vbpr"]["warm"]["se"] == pytest.approx((0.01 / 3) ** 0.5)
    assert out["vbpr"]["cold"]["gap"] == pytest.approx(0.6) and out["vbpr"]["cold"]["beats"]
    assert mmr.compare({"vbpr": runs["vbpr"]}) == {}
    # BM3: its id-only self is the counterpart; LightGCN beside it
    runs = {"bm3": runs["vbpr"], "bm3_ids": runs["bpr_mf"], "lightgcn": [run(0.8, 0.1), run(0.8, 0.1)]}
    out = mmr.compare(runs)["bm3"]
    assert out["counterpart"] == "bm3_ids" and out["warm"]["gap"] == pytest.approx(0.1)
    assert set(out["also"]) == {"lightgcn"} and out["also"]["lightgcn"]["warm"]["gap"] == pytest.approx(-0.2)
    table = mmr.format_report({"dataset": "d", "seeds": 2, "selection": "s", "results": [
        {"signal": None, "runs": {n: [{p: {"HR@10": r.get(p, {"HR@10": 0})["HR@10"], "NDCG@10": 0} for p in ("warm", "cold", "mixed")}
                                      | {"seconds": 1, "best_epoch": 1} for r in v] for n, v in runs.items()},
         "comparison": mmr.compare(runs), "users": {"warm": 1, "cold": 1, "mixed": 1}, "num_items": 2, "cold_items": 1,
         "train_events": 1, "protocols": {}}]})
    assert "vs bm3_ids" in table and "-0.2000 (0.0577) vs lightgcn" in table
