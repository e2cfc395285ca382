"""The correlation experiment's parts: the raw inputs, the resets, the gate separation."""

import keras
import numpy as np
import pytest

from tfjoint.bench import mtl_correlation
from tfjoint.bench.mtl_budget import Budget
from tfjoint.bench.mtl_synthetic_data import TASKS, regression_batches, regression_spec
from tfjoint.datasets.synthetic import mmoe_regression


def test_gate_separation_is_the_total_variation_between_the_tasks_gates():
    alike = {f"gate_{t}_expert_{i}": 0.25 for t in TASKS for i in range(4)}
    assert mtl_correlation.gate_separation(alike, 4) == 0.0
    disjoint = {
        **alike,
        "gate_y1_expert_0": 0.5,
        "gate_y1_expert_1": 0.5,
        "gate_y1_expert_2": 0.0,
        "gate_y1_expert_3": 0.0,
        "gate_y2_expert_0": 0.0,
        "gate_y2_expert_1": 0.0,
        "gate_y2_expert_2": 0.5,
        "gate_y2_expert_3": 0.5,
    }
    assert mtl_correlation.gate_separation(disjoint, 4) == pytest.approx(1.0)


def test_the_task_architecture_sees_the_raw_inputs():
    # As in the paper, the experts, gates and bottom read x itself: no learned per-input scale.
    spec = regression_spec(input_dim=4)
    model = mtl_correlation.build_regression_model(spec, "mmoe", seed=0)
    x, y = mmoe_regression(16, 0.5, dim=4, seed=0)
    inputs, _ = next(iter(regression_batches(x, y, spec, 16, seed=None)))
    merged = keras.Model(model.inputs, model.get_layer("flatten_fields").output)(inputs)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(merged), x, rtol=1e-6)
    assert model.count_params() == model.task_architecture.count_params() + 2 * (
        mtl_correlation.ARCHITECTURE_KWARGS["mmoe"]["tower_units"][-1] + 1
    )


def test_reset_gives_the_fresh_model_of_the_seed():
    spec = regression_spec(input_dim=4)
    # A traced budget: the steps run `steps_per_execution` at a time, and a 4-batch epoch is
    # still exactly 4 updates.
    budget = Budget(epochs=1, batch_size=8, learning_rate=1e-2)
    assert budget.compile_kwargs()["steps_per_execution"] > 4
    model, optimizer_state = mtl_correlation.compile_for_resets(spec, "shared_bottom", budget)
    seed_1 = mtl_correlation.build_regression_model(spec, "shared_bottom", seed=1).get_weights()
    x, y = mmoe_regression(32, 0.5, dim=4, seed=0)
    model = mtl_correlation.reset_model(model, seed_1, optimizer_state)
    model.fit(regression_batches(x, y, spec, 8, seed=0), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 4
    model = mtl_correlation.reset_model(model, seed_1, optimizer_state)
    # A model freshly built with the seed, built independently of the one the reset used.
    fresh = mtl_correlation.build_regression_model(spec, "shared_bottom", seed=1).get_weights()
    other = mtl_correlation.build_regression_model(spec, "shared_bottom", seed=2).get_weights()
    for restored, expected in zip(model.get_weights(), fresh):
        np.testing.assert_array_equal(restored, expected)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, other))
    assert int(model.optimizer.iterations.numpy()) == 0


def test_summary_pairs_every_difference_by_seed():
    # shared_bottom / mmoe losses at correlations 1 and 0 for seeds 0 and 1.
    losses = {
        ("shared_bottom", 1.0): (0.20, 0.30),
        ("shared_bottom", 0.0): (0.50, 0.40),
        ("mmoe", 1.0): (0.10, 0.30),
        ("mmoe", 0.0): (0.20, 0.10),
    }
    # MMoE's two tasks mix its 8 experts alike at correlation 1, use disjoint halves at 0.
    alike = {f"gate_{t}_expert_{i}": 0.125 for t in TASKS for i in range(8)}
    disjoint = {f"gate_{t}_expert_{i}": 0.25 * ((i < 4) == (t == "y1")) for t in TASKS for i in range(8)}
    runs = [
        {
            "architecture": a,
            "correlation": c,
            "seed": s,
            "loss": value[s],
            "train_loss": 1.0,
            "label_correlation": c,
            "gates": alike if c == 1.0 else disjoint,
        }
        for (a, c), value in losses.items()
        for s in (0, 1)
    ]
    summary = mtl_correlation.summarize_correlation(runs, ["shared_bottom", "mmoe"], [1.0, 0.0], [0, 1])
    assert summary["loss"]["mmoe"]["0"]["values"] == pytest.approx([0.20, 0.10])
    assert summary["loss"]["mmoe"]["0"]["mean"] == pytest.approx(0.15)
    # Last correlation minus first: shared_bottom +0.30, +0.10; mmoe +0.10, -0.20.
    assert summary["loss_change"]["shared_bottom"]["values"] == pytest.approx([0.30, 0.10])
    assert summary["loss_change"]["mmoe"]["values"] == pytest.approx([0.10, -0.20])
    # Gap shared_bottom - mmoe: at 1, +0.10 and 0.00; at 0, +0.30 and +0.30; growth +0.20, +0.30.
    assert summary["gap"]["mmoe"]["1"]["values"] == pytest.approx([0.10, 0.00])
    assert summary["gap"]["mmoe"]["0"]["values"] == pytest.approx([0.30, 0.30])
    assert summary["gap_growth"]["mmoe"]["values"] == pytest.approx([0.20, 0.30])
    assert set(summary["gap"]) == {"mmoe"}
    assert summary["gate_separation"]["1"]["values"] == [0.0, 0.0]
    assert summary["gate_separation"]["0"]["values"] == pytest.approx([1.0, 1.0])
