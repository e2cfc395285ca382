import keras
import numpy as np
import pytest

from tfjoint import catalog
from tfjoint.layers.multi_modal import NoninvasiveSelfAttention
from tfjoint.layers.multi_modal.visual_bayesian_personalized_ranking_test import clustered, cold_auc
from tfjoint.layers.retrieval.conftest import make_log
from tfjoint.testing import run_layer_test, sigmoid

FEATURES = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
LOG = make_log([0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 1, 2, 3, 0], num_users=4, num_items=6)  # items 4, 5 cold
SEQUENCES = np.array([[0, 0, 3, 1, 2], [1, 4, 2, 6, 5], [0, 0, 0, 0, 2]])


def small(fusion="gating", **kwargs):
    kwargs = {"max_len": 5, "hidden_dim": 4, "num_heads": 2, "dropout": 0.0, "seed": 0, **kwargs}
    return NoninvasiveSelfAttention(num_items=6, item_features=FEATURES, fusion=fusion, **kwargs)


@pytest.mark.parametrize("fusion", ["sum", "concat", "gating"])
def test_passes_the_shared_layer_test(fusion):
    run_layer_test(
        NoninvasiveSelfAttention,
        {"num_items": 6, "item_features": FEATURES, "fusion": fusion, "max_len": 5, "hidden_dim": 8, "num_heads": 2,
         "dropout": 0.1, "seed": 0},
        SEQUENCES,
        expected_output_shape=(3, 5, 8),
        # E_c only enters the candidate table (scoring), not the hidden states the call returns
        frozen_weights=lambda path: "content_projection" in path,
    )


class Recorder:
    """Wraps ``model.attention_weights``: records each block's weights, or replays them."""

    def __init__(self, model, replay=None):
        self.model, self.original, self.replay, self.weights = model, model.attention_weights, replay, []
        model.attention_weights = self

    def __call__(self, block, *args, **kwargs):
        weights = self.original(block, *args, **kwargs) if self.replay is None else self.replay[block]
        self.weights.append(np.asarray(weights))
        return weights


@pytest.mark.parametrize("fusion", ["sum", "concat", "gating"])
def test_side_information_enters_the_attention_weights_only_never_the_values(fusion):
    """NOVA(R, S) = softmax(Q Kᵀ / sqrt(d_k)) V, Q and K from F(R, S), V from R: changing the
    side information of past items changes the attention weights; with the weights held
    fixed, the output does not depend on the side information at all."""
    model = small(fusion, num_blocks=2)
    sequences = SEQUENCES[:2]
    recorder = Recorder(model)
    before = np.asarray(model(sequences, training=False))
    weights_before = recorder.weights
    other = np.random.default_rng(5).normal(size=FEATURES.shape).astype(np.float32)
    model.item_features.assign(other)
    recorder.weights = []
    changed = np.asarray(model(sequences, training=False))
    assert not np.allclose(recorder.weights[0], weights_before[0], atol=1e-4)  # side info moves Q Kᵀ
    assert not np.allclose(changed, before, atol=1e-4)
    Recorder(model, replay=weights_before)  # the weights of the old side information, replayed
    np.testing.assert_allclose(np.asarray(model(sequences, training=False)), before, rtol=1e-5, atol=1e-5)


