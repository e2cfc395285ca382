"""The balancer slot inside the joint model's train_step, and the loss-level strategies."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfjoint import catalog
from tfjoint.balancing import FixedWeights, TaskBalancer, UncertaintyWeighting
from tfjoint.features import MOVIELENS_100K, TaskSpec
from tfjoint.joint import build_joint_model
from tfjoint.testing import fake_batch, fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)

TASKS = [TaskSpec("a"), TaskSpec("b", type="regression", weight=2.0)]


def test_uncertainty_weighting_is_kendalls_objective():
    balancer = UncertaintyWeighting()
    balancer.bind(TASKS)
    balancer.log_variance.assign([0.3, -0.7])
    terms = balancer.weight_losses({"a": ops.convert_to_tensor(1.5), "b": ops.convert_to_tensor(4.0)})
    np.testing.assert_allclose(float(terms["a"]), np.exp(-0.3) * 1.5 + 0.15, rtol=1e-6)
    np.testing.assert_allclose(float(terms["b"]), 0.5 * np.exp(0.7) * 4.0 - 0.35, rtol=1e-6)


def test_target_task_is_validated():
    with pytest.raises(ValueError, match="target_task"):
        FixedWeights(target_task="c").bind(TASKS)


@pytest.mark.parametrize("name", [e.name for e in catalog.entries("balancer")])
def test_every_balancer_trains_saves_and_reloads_in_the_joint_model(name, tmp_path):
    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture="mmoe", balancer=name)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y = fake_batch(MOVIELENS_100K)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    moved = [not np.array_equal(b, w) for b, w in zip(before, model.trainable_weights)]
    assert all(moved), [w.path for w, m in zip(model.trainable_weights, moved) if not m]
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.balancer) is type(model.balancer)
    for a, b in zip(model.balancer.weights, reloaded.balancer.weights):
        np.testing.assert_array_equal(a, b)


@keras.saving.register_keras_serializable(package="tfjoint_test")
class _FreezeShared(TaskBalancer):
    """A gradient-level balancer that zeroes the shared gradient: only task-specific
    parameters (towers, heads) may move."""

    uses_task_gradients = True

    def combine_gradients(self, gradients, losses):
        self.seen = len(gradients)
        return ops.zeros_like(gradients[0])


def test_gradient_level_balancer_receives_one_gradient_per_task_on_shared_parameters():
    model = build_joint_model(MOVIELENS_100K, SIZES, task_architecture="shared_bottom", balancer=_FreezeShared())
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.run_eagerly = True
    x, y = fake_batch(MOVIELENS_100K)
    before = {w.path: np.array(w) for w in model.trainable_weights}
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert model.balancer.seen == 3
    changed = {p for p, w in ((w.path, w) for w in model.trainable_weights) if not np.array_equal(before[p], w)}
    # Shared: embedding, encoders, bottom. Task-specific: towers and heads.
    assert changed and all("tower_" in p or p.split("/")[-2] in {"watch", "like", "rating"} for p in changed), changed
    assert not any("bottom" in p or "embedding" in p for p in changed)


@pytest.mark.parametrize("architecture", ["esmm", "aitm"])
def test_cascade_parent_tower_is_task_specific_and_gets_the_plain_gradient(architecture):
    # The child's entire-space term p(watch) * p(like | watch) reaches watch's tower and head;
    # they are still watch's own: the plain gradient of the objective, not the balancer's.
    # No unknown-scenario masking: the expected gradient comes from a second forward pass.
    model = build_joint_model(
        MOVIELENS_100K, SIZES, task_architecture=architecture, balancer=_FreezeShared(), unknown_scenario_rate=0.0
    )
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    x, y = fake_batch(MOVIELENS_100K)
    parent = model.task_architecture.towers["watch"].trainable_weights + model.get_layer("watch").trainable_weights
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=True))
    expected = [np.asarray(g) for g in tape.gradient(loss, parent)]
    before = [np.array(w) for w in parent]
    shared_before = np.array(model.get_layer("embedding").trainable_weights[1])
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    for b, w, g in zip(before, parent, expected):
        assert np.abs(g).max() > 0
        np.testing.assert_allclose(b - np.array(w), g, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(shared_before, model.get_layer("embedding").trainable_weights[1])
