import numpy as np
import pytest

from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.pipeline import reporting

SPEC = DatasetSpec(name="toy", categorical=("user_id",), dense=(),
                   tasks=(TaskSpec("click", "binary"), TaskSpec("score", "regression")), scenarios=("home", "search"))
LOGS = {"loss": 1.23456, "click_loss": 0.5, "click_auc": 0.71234, "score_loss": 0.7, "gate_click_expert_0": 0.25,
        "gate_click_expert_1": 0.75, "gate_score_expert_1": 0.4, "gate_score_expert_0": 0.6,
        "val_loss": 1.3, "val_click_auc": 0.7, "val_gate_click_expert_0": 0.2}


def test_the_epoch_line_has_each_task_and_no_gate():
    line = reporting.epoch_line(2, 5, 12.3, LOGS, ["click", "score"])
    assert line.startswith("epoch 2/5  12 s  loss 1.2346 | click loss 0.5000 auc 0.7123 | score loss 0.7000")
    assert "|| val loss 1.3000 | click auc 0.7000" in line
    assert "gate" not in line


def test_the_gate_summary_lists_experts_in_order_per_task():
    assert reporting.gate_summary(LOGS) == "click [0.25 0.75]; score [0.60 0.40]"
    assert reporting.gate_summary({"loss": 1.0}) == ""


TABLE = {
    "overall": {"click": {"auc": 0.7}, "score": {"root_mean_squared_error": 1.0}},
    "home": {"click": {"auc": 0.8, "binary_crossentropy": 0.4}, "score": {"root_mean_squared_error": 0.9}},
    "search": {"click": {"auc": 0.6}, "score": {"root_mean_squared_error": 1.1}},
}


def test_the_heatmap_takes_auc_for_binary_and_rmse_for_regression_tasks(tmp_path):
    values, slices, columns = reporting.main_metrics(TABLE, SPEC)
    assert slices == ["home", "search"] and columns == ["click/AUC", "score/RMSE"]
    np.testing.assert_array_equal(values, [[0.8, 0.9], [0.6, 1.1]])
    path = reporting.plot_metric_heatmap(TABLE, SPEC, tmp_path / "h.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("blessed, pushed", [(True, "/serving/toy/1"), (False, None)])
def test_the_model_card_holds_the_table_the_blessing_and_the_model(tmp_path, blessed, pushed):
    card = reporting.write_model_card(tmp_path / "card.md", spec=SPEC, model="mmoe", hparams={"balancer": "fixed"},
                                      table=TABLE, metric_text="slice n click/AUC", blessed=blessed,
                                      pushed_dir=pushed, heatmap=str(tmp_path / "h.png"))
    text = open(card).read()
    assert "# Model card: toy / mmoe" in text and f"blessed: {blessed}" in text and "slice n click/AUC" in text
    assert "balancer: `fixed`" in text and "`click` (binary)" in text and "![per scenario and task](h.png)" in text
    assert (f"Pushed: `{pushed}`" in text) if pushed else ("Not pushed" in text)
