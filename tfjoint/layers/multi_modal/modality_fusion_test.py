import numpy as np
import pytest

from tfjoint.layers.multi_modal.modality_fusion import masked_softmax
from tfjoint.testing import softmax

MODALITIES = ["title", "genres"]


def make_inputs(seed=0, dim=4):
    """4 rows: both modalities; no title; no genres; neither."""
    rng = np.random.default_rng(seed)
    return {
        "tokens_title": rng.normal(size=(4, 5, dim)).astype("float32"),
        "tokens_mask_title": np.array([[1, 1, 0, 0, 0], [0] * 5, [1, 1, 1, 1, 1], [0] * 5], "float32"),
        "tokens_genres": rng.normal(size=(4, 2, dim)).astype("float32"),
        "tokens_mask_genres": np.array([[1, 0], [1, 1], [0, 0], [0, 0]], "float32"),
    }


PRESENT = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], "float32")


def numpy_encodings(layer, x):
    """f_i = tanh(W_i masked_mean_i + b_i), (batch, m, d)."""
    out = []
    for name in layer.modalities:
        mask = x[f"tokens_mask_{name}"][..., None]
        mean = (x[f"tokens_{name}"] * mask).sum(1) / np.maximum(mask.sum(1), 1.0)
        w, b = (v.numpy() for v in layer.encoders[name].weights)
        out.append(np.tanh(mean @ w + b))
    return np.stack(out, axis=1)


def test_masked_softmax_renormalizes_over_present_entries_and_zeros_empty_rows():
    logits = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [5.0, 0.0, 0.0]], "float32")
    mask = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0]], "float32")
    out = np.asarray(masked_softmax(logits, mask))
    np.testing.assert_allclose(out[0], softmax(logits[0]), rtol=1e-6)
    e1, e3 = np.exp(1.0), np.exp(3.0)
    np.testing.assert_allclose(out[1], [e1 / (e1 + e3), 0.0, e3 / (e1 + e3)], rtol=1e-6)
    np.testing.assert_array_equal(out[2], [0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "name", ["early_fusion", "late_fusion", "attention_fusion", "gating_fusion", "vbpr_encoder", "bm3_encoder"]
)
def test_modalities_are_validated(name):
    from tfjoint import catalog

    cls = catalog.get(name, slot="modality_encoder").cls
    with pytest.raises(ValueError, match="modalities must name at least one"):
        cls([])
    with pytest.raises(ValueError, match="modalities must be distinct"):
        cls(["title", "title"])
    with pytest.raises(ValueError, match="output_dim must be >= 1"):
        cls(["title"], output_dim=0)


def test_presence_is_one_where_a_row_has_a_token():
    from tfjoint.layers.multi_modal import EarlyFusion

    layer = EarlyFusion(MODALITIES, output_dim=3)
    x = make_inputs()
    layer(x)
    np.testing.assert_array_equal(np.asarray(layer.presence(x)), PRESENT)


@pytest.mark.parametrize("name", ["early_fusion", "late_fusion", "attention_fusion", "vbpr_encoder", "bm3_encoder"])
def test_as_the_joint_models_modality_encoder(name, tmp_path):
    from tfjoint.features import MOVIELENS_100K
    from tfjoint.testing import check_joint_model, fake_vocab_sizes

    run = check_joint_model(MOVIELENS_100K, fake_vocab_sizes(MOVIELENS_100K), tmp_path, modality_encoder=name)
    assert type(run.model.modality_encoder).__name__ == {
        "early_fusion": "EarlyFusion", "late_fusion": "LateFusion", "attention_fusion": "AttentionFusion",
        "vbpr_encoder": "VisualContentEncoder", "bm3_encoder": "BootstrapContentEncoder",
    }[name]
    assert np.isfinite(run.history["loss"][-1])
