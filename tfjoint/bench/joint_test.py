import numpy as np
import pytest

from tfjoint import features
from tfjoint.bench import joint
from tfjoint.testing import fake_batch, fake_vocab_sizes


def _stats(mean, std=0.0):
    return {"mean": mean, "std": std}


def test_every_ablation_empties_exactly_its_slot():
    full = joint.FULL
    assert joint.slots_of("full", full) == full
    assert joint.slots_of("no_behavior", full) == {**full, "sequence_encoder": None}
    assert joint.slots_of("no_modality", full) == {**full, "modality_encoder": None}
    assert joint.slots_of("no_scenario", full) == {**full, "scenario_adapter": None}
    assert joint.slots_of("fixed_weights", full) == {**full, "balancer": "fixed"}
    base = joint.slots_of("shared_bottom", full)
    assert base["task_architecture"] == "shared_bottom" and base["balancer"] == "fixed"
    assert base["sequence_encoder"] is base["modality_encoder"] is base["scenario_adapter"] is None


@pytest.mark.parametrize("config", list(joint.ABLATIONS))
def test_each_configuration_trains_and_predicts_every_task(config):
    spec = features.MOVIELENS_100K
    x, y = fake_batch(spec, n=64)
    predictions, parameters = joint.train_and_predict(
        spec, fake_vocab_sizes(spec), config, joint.FULL, (x, y), x, epochs=1, batch_size=32, learning_rate=1e-2
    )
    assert set(predictions) == {t.name for t in spec.tasks} and parameters > 0
    assert all(p.shape == (64, 1) and np.isfinite(p).all() for p in predictions.values())


def test_the_full_model_has_every_family_and_the_ablations_drop_them():
    spec = features.MOVIELENS_100K
    sizes = fake_vocab_sizes(spec)
    full = joint.build(spec, sizes, joint.FULL)
    assert full.sequence_encoder is not None and full.modality_encoder is not None
    assert full.scenario_adapter is not None
    none = joint.build(spec, sizes, joint.slots_of("shared_bottom", joint.FULL))
    assert none.sequence_encoder is None and none.modality_encoder is None and none.scenario_adapter is None
    assert none.count_params() < full.count_params()


def test_heatmap_gain_is_positive_when_better_for_auc_and_rmse():
    cols = lambda auc, rmse: {  # noqa: E731
        "all/watch_auc": _stats(auc), "all/rating_rmse": _stats(rmse),
        "a/watch_auc": _stats(auc), "a/rating_rmse": _stats(rmse),
        "b/watch_auc": _stats(auc - 0.1), "b/rating_rmse": _stats(rmse + 0.2),
    }
    report = {"config": {"scenarios": ["a", "b"], "seeds": 3, "dataset": "toy"},
              "results": {"full": cols(0.80, 0.90), "shared_bottom": cols(0.75, 1.00)}}
    gain, scenarios, metrics = joint.heatmap_values(report)
    assert scenarios == ["a", "b"] and metrics == ["watch_auc", "rating_rmse"]
    np.testing.assert_allclose(gain, [[0.05, 0.10], [0.05, 0.10]], atol=1e-12)


def test_report_marks_ablations_against_the_full_model(tmp_path):
    report = {
        "config": {"dataset": "toy", "seeds": 3, "epochs": 1, "train_rows": 10, "eval_rows": 10, "batch_size": 4,
                   "learning_rate": 0.1, "full": joint.FULL, "scenarios": ["a"], "tasks": ["watch"]},
        "results": {
            "full": {"all/watch_auc": _stats(0.80, 0.01), "a/watch_auc": _stats(0.80, 0.01),
                     "parameters": _stats(10), "seconds": _stats(1)},
            "no_behavior": {"all/watch_auc": _stats(0.70, 0.01), "a/watch_auc": _stats(0.795, 0.01),
                            "parameters": _stats(9), "seconds": _stats(1)},
            "shared_bottom": {"all/watch_auc": _stats(0.60, 0.01), "a/watch_auc": _stats(0.60, 0.01),
                              "parameters": _stats(5), "seconds": _stats(1)},
        },
    }
    text = joint.format_report(report)
    assert "| no_behavior | 0.7000 ± 0.0100▼ |" in text  # 0.1 apart, 2 SE = 0.016
    assert "| no_behavior | 0.7950 ± 0.0100 |" in text  # within noise: unmarked
    path = joint.plot_heatmap(report, str(tmp_path / "heat.png"))
    assert (tmp_path / "heat.png").stat().st_size > 1000 and path.endswith("heat.png")


def test_bad_arguments_fail_before_any_data_is_read():
    with pytest.raises(ValueError, match="dataset must be one of"):
        joint.run_joint("nope")
    with pytest.raises(ValueError, match="configs must be among"):
        joint.run_joint("movielens-100k", configs=["full", "no_such"])
    with pytest.raises(ValueError, match="scenario_adapter"):
        joint.run_joint("movielens-100k", full={**joint.FULL, "scenario_adapter": "mmoe"})
    with pytest.raises(ValueError, match="task_architecture cannot be empty"):
        joint.run_joint("movielens-100k", full={**joint.FULL, "task_architecture": None})
