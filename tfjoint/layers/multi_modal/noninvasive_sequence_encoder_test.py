import numpy as np
import pytest

from tfjoint import catalog
from tfjoint.layers.core import FeatureEmbedding
from tfjoint.layers.multi_modal.noninvasive_self_attention_test import Recorder
from tfjoint.layers.multi_modal.noninvasive_sequence_encoder import NoninvasiveSequenceEncoder
from tfjoint.layers.multi_modal.sequence_content import last_position
from tfjoint.testing import run_layer_test

D, L = 8, 5
RNG = np.random.default_rng(0)
BEHAVIOR_TABLE = RNG.normal(size=(4, D)).astype(np.float32)


def history(seed=0, behaviors=None, content=None):
    """The embedding slot's dict with sequence content: right-padded histories (row 2 empty);
    ``sequence`` is ``sequence_items`` plus the behavior embeddings, as the embedding gives it."""
    rng = np.random.default_rng(seed)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], np.float32)
    items = rng.normal(size=(3, L, D)).astype(np.float32) * mask[..., None]
    behaviors = np.array([[1, 2, 3, 0, 0], [3, 1, 1, 2, 2], [0] * L]) if behaviors is None else behaviors
    content = rng.normal(size=(3, L, 1, 6)).astype(np.float32) if content is None else content
    return {
        "sequence_items": items,
        "sequence": items + BEHAVIOR_TABLE[behaviors] * mask[..., None],
        "sequence_behavior_embeddings": BEHAVIOR_TABLE[behaviors] * mask[..., None],
        "behaviors": behaviors,
        "sequence_mask": mask,
        "sequence_tokens_text": content * mask[..., None, None],
        "sequence_tokens_text_mask": mask[..., None],
    }


def encoder(fusion="gating", **kwargs):
    """A built encoder without dropout."""
    kwargs = {"num_behaviors": 3, "output_dim": 4, "num_heads": 2, "dropout": 0.0, "seed": 0, **kwargs}
    layer = NoninvasiveSequenceEncoder(fusion=fusion, **kwargs)
    layer.build({k: v.shape for k, v in history().items()})
    return layer


def test_is_the_multi_modal_sequence_encoder_of_the_catalog():
    entry = catalog.get("nova_encoder", slot="sequence_encoder")
    assert entry.cls is NoninvasiveSequenceEncoder and entry.family == "multi_modal"


@pytest.mark.parametrize("fusion", ["sum", "concat", "gating"])
def test_passes_the_shared_layer_test(fusion):
    run_layer_test(
        NoninvasiveSequenceEncoder,
        {"num_behaviors": 3, "output_dim": 4, "num_blocks": 2, "num_heads": 2, "dropout": 0.1, "fusion": fusion, "seed": 0},
        history(), expected_output_shape=(3, 4),
    )


@pytest.mark.parametrize("fusion", ["sum", "concat", "gating"])
def test_side_information_enters_the_attention_weights_only_never_the_values(fusion):
    """Q, K from F(R, S), V from R = the history's item id embeddings: new content and new
    behaviors change the attention weights; with the old weights replayed, E^B is what it was,
    so neither reached the values, the residual or the FFN."""
    layer = encoder(fusion, num_blocks=2)
    x = history()
    recorder = Recorder(layer)
    before = np.asarray(layer.hidden_states(x))
    weights_before = recorder.weights
    other = history(behaviors=np.array([[2, 3, 1, 0, 0], [1, 2, 3, 3, 1], [0] * L]), content=RNG.normal(size=(3, L, 1, 6)).astype(np.float32))
    np.testing.assert_array_equal(other["sequence_items"], x["sequence_items"])
    recorder.weights = []
    changed = np.asarray(layer.hidden_states(other))
    assert not np.allclose(recorder.weights[0], weights_before[0], atol=1e-4)  # side info moves Q Kᵀ
    assert not np.allclose(changed[:2], before[:2], atol=1e-4)
    Recorder(layer, replay=weights_before)
    np.testing.assert_allclose(np.asarray(layer.hidden_states(other)), before, rtol=1e-5, atol=1e-5)


