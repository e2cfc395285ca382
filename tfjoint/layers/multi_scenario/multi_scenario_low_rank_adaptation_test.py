import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.features import MOVIELENS_100K
from tfjoint.joint import add_scenarios, build_joint_model, fine_tune, fit_joint_model, pretrain
from tfjoint.layers.multi_scenario.multi_scenario_low_rank_adaptation import MultiScenarioLowRankAdaptation
from tfjoint.testing import (
    check_joint_model,
    fake_batch,
    fake_vocab_sizes,
    randomize_weights,
    run_layer_test,
    scenario_batch,
)

SIZES = fake_vocab_sizes(MOVIELENS_100K)

P, D = 3, 5
UNITS, ALPHA = [6, 3], 2  # ranks [3, 1]

pytestmark = [
    # The light joint models below leave the sequence and token tables unused.
    pytest.mark.filterwarnings("ignore:Gradients do not exist:UserWarning"),
    # Keras learns the length of a filtered (unknown-cardinality) dataset by running out of it.
    pytest.mark.filterwarnings("ignore:Your input ran out of data:UserWarning"),
]


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1, zero_b=False):
    x, s = batch()
    layer = MultiScenarioLowRankAdaptation(P, units=UNITS, alpha=ALPHA)
    layer.build({"inputs": x.shape, "scenario": s.shape})
    randomize_weights([w for w in layer.weights if not (zero_b and "lora_b" in w.path)], seed, scale=0.7)
    return layer


def numpy_forward(layer, x, scenario, use_lora=True):
    """h = relu(W h + b + B_t A_t h) per row, in the paper's column-vector convention."""
    h = x
    for i in range(len(layer.units)):
        w, b = layer.kernels[i].numpy().T, layer.biases[i].numpy()  # W: (d_out, d_in)
        rows = []
        for v, t in zip(h, scenario[:, 0]):
            z = w @ v + b
            if use_lora and 0 <= t < layer.num_scenarios:
                a_t = layer.lora_a[i][t].numpy().T  # (r, d_in)
                b_t = layer.lora_b[i][t].numpy().T  # (d_out, r)
                z = z + b_t @ (a_t @ v)
            rows.append(np.maximum(z, 0.0))
        h = np.stack(rows)
    return h


def call(layer, x, s):
    return np.asarray(layer({"inputs": x, "scenario": s}))


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        MultiScenarioLowRankAdaptation,
        {"num_scenarios": P, "units": UNITS, "alpha": ALPHA},
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>MultiScenarioLowRankAdaptation",
        expected_output_shape=(12, UNITS[-1]),
        # B starts at zero, so the gradient of A (dL/dh B_t ...) is exactly zero on the first
        # step: A legitimately cannot move until B has.
        frozen_weights=lambda path: "lora_a" in path,
    )


@pytest.mark.parametrize(
    "units, alpha, ranks", [([8, 3], 4, [2, 1]), ([8, 3], 1, [8, 3]), ([7, 16], 3, [2, 5]), ([4], 9, [1])]
)
def test_rank_is_d_out_floor_divided_by_alpha_at_least_one(units, alpha, ranks):
    layer = MultiScenarioLowRankAdaptation(2, units=units, alpha=alpha)
    layer.build([(None, D), (None, 1)])
    assert layer.ranks == ranks
    fan_in = [D, *units[:-1]]
    for i, (d_in, d_out, r) in enumerate(zip(fan_in, units, ranks)):
        for t in range(2):
            assert tuple(layer.lora_a[i][t].shape) == (d_in, r)  # A^T
            assert tuple(layer.lora_b[i][t].shape) == (r, d_out)  # B^T


def test_each_scenarios_pair_is_its_own_variable():
    layer = built()
    names = {w.path.split("/")[-1] for w in layer.weights}
    expected = {f"{k}_{i}" for k in ("kernel", "bias") for i in range(2)}
    expected |= {f"lora_{ab}_{i}_{t}" for ab in "ab" for i in range(2) for t in range(P)}
    assert names == expected and len(layer.weights) == len(expected)
    assert {w.path for w in layer.lora_weights(1)} == {
        f"{layer.name}/lora_{ab}_{i}_1" for ab in "ab" for i in range(2)
    }


