import keras
import numpy as np
import pytest

from tfjoint.layers.retrieval import SelfAttentiveSequentialRecommendation
from tfjoint.layers.retrieval.conftest import make_log
from tfjoint.layers.retrieval.self_attentive_sequential_recommendation import last_items


def small(**kwargs):
    return SelfAttentiveSequentialRecommendation(num_items=6, max_len=5, hidden_dim=4, num_heads=2, seed=0, **kwargs)


def test_last_items_are_time_ordered_shifted_and_left_padded():
    log = make_log([1, 0, 1, 1, 1], [4, 2, 0, 3, 5], timestamps=[3, 0, 1, 2, 0], num_users=3, num_items=6)
    np.testing.assert_array_equal(last_items(log, np.array([1, 0, 2]), 3), [[1, 4, 5], [0, 0, 3], [0, 0, 0]])


def test_an_output_depends_on_no_later_item():
    model = small(dropout=0.0)
    a = model(np.array([[0, 3, 1, 4, 2]]), training=False).numpy()
    b = model(np.array([[0, 3, 1, 4, 6]]), training=False).numpy()
    np.testing.assert_allclose(a[0, :4], b[0, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[0, 4], b[0, 4])


def test_the_first_item_attends_to_itself_only_through_the_blocks_of_the_code():
    """With one block, the first non-padding position's attention weight is 1 on itself
    (causal and key-padding masks), so its output is the code's block applied to it alone:
    x = E_i sqrt(d) + P_t; a = x W^V + b^V + LN(x); f = LN(a); out = LN(FFN(f) + f)."""
    model = SelfAttentiveSequentialRecommendation(num_items=6, max_len=5, hidden_dim=4, num_blocks=1, dropout=0.0, seed=0)
    for dense in (model.values[0], model.keys[0]):  # non-zero biases: a padding key would get weight
        dense.bias.assign(np.arange(1, 5, dtype=np.float32))
    out = model(np.array([[0, 0, 3, 1, 2]]), training=False).numpy()[0, 2]
    x = model.item_embedding.embeddings.numpy()[3] * 2.0 + model.position_embedding.embeddings.numpy()[2]
    a = model.values[0](x[None]) + model.attention_norms[0](x[None])
    f = model.ffn_norms[0](a)
    expected = model.final_norm(model.ffn_outer[0](model.ffn_inner[0](f)) + f).numpy()[0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_padding_is_ignored():
    model = small(dropout=0.0)
    a = model(np.array([[0, 0, 3, 1, 2]]), training=False).numpy()
    shift = np.zeros((7, 4), np.float32)
    shift[0] = 5.0  # the padding row only
    model.item_embedding.embeddings.assign(model.item_embedding.embeddings.numpy() + shift)
    b = model(np.array([[0, 0, 3, 1, 2]]), training=False).numpy()
    np.testing.assert_allclose(a[0, 2:], b[0, 2:], rtol=1e-5, atol=1e-6)


def test_scores_use_the_shared_item_table_and_the_given_history():
    model = small()
    train = make_log([0, 0, 1], [2, 3, 1], num_users=2, num_items=6)
    model.fit(train, epochs=1, batch_size=2)
    hidden = model(np.array([[0, 0, 0, 3, 4]]), training=False).numpy()[:, -1]
    table = model.item_embedding.embeddings.numpy()[1:]
    np.testing.assert_allclose(model.score(np.array([0])), hidden @ table.T, rtol=1e-5, atol=1e-6)
    with_validation = make_log([0, 0, 0, 1], [2, 3, 5, 1], num_users=2, num_items=6)
    hidden = model(np.array([[0, 0, 3, 4, 6]]), training=False).numpy()[:, -1]
    np.testing.assert_allclose(model.score(np.array([0]), history=with_validation), hidden @ table.T, rtol=1e-5, atol=1e-6)
    model.item_embedding.embeddings.assign(model.item_embedding.embeddings * 2.0)
    assert not np.allclose(model.score(np.array([0])), hidden @ table.T)


def test_loss_is_the_bce_of_next_item_against_one_negative_on_non_padding_positions():
    model = small(dropout=0.0)
    seq, pos, neg = np.array([[0, 0, 1, 2, 3]]), np.array([[0, 0, 2, 3, 4]]), np.array([[0, 0, 5, 6, 5]])
    hidden = model(seq, training=False).numpy()[0]
    table = model.item_embedding.embeddings.numpy()
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    terms = [-np.log(sig(hidden[t] @ table[pos[0, t]])) - np.log(1 - sig(hidden[t] @ table[neg[0, t]])) for t in (2, 3, 4)]
    assert float(model.sequence_loss(seq, pos, neg, training=False)) == pytest.approx(np.mean(terms), rel=1e-5)


def test_training_lowers_the_loss_and_a_saved_model_reloads(tmp_path):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(8), 5)
    items = np.concatenate([(np.arange(5) + rng.integers(0, 2)) % 6 for _ in range(8)])  # walks i -> i + 1
    train = make_log(users, items, num_users=8, num_items=6)
    model = small(dropout=0.2)
    history = model.fit(train, epochs=8, batch_size=4, learning_rate=0.05)
    assert history["loss"][-1] < history["loss"][0]
    path = tmp_path / "sasrec.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.score(np.arange(8), history=train), model.score(np.arange(8)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs history"):
        loaded.score(np.arange(2))
