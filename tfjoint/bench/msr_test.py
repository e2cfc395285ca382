import math

import numpy as np
import pytest

from tfjoint import features
from tfjoint.bench import msr
from tfjoint.datasets import synthetic


def _stats(mean, std=0.0):
    return {"mean": mean, "std": std}


def _report(results, seeds=3):
    return {"config": {"seeds": seeds}, "results": results, "skipped": {}}


def test_marks_and_seesaw_against_the_shared_model():
    results = {
        "shared": {"a/watch_auc": _stats(0.80, 0.01), "b/watch_auc": _stats(0.70, 0.01),
                   "a/rating_rmse": _stats(1.00, 0.01), "b/rating_rmse": _stats(1.00, 0.01)},
        # Better on a (+0.05 AUC), worse on b (-0.05): the seesaw on watch_auc. Lower RMSE on
        # both scenarios is better on both: no seesaw on rating.
        "star": {"a/watch_auc": _stats(0.85, 0.01), "b/watch_auc": _stats(0.65, 0.01),
                 "a/rating_rmse": _stats(0.90, 0.01), "b/rating_rmse": _stats(0.95, 0.01)},
        # Within noise: 0.005 apart with std 0.02 over 3 seeds (2 SE = 0.033).
        "hamur": {"a/watch_auc": _stats(0.805, 0.02), "b/watch_auc": _stats(0.695, 0.02),
                  "a/rating_rmse": _stats(1.00, 0.02), "b/rating_rmse": _stats(1.01, 0.02)},
    }
    marks = msr.compare_to_shared(_report(results))
    assert marks["star"] == {"a/watch_auc": "▲", "b/watch_auc": "▼", "a/rating_rmse": "▲", "b/rating_rmse": "▲"}
    assert set(marks["hamur"].values()) == {""}
    assert msr.seesaw(_report(results)) == {"shared": [], "star": ["watch_auc"], "hamur": []}
    # With two seeds the standard error is larger: 0.05 apart with std 0.04 is noise.
    noisy = {"shared": {"a/watch_auc": _stats(0.80, 0.04)}, "star": {"a/watch_auc": _stats(0.85, 0.04)}}
    assert msr.compare_to_shared(_report(noisy, seeds=2))["star"] == {"a/watch_auc": ""}
    # One seed has no noise estimate (std 0): nothing is marked, however far apart.
    single = {"shared": {"a/watch_auc": _stats(0.80)}, "star": {"a/watch_auc": _stats(0.95)}}
    assert msr.compare_to_shared(_report(single, seeds=1))["star"] == {}
    assert msr.seesaw(_report(single, seeds=1))["star"] == []


def test_report_marks_cells_and_lists_skipped_models():
    results = {
        "shared": {"a/watch_auc": _stats(0.8, 0.01), "b/watch_auc": _stats(0.7, 0.01), "parameters": _stats(10.0)},
        "star": {"a/watch_auc": _stats(0.9, 0.01), "b/watch_auc": _stats(math.nan), "parameters": _stats(12.0)},
    }
    report = {"config": {"seeds": 3, "dataset": "d", "train_rows": 1, "eval_rows": 1, "epochs": 1,
                         "batch_size": 2, "learning_rate": 0.1, "base_architecture": "mmoe"},
              "results": results, "skipped": {"sar_net": "needs a sequence"}}
    text = msr.format_report(report)
    assert "| star | 0.9000 ± 0.0100▲ | n/a |  | 12 |" in text
    assert "skipped sar_net: needs a sequence" in text


