import math

import numpy as np
import pytest

from tfjoint import catalog
from tfjoint.layers.multi_modal import MultiModalMultilayerPerceptron
from tfjoint.layers.multi_modal.multi_modal_multilayer_perceptron import FeatureMixer
from tfjoint.layers.multi_modal.noninvasive_self_attention_test import (
    FEATURES,
    LOG,
    SEQUENCES,
    assert_reload_restores_features_warm_items_and_scores,
)
from tfjoint.layers.multi_modal.visual_bayesian_personalized_ranking_test import clustered, cold_auc
from tfjoint.testing import run_layer_test


def small(**kwargs):
    kwargs = {"max_len": 5, "hidden_dim": 4, "expansion": 2, "dropout": 0.0, "seed": 0, **kwargs}
    return MultiModalMultilayerPerceptron(num_items=6, item_features=FEATURES, **kwargs)


def randomize(model, seed=1):
    """Every weight random (LN gains and biases too), so a reference cannot pass by zeros and ones."""
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.5, size=w.shape).astype(np.float32))


def layer_norm(x, gamma, beta, eps):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))


def mixer_reference(mixer, x, pad):
    """One Feature Mixer layer, written out per position: token mixing (hidden unit j of
    position j // e reads positions s <= j // e; output t reads the units of positions <= t),
    then channel mixing; pre-norm residuals; padding rows zero."""
    e, (length, width) = mixer.expansion, x.shape
    w1, b1, w2, b2 = (v.numpy() for v in (mixer.token_inner, mixer.token_inner_bias, mixer.token_outer, mixer.token_outer_bias))
    xn = layer_norm(x, mixer.token_norm.gamma.numpy(), mixer.token_norm.beta.numpy(), 1e-5) * pad[:, None]
    u = x.copy()
    for c in range(width):
        hidden = np.array([b1[j] + sum(w1[s, j] * xn[s, c] for s in range(j // e + 1)) for j in range(length * e)])
        hidden = gelu(hidden)
        for t in range(length):
            u[t, c] += b2[t] + sum(w2[j, t] * hidden[j] for j in range((t + 1) * e))
    un = layer_norm(u, mixer.channel_norm.gamma.numpy(), mixer.channel_norm.beta.numpy(), 1e-5)
    inner, outer = mixer.channel_inner, mixer.channel_outer
    y = u + gelu(un @ inner.kernel.numpy() + inner.bias.numpy()) @ outer.kernel.numpy() + outer.bias.numpy()
    return y * pad[:, None]


def test_passes_the_shared_layer_test():
    run_layer_test(
        MultiModalMultilayerPerceptron,
        {"num_items": 6, "item_features": FEATURES, "modality_dims": [1, 2], "max_len": 5, "hidden_dim": 8,
         "expansion": 2, "dropout": 0.1, "seed": 0},
        SEQUENCES,
        expected_output_shape=(3, 5, 8),
        # E_c only enters the candidate table (scoring), not the states the call returns. The
        # call ends in a LayerNorm of unit gain, so the test's loss sum (y - 1)^2 is constant
        # (up to the LN's epsilon) in everything before it at initialization: those gradients
        # are ~1e-7, too small to move an inner LN gain of 1.0 in float32.
        # Every inner LN gain (``*_norm/gamma``, ``input_norm_<m>/gamma``) is exempt, whatever the
        # order the suite runs in draws for the initial weights.
        frozen_weights=lambda path: "content_projection" in path
        or ("norm" in path and path.endswith("/gamma") and "final_norm" not in path),
    )


def test_one_feature_mixer_layer_matches_the_reference():
    mixer = FeatureMixer(length=5, width=3, expansion=2, seed=0)
    randomize(mixer)
    x = np.random.default_rng(2).normal(size=(2, 5, 3)).astype(np.float32)
    pad = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.float32)
    got = mixer(x, pad, training=False).numpy()
    for row in range(2):
        np.testing.assert_allclose(got[row], mixer_reference(mixer, x[row], pad[row]), rtol=1e-4, atol=1e-4)


def test_the_forward_pass_is_feature_mixers_per_modality_then_the_fusion_mixer():
    """X^(0) = LN(M_i), X^(m) = LN(E_m f^(m) + b_m), mixers per modality, then
    F = LN(W^F LN([X^(0); X^(1); X^(2)]) + b^F)."""
    model = small(modality_dims=[2, 1], num_blocks=2)
    randomize(model)
    seq = SEQUENCES[0]
    pad = (seq > 0).astype(np.float32)
    ids = model.item_embedding.embeddings.numpy()[seq] * 2.0  # sqrt(d), cancelled by the LN
    f = FEATURES[np.maximum(seq - 1, 0)]
    inputs = [ids, f[:, :2] @ model.modality_projections[0].kernel.numpy() + model.modality_projections[0].bias.numpy(),
              f[:, 2:] @ model.modality_projections[1].kernel.numpy() + model.modality_projections[1].bias.numpy()]
    outputs = []
    for m, (x, norm) in enumerate(zip(inputs, model.input_norms)):
        x = layer_norm(x, norm.gamma.numpy(), norm.beta.numpy(), 1e-5) * pad[:, None]
        for mixer in model.branch_mixers(m):
            x = mixer_reference(mixer, x, pad)
        outputs.append(x)
    fused = np.concatenate(outputs, axis=-1)
    fused = layer_norm(fused, model.fusion_norm.gamma.numpy(), model.fusion_norm.beta.numpy(), 1e-5)
    fused = fused @ model.fusion.kernel.numpy() + model.fusion.bias.numpy()
    expected = layer_norm(fused, model.final_norm.gamma.numpy(), model.final_norm.beta.numpy(), 1e-8)
    np.testing.assert_allclose(model(seq[None], training=False).numpy()[0], expected, rtol=1e-4, atol=1e-4)


def test_token_mixing_carries_earlier_modality_vectors_to_the_last_position_and_never_back():
    model = small(num_blocks=1)
    seq = np.array([[0, 3, 1, 2, 5]])
    before = model(seq, training=False).numpy()
    features = FEATURES.copy()
    features[0] += 3.0  # item 0 sits at position 2 only
    model.item_features.assign(features)
    after = model(seq, training=False).numpy()
    assert not np.allclose(after[0, -1], before[0, -1], atol=1e-4)  # mixed into the last position
    np.testing.assert_allclose(after[0, :2], before[0, :2], rtol=1e-5, atol=1e-6)  # causal: not into earlier ones
    for mixer in model.mixers:
        mixer.token_inner.assign(np.zeros(mixer.token_inner.shape, np.float32))
        mixer.token_outer.assign(np.zeros(mixer.token_outer.shape, np.float32))
    model.item_features.assign(FEATURES)
    before = model(seq, training=False).numpy()
    model.item_features.assign(features)
    np.testing.assert_allclose(model(seq, training=False).numpy()[0, -1], before[0, -1], rtol=1e-5, atol=1e-6)


def test_cold_items_score_by_their_features_and_are_never_trained():
    model = small()
    before = model.item_embedding.embeddings.numpy().copy()
    model.fit(LOG, epochs=2, batch_size=3, learning_rate=0.05)
    np.testing.assert_array_equal(model.warm_items.numpy(), [1, 1, 1, 1, 0, 0])
    table = model.item_embedding.embeddings.numpy()
    np.testing.assert_array_equal(table[5:], before[5:])  # cold rows: never a positive nor a negative
    assert not np.allclose(table[1:5], before[1:5])
    hidden = model(model.sequences(np.arange(3), None), training=False).numpy()[:, -1]
    content = FEATURES @ model.content_projection.kernel.numpy()
    ids = table[1:].copy()
    ids[4:] = 0.0
    np.testing.assert_allclose(model.score(np.arange(3)), hidden @ (ids + content).T, rtol=1e-5, atol=1e-5)


def test_learns_to_rank_cold_items_from_the_features_that_carry_the_signal():
    train, features, cold, side = clustered()
    model = MultiModalMultilayerPerceptron(60, item_features=features, max_len=8, hidden_dim=8, num_blocks=1, dropout=0.0, seed=0)
    model.fit(train, epochs=15, batch_size=20, learning_rate=0.01, seed=0)
    assert cold_auc(model.score(np.arange(40)), cold, side) > 0.9


def test_keras_save_and_reload_restore_features_warm_items_and_scores(tmp_path):
    model = small(cold_start="mean", dropout=0.2, modality_dims=[1, 2])
    assert_reload_restores_features_warm_items_and_scores(model, tmp_path / "mmmlp.keras")


def test_registered_as_a_multi_modal_retrieval_model():
    entry = catalog.get("mmmlp", slot="retrieval_model")
    assert entry.cls is MultiModalMultilayerPerceptron and entry.family == "multi_modal"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "MMMLP needs item_features or feature_dim"),
        ({"item_features": np.zeros((5, 3))}, r"item_features must have shape \(num_items=6"),
        ({"feature_dim": 3, "modality_dims": [1, 1]}, "modality_dims must be positive widths summing to feature_dim=3"),
        ({"feature_dim": 3, "expansion": 0}, "expansion must be"),
        ({"feature_dim": 3, "cold_start": "zero"}, "cold_start must be one of"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        MultiModalMultilayerPerceptron(6, **kwargs)
    assert "\n" not in str(info.value)


def test_a_sequence_of_another_length_is_refused():
    with pytest.raises(ValueError, match=r"sequences must have max_len=5 positions. Received: shape=\(1, 4\)"):
        small()(np.array([[0, 1, 2, 3]]))