def test_the_first_block_is_the_papers_attention_on_id_values():
    """One head, one block, position and features as side information, additive fusion:
    C = R + P + E_s f; A = softmax(LN(C) W^Q (C W^K)ᵀ / sqrt(d)) (causal); out = A (R W^V) + LN(R)."""
    model = small("sum", num_heads=1, num_blocks=1)
    for dense in (model.queries[0], model.keys[0], model.values[0], model.side_projection):
        dense.bias.assign(np.random.default_rng(1).normal(size=dense.bias.shape).astype(np.float32))
    seq = np.array([[0, 0, 3, 1, 2]])
    ids = model.item_embedding.embeddings.numpy()[seq[0]] * 2.0 * (seq[0] > 0)[:, None]
    ids_t = ids[None].astype(np.float32)
    content = model.side_projection(FEATURES[np.maximum(seq[0] - 1, 0)]).numpy() * (seq[0] > 0)[:, None]
    side = model.position_embedding.embeddings.numpy() + content
    c = (ids + side)[None].astype(np.float32)
    q = model.queries[0](model.attention_norms[0](c)).numpy()[0]
    k = model.keys[0](c).numpy()[0]
    logits = q @ k.T / 2.0
    allowed = np.tril(np.ones((5, 5), bool)) & (seq[0] > 0)[None, :]
    a = np.where(allowed, np.exp(logits - np.where(allowed, logits, -np.inf).max(1, keepdims=True)), 0.0)
    a = a / np.maximum(a.sum(1, keepdims=True), 1e-30) * (seq[0] > 0)[:, None]
    pad = np.array([[0, 0, 1, 1, 1]], np.float32)
    attended = model.attend(0, ids_t, pad, False, context=c).numpy()[0]
    expected = a @ model.values[0](ids_t).numpy()[0] + model.attention_norms[0](ids_t).numpy()[0]
    np.testing.assert_allclose(attended[2:], expected[2:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.fuse(0, ids_t, model.side_information(seq)), c, rtol=1e-5, atol=1e-6)


def test_gating_and_concat_fusions_follow_their_equations():
    rng = np.random.default_rng(2)
    r, p, f = (rng.normal(size=(1, 5, 4)).astype(np.float32) for _ in range(3))
    stacked = np.concatenate([r, p, f], axis=-1)
    gating = small("gating")
    kernel, bias = gating.fusions[0].kernel.numpy(), gating.fusions[0].bias.numpy()
    g = sigmoid(stacked @ kernel + bias)
    expected = g[..., :4] * r + g[..., 4:8] * p + g[..., 8:] * f
    np.testing.assert_allclose(gating.fuse(0, r, [p, f]), expected, rtol=1e-5, atol=1e-6)
    concat = small("concat")
    expected = stacked @ concat.fusions[1].kernel.numpy() + concat.fusions[1].bias.numpy()
    np.testing.assert_allclose(concat.fuse(1, r, [p, f]), expected, rtol=1e-5, atol=1e-6)


def test_cold_items_score_by_their_features_and_are_never_trained():
    model = small()
    before = model.item_embedding.embeddings.numpy().copy()
    model.fit(LOG, epochs=3, batch_size=3, learning_rate=0.05)  # one batch shape: one trace
    np.testing.assert_array_equal(model.warm_items.numpy(), [1, 1, 1, 1, 0, 0])
    table = model.item_embedding.embeddings.numpy()
    np.testing.assert_array_equal(table[5:], before[5:])  # cold rows: never a positive nor a negative
    assert not np.allclose(table[1:5], before[1:5])
    hidden = model(model.sequences(np.arange(3), None), training=False).numpy()[:, -1]
    content = FEATURES @ model.content_projection.kernel.numpy()
    scores = {}
    for mode in ("features", "mean", "none"):
        model.cold_start = mode  # read at scoring time only
        ids = table[1:].copy()
        if mode == "features":
            ids[4:] = 0.0
        elif mode == "mean":
            ids[4:] = ids[:4].mean(0)
        scores[mode] = model.score(np.arange(3))
        np.testing.assert_allclose(scores[mode], hidden @ (ids + content).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores["features"][:, :4], scores["none"][:, :4], rtol=1e-5)
    assert not np.allclose(scores["features"][:, 4:], scores["none"][:, 4:])


def test_learns_to_rank_cold_items_from_the_features_that_carry_the_signal():
    train, features, cold, side = clustered()
    model = NoninvasiveSelfAttention(60, item_features=features, max_len=8, hidden_dim=8, dropout=0.0, seed=0)
    model.fit(train, epochs=20, batch_size=20, learning_rate=0.01, seed=0)
    assert cold_auc(model.score(np.arange(40)), cold, side) > 0.9


def assert_reload_restores_features_warm_items_and_scores(model, path):
    """``model`` (on FEATURES) fitted on LOG, saved to ``path`` (.keras) and reloaded: same
    class and config, the features and warm items restored, the same scores."""
    model.fit(LOG, epochs=2, batch_size=3)
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.item_features.numpy(), FEATURES)
    np.testing.assert_array_equal(loaded.warm_items.numpy(), [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(loaded.score(np.arange(3), history=LOG), model.score(np.arange(3)), rtol=1e-5, atol=1e-6)


def test_keras_save_and_reload_restore_features_warm_items_and_scores(tmp_path):
    assert_reload_restores_features_warm_items_and_scores(small(cold_start="mean", dropout=0.2), tmp_path / "nova.keras")


def test_registered_as_a_multi_modal_retrieval_model():
    entry = catalog.get("nova", slot="retrieval_model")
    assert entry.cls is NoninvasiveSelfAttention and entry.family == "multi_modal"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "NOVA needs item_features or feature_dim"),
        ({"item_features": np.zeros((5, 3))}, r"item_features must have shape \(num_items=6"),
        ({"item_features": np.full((6, 2), np.inf)}, "item_features must be finite"),
        ({"item_features": FEATURES, "feature_dim": 4}, "feature_dim must equal item_features.shape"),
        ({"feature_dim": 3, "fusion": "max"}, "fusion must be one of"),
        ({"feature_dim": 3, "cold_start": "zero"}, "cold_start must be one of"),
        ({"feature_dim": 3, "hidden_dim": 5, "num_heads": 2}, "hidden_dim must be divisible"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        NoninvasiveSelfAttention(6, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_fit_arguments_raise_before_training():
    model = small()
    with pytest.raises(ValueError, match="num_items=7"):
        model.fit(make_log([0, 1], [0, 6], num_users=4))
    with pytest.raises(ValueError, match=r"feature_dim must equal item_features.shape\[1\]=4"):
        model.fit(LOG, item_features=np.zeros((6, 4)))
