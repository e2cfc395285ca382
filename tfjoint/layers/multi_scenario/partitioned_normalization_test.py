import numpy as np
import pytest

from tfjoint.features import MOVIELENS_100K
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.layers.multi_scenario.partitioned_normalization import PartitionedNormalization
from tfjoint.testing import check_joint_model, run_layer_test

P = 3
EPS = 1e-3


def mixed_batch(n=12, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32") * 2.0 + 1.0
    # Scenarios interleaved row by row, so "the first row's scenario" would be wrong.
    scenario = (np.arange(n) % P).reshape(-1, 1).astype("int64")
    return x, scenario


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        value = rng.uniform(0.5, 1.5, size=w.shape).astype("float32")
        w.assign(value)


def test_shared_layer_checks():
    x, s = mixed_batch()
    s[-1] = P  # an unknown scenario rides along
    run_layer_test(
        PartitionedNormalization,
        {"num_scenarios": P},
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>PartitionedNormalization",
        expected_output_shape=(12, 4),
    )


def test_training_normalizes_each_row_with_its_own_scenario_statistics():
    x, s = mixed_batch()
    layer = PartitionedNormalization(num_scenarios=P, momentum=0.9, epsilon=EPS)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    gp, bp = layer.scenario_gamma.numpy(), layer.scenario_beta.numpy()
    mm, mv = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=True))
    expected = np.zeros_like(x)
    for p in range(P):
        rows = s[:, 0] == p
        mu, var = x[rows].mean(0), x[rows].var(0)
        expected[rows] = (gamma * gp[p]) * (x[rows] - mu) / np.sqrt(var + EPS) + (beta + bp[p])
        np.testing.assert_allclose(layer.moving_mean.numpy()[p], 0.9 * mm[p] + 0.1 * mu, rtol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy()[p], 0.9 * mv[p] + 0.1 * var, rtol=1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    # Not whole-batch batch norm: the interleaved scenarios have different statistics.
    whole = (x - x.mean(0)) / np.sqrt(x.var(0) + EPS)
    assert not np.allclose(out, gamma * whole + beta, atol=1e-2)


def test_absent_scenario_keeps_its_moving_statistics():
    x, s = mixed_batch()
    s[s == 2] = 0  # scenario 2 absent
    layer = PartitionedNormalization(num_scenarios=P, momentum=0.5)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    before_mean, before_var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    layer({"inputs": x, "scenario": s}, training=True)
    np.testing.assert_array_equal(layer.moving_mean.numpy()[2], before_mean[2])
    np.testing.assert_array_equal(layer.moving_variance.numpy()[2], before_var[2])
    assert not np.allclose(layer.moving_mean.numpy()[0], before_mean[0])
    assert not np.allclose(layer.moving_mean.numpy()[1], before_mean[1])


def test_inference_uses_each_rows_own_scenario_moving_statistics():
    x, s = mixed_batch()
    layer = PartitionedNormalization(num_scenarios=P, epsilon=EPS)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    gp, bp = layer.scenario_gamma.numpy(), layer.scenario_beta.numpy()
    mm, mv = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    p = s[:, 0]
    expected = (gamma * gp[p]) * (x - mm[p]) / np.sqrt(mv[p] + EPS) + (beta + bp[p])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_unknown_scenario_uses_the_shared_path():
    x, s = mixed_batch()
    s[:4] = P  # the transformed unknown-scenario id
    s[4] = 99  # anything out of range takes the same path
    layer = PartitionedNormalization(num_scenarios=P, momentum=0.5, epsilon=EPS)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    gm, gv = layer.global_moving_mean.numpy(), layer.global_moving_variance.numpy()
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=False))
    np.testing.assert_allclose(out[:5], gamma * (x[:5] - gm) / np.sqrt(gv + EPS) + beta, rtol=1e-5, atol=1e-6)
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=True))
    expected = gamma * (x[:5] - x.mean(0)) / np.sqrt(x.var(0) + EPS) + beta
    np.testing.assert_allclose(out[:5], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.global_moving_mean.numpy(), 0.5 * gm + 0.5 * x.mean(0), rtol=1e-5)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios"),
        ({"num_scenarios": 2, "momentum": 1.0}, "momentum"),
        ({"num_scenarios": 2, "epsilon": 0.0}, "epsilon"),
        ({"num_scenarios": 2, "min_count": 0}, "min_count"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PartitionedNormalization(**kwargs)


def test_bad_inputs():
    layer = PartitionedNormalization(num_scenarios=2)
    with pytest.raises(ValueError, match="keys"):
        layer({"x": np.ones((2, 3)), "scenario": np.zeros((2, 1), "int64")})


def test_as_joint_model_scenario_adapter(tmp_path):
    check_joint_model(MOVIELENS_100K, SIZES, tmp_path, scenario_adapter="partitioned_norm")


def test_default_moving_statistics_catch_up_within_a_short_training_run():
    # A bench or notebook trains for ~100 steps; the inference statistics must have reached
    # the data's by then (Keras's 0.99 would still hold 1 - 0.99**60 = 45% of the start).
    layer = PartitionedNormalization(num_scenarios=P)
    x, s = mixed_batch(n=30)
    x = x * 0.0 + 5.0
    for _ in range(60):
        layer({"inputs": x, "scenario": s}, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy()[:P], 5.0, rtol=0.01)


def unequal_batch(counts=(1, 3, 8), d=4, seed=0):
    """Scenario ``p`` has ``counts[p]`` rows, shuffled; the scenarios differ in mean and scale."""
    rng = np.random.default_rng(seed)
    scenario = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(scenario)
    x = rng.normal(size=(len(scenario), d)).astype("float32")
    x = x * (1.0 + scenario[:, None]) + 3.0 * scenario[:, None]
    return x.astype("float32"), scenario.reshape(-1, 1).astype("int64")


@pytest.mark.parametrize("min_count", [1, 2, 3])
def test_unequal_scenario_counts_use_each_scenarios_own_row_count(min_count):
    # 1, 3 and 8 rows of 12: a per-scenario count of batch / P = 4 gets every mean wrong.
    x, s = unequal_batch()
    kwargs = {} if min_count == 2 else {"min_count": min_count}  # 2 is the default
    layer = PartitionedNormalization(num_scenarios=P, momentum=0.9, epsilon=EPS, **kwargs)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    gp, bp = layer.scenario_gamma.numpy(), layer.scenario_beta.numpy()
    mm, mv = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=True))
    expected = np.zeros_like(x)
    for p in range(P):
        rows = s[:, 0] == p
        own = rows.sum() >= min_count
        mu = x[rows].mean(0) if own else x.mean(0)
        var = x[rows].var(0) if own else x.var(0)
        expected[rows] = (gamma * gp[p]) * (x[rows] - mu) / np.sqrt(var + EPS) + (beta + bp[p])
        np.testing.assert_allclose(layer.moving_mean.numpy()[p], 0.9 * mm[p] + 0.1 * mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy()[p], 0.9 * mv[p] + 0.1 * var, rtol=1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_a_singleton_scenario_is_normalized_with_the_whole_batch_statistics():
    x, s = unequal_batch()
    alone = s[:, 0] == 0
    layer = PartitionedNormalization(num_scenarios=P, epsilon=EPS)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize(layer)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    gp, bp = layer.scenario_gamma.numpy(), layer.scenario_beta.numpy()
    out = np.asarray(layer({"inputs": x, "scenario": s}, training=True))
    expected = (gamma * gp[0]) * (x[alone] - x.mean(0)) / np.sqrt(x.var(0) + EPS) + (beta + bp[0])
    np.testing.assert_allclose(out[alone], expected, rtol=1e-4, atol=1e-5)
    # Not the constant beta + beta_p of a variance-0 partition, and the input's gradient flows.
    assert not np.allclose(out[alone], beta + bp[0], atol=1e-2)
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer({"inputs": xt, "scenario": s}, training=True)
        picked = tf.reduce_sum(tf.boolean_mask(y, alone) * tf.constant([1.0, -2.0, 0.5, 3.0]))
    grad = tape.gradient(picked, xt).numpy()
    assert np.abs(grad[alone]).max() > 1e-3


def test_a_scenario_that_arrives_alone_keeps_a_serving_scale_like_trainings():
    # Before the rule, 60 steps took Var_p to 0.0016 and serving outputs to a std near 39.
    rng = np.random.default_rng(3)
    s = np.repeat(np.arange(P), (1, 5, 6)).reshape(-1, 1).astype("int64")
    layer = PartitionedNormalization(num_scenarios=P, epsilon=EPS)
    for _ in range(60):
        x = (rng.normal(size=(12, 4)) * 2.0 + 1.0).astype("float32")
        layer({"inputs": x, "scenario": s}, training=True)
    np.testing.assert_allclose(layer.moving_variance.numpy()[0], 4.0, rtol=0.35)
    np.testing.assert_allclose(layer.moving_mean.numpy()[0], 1.0, atol=0.5)
    x = (rng.normal(size=(2000, 4)) * 2.0 + 1.0).astype("float32")
    served = np.asarray(layer({"inputs": x, "scenario": np.zeros((2000, 1), "int64")}, training=False))
    np.testing.assert_allclose(served.std(0), 1.0, rtol=0.3)
    np.testing.assert_allclose(served.mean(0), 0.0, atol=0.4)


def test_min_count_round_trips_in_the_config():
    layer = PartitionedNormalization(num_scenarios=P, min_count=3)
    assert PartitionedNormalization.from_config(layer.get_config()).min_count == 3
    assert PartitionedNormalization(num_scenarios=P).get_config()["min_count"] == 2