def test_shift_summary_says_beats_shared_only_beyond_two_standard_errors():
    column = "detail/click_truth_rmse"
    results = {
        "shared": {column: _stats(0.120, 0.003)},
        # 3 seeds: 2 SE = 2 * sqrt((0.003^2 + 0.003^2) / 3) = 0.0049.
        "m_lora": {column: _stats(0.110, 0.003)},  # 0.010 lower: beats shared
        "m2m": {column: _stats(0.117, 0.003)},  # 0.003 lower: within noise
        "star": {column: _stats(0.140, 0.003)},  # 0.020 higher: worse
    }
    lines = msr._shift_summary(_report(results), "detail").splitlines()
    by_model = {line.split()[0]: line for line in lines if line.startswith("  ") and "±" in line}
    assert by_model["m_lora"].endswith(msr.BEATS)
    assert "beats" not in by_model["m2m"] and "worse" not in by_model["m2m"]
    assert by_model["star"].endswith(msr.LOSES)
    assert lines[-1] == f"  {msr.BEATS} in 'detail': m_lora"
    # The same means over one seed (no noise estimate) claim nothing.
    single = msr._shift_summary(_report(results, seeds=1), "detail")
    assert msr.BEATS not in single
    assert "one seed" in single
    # Nobody beyond noise: the summary says so.
    assert msr._shift_summary(_report({k: results[k] for k in ("shared", "m2m")}), "detail").endswith(": none")


def test_synthetic_bench_shift_is_a_context_shift_without_saturation():
    kwargs = msr.SYNTHETIC_KWARGS
    assert kwargs["scenario_shift"] == 0.0
    weights = np.asarray(kwargs["shifted_context_weights"])
    assert np.linalg.norm(weights) == pytest.approx(np.linalg.norm(synthetic.CONTEXT_WEIGHTS))
    assert not np.allclose(weights, synthetic.CONTEXT_WEIGHTS)


def test_score_by_scenario_slices_rows_and_leaves_undefined_slices_nan():
    spec = features.MOVIELENS_100K
    scenario = np.array([[0], [0], [0], [0], [1], [1], [2], [2]])
    labels = {
        "watch": np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [1.0], [1.0], [0.0]]),
        "like": np.array([[1.0], [0.0], [0.0], [0.0], [1.0], [0.0], [1.0], [0.0]]),
        "rating": np.array([[5.0], [0.0], [2.0], [0.0], [4.0], [1.0], [3.0], [0.0]]),
    }
    preds = {
        "watch": np.array([[0.9], [0.1], [0.8], [0.2], [0.5], [0.5], [0.7], [0.3]]),
        "like": np.array([[0.7], [0.9], [0.2], [0.9], [0.8], [0.3], [0.5], [0.5]]),
        "rating": np.array([[4.0], [9.0], [2.0], [9.0], [4.0], [3.0], [3.0], [9.0]]),
    }
    out = msr.score_by_scenario(spec, preds, {features.SCENARIO_KEY: scenario}, labels)
    assert out["age<25/watch_auc"] == pytest.approx(1.0)
    assert out["age<25/like_auc"] == pytest.approx(1.0)  # watched rows only: (0.7 vs 0.2)
    assert out["age<25/rating_rmse"] == pytest.approx(np.sqrt(0.5))
    # Scenario 1 has only watched rows: watch AUC is undefined there, like AUC is not.
    assert math.isnan(out["age25-34/watch_auc"])
    assert out["age25-34/like_auc"] == pytest.approx(1.0)
    # Scenario 2 has one watched row: like AUC is undefined, its rating error is not.
    assert math.isnan(out["age>=35/like_auc"])
    assert out["age>=35/rating_rmse"] == pytest.approx(0.0)


def test_unknown_model_name_fails_before_training():
    with pytest.raises(ValueError, match="unknown component 'nope'"):
        msr.run_msr("douban-sample", models=["nope"], seeds=1)


