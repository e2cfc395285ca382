"""Issue 17: a gradient-level balancer's train step takes as few backward passes as possible,
and the update is the one of the plain computation (``T`` per-task passes over every
parameter, one for the total objective, one for the ``add_loss`` terms)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.losses.loss import scale_loss_for_distribution

from tfjoint import catalog
from tfjoint.balancing.task_gradients import combine_task_gradients, combined_variables, layer_path
from tfjoint.features import MOVIELENS_100K
from tfjoint.joint import build_joint_model
from tfjoint.joint.balanced_step import dense, variable_owners
from tfjoint.testing import fake_batch, fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
GRADIENT_BALANCERS = [e.name for e in catalog.entries("balancer") if e.cls.uses_task_gradients]


def reference_update(model, data):
    """The train step before issue 17: ``T + 2`` backward passes over every parameter."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)
        terms = model._balanced_terms(y, y_pred, sample_weight=sample_weight)
        regularization = model._regularization()
        total = sum(terms.values()) + regularization
    model._loss_tracker.update_state(total, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
    per_task = [dense(tape.gradient(scale_loss_for_distribution(terms[t.name]), variables)) for t in model.tasks]
    grads = tape.gradient(scale_loss_for_distribution(total), variables)
    regularization_grads = (
        dense(tape.gradient(scale_loss_for_distribution(regularization), variables)) if model.losses else None
    )
    del tape
    reach = [[g is not None for g in task] for task in per_task]
    indices = combined_variables(model.balancer, reach, variable_owners(model, variables))
    if indices:
        with tf.init_scope():
            model.balancer.bind_gradient_layout(
                [math.prod(variables[i].shape) for i in indices], [layer_path(variables[i]) for i in indices]
            )
    grads = combine_task_gradients(model.balancer, per_task, grads, regularization_grads, variables, indices, terms)
    model.optimizer.apply(grads, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def use_reference(model):
    """Makes ``model`` train with :func:`reference_update`."""
    model._update = lambda data: reference_update(model, data)
    return model


def _model(balancer, architecture="mmoe", reference=False, **component_kwargs):
    keras.utils.set_random_seed(0)
    model = build_joint_model(
        MOVIELENS_100K,
        SIZES,
        task_architecture=architecture,
        balancer=balancer,
        unknown_scenario_rate=0.0,
        component_kwargs={"task_architecture": component_kwargs} if component_kwargs else None,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return use_reference(model) if reference else model


CASES = [(name, "mmoe", {}) for name in GRADIENT_BALANCERS] + [
    # A cascade: the parent's own tower is reached by the child's term but stays task-specific.
    ("pcgrad", "esmm", {}),
    # add_loss terms (the selectors' entropy) on shared parameters.
    ("gradnorm", "dselect_k", {"entropy_regularization": 0.1}),
]


@pytest.mark.parametrize("balancer, architecture, kwargs", CASES, ids=[f"{b}-{a}" for b, a, _ in CASES])
def test_update_is_the_one_of_t_plus_2_passes(balancer, architecture, kwargs):
    x, y = fake_batch(MOVIELENS_100K, n=64, seed=1)
    new, old = (_model(balancer, architecture, reference=r, **kwargs) for r in (False, True))
    start = [np.array(w) for w in new.trainable_weights]
    for model in (new, old):
        model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)  # two steps
    assert len(new.trainable_weights) == len(old.trainable_weights)
    moved = 0
    for a, b, first in zip(new.trainable_weights, old.trainable_weights, start):
        assert a.path == b.path
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6, err_msg=a.path)
        moved += not np.array_equal(np.asarray(a), first)
    assert moved == len(new.trainable_weights)
    assert bool(new.losses) == bool(kwargs)  # the dselect_k case has add_loss terms
    for a, b in zip(new.balancer.weights, old.balancer.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=a.path)


class _PassCounter:
    """Records each backward pass a train step asks its tape for: the number of variables."""

    def __init__(self, monkeypatch):
        self.calls = []
        gradient = tf.GradientTape.gradient

        def counted(tape, target, sources, *args, **kwargs):
            self.calls.append(len(tf.nest.flatten(sources)))
            return gradient(tape, target, sources, *args, **kwargs)

        monkeypatch.setattr(tf.GradientTape, "gradient", counted)


@pytest.mark.parametrize(
    "balancer, architecture, kwargs",
    [
        ("pcgrad", "mmoe", {}),
        ("gradnorm", "mmoe", {}),
        ("gradcraft", "mmoe", {}),
        ("metabalance", "dselect_k", {"entropy_regularization": 0.1}),
    ],
)
def test_each_parameter_is_in_the_per_task_passes_or_in_the_total_pass_not_both(
    balancer, architecture, kwargs, monkeypatch
):
    x, y = fake_batch(MOVIELENS_100K, n=32)
    counter = _PassCounter(monkeypatch)
    steps = {}
    for reference in (True, False):
        model = _model(balancer, architecture, reference=reference, **kwargs)
        model.run_eagerly = True  # every step runs the Python step: the calls of one step are counted
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # the first step finds which task reaches what
        counter.calls.clear()
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        steps[reference] = list(counter.calls)
    num_tasks, num_variables = len(MOVIELENS_100K.tasks), len(model.trainable_variables)
    regularization = bool(kwargs)
    # Before: T + 1 passes (T + 2 with add_loss terms), each over every variable.
    assert steps[True] == [num_variables] * (num_tasks + 1 + regularization)
    read = len(model.balancer.gradient_sizes)  # the variables whose per-task gradients it reads
    total = [num_variables - read] if read < num_variables else []
    assert steps[False] == total + [read] * (num_tasks + regularization)
    if balancer == "gradnorm":  # W, the last shared layer: a kernel and a bias
        assert read == 2 and len(set(model.balancer.gradient_layers)) == 1
    if balancer == "gradcraft":  # every variable is combined: no pass for the total
        assert steps[False] == [num_variables] * num_tasks
