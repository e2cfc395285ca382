import keras
import numpy as np
import pytest

from tfjoint import catalog
from tfjoint.layers.multi_modal import BootstrapMultiModal
from tfjoint.layers.multi_modal.visual_bayesian_personalized_ranking_test import clustered, cold_auc
from tfjoint.layers.retrieval.conftest import make_log

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(6, 3)).astype(np.float32)
LOG = make_log([0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 3, 0], num_users=4, num_items=6)  # items 4, 5 cold


def numpy_views(model, users, items, num_layers):
    """(h_u table, h_i table) from numpy: mean of Â^k E over k = 0..K, plus E_i^(0) for items."""
    n_u, n_i = model.num_users, model.num_items
    a = np.zeros((n_u + n_i, n_u + n_i))
    a[users, n_u + items] = a[n_u + items, users] = 1.0
    degree = a.sum(1)
    d = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1)), 0.0)
    a_hat = d[:, None] * a * d[None, :]
    ego = np.concatenate([model.user_embedding.embeddings.numpy(), model.item_embedding.embeddings.numpy()])
    layers = [ego]
    for _ in range(num_layers):
        layers.append(a_hat @ layers[-1])
    final = np.mean(layers, axis=0)
    return final[:n_u], final[n_u:] + ego[n_u:]


def predictor(model):
    kernel, bias = model.alignment.predictor.kernel.numpy(), model.alignment.predictor.bias.numpy()
    return lambda x: x @ kernel + bias


def modality(model):
    """``W_m (f + Δ) + b_m``: the features with the fine-tuned offset."""
    features = model.item_features.numpy() + model.feature_offset.numpy()
    return features @ model.projection.kernel.numpy() + model.projection.bias.numpy()


def one_minus_cos(a, b):
    return 1.0 - (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def randomized(alignment="bootstrap", **kwargs):
    model = BootstrapMultiModal(4, 6, item_features=FEATURES, embedding_dim=3, num_layers=2, dropout=0.0,
                                reg_weight=0.3, cl_weight=1.5, alignment=alignment, temperature=0.5, seed=0, **kwargs)
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    model.set_graph(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 3, 0]))
    return model


def test_batch_loss_is_bm3s_equation():
    model = randomized()
    h_u, h_i = numpy_views(model, np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 3, 0]), 2)
    q, h_m = predictor(model), modality(model)
    u, i = np.array([0, 2, 1]), np.array([1, 3, 1])
    rec = one_minus_cos(q(h_u[u]), h_i[i]).mean() + one_minus_cos(q(h_i[i]), h_u[u]).mean()
    align = one_minus_cos(q(h_m[i]), h_i[i]).mean()
    mask = one_minus_cos(q(h_m[i]), h_m[i]).mean()
    reg = (np.linalg.norm(h_u) + np.linalg.norm(h_i)) / 6
    expected = rec + 0.3 * reg + 1.5 * (align + mask)
    negatives = np.array([5, 4, 0])  # ignored: BM3 has no negatives
    got = model.batch_loss(u, i, negatives, None)
    assert float(got) == pytest.approx(expected, rel=1e-4)
    assert float(model.batch_loss(u, i, negatives[::-1], None)) == pytest.approx(float(got), rel=1e-6)


def test_id_only_bm3_has_no_modality_view_and_trains_l_rec_plus_the_regularizer():
    """BM3's own id-only counterpart: no projection, features or offset, ``L = L_rec + λ_reg reg``."""
    model = BootstrapMultiModal(4, 6, embedding_dim=3, num_layers=2, dropout=0.0, reg_weight=0.3, cl_weight=0.0,
                                cold_start="none", seed=0)
    assert model.projection is None and model.item_features is None and model.feature_offset is None
    assert not any("feature" in w.path or "projection" in w.path for w in model.weights)
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    model.set_graph(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 3, 0]))
    h_u, h_i = numpy_views(model, np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 3, 0]), 2)
    q = predictor(model)
    u, i = np.array([0, 2, 1]), np.array([1, 3, 1])
    rec = one_minus_cos(q(h_u[u]), h_i[i]).mean() + one_minus_cos(q(h_i[i]), h_u[u]).mean()
    reg = (np.linalg.norm(h_u) + np.linalg.norm(h_i)) / 6
    assert float(model.batch_loss(u, i, np.zeros(0, np.int64), None)) == pytest.approx(rec + 0.3 * reg, rel=1e-4)
    with pytest.raises(ValueError, match="id-only BM3 .* reads no item features"):
        model.fit(LOG, item_features=FEATURES, epochs=1)


def test_id_only_bm3_saves_and_reloads(tmp_path):
    model = BootstrapMultiModal(4, 6, embedding_dim=3, cl_weight=0.0, cold_start="mean", seed=0)
    model.fit(LOG, epochs=2, batch_size=4)
    path = tmp_path / "bm3_ids.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config() and loaded.item_features is None
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-6)


