import os

import keras
import numpy as np
import pytest

from tfjoint import catalog
from tfjoint.features.interactions import InteractionLog, InteractionSpec
from tfjoint.layers.multi_behavior import (
    BehaviorAwareExperts,
    BehaviorSpecificFeedForward,
    MultiBehaviorSequenceEncoder,
    MultiBehaviorSequentialTransformer,
    MultiBehaviorTransformerEncoder,
)
from tfjoint.layers.multi_behavior.multi_behavior_sequential_transformer import cloze, event_windows
from tfjoint.retrieval import evaluate, history, leave_one_out
from tfjoint.testing import randomize_weights, relu, run_layer_test, softmax

SPEC = InteractionSpec("toy", ("view", "cart", "buy"), "buy")


def layer_norm(x, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def test_feed_forward_is_the_network_of_each_positions_behavior_and_zero_on_padding():
    x = np.random.default_rng(0).normal(size=(2, 4, 6)).astype("float32")
    beh = np.array([[1, 2, 3, 0], [3, 3, 1, 2]])
    layer = BehaviorSpecificFeedForward(3, 5)
    layer.build(x.shape)
    randomize_weights(layer.weights, seed=2)
    w1, c1, w2, c2 = (np.asarray(w) for w in (layer.inner_kernel, layer.inner_bias, layer.outer_kernel, layer.outer_bias))
    got = np.asarray(layer(x, beh))
    for b in range(2):
        for i in range(4):
            t = beh[b, i] - 1
            want = np.zeros(6) if beh[b, i] == 0 else relu(x[b, i] @ w1[t] + c1[t]) @ w2[t] + c2[t]
            np.testing.assert_allclose(got[b, i], want, rtol=1e-4, atol=1e-5)


def test_experts_mix_the_shared_and_the_rows_behavior_experts_with_its_gate_then_add_the_residual():
    h = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    beh = np.array([1, 2, 2, 1, 0])
    layer = BehaviorAwareExperts(2, num_shared=3, num_specific=2)
    layer.build(h.shape)
    randomize_weights(layer.weights, seed=3)
    layer.norm.gamma.assign(np.ones(4, "float32"))
    layer.norm.beta.assign(np.zeros(4, "float32"))
    sk, sb, pk, pb, gk = (np.asarray(w) for w in (layer.shared_kernel, layer.shared_bias, layer.specific_kernel, layer.specific_bias, layer.gate_kernel))
    got = np.asarray(layer(h, beh))
    for n in range(5):
        if beh[n] == 0:
            np.testing.assert_allclose(got[n], h[n], atol=1e-5)  # o = h + LN(0) = h (gamma 1, beta 0)
            continue
        t = beh[n] - 1
        experts = [h[n] @ sk[e] + sb[e] for e in range(3)] + [h[n] @ pk[t, e] + pb[t, e] for e in range(2)]
        gate = softmax(h[n] @ gk[t])
        want = h[n] + layer_norm(sum(g * e for g, e in zip(gate, experts)))
        np.testing.assert_allclose(got[n], want, rtol=1e-4, atol=1e-4)


def test_encoder_block_is_post_norm_residual_attention_then_feed_forward():
    x = np.random.default_rng(2).normal(size=(2, 5, 4)).astype("float32")
    beh = np.array([[0, 1, 2, 1, 2], [2, 2, 1, 1, 2]])
    enc = MultiBehaviorTransformerEncoder(2, num_blocks=2, num_heads=2, dropout=0.0, seed=0)
    enc.build(x.shape)
    randomize_weights([w for w in enc.weights if "norm" not in w.path], seed=4, scale=0.5)
    want = x
    for b in range(2):
        want = layer_norm(want + np.asarray(enc.attentions[b](want, beh)))
        want = layer_norm(want + np.asarray(enc.feed_forwards[b](want, beh)))
    np.testing.assert_allclose(np.asarray(enc(x, beh)), want, rtol=1e-3, atol=1e-4)


def test_event_windows_are_the_latest_events_left_padded_and_shifted_by_one():
    log = InteractionLog(SPEC, [0, 0, 0, 1], [4, 2, 7, 3], [0, 2, 1, 2], [30, 10, 20, 5], num_users=3, num_items=8).sorted()
    items, beh = event_windows(log, np.array([0, 1, 2]), 2)
    np.testing.assert_array_equal(items, [[8, 5], [0, 4], [0, 0]])  # user 0: items 7 (t=20), 4 (t=30)
    np.testing.assert_array_equal(beh, [[2, 1], [0, 3], [0, 0]])


def test_cloze_masks_only_items_at_the_given_rate_and_labels_them():
    items = np.tile(np.arange(0, 50), (200, 1))
    tokens, labels = cloze(np.random.default_rng(0), items, 99, 0.2)
    masked = tokens == 99
    assert not masked[:, 0].any()  # padding is never a target
    assert masked[:, 1:].mean() == pytest.approx(0.2, abs=0.01)
    np.testing.assert_array_equal(labels, np.where(masked, items, 0))
    np.testing.assert_array_equal(tokens[~masked], items[~masked])


def toy_model(**kwargs):
    return MultiBehaviorSequentialTransformer(7, behaviors=list(SPEC.behaviors), max_len=4, hidden_dim=4, dropout=0.0, seed=0, **kwargs)


def toy_log():
    return InteractionLog(SPEC, [0, 0, 0, 1, 1], [1, 2, 3, 4, 6], [0, 0, 2, 1, 2], [1, 2, 3, 1, 2], num_users=2, num_items=7)


def test_scores_are_the_heads_output_at_an_appended_mask_with_the_target_behavior():
    model = toy_model()
    log = toy_log()
    tokens, beh = model.scoring_inputs(np.array([0, 1]), log)
    np.testing.assert_array_equal(tokens, [[2, 3, 4, 8], [0, 5, 7, 8]])  # mask token = num_items + 1
    np.testing.assert_array_equal(beh, [[1, 1, 3, 3], [0, 2, 3, 3]])  # the query carries "buy" (3)
    hidden = np.asarray(model((tokens, beh)))[:, -1]
    o = np.asarray(model.head(hidden, beh[:, -1]))
    table = np.asarray(model.item_embedding.embeddings)[1:8]
    np.testing.assert_allclose(model.score(np.array([0, 1]), log), o @ table.T, rtol=1e-4, atol=1e-6)
    # the target behavior selects the head's experts: scoring "cart" differs
    cart = toy_model(target="cart")
    cart.set_weights(model.get_weights())
    assert not np.allclose(cart.score(np.array([0, 1]), log), model.score(np.array([0, 1]), log))


def test_cloze_loss_is_the_catalog_cross_entropy_of_the_masked_positions():
    model = toy_model()
    tokens = np.array([[0, 2, 8, 4], [5, 8, 8, 1]])
    beh = np.array([[0, 1, 2, 3], [1, 3, 2, 2]])
    labels = np.array([[0, 0, 3, 0], [0, 6, 7, 0]])
    hidden = np.asarray(model((tokens, beh)))
    table = np.asarray(model.item_embedding.embeddings)[1:8]
    losses = []
    for b, i in zip(*np.nonzero(labels)):
        o = np.asarray(model.head(hidden[b, i][None], np.array([beh[b, i]])))[0]
        losses.append(-np.log(softmax(o @ table.T)[labels[b, i] - 1]))
    got = float(model.cloze_loss(tokens, beh, labels))
    assert got == pytest.approx(np.mean(losses), rel=1e-4)


def test_arguments_are_validated_before_any_work():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiBehaviorSequentialTransformer(5, hidden_dim=5, num_heads=2)
    with pytest.raises(ValueError, match="mask_prob"):
        MultiBehaviorSequentialTransformer(5, mask_prob=1.0)
    with pytest.raises(ValueError, match="target must be one of"):
        MultiBehaviorSequentialTransformer(5, behaviors=["view", "buy"], target="cart")
    with pytest.raises(ValueError, match="max_len"):
        MultiBehaviorSequentialTransformer(5, max_len=1)
    with pytest.raises(ValueError, match="needs history"):
        toy_model().score(np.array([0]))
    assert catalog.get("mbstr", slot="retrieval_model").family == "multi_behavior"
    assert catalog.get("mbstr_encoder", slot="sequence_encoder").family == "multi_behavior"


def copy_log(num_users=240, num_items=40, episodes=4, seed=0):
    """Episodes of 3 views then a buy of the last viewed item: only the views predict the buy."""
    rng = np.random.default_rng(seed)
    users, items, beh = [], [], []
    for u in range(num_users):
        for _ in range(episodes):
            viewed = rng.choice(num_items, 3, replace=False)
            users += [u] * 4
            items += [*viewed, viewed[-1]]
            beh += [0, 0, 0, 2]
    ts = np.tile(np.arange(4 * episodes), num_users)
    return InteractionLog(SPEC, users, items, beh, ts, num_users=num_users, num_items=num_items)


def test_learns_from_the_auxiliary_behavior_and_survives_a_keras_round_trip(tmp_path):
    split = leave_one_out(copy_log())
    model = MultiBehaviorSequentialTransformer(40, max_len=12, hidden_dim=16, dropout=0.1, seed=0)
    model.fit(split.train, epochs=25, batch_size=32, learning_rate=5e-3, seed=0)
    test_history = history(split, "test")
    result = evaluate(lambda u: model.score(u, test_history), split, stage="test", protocol="full", ks=(10,))
    assert result["HR@10"] > 0.6  # random: 0.25; the last view is the answer
    path = os.path.join(tmp_path, "mbstr.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    users = np.arange(5)
    np.testing.assert_allclose(reloaded.score(users, split.train), model.score(users, split.train), rtol=1e-5, atol=1e-6)


def test_sequence_encoder_passes_the_shared_layer_test_and_reads_the_behaviors():
    rng = np.random.default_rng(0)
    data = {
        "sequence": rng.normal(size=(3, 5, 8)).astype("float32"),
        "behaviors": np.array([[1, 2, 3, 0, 0], [3, 3, 1, 2, 1], [2, 0, 0, 0, 0]]),
        "sequence_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], "float32"),
        "target": rng.normal(size=(3, 8)).astype("float32"),
    }
    layer = run_layer_test(
        MultiBehaviorSequenceEncoder, {"num_behaviors": 3, "output_dim": 6, "dropout": 0.0, "activation": None, "seed": 0},
        data, expected_output_shape=(3, 6),
    )
    out = np.asarray(layer(data))
    relabeled = {**data, "behaviors": np.where(data["behaviors"] > 0, 4 - data["behaviors"], 0)}
    assert not np.allclose(np.asarray(layer(relabeled)), out, atol=1e-5)  # behaviors change E^B
    padded = {k: v.copy() for k, v in data.items()}
    padded["sequence"][0, 3:] = 99.0  # masked positions are ignored
    np.testing.assert_allclose(np.asarray(layer(padded)), out, rtol=1e-5, atol=1e-5)
