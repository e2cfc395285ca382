import numpy as np

from tfjoint import catalog
from tfjoint.layers.multi_modal.multi_modal_mixer_encoder import MultiModalMixerEncoder
from tfjoint.layers.multi_modal.noninvasive_sequence_encoder_test import history
from tfjoint.testing import run_layer_test


def encoder(**kwargs):
    """A built encoder without dropout."""
    layer = MultiModalMixerEncoder(**{"num_behaviors": 3, "output_dim": 4, "num_blocks": 2, "dropout": 0.0, "seed": 0, **kwargs})
    layer.build({k: v.shape for k, v in history().items()})
    return layer


def test_is_the_multi_modal_sequence_encoder_of_the_catalog():
    entry = catalog.get("mmmlp_encoder", slot="sequence_encoder")
    assert entry.cls is MultiModalMixerEncoder and entry.family == "multi_modal"


def test_passes_the_shared_layer_test():
    run_layer_test(
        MultiModalMixerEncoder, {"num_behaviors": 3, "output_dim": 4, "num_blocks": 2, "dropout": 0.1, "seed": 0},
        history(), expected_output_shape=(3, 4),
    )


def test_token_mixing_carries_earlier_item_vectors_to_the_user_and_never_back():
    """F_t reads the positions s <= t of every branch: new content at position 0 moves the
    user (the last position, 2 in row 0), new content at position 2 leaves F_0 and F_1."""
    layer = encoder()
    x = history()
    hidden, out = np.asarray(layer.hidden_states(x)), np.asarray(layer(x))
    early = {k: v.copy() for k, v in x.items()}
    early["sequence_tokens_text"][0, 0] += 1.0
    assert not np.allclose(np.asarray(layer(early))[0], out[0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(layer(early))[1:], out[1:], rtol=1e-5, atol=1e-6)
    late = {k: v.copy() for k, v in x.items()}
    late["sequence_tokens_text"][0, 2] += 1.0
    moved = np.asarray(layer.hidden_states(late))
    np.testing.assert_allclose(moved[0, :2], hidden[0, :2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(moved[0, 2], hidden[0, 2], atol=1e-4)


def test_the_user_is_the_fused_state_of_the_last_history_position():
    layer = encoder()
    x = history()
    hidden = np.asarray(layer.hidden_states(x))
    user = np.stack([hidden[0, 2], hidden[1, 4], np.zeros(hidden.shape[-1], np.float32)])
    kernel, bias = (w.numpy() for w in layer.output_layer.weights)
    np.testing.assert_allclose(np.asarray(layer(x)), np.maximum(user @ kernel + bias, 0.0), rtol=1e-5, atol=1e-5)


def test_mmmlp_encoder_in_the_joint_model(tmp_path):
    from tfjoint.features.builtin import MOVIELENS_100K
    from tfjoint.testing import check_joint_model, fake_vocab_sizes

    sizes = fake_vocab_sizes(MOVIELENS_100K)
    vectors = {"item_text": np.random.default_rng(0).normal(size=(sizes["item_id"], 7)).astype(np.float32)}
    run = check_joint_model(MOVIELENS_100K, sizes, tmp_path, sequence_encoder="mmmlp_encoder", item_vectors=vectors)
    assert isinstance(run.model.sequence_encoder, MultiModalMixerEncoder)
    assert np.isfinite(run.history["loss"][-1])