# The Ali-CCP smoke run (`tfjoint bench msr --dataset ali-ccp-sample --seeds 1`) takes minutes
# for its many fields; the README reports it. Douban runs here.
@pytest.mark.parametrize("dataset, models", [("douban-sample", ["partitioned_norm", "sar_net"])])
def test_smoke_on_the_real_samples(dataset, models):
    from tfjoint.datasets import samples

    try:
        samples.shared_data_dir()
    except FileNotFoundError as e:
        pytest.skip(f"the read-only real samples are not beside this checkout: {e}")
    report = msr.run_msr(dataset, models=models, seeds=1, epochs=1, train_rows=2000, verbose=False)
    spec = features.get_dataset_spec(dataset)
    ran = [m for m in ["shared", "separate", *models] if m not in report["skipped"]]
    assert list(report["results"]) == ran
    if "sar_net" in models:  # the sample has no behavior sequence
        assert "sequence" in report["skipped"]["sar_net"]
    for stats in report["results"].values():
        for p in spec.scenarios:
            assert f"{p}/{spec.tasks[0].name}_auc" in stats
    assert "| shared |" in msr.format_report(report)


def test_fallback_scores_every_row_with_the_scenario_hidden():
    spec = features.MOVIELENS_100K
    x = {features.SCENARIO_KEY: np.array([[0], [1], [2], [0]]), "age": np.ones((4, 1))}
    hidden = msr.hide_scenario(spec, x)
    np.testing.assert_array_equal(hidden[features.SCENARIO_KEY], [[3], [3], [3], [3]])
    np.testing.assert_array_equal(x[features.SCENARIO_KEY], [[0], [1], [2], [0]])  # not modified
    assert hidden["age"] is x["age"]
    labels = {"watch": np.array([[1.0], [0.0], [1.0], [0.0]]), "like": np.array([[1.0], [0.0], [0.0], [0.0]]),
              "rating": np.array([[5.0], [0.0], [3.0], [0.0]])}
    preds = {"watch": np.array([[0.9], [0.2], [0.1], [0.3]]), "like": np.array([[0.8], [0.5], [0.4], [0.5]]),
             "rating": np.array([[4.0], [1.0], [3.0], [1.0]])}
    out = msr.score_fallback(spec, preds, labels)
    assert out["fallback/watch_auc"] == pytest.approx(0.5)  # pairs (0.9, 0.1) vs (0.2, 0.3): 2 of 4
    assert out["fallback/like_auc"] == pytest.approx(1.0)  # watched rows: 0.8 vs 0.4
    assert out["fallback/rating_rmse"] == pytest.approx(np.sqrt(0.5))
    nan = msr.score_fallback(spec, None, labels)
    assert set(nan) == set(out) and all(math.isnan(v) for v in nan.values())


def test_fallback_columns_are_marked_against_shared_but_are_not_a_seesaw():
    results = {
        "shared": {"a/watch_auc": _stats(0.80, 0.01), "fallback/watch_auc": _stats(0.70, 0.01)},
        "star": {"a/watch_auc": _stats(0.90, 0.01), "fallback/watch_auc": _stats(0.60, 0.01)},
    }
    assert msr.compare_to_shared(_report(results))["star"] == {"a/watch_auc": "▲", "fallback/watch_auc": "▼"}
    assert msr.seesaw(_report(results))["star"] == []


def test_train_and_predict_returns_the_hidden_scenario_predictions():
    from tfjoint.testing import fake_batch, fake_vocab_sizes

    spec = features.MOVIELENS_100K
    x, y = fake_batch(spec, n=32)
    # Six eval rows that differ only in their scenario (0, 1, 2 twice).
    ex = {k: np.repeat(v[:1], 6, axis=0) for k, v in x.items()}
    ex[features.SCENARIO_KEY] = np.array([[0], [1], [2], [0], [1], [2]])
    predictions, fallback, parameters = msr._train_and_predict(
        spec, fake_vocab_sizes(spec), msr.SHARED, "shared_bottom", (x, y), ex, 1, 16, 1e-2
    )
    assert parameters > 0 and set(fallback) == set(predictions)
    # The scenario is hidden: one prediction for all six rows, where the known ones differ.
    np.testing.assert_allclose(fallback["watch"], np.repeat(fallback["watch"][:1], 6, axis=0), rtol=1e-6)
    assert not np.allclose(predictions["watch"][0], predictions["watch"][1])
    assert not np.allclose(fallback["watch"][0], predictions["watch"][:3])
