import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfjoint import catalog
from tfjoint.features import MOVIELENS_100K, SYNTHETIC, TaskSpec
from tfjoint.joint import JointModel, build_joint_model
from tfjoint.testing import bce, check_joint_model, fake_batch

SIZES = {k: 12 for k in MOVIELENS_100K.categorical + tuple(t.name for t in MOVIELENS_100K.tokens)}


@pytest.mark.parametrize("arch", [e.name for e in catalog.entries("task_architecture")])
def test_every_task_architecture_builds_trains_and_reloads(arch, tmp_path):
    model, history, preds = check_joint_model(
        MOVIELENS_100K, SIZES, tmp_path, epochs=3, batch_size=16, task_architecture=arch
    )
    assert history["loss"][-1] < history["loss"][0]
    assert {"watch_loss", "like_loss", "rating_loss", "watch_auc", "like_auc"} <= set(history)
    assert {"watch", "like", "rating"} <= set(preds)
    assert np.all((preds["watch"] >= 0) & (preds["watch"] <= 1))
    config = json.loads(json.dumps(model.get_config()))
    assert JointModel.from_config(config).count_params() == model.count_params()


def test_loss_is_weighted_sum_of_masked_task_losses():
    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture="shared_bottom")
    x, y = fake_batch(MOVIELENS_100K)
    preds = {k: np.asarray(v) for k, v in model(x).items()}
    watch = y["watch"][:, 0]

    l_watch = bce(y["watch"][:, 0], preds["watch"][:, 0]).mean()
    l_like = (bce(y["like"][:, 0], preds["like"][:, 0]) * watch).sum() / watch.sum()
    l_rating = (((y["rating"][:, 0] - preds["rating"][:, 0]) ** 2) * watch).sum() / watch.sum()
    expected = 1.0 * l_watch + 1.0 * l_like + 0.5 * l_rating
    total = model.compute_loss(x, y, preds)
    np.testing.assert_allclose(float(total), expected, rtol=1e-4)


def test_child_task_ignores_rows_where_parent_is_zero():
    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture="mmoe")
    x, y = fake_batch(MOVIELENS_100K)
    preds = {k: np.asarray(v) for k, v in model(x).items()}
    unwatched = y["watch"][:, 0] == 0
    before = {k: float(v) for k, v in model.task_losses(y, preds).items()}
    y2 = {k: v.copy() for k, v in y.items()}
    y2["like"][unwatched] = 1.0
    y2["rating"][unwatched] = 5.0
    preds2 = {k: v.copy() for k, v in preds.items()}
    preds2["like"][unwatched] = 0.01
    after = {k: float(v) for k, v in model.task_losses(y2, preds2).items()}
    assert after == pytest.approx(before, rel=1e-6)


def test_serving_export_from_keras_model(tmp_path):
    model = build_joint_model(SYNTHETIC, {k: 5 for k in SYNTHETIC.categorical + ("item_tags",)})
    x, _ = fake_batch(SYNTHETIC, n=4)
    expected = model.predict(x, verbose=0)
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    served = loaded.serve({k: tf.constant(v) for k, v in x.items()})
    for task in expected:
        np.testing.assert_allclose(served[task], expected[task], atol=1e-6)


def test_builder_leaves_slots_empty_when_the_dataset_lacks_the_input():
    from tfjoint.features import ALI_CCP_SAMPLE

    model = build_joint_model(ALI_CCP_SAMPLE, {k: 3 for k in ALI_CCP_SAMPLE.categorical})
    assert model.sequence_encoder is None and model.modality_encoder is None
    assert set(model.output_names) == {"click", "purchase"}


def test_builder_accepts_layer_instances_and_overrides():
    from tfjoint.layers.multi_task.shared_bottom import SharedBottom

    arch = SharedBottom(["watch", "like", "rating"], bottom_units=[7])
    model = build_joint_model(
        MOVIELENS_100K, SIZES, task_architecture=arch, component_kwargs={"sequence_encoder": {"output_dim": 9}}
    )
    assert model.task_architecture is arch
    assert model.sequence_encoder.output_dim == 9