def test_equation_with_non_zero_b():
    layer = built()
    x, s = batch()
    out = call(layer, x, s)
    np.testing.assert_allclose(out, numpy_forward(layer, x, s), rtol=1e-4, atol=1e-5)
    # The low-rank term does something for every known scenario.
    backbone = numpy_forward(layer, x, s, use_lora=False)
    for t in range(P):
        rows = s[:, 0] == t
        assert not np.allclose(out[rows], backbone[rows]), t


def test_at_initialization_every_scenario_equals_the_backbone():
    x, _ = batch()
    layer = MultiScenarioLowRankAdaptation(P, units=UNITS, alpha=ALPHA)
    layer.build([x.shape, (None, 1)])
    assert all(np.all(w.numpy() == 0) for i in range(2) for w in layer.lora_b[i])
    assert all(np.any(w.numpy() != 0) for i in range(2) for w in layer.lora_a[i])
    for t in range(P + 1):
        s = np.full((len(x), 1), t, dtype="int64")
        np.testing.assert_allclose(call(layer, x, s), numpy_forward(layer, x, s, use_lora=False), atol=1e-5)
    # Randomized weights with B = 0: still the backbone.
    layer = built(zero_b=True)
    _, s = batch()
    np.testing.assert_allclose(call(layer, x, s), numpy_forward(layer, x, s, use_lora=False), atol=1e-5)


