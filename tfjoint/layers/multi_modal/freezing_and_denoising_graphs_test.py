import keras
import numpy as np
import pytest

from tfjoint import catalog
from tfjoint.layers.multi_modal import FreezingAndDenoisingGraphs
from tfjoint.layers.multi_modal.freezing_and_denoising_graphs import item_graph, knn_item_graph, prune_edges
from tfjoint.layers.retrieval.conftest import make_log
from tfjoint.testing import run_layer_test

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(8, 3)).astype(np.float32)
TEXT = RNG.normal(size=(8, 5)).astype(np.float32)
LOG = make_log([0, 0, 1, 1, 2, 2, 3], [0, 1, 1, 2, 3, 0, 4], num_users=5, num_items=8)  # items 5, 6, 7 cold


def small(**kwargs):
    kwargs = {"item_features": FEATURES, "knn_k": 3, "embedding_dim": 4, "seed": 0, **kwargs}
    return FreezingAndDenoisingGraphs(5, 8, **kwargs)


def dense_knn(features, k):
    """numpy: S_ij = 1 for the k most cosine-similar j of i, S̃ = D^-1/2 S D^-1/2 with D = diag(S 1)."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = unit @ unit.T
    s = np.zeros_like(sim)
    for i, row in enumerate(sim):
        s[i, np.argsort(-row)[:k]] = 1.0
    d = s.sum(1) ** -0.5
    return d[:, None] * s * d[None, :]


def to_dense(neighbors, values, n):
    out = np.zeros((n, n))
    np.add.at(out, (np.repeat(np.arange(n), neighbors.shape[1]), neighbors.ravel()), values.ravel())
    return out


def test_knn_graph_is_the_normalized_top_k_cosine_graph_and_modalities_add_with_their_weights():
    neighbors, values = knn_item_graph(FEATURES * RNG.uniform(1, 5, size=(8, 1)), 3)  # cosine: scale-free
    np.testing.assert_allclose(to_dense(neighbors, values, 8), dense_knn(FEATURES, 3), rtol=1e-6)
    neighbors, values = item_graph([FEATURES, TEXT], [0.3, 0.7], 3)
    np.testing.assert_allclose(to_dense(neighbors, values, 8), 0.3 * dense_knn(FEATURES, 3) + 0.7 * dense_knn(TEXT, 3), rtol=1e-6)


def test_one_propagation_step_of_each_graph_matches_numpy():
    model = small(modality_weights=[0.4, 0.6], item_features=[FEATURES, TEXT], cold_start="none", dropout=0.0)
    model.set_graph(LOG.users, LOG.items)
    for layer, table in ((model.user_embedding, 5), (model.item_embedding, 8)):
        layer.embeddings.assign(RNG.normal(size=(table, 4)).astype(np.float32))
    s = 0.4 * dense_knn(FEATURES, 3) + 0.6 * dense_knn(TEXT, 3)
    r = np.zeros((5, 8))
    r[LOG.users, LOG.items] = 1.0
    adj = np.block([[np.zeros((5, 5)), r], [r.T, np.zeros((8, 8))]])
    deg = adj.sum(1)
    inv = np.where(deg > 0, np.maximum(deg, 1.0) ** -0.5, 0.0)
    adj = inv[:, None] * adj * inv[None, :]
    ego = np.vstack([model.user_embedding.embeddings.numpy(), model.item_embedding.embeddings.numpy()])
    ui = (ego + adj @ ego + adj @ adj @ ego) / 3  # num_layers = 2
    users, items = model.propagate()
    np.testing.assert_allclose(users, ui[:5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items, ui[5:] + s @ ego[5:], rtol=1e-5, atol=1e-6)  # ē_i + h_i, h = S E_i
    model.finish_epoch()
    np.testing.assert_allclose(model.score(np.arange(5)), ui[:5] @ (ui[5:] + s @ ego[5:]).T, rtol=1e-4, atol=1e-6)


def test_pruning_keeps_the_fraction_and_prefers_edges_of_low_degree_nodes():
    # user 0 and item 0 are hubs: 30 users buy item 0, user 0 buys 30 items; 30 pairs of leaves
    users = np.concatenate([np.arange(1, 31), np.zeros(30, int), np.arange(31, 61)])
    items = np.concatenate([np.zeros(30, int), np.arange(1, 31), np.arange(31, 61)])
    rng = np.random.default_rng(0)
    hub, leaf = 0, 0
    for _ in range(200):
        u, i = prune_edges(users, items, 0.5, rng)
        assert len(u) == 45 and len(set(zip(u, i))) == 45
        hub += np.sum((u == 0) | (i == 0))
        leaf += np.sum((u > 30) & (i > 30))
    # p ∝ 1/sqrt(d_u d_i): a hub edge weighs 1/sqrt(30) of a leaf edge, so leaves are kept far more often
    assert leaf / (200 * 30) > 0.8 and hub / (200 * 60) < 0.35


def test_a_cold_item_scores_through_its_modality_neighbours_only():
    model = small()
    model.fit(LOG, epochs=2, batch_size=4, learning_rate=0.05)
    warm = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)
    np.testing.assert_array_equal(model.warm_items.numpy(), warm)
    users = np.arange(5)
    base = model.score(users)
    # a cold item has no user-item edge: its representation is h_i = sum_j S_ij e_j over its
    # warm modality neighbours (its own and other cold id rows zeroed, cold_start="features")
    s = to_dense(model.item_graph_neighbors.numpy(), model.item_graph_values.numpy(), 8)
    ego = model.item_embedding.embeddings.numpy() * warm[:, None]
    np.testing.assert_allclose(model.item_embeddings()[5:], (s @ ego)[5:], rtol=1e-5, atol=1e-7)
    assert np.abs(model.item_embeddings()[5:]).max() > 1e-3
    # the cold items' own id rows never count
    table = model.item_embedding.embeddings.numpy().copy()
    table[5:] = 9.0
    model.item_embedding.embeddings.assign(table)
    model.finish_epoch()
    np.testing.assert_allclose(model.score(users), base, rtol=1e-6)
    # moving a warm modality neighbour of cold item 5 moves its representation
    neighbour = sorted(set(model.item_graph_neighbors.numpy()[5]) & {0, 1, 2, 3, 4})[0]
    table[neighbour] += 1.0
    model.item_embedding.embeddings.assign(table)
    model.finish_epoch()
    assert np.abs(model.item_embeddings()[5] - (s @ ego)[5]).min() > 1e-3


def test_modality_terms_are_lambda_times_bpr_of_the_projected_features():
    model = small(modality_weight=0.5, dropout=0.0)
    model.set_graph(LOG.users, LOG.items)
    u, i, j = np.array([0, 2]), np.array([1, 3]), np.array([4, 2])
    full = float(model.batch_loss(u, i, j, None))
    users, items = (x.numpy() for x in model.propagate())
    x = users @ items.T
    w, b = model.projections[0].kernel.numpy(), model.projections[0].bias.numpy()
    p = users @ (FEATURES @ w + b).T

    def bpr(s):
        return np.mean(np.log1p(np.exp(s[u, j] - s[u, i])))

    assert full == pytest.approx(bpr(x) + 0.5 * bpr(p), rel=1e-5)


def test_passes_the_shared_layer_test():
    run_layer_test(
        FreezingAndDenoisingGraphs,
        {"num_users": 5, "num_items": 8, "item_features": [FEATURES, TEXT], "knn_k": 3, "embedding_dim": 4, "seed": 0},
        np.array([0, 3, 4]),
        expected_output_shape=(3, 8),
        # the projections enter the training loss only; call() reads the cached tables
        frozen_weights=lambda path: "projection" in path,
    )


def test_keras_round_trip_and_registration(tmp_path):
    model = small(item_features=[FEATURES, TEXT], modality_weights=[0.2, 0.8])
    model.fit(LOG, epochs=1, batch_size=4)
    path = tmp_path / "freedom.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.score(np.arange(5)), model.score(np.arange(5)), rtol=1e-6)
    np.testing.assert_array_equal(loaded.item_graph_neighbors.numpy(), model.item_graph_neighbors.numpy())
    assert catalog.get("freedom", slot="retrieval_model").cls is FreezingAndDenoisingGraphs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"item_features": None}, "item_features or feature_dims"),
        ({"item_features": FEATURES[:4]}, "item_features must have shape"),
        ({"modality_weights": [0.5, 0.5]}, "modality_weights"),
        ({"loss": "in_batch_softmax"}, "loss='bpr'"),
        ({"cold_start": "zero"}, "cold_start"),
    ],
)
def test_bad_arguments_fail_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small(**kwargs)