def test_builder_errors_are_clear():
    with pytest.raises(ValueError, match="unknown task_architecture 'nope'.*mmoe"):
        build_joint_model(MOVIELENS_100K, SIZES, task_architecture="nope")
    with pytest.raises(ValueError, match="component_kwargs keys"):
        build_joint_model(MOVIELENS_100K, SIZES, component_kwargs={"tower": {}})
    with pytest.raises(ValueError, match="parent 'click'"):
        build_joint_model(MOVIELENS_100K, SIZES, tasks=[TaskSpec("like", parent="click")])
    with pytest.raises(ValueError, match="task type"):
        TaskSpec("x", type="multiclass")


def test_trainer_refuses_keras_2(monkeypatch):
    from tfjoint.joint import model as joint_model

    monkeypatch.setattr(joint_model.keras, "__version__", "2.16.0")
    with pytest.raises(RuntimeError, match="needs Keras 3"):
        build_joint_model(MOVIELENS_100K, SIZES)


@pytest.mark.parametrize(
    "arch, kwargs, experts",
    [
        ("mmoe", {"num_experts": 3}, 3),
        ("ple", {"num_task_experts": 1, "num_shared_experts": 2}, 3),
        ("cgc", {"num_task_experts": 2, "num_shared_experts": 1}, 3),
        # A power of two: with 3 experts DSelect-k drops the unreachable code's mass (sum < 1).
        ("dselect_k", {"num_experts": 4, "k": 2}, 4),
    ],
)
def test_mean_gate_weight_per_expert_and_task_is_logged(arch, kwargs, experts):
    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture=arch, component_kwargs={"task_architecture": kwargs})
    model.compile(optimizer="adam")
    x, y = fake_batch(MOVIELENS_100K)
    history = model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=16, verbose=0).history
    for task in ("watch", "like", "rating"):
        means = [history[f"gate_{task}_expert_{i}"][-1] for i in range(experts)]
        assert all(0.0 <= m < 1.0 for m in means)
        assert sum(means) == pytest.approx(1.0, abs=1e-5)
        assert f"val_gate_{task}_expert_0" in history


def test_serving_traces_carry_no_gate_metric_updates(tmp_path):
    from tfjoint.layers.core import gate_monitor

    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture="mmoe")
    x, _ = fake_batch(MOVIELENS_100K, n=4)
    specs = {k: tf.TensorSpec((None, *v.shape[1:]), v.dtype) for k, v in x.items()}

    def assigns() -> int:
        def call(inputs):
            return model(inputs, training=False)

        graph = tf.function(call).get_concrete_function(specs).graph
        return sum(op.type == "AssignVariableOp" for op in graph.get_operations())

    with gate_monitor.disabled():
        assert assigns() == 0
    assert assigns() == 2 * 3 * 4  # total and count of one Mean per task and expert

    # A SavedModel of a gated model saves cleanly under disabled(), as the Trainer does.
    module = tf.Module()
    module.model = model
    serve = tf.function(lambda inputs: model(inputs, training=False), input_signature=[specs])
    with gate_monitor.disabled():
        tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": serve.get_concrete_function()})
    restored = tf.saved_model.load(str(tmp_path / "sm"))
    assert set(restored.signatures["serving_default"].structured_outputs) == {"watch", "like", "rating"}


def test_per_task_loss_metrics_are_means_over_defined_rows():
    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture="mmoe")
    x, y = fake_batch(MOVIELENS_100K, n=32)
    losses = {k: float(v) for k, v in model.task_losses(y, model(x)).items()}
    model.compute_loss(x, y, model(x))
    # An empty batch (a dataset of unknown length can end with one) must not move the means.
    empty_x = {k: v[:0] for k, v in x.items()}
    empty_y = {k: v[:0] for k, v in y.items()}
    model.compute_loss(empty_x, empty_y, model(empty_x))
    for task in ("watch", "like", "rating"):
        assert float(model.task_loss_trackers[task].result()) == pytest.approx(losses[task], rel=1e-5)
    assert float(model.task_loss_trackers["like"].count) == float(y["watch"].sum())