@pytest.mark.parametrize("fine_tune", [True, False])
def test_features_are_fine_tuned_on_warm_items_only_as_the_authors(fine_tune):
    """The authors' feature table is trainable (from_pretrained(freeze=False)): Δ moves on the
    warm items; a cold item is in no batch, so its Δ stays 0 and f stays as given."""
    model = BootstrapMultiModal(4, 6, item_features=FEATURES, embedding_dim=3, fine_tune_features=fine_tune,
                                seed=0)
    assert any(w is model.feature_offset for w in model.trainable_weights) == fine_tune
    model.fit(LOG, epochs=3, batch_size=4, learning_rate=0.05)
    offset = model.feature_offset.numpy()
    np.testing.assert_array_equal(model.item_features.numpy(), FEATURES)
    np.testing.assert_array_equal(offset[4:], 0.0)
    moved = np.abs(offset[:4])
    assert (moved.min(axis=1) > 0).all() == fine_tune and (moved.max() > 0) == fine_tune


def test_infonce_variant_replaces_the_alignment_term_over_distinct_items():
    model = randomized("infonce")
    h_u, h_i = numpy_views(model, np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 3, 0]), 2)
    q, h_m = predictor(model), modality(model)
    u, i = np.array([0, 2, 1, 0]), np.array([1, 3, 1, 0])
    rec = one_minus_cos(q(h_u[u]), h_i[i]).mean() + one_minus_cos(q(h_i[i]), h_u[u]).mean()
    distinct = np.array([1, 3, 0])  # first occurrences
    a = q(h_m[distinct])
    a, b = a / np.linalg.norm(a, axis=-1, keepdims=True), h_i[distinct] / np.linalg.norm(h_i[distinct], axis=-1, keepdims=True)
    logits = a @ b.T / 0.5
    nce = (np.log(np.exp(logits).sum(-1)) - np.diag(logits)).mean()
    mask = one_minus_cos(q(h_m[i]), h_m[i]).mean()
    reg = (np.linalg.norm(h_u) + np.linalg.norm(h_i)) / 6
    expected = rec + 0.3 * reg + 1.5 * (nce + mask)
    assert float(model.batch_loss(u, i, np.zeros(0, np.int64), None)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("mode", ["features", "mean", "none"])
def test_score_is_predicted_views_and_cold_items_as_cold_start_says(mode):
    model = BootstrapMultiModal(4, 6, item_features=FEATURES, embedding_dim=3, cold_start=mode, seed=0)
    model.fit(LOG, epochs=2, batch_size=4, learning_rate=0.05)
    np.testing.assert_array_equal(model.warm_items.numpy(), [1, 1, 1, 1, 0, 0])
    h_u, h_i = numpy_views(model, LOG.users, LOG.items, 1)
    q = predictor(model)
    if mode == "features":
        h_i[4:] = modality(model)[4:]
    elif mode == "mean":
        h_i[4:] = h_i[:4].mean(0)
    np.testing.assert_allclose(model.score(np.arange(4)), q(h_u) @ q(h_i).T, rtol=1e-4, atol=1e-5)


def test_keras_save_and_reload_restore_features_warm_items_and_scores(tmp_path):
    model = BootstrapMultiModal(4, 6, item_features=FEATURES, embedding_dim=3, alignment="infonce", seed=0)
    model.fit(LOG, epochs=2, batch_size=4)
    path = tmp_path / "bm3.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is BootstrapMultiModal and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.item_features.numpy(), FEATURES)
    np.testing.assert_array_equal(loaded.warm_items.numpy(), [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-6)


def test_registered_as_a_multi_modal_retrieval_model():
    entry = catalog.get("bm3", slot="retrieval_model")
    assert entry.cls is BootstrapMultiModal and entry.family == "multi_modal"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "BM3 needs item_features or feature_dim"),
        ({"cl_weight": 0.0}, r"BM3 needs item_features or feature_dim .*cold_start='features'"),
        ({"cold_start": "none"}, r"BM3 needs item_features or feature_dim .*cl_weight=2.0"),
        ({"item_features": np.zeros((5, 3))}, r"item_features must have shape \(num_items=6"),
        ({"feature_dim": 0}, "feature_dim must be >= 1"),
        ({"feature_dim": 3, "alignment": "mse"}, "alignment must be one of"),
        ({"feature_dim": 3, "reg_weight": -1.0}, "reg_weight must be >= 0"),
        ({"feature_dim": 3, "cold_start": "zero"}, "cold_start must be one of"),
        ({"feature_dim": 3, "loss": "bpr"}, r"BM3 trains with its own loss .* Received: \['loss'\]"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        BootstrapMultiModal(4, 6, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("alignment", ["bootstrap", "infonce"])
def test_learns_to_rank_cold_items_from_the_features_that_carry_the_signal(alignment):
    train, features, cold, side = clustered()
    model = BootstrapMultiModal(40, 60, item_features=features, embedding_dim=8, alignment=alignment, seed=0)
    before = cold_auc(model.score(np.arange(40)), cold, side)
    model.fit(train, epochs=30, batch_size=32, learning_rate=0.01, seed=0)
    after = cold_auc(model.score(np.arange(40)), cold, side)
    assert after > 0.9 and after > before + 0.2
