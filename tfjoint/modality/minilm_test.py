"""all-MiniLM-L6-v2 in keras-hub reproduces an independent numpy BERT forward pass of the checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfjoint.modality import minilm


@pytest.fixture(scope="module")
def encoder():
    try:
        return minilm.load_minilm()
    except minilm.WeightsUnavailable as err:
        pytest.skip(f"MiniLM weights unavailable: {err}")


def _layer_norm(x, gamma, beta, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


_erf = np.vectorize(math.erf)


def _reference(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' forward pass re-done in float64 numpy from the original tensors."""
    from safetensors.numpy import load_file

    w = {k: v.astype(np.float64) for k, v in load_file(str(minilm.ensure_weights() / "model.safetensors")).items()}
    t = ids.shape[1]
    h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
    h = h + w["embeddings.token_type_embeddings.weight"][0]
    h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, bias = 12, (1.0 - mask[:, None, None, :]) * -1e9

    def lin(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    for i in range(6):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(h, f"{p}.attention.self.{n}") for n in ("query", "key", "value"))
        split = lambda x: x.reshape(*x.shape[:2], heads, -1).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + bias
        a = np.exp(s - s.max(-1, keepdims=True))
        ctx = ((a / a.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(h.shape)
        g, b = w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"]
        h = _layer_norm(h + lin(ctx, f"{p}.attention.output.dense"), g, b)
        inter = lin(h, f"{p}.intermediate.dense")
        inter = 0.5 * inter * (1.0 + _erf(inter / math.sqrt(2.0)))  # exact GELU
        g, b = w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"]
        h = _layer_norm(h + lin(inter, f"{p}.output.dense"), g, b)
    m = mask[..., None].astype(np.float64)
    u = (h * m).sum(1) / m.sum(1)
    return u / np.linalg.norm(u, axis=-1, keepdims=True)


TEXTS = ["Toy Story (1995)", "Toy Story 2 (1999)", "Heat (1995)", "Amélie (2001). Comedy Romance"]


def test_embeddings_match_an_independent_numpy_forward_pass_of_the_checkpoint(encoder):
    ids, mask = encoder.token_ids(TEXTS)
    assert mask.sum(1).min() < mask.shape[1]  # a padded row: the pooling must respect the mask
    got = encoder.encode(TEXTS)
    np.testing.assert_allclose(got, _reference(ids, mask), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_title_cosines_are_those_of_the_reference_model(encoder):
    # Issue 14 quotes the reference model: Toy Story vs Toy Story 2 about 0.78, vs Heat about 0.44.
    e = encoder.encode(TEXTS[:3])
    assert e[0] @ e[1] == pytest.approx(0.78, abs=0.01)
    assert e[0] @ e[2] == pytest.approx(0.44, abs=0.01)


def test_tokenizer_lower_cases_strips_accents_and_wraps_in_cls_sep(encoder):
    vocab = (minilm.ensure_weights() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    ids, mask = encoder.token_ids(["Café", "Toy Story (1995)"])
    want = [vocab.index(t) for t in ("[CLS]", "toy", "story", "(", "1995", ")", "[SEP]")]
    assert ids[1].tolist() == want
    assert ids[0, :3].tolist() == [vocab.index("[CLS]"), vocab.index("cafe"), vocab.index("[SEP]")]
    assert mask[0].tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_mean_pool_normalize_averages_only_unmasked_states():
    states = np.array([[[3.0, 0.0], [1.0, 4.0], [100.0, 100.0]]], np.float32)
    out = np.asarray(minilm.mean_pool_normalize(states, np.array([[1, 1, 0]])))
    np.testing.assert_allclose(out, [[0.7071068, 0.7071068]], atol=1e-6)  # mean (2, 2), unit norm


def test_tensor_names_are_renamed_to_the_keras_hub_layout():
    assert minilm.keras_hub_name("encoder.layer.0.output.LayerNorm.weight") == (
        "bert.encoder.layer.0.output.LayerNorm.gamma"
    )
    assert minilm.keras_hub_name("embeddings.LayerNorm.bias") == "bert.embeddings.LayerNorm.beta"


def test_missing_weights_without_download_raise_one_clear_error(tmp_path):
    with pytest.raises(minilm.WeightsUnavailable, match="not found"):
        minilm.ensure_weights(tmp_path, download=False)