def test_the_user_is_the_last_history_position_and_padding_is_ignored():
    layer = encoder()
    x = history()
    hidden, out = np.asarray(layer.hidden_states(x)), np.asarray(layer(x))
    user = np.stack([hidden[0, 2], hidden[1, 4], np.zeros(D, np.float32)])  # row 2 has no history
    kernel, bias = (w.numpy() for w in layer.output_layer.weights)
    np.testing.assert_allclose(out, np.maximum(user @ kernel + bias, 0.0), rtol=1e-5, atol=1e-5)
    padded = {k: v.copy() for k, v in x.items()}
    padded["sequence_items"][0, 3:] = 9.0
    padded["sequence_tokens_text"][0, 3:] = 9.0
    np.testing.assert_allclose(np.asarray(layer(padded)), out, rtol=1e-5, atol=1e-5)
    left = np.asarray(last_position(hidden[:1, ::-1], x["sequence_mask"][:1, ::-1].copy()))
    np.testing.assert_allclose(left, hidden[:1, 0], rtol=1e-6)  # left-padded: the last position


def test_needs_the_history_content():
    x = {k: v for k, v in history().items() if not k.startswith("sequence_tokens")}
    with pytest.raises(ValueError, match="sequence_content=True and item_vectors"):
        NoninvasiveSequenceEncoder(num_behaviors=3)(x)


def test_the_embedding_gives_each_history_item_the_candidates_content():
    """sequence_content: the history position of item i holds the projected vector the
    candidate i gets as tokens_<name>, and sequence_items is the id embedding alone."""
    sizes = {"user_id": 5, "item_id": 6}
    layer = FeatureEmbedding(sizes, ["user_id", "item_id"], [], 1, embedding_dim=D, sequence_item_feature="item_id",
                             num_behaviors=3, item_vectors={"text": 3}, sequence_content=True)
    vectors = RNG.normal(size=(6, 3)).astype(np.float32)
    vectors[4] = 0.0  # item index 4 has no vector
    items = np.array([[1, 5, 3, 0], [6, 2, 7, 0]])  # 7 = out of vocabulary
    x = {"user_id": np.array([[1], [2]]), "item_id": np.array([[3], [5]]), "scenario": np.zeros((2, 1), np.int64),
         "seq_items": items, "seq_behaviors": np.where(items > 0, 1, 0)}
    layer(x)
    layer.set_item_vectors("text", vectors)
    out = {k: np.asarray(v) for k, v in layer(x).items()}
    np.testing.assert_allclose(out["sequence_tokens_text"][0, 2, 0], out["tokens_text"][0, 0], rtol=1e-6)  # item 3
    np.testing.assert_array_equal(out["sequence_tokens_text_mask"][..., 0], [[1, 0, 1, 0], [1, 1, 0, 0]])
    assert out["sequence_tokens_text"].shape == (2, 4, 1, D)
    table = layer.tables["item_id"].embeddings.numpy()
    np.testing.assert_allclose(out["sequence_items"], table[np.minimum(items, 7)], rtol=1e-6)
    np.testing.assert_allclose(out["sequence_items"] + out["sequence_behavior_embeddings"], out["sequence"], rtol=1e-6)
    with pytest.raises(ValueError, match="sequence_content looks each history item's vectors up"):
        FeatureEmbedding(sizes, ["user_id", "item_id"], [], 1, sequence_item_feature="item_id", sequence_content=True)


def test_nova_encoder_in_the_joint_model(tmp_path):
    from tfjoint.features.builtin import MOVIELENS_100K
    from tfjoint.joint import build_joint_model
    from tfjoint.testing import check_joint_model, fake_vocab_sizes

    sizes = fake_vocab_sizes(MOVIELENS_100K)
    vectors = {"item_text": RNG.normal(size=(sizes["item_id"], 7)).astype(np.float32)}
    run = check_joint_model(MOVIELENS_100K, sizes, tmp_path, sequence_encoder="nova_encoder", item_vectors=vectors)
    assert isinstance(run.model.sequence_encoder, NoninvasiveSequenceEncoder)
    assert run.model.sequence_encoder.modalities == ["item_text"]
    assert np.isfinite(run.history["loss"][-1])
    with pytest.raises(ValueError, match="nova_encoder reads each history item's content.*--item-text-encoder"):
        build_joint_model(MOVIELENS_100K, sizes, sequence_encoder="nova_encoder")
