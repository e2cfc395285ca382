"""MetaBalance: the auxiliary-gradient rescaling of He et al. on hand-made gradients."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from tfjoint import catalog
from tfjoint.balancing import MetaBalance
from tfjoint.features import TaskSpec

TASKS = [TaskSpec("target"), TaskSpec("big"), TaskSpec("small")]
# Disjoint coordinates, so each adjusted gradient can be read off the sum.
TARGET = np.array([3.0, 4.0, 0.0, 0.0])  # ||G_tar|| = 5
BIG = np.array([0.0, 0.0, 10.0, 0.0])  # ||G_aux|| = 10 > 5
SMALL = np.array([0.0, 0.0, 0.0, 1.0])  # ||G_aux|| = 1 < 5


def _combine(balancer, vectors):
    combined = balancer.combine_gradients([ops.convert_to_tensor(v.astype("float32")) for v in vectors], {})
    return ops.convert_to_numpy(combined)


def _balancer(**kwargs):
    balancer = MetaBalance(**kwargs)
    balancer.bind(TASKS)
    return balancer


@pytest.mark.parametrize("relax_factor", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("strategy", ["reduce", "enlarge", "both"])
def test_without_averaging_the_update_is_the_papers_formula(relax_factor, strategy):
    r = relax_factor
    # G_aux <- (G_aux * ||G_tar|| / ||G_aux||) * r + G_aux * (1 - r), where the strategy allows.
    big_scale = (5 / 10) * r + (1 - r) if strategy in ("reduce", "both") else 1.0
    small_scale = (5 / 1) * r + (1 - r) if strategy in ("enlarge", "both") else 1.0
    expected = TARGET + big_scale * BIG + small_scale * SMALL
    combined = _combine(_balancer(relax_factor=r, beta=0.0, strategy=strategy), [TARGET, BIG, SMALL])
    np.testing.assert_allclose(combined, expected, rtol=1e-6)


def test_relax_factor_one_gives_every_auxiliary_gradient_the_targets_norm():
    combined = _combine(_balancer(relax_factor=1.0, beta=0.0, strategy="both"), [TARGET, BIG, SMALL])
    np.testing.assert_allclose(combined[:2], TARGET[:2])
    np.testing.assert_allclose(np.abs(combined[2:]), [5.0, 5.0], rtol=1e-6)


def test_default_is_the_authors_both_ways_and_enlarges_a_smaller_auxiliary_gradient():
    balancer = _balancer(relax_factor=1.0, beta=0.0)
    assert MetaBalance().strategy == "both"
    # SMALL (norm 1 < 5) is enlarged to the target's norm, BIG (10 > 5) reduced to it.
    np.testing.assert_allclose(_combine(balancer, [TARGET, BIG, SMALL]), [3.0, 4.0, 5.0, 5.0], rtol=1e-6)


def test_norms_are_per_parameter_tensor():
    # Two tensors of one entry each: the target's norms are 1 and 10, the auxiliary's 4 and 1.
    balancer = _balancer(relax_factor=1.0, beta=0.0)
    balancer.bind_gradient_layout([1, 1, 2], ["bottom/a", "bottom/b", "bottom/c"])
    combined = _combine(balancer, [np.array([1.0, 10.0, 0.0, 0.0]), np.array([4.0, 1.0, 0.0, 0.0]), 0 * SMALL])
    # Each auxiliary tensor takes its own tensor's target norm: 4 -> 1 and 1 -> 10 (one norm
    # over the whole vector would scale both by sqrt(101 / 17)).
    np.testing.assert_allclose(combined, [2.0, 20.0, 0.0, 0.0], rtol=1e-6)
    assert tuple(balancer.norm_averages.shape) == (3, 3)


def test_moving_averages_are_kept_per_tensor():
    balancer = _balancer(relax_factor=1.0, beta=0.5)
    balancer.bind_gradient_layout([2, 2], ["x", "y"])
    _combine(balancer, [TARGET, BIG, SMALL])
    # m = 0.5 * 0 + 0.5 * [[5, 0], [0, 10], [0, 1]].
    np.testing.assert_allclose(
        ops.convert_to_numpy(balancer.norm_averages), [[2.5, 0.0], [0.0, 5.0], [0.0, 0.5]], rtol=1e-6
    )


def test_target_task_sets_the_reference_norm():
    balancer = MetaBalance(relax_factor=1.0, beta=0.0, strategy="both", target_task="small")
    balancer.bind(TASKS)
    # Every other gradient is rescaled to ||SMALL|| = 1.
    np.testing.assert_allclose(_combine(balancer, [TARGET, BIG, SMALL]), [0.6, 0.8, 1.0, 1.0], rtol=1e-6)


def test_moving_averages_of_the_norms():
    balancer = _balancer(relax_factor=1.0, beta=0.9, strategy="both")
    _combine(balancer, [TARGET, BIG, SMALL])
    # m_k = 0.9 * 0 + 0.1 ||g_k||: [0.5, 1, 0.1].
    np.testing.assert_allclose(ops.convert_to_numpy(balancer.norm_averages)[:, 0], [0.5, 1.0, 0.1], rtol=1e-6)
    combined = _combine(balancer, [TARGET, 2 * BIG, SMALL])
    # m = 0.9 [0.5, 1, 0.1] + 0.1 [5, 20, 1] = [0.95, 2.9, 0.19]: scales m_tar / m_aux.
    np.testing.assert_allclose(ops.convert_to_numpy(balancer.norm_averages)[:, 0], [0.95, 2.9, 0.19], rtol=1e-6)
    expected = TARGET + 2 * BIG * 0.95 / 2.9 + SMALL * 0.95 / 0.19
    np.testing.assert_allclose(combined, expected, rtol=1e-5)


def test_zero_auxiliary_gradient_stays_zero():
    combined = _combine(_balancer(relax_factor=1.0, beta=0.0, strategy="both"), [TARGET, 0 * BIG, SMALL])
    np.testing.assert_allclose(combined, [3.0, 4.0, 0.0, 5.0], rtol=1e-6)


def test_config_round_trip_and_registration():
    balancer = MetaBalance(relax_factor=0.3, beta=0.5, strategy="enlarge", target_task="big", name="balancer")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(balancer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is MetaBalance
    assert restored.get_config() == balancer.get_config()
    assert (restored.relax_factor, restored.beta, restored.strategy, restored.target_task) == (
        0.3,
        0.5,
        "enlarge",
        "big",
    )
    assert keras.saving.get_registered_name(MetaBalance) == "tfjoint>MetaBalance"
    assert catalog.get("metabalance", slot="balancer").cls is MetaBalance


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta": 1.0}, r"beta must be in \[0, 1\). Received: beta=1.0"),
        ({"beta": -0.1}, r"beta must be in \[0, 1\). Received: beta=-0.1"),
        ({"relax_factor": 1.5}, r"relax_factor must be in \[0, 1\]. Received: relax_factor=1.5"),
        ({"strategy": "A"}, r"strategy must be one of .*Received: strategy='A'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MetaBalance(**kwargs)