def test_unknown_scenario_uses_the_backbone_only():
    layer = built()
    x, s = batch()
    s[0, 0], s[1, 0] = 99, -1
    unknown = (s[:, 0] < 0) | (s[:, 0] >= P)
    out = call(layer, x, s)
    np.testing.assert_allclose(
        out[unknown], numpy_forward(layer, x[unknown], s[unknown], use_lora=False), atol=1e-5
    )
    np.testing.assert_allclose(out, numpy_forward(layer, x, s), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_scenarios": 0}, "num_scenarios=0"),
        ({"num_scenarios": 2, "units": []}, r"units=\[\]"),
        ({"num_scenarios": 2, "units": [4, 0]}, r"units=\[4, 0\]"),
        ({"num_scenarios": 2, "alpha": 0}, "alpha=0"),
        ({"num_scenarios": 2, "alpha": 1.5}, "alpha=1.5"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiScenarioLowRankAdaptation(**kwargs)


def test_as_joint_model_scenario_adapter(tmp_path):
    check_joint_model(MOVIELENS_100K, SIZES, tmp_path, scenario_adapter="m_lora")


# Two-stage training, on a light joint model (no encoders, a shared bottom) to keep tracing short.


def light_model(scenario_adapter="m_lora", adapter_kwargs=None):
    return build_joint_model(
        MOVIELENS_100K,
        SIZES,
        scenario_adapter=scenario_adapter,
        task_architecture="shared_bottom",
        sequence_encoder=None,
        modality_encoder=None,
        component_kwargs={
            "scenario_adapter": {"units": [8, 4], "alpha": 2} if adapter_kwargs is None else adapter_kwargs,
            "task_architecture": {"bottom_units": [8], "tower_units": [4]},
        },
    )


def snapshot(model):
    return {w.path: np.array(w.numpy()) for w in model.weights}


def changed(model, before):
    return {w.path for w in model.weights if not np.array_equal(before[w.path], w.numpy())}


def predict(model, x):
    return {k: np.asarray(v) for k, v in model(x, training=False).items()}


def lora_paths(model, scenario=None):
    return {w.path for w in model.scenario_adapter.lora_weights(scenario)}


def flags(model):
    return [layer.trainable for layer in model._flatten_layers()], [v.trainable for v in model.variables]


def randomize_lora(model, seed=3):
    randomize_weights(model.scenario_adapter.lora_weights(), seed, scale=0.3)


def test_pretrain_then_fine_tune_one_scenario():
    model = light_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    compile_config = model.get_compile_config()
    x, y = fake_batch(MOVIELENS_100K)
    scenario = x["scenario"][:, 0]
    initial_flags = flags(model)

    before = snapshot(model)
    pretrain(model, (x, y), epochs=1, optimizer=keras.optimizers.Adam(1e-2), verbose=0)
    moved = changed(model, before)
    assert not moved & lora_paths(model)
    backbone = {f"scenario_adapter/{k}_{i}" for k in ("kernel", "bias") for i in range(2)}
    assert backbone <= moved
    assert "embedding/embedding_user_id/embeddings" in moved and "watch/kernel" in moved
    # B is still 0: every scenario is the shared backbone.
    assert all(np.all(w.numpy() == 0) for w in model.scenario_adapter.lora_b[0])
    assert flags(model) == initial_flags
    assert model.get_compile_config() == compile_config

    preds = predict(model, x)
    before = snapshot(model)
    histories = fine_tune(
        model, (x, y), scenarios=[1], epochs=2, optimizer=keras.optimizers.Adam(5e-2), verbose=0
    )
    assert list(histories) == [1]
    # Only scenario 1's pair moves, all of it (A moves from the second step, once B != 0);
    # every other weight, statistics included, is bit-identical.
    assert changed(model, before) == lora_paths(model, 1)
    after = predict(model, x)
    for task in preds:
        np.testing.assert_array_equal(after[task][scenario != 1], preds[task][scenario != 1])
        assert not np.allclose(after[task][scenario == 1], preds[task][scenario == 1])
    assert flags(model) == initial_flags
    assert model.get_compile_config() == compile_config

    # Recompiled for the restored flags: a plain fit trains the whole model again.
    before = snapshot(model)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    moved = changed(model, before)
    assert backbone | lora_paths(model, 1) <= moved
    assert "embedding/embedding_scenario/embeddings" in moved


def test_add_scenarios_then_fine_tune_only_the_new_one(tmp_path):
    model = light_model()
    randomize_lora(model)  # as if fine-tuned: old pairs must be copied, not re-initialized
    x, y = fake_batch(MOVIELENS_100K)  # ids 0..2 known, 3 unknown for P = 3
    old_preds = predict(model, x)
    scenario = x["scenario"][:, 0]
    old_rows, new_rows = scenario < P, scenario == P
    assert old_rows.any() and new_rows.any()

    grown = add_scenarios(model, 1)
    assert grown.scenario_adapter.num_scenarios == grown.embedding.num_scenarios == P + 1
    old_table = model.embedding.scenario_table.embeddings.numpy()
    new_table = grown.embedding.scenario_table.embeddings.numpy()
    np.testing.assert_array_equal(new_table, np.concatenate([old_table[:P], old_table[P:], old_table[P:]]))
    assert all(np.all(w.numpy() == 0) for i in range(2) for w in grown.scenario_adapter.lora_b[i][P:])
    grown_preds = predict(grown, x)
    only = lambda t: {**x, "scenario": np.full_like(x["scenario"], t)}
    old_unknown = predict(model, only(P))
    new_scenario, new_unknown = predict(grown, only(P)), predict(grown, only(P + 1))
    for task in old_preds:
        # Old scenarios unchanged; the new scenario (id 3) and the new unknown id (4) both
        # predict what the old model predicted for the unknown id 3.
        np.testing.assert_array_equal(grown_preds[task], old_preds[task])
        np.testing.assert_array_equal(new_scenario[task], old_unknown[task])
        np.testing.assert_array_equal(new_unknown[task], old_unknown[task])

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    before = snapshot(grown)
    histories = fine_tune(
        grown, data, scenarios=[P], epochs=2, optimizer=keras.optimizers.Adam(5e-2), verbose=0
    )
    assert list(histories) == [P]
    assert changed(grown, before) == lora_paths(grown, P)
    tuned = predict(grown, x)
    for task in old_preds:
        np.testing.assert_array_equal(tuned[task][old_rows], old_preds[task][old_rows])
        assert not np.allclose(tuned[task][new_rows], old_preds[task][new_rows])

    path = tmp_path / "grown.keras"
    grown.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.scenario_adapter.num_scenarios == P + 1
    for task, value in predict(reloaded, x).items():
        np.testing.assert_array_equal(value, tuned[task])


class NormalizedTowers(keras.layers.Layer):
    """A test task architecture with batch-norm statistics that training mode would update."""

    def __init__(self, task_names, **kwargs):
        super().__init__(**kwargs)
        self.task_names = task_names

    def build(self, input_shape):
        self.norm = keras.layers.BatchNormalization(name="norm")
        self.norm.build(input_shape)
        self.towers = [keras.layers.Dense(4, name=f"tower_{t}") for t in self.task_names]
        for tower in self.towers:
            tower.build(input_shape)

    def call(self, inputs, training=None):
        h = self.norm(inputs, training=training)
        return {t: tower(h) for t, tower in zip(self.task_names, self.towers)}


def test_fine_tune_every_scenario_with_rows_and_nothing_else():
    towers = NormalizedTowers([t.name for t in MOVIELENS_100K.tasks], name="task_architecture")
    model = build_joint_model(
        MOVIELENS_100K,
        SIZES,
        scenario_adapter="m_lora",
        task_architecture=towers,
        sequence_encoder=None,
        modality_encoder=None,
        component_kwargs={"scenario_adapter": {"units": [8, 4], "alpha": 2}},
    )
    x, y = fake_batch(MOVIELENS_100K)
    rows = x["scenario"][:, 0] == 0
    x0, y0 = {k: v[rows] for k, v in x.items()}, {k: v[rows] for k, v in y.items()}
    before = snapshot(model)
    assert (
        fine_tune(model, tf.data.Dataset.from_tensor_slices((x0, y0)).batch(4), scenarios=[2], verbose=0)
        == {}
    )
    assert not changed(model, before)
    # scenarios=None: every scenario, but only 0 has rows. The frozen batch norm runs in
    # inference mode, so its moving statistics stay as they were.
    histories = fine_tune(model, (x0, y0), epochs=2, optimizer=keras.optimizers.Adam(5e-2), verbose=0)
    assert list(histories) == [0]
    assert changed(model, before) == lora_paths(model, 0)


def test_stage_arguments_raise():
    model = light_model()
    x, y = fake_batch(MOVIELENS_100K)
    with pytest.raises(ValueError, match=r"scenarios=\[0, 3\]"):
        fine_tune(model, (x, y), scenarios=[0, 3])
    with pytest.raises(ValueError, match=r"scenarios=\[-1\]"):
        fine_tune(model, (x, y), scenarios=[-1])
    with pytest.raises(ValueError, match="epochs=0"):
        pretrain(model, (x, y), epochs=0)
    with pytest.raises(ValueError, match="Received: ndarray"):
        pretrain(model, x["user_id"])
    with pytest.raises(ValueError, match="num_new=0"):
        add_scenarios(model, 0)
    other = light_model(scenario_adapter="hamur", adapter_kwargs={})
    for stage in (pretrain, fine_tune):
        with pytest.raises(TypeError, match="HyperNetworkAdapter"):
            stage(other, (x, y))
    with pytest.raises(TypeError, match="HyperNetworkAdapter"):
        add_scenarios(other, 1)


def test_fit_joint_model_splits_the_epochs_between_the_two_stages():
    model = light_model()
    x, y = fake_batch(MOVIELENS_100K)
    present = sorted(set(x["scenario"][:, 0]) & {0, 1, 2})
    histories = fit_joint_model(model, (x, y), epochs=3, batch_size=16, verbose=0)
    assert list(histories) == ["pretrain", *(f"fine_tune_{t}" for t in present)]
    assert len(histories["pretrain"].history["loss"]) == 2
    assert all(len(histories[f"fine_tune_{t}"].history["loss"]) == 1 for t in present)
    # Both stages ran: B moved away from zero, so the scenarios no longer share one network.
    assert any(np.any(w.numpy() != 0) for w in model.scenario_adapter.lora_b[0])