def _drop_rows(n=32, seed=0):
    """Row weights with zeros on some rows (watched and unwatched ones among them)."""
    weights = np.ones(n, "float32")
    weights[np.random.default_rng(seed).permutation(n)[: n // 3]] = 0.0
    return weights


def _subset(batch, keep):
    return {k: v[keep] for k, v in batch.items()}


def test_sample_weight_weighs_every_rows_contribution_to_every_task_loss():
    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture="shared_bottom")
    x, y = fake_batch(MOVIELENS_100K, n=32)
    preds = {k: np.asarray(v) for k, v in model(x).items()}
    watch = y["watch"][:, 0]
    # Fractional weights: L_k = sum_i s_i d_ik l_ik / sum_i s_i d_ik.
    s = np.random.default_rng(1).uniform(0.1, 3.0, 32).astype("float32")
    l_watch = (s * bce(watch, preds["watch"][:, 0])).sum() / s.sum()
    l_like = (s * watch * bce(y["like"][:, 0], preds["like"][:, 0])).sum() / (s * watch).sum()
    l_rating = (s * watch * (y["rating"][:, 0] - preds["rating"][:, 0]) ** 2).sum() / (s * watch).sum()
    for weights in (s, s[:, None], {"watch": s, "like": s[:, None], "rating": s}):
        losses = {k: float(v) for k, v in model.task_losses(y, preds, sample_weight=weights).items()}
        assert losses == pytest.approx({"watch": l_watch, "like": l_like, "rating": l_rating}, rel=1e-4)
    total = model.compute_loss(x, y, preds, sample_weight=s)
    np.testing.assert_allclose(float(total), l_watch + l_like + 0.5 * l_rating, rtol=1e-4)

    # Weight 0 drops a row: the loss is the loss of the other rows alone.
    w = _drop_rows()
    keep = w > 0
    dropped = {k: float(v) for k, v in model.task_losses(y, preds, sample_weight=w).items()}
    alone = {k: float(v) for k, v in model.task_losses(_subset(y, keep), _subset(preds, keep)).items()}
    assert dropped == pytest.approx(alone, rel=1e-5)
    unweighted = {k: float(v) for k, v in model.task_losses(y, preds).items()}
    assert dropped != pytest.approx(unweighted, rel=1e-3)


@pytest.mark.parametrize(
    "arch, kwargs",
    [("esmm", {}), ("escm2", {"variant": "ips"}), ("escm2", {"variant": "dr"}), ("aitm", {})],
)
def test_sample_weight_drops_rows_from_the_entire_space_cascade_losses(arch, kwargs):
    sizes = {k: 9 for k in (*SYNTHETIC.categorical, *(t.name for t in SYNTHETIC.tokens))}
    if SYNTHETIC.sequence is not None:
        sizes[SYNTHETIC.sequence.item_feature] = 9
    model = build_joint_model(SYNTHETIC, sizes, task_architecture=arch, component_kwargs={"task_architecture": kwargs})
    assert model.entire_space_tasks
    x, y = fake_batch(SYNTHETIC, n=32)
    preds = {k: np.asarray(v) for k, v in model(x).items()}
    w = _drop_rows()
    keep = w > 0
    dropped = {k: float(v) for k, v in model.task_losses(y, preds, sample_weight=w).items()}
    alone = {k: float(v) for k, v in model.task_losses(_subset(y, keep), _subset(preds, keep)).items()}
    assert dropped == pytest.approx(alone, rel=1e-5)


@pytest.mark.parametrize("balancer", ["fixed", "pcgrad"])
def test_fit_with_zero_weight_rows_equals_fit_without_those_rows(balancer):
    """Both training paths (the plain one, and the gradient-level balancer's train_step)
    take fit's sample_weight: one step with weight 0 on some rows is one step without them."""
    import keras

    x, y = fake_batch(MOVIELENS_100K, n=48)
    w = _drop_rows(48)
    keep = w > 0

    def one_step(inputs, labels, **fit_kwargs):
        keras.utils.set_random_seed(0)
        # No scenario masking: its random rows would differ between the two batch sizes.
        model = build_joint_model(
            MOVIELENS_100K, SIZES, task_architecture="shared_bottom", balancer=balancer, unknown_scenario_rate=0.0
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        n = len(labels["watch"])
        history = model.fit(inputs, labels, batch_size=n, epochs=1, shuffle=False, verbose=0, **fit_kwargs)
        return model, history.history

    weighted, weighted_history = one_step(x, y, sample_weight=w)
    alone, alone_history = one_step(_subset(x, keep), _subset(y, keep))
    unweighted, _ = one_step(x, y)
    moved = False
    for a, b, c in zip(weighted.get_weights(), alone.get_weights(), unweighted.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
        moved = moved or not np.allclose(a, c, atol=1e-5)
    assert moved  # the dropped rows would have changed the update
    for task in ("watch", "like", "rating"):
        assert weighted_history[f"{task}_loss"][0] == pytest.approx(alone_history[f"{task}_loss"][0], rel=1e-5)


def test_a_cascade_architecture_without_sample_weight_refuses_weights_clearly():
    from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceMultiTask

    class OldStyleEsmm(EntireSpaceMultiTask):
        def cascade_step_loss(self, task, *, parent_label, label, parent_joint, conditional, joint, outputs):
            return super().cascade_step_loss(
                task, parent_label=parent_label, label=label, parent_joint=parent_joint,
                conditional=conditional, joint=joint, outputs=outputs,
            )

    sizes = {k: 9 for k in (*SYNTHETIC.categorical, *(t.name for t in SYNTHETIC.tokens))}
    if SYNTHETIC.sequence is not None:
        sizes[SYNTHETIC.sequence.item_feature] = 9
    arch = OldStyleEsmm([t.name for t in SYNTHETIC.tasks], name="task_architecture")
    model = build_joint_model(SYNTHETIC, sizes, task_architecture=arch)
    x, y = fake_batch(SYNTHETIC, n=8)
    preds = model(x)
    assert set(model.task_losses(y, preds)) == {t.name for t in SYNTHETIC.tasks}  # unweighted: fine
    with pytest.raises(TypeError, match="takes no `sample_weight`"):
        model.task_losses(y, preds, sample_weight=np.ones(8, "float32"))


def _light_model(rate, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return build_joint_model(
        MOVIELENS_100K, SIZES, task_architecture="shared_bottom",
        sequence_encoder=None, modality_encoder=None,
        component_kwargs={"task_architecture": {"bottom_units": [8], "tower_units": [4]}},
        unknown_scenario_rate=rate,
    )


def _unknown_row(model):
    p = MOVIELENS_100K.num_scenarios
    return np.array(model.embedding.scenario_table.embeddings.numpy()[p])


def test_unknown_scenario_masking_trains_the_fallback_row():
    """No training row carries the unknown id: without masking its embedding row keeps its
    random initial value; with it, a few steps move it."""
    import keras

    x, y = fake_batch(MOVIELENS_100K, n=64)
    x["scenario"] = x["scenario"] % MOVIELENS_100K.num_scenarios  # known scenarios only, as in training data
    for rate, moves in ((0.0, False), (0.3, True)):
        model = _light_model(rate)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        before = _unknown_row(model)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert (not np.array_equal(before, _unknown_row(model))) == moves, rate


def test_unknown_scenario_masking_is_the_identity_at_inference_and_saved(tmp_path):
    import keras

    x, _ = fake_batch(MOVIELENS_100K, n=64)
    x["scenario"] = x["scenario"] % MOVIELENS_100K.num_scenarios
    masked, plain = _light_model(0.5), _light_model(0.0)
    plain.set_weights(masked.get_weights())
    inference = masked(x, training=False)
    for task, value in plain(x, training=False).items():
        np.testing.assert_array_equal(np.asarray(inference[task]), np.asarray(value))
    # In training the hidden rows change (the layer is really in the graph).
    assert not np.allclose(np.asarray(masked(x, training=True)["watch"]), np.asarray(inference["watch"]))
    path = str(tmp_path / "model.keras")
    masked.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.unknown_scenario_rate == 0.5 and reloaded.num_scenarios == MOVIELENS_100K.num_scenarios
    assert reloaded.get_layer("unknown_scenario_masking").rate == 0.5
    reloaded_watch = reloaded(x, training=False)["watch"]
    np.testing.assert_array_equal(np.asarray(reloaded_watch), np.asarray(inference["watch"]))
    with pytest.raises(ValueError, match="num_scenarios is needed"):
        JointModel.from_config({**masked.get_config(), "num_scenarios": None})
