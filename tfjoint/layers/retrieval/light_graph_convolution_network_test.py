import numpy as np
import pytest

from tfjoint.layers.retrieval import LightGraphConvolutionNetwork
from tfjoint.layers.retrieval.light_graph_convolution_network import normalized_adjacency

USERS, ITEMS = np.array([0, 0, 1, 2, 2, 2, 0]), np.array([0, 1, 1, 0, 2, 3, 0])  # item 4 isolated, (0, 0) twice


def dense_normalized_adjacency(num_users=3, num_items=5):
    r = np.zeros((num_users, num_items))
    r[USERS, ITEMS] = 1.0
    a = np.block([[np.zeros((num_users, num_users)), r], [r.T, np.zeros((num_items, num_items))]])
    degree = a.sum(1)
    inv_sqrt = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0.0)
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def test_adjacency_is_symmetrically_normalized():
    sparse = normalized_adjacency(USERS, ITEMS, 3, 5)
    dense = np.zeros((8, 8), np.float32)
    dense[tuple(sparse.indices.numpy().T)] = sparse.values.numpy()
    np.testing.assert_allclose(dense, dense_normalized_adjacency(), rtol=1e-6)


def test_final_embeddings_are_the_mean_of_the_layers_and_the_loss_regularizes_the_ego_rows():
    model = LightGraphConvolutionNetwork(num_users=3, num_items=5, embedding_dim=2, num_layers=2, l2_reg=0.5, seed=0)
    model.set_graph(USERS, ITEMS)
    ego = np.concatenate([model.user_embedding.embeddings.numpy(), model.item_embedding.embeddings.numpy()])
    a = dense_normalized_adjacency()
    final = (ego + a @ ego + a @ a @ ego) / 3
    np.testing.assert_allclose(model.user_embeddings(np.arange(3)), final[:3], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.item_embeddings(), final[3:], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.score(np.array([1])), final[1:2] @ final[3:].T, rtol=1e-5, atol=1e-7)
    loss = float(model.batch_loss(np.array([0, 2]), np.array([1, 3]), np.array([4, 4]), None))
    u, p, n = final[[0, 2]], final[3 + np.array([1, 3])], final[[7, 7]]
    bpr = np.mean(np.log1p(np.exp((u * n).sum(1) - (u * p).sum(1))))
    reg = 0.5 * ((ego[[0, 2]] ** 2).sum() + (ego[3 + np.array([1, 3])] ** 2).sum() + (ego[[7, 7]] ** 2).sum()) / 2
    assert loss == pytest.approx(bpr + 0.5 * reg, rel=1e-5)
