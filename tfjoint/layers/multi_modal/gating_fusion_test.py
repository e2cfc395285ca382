import numpy as np
import pytest

from tfjoint.layers.multi_modal.gating_fusion import GatingFusion
from tfjoint.testing import run_layer_test


def make_inputs(batch=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "tokens_title": rng.normal(size=(batch, 5, dim)).astype("float32"),
        "tokens_mask_title": np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]][:batch], "float32"),
        "tokens_genres": rng.normal(size=(batch, 2, dim)).astype("float32"),
        "tokens_mask_genres": np.ones((batch, 2), "float32"),
    }


def test_layer_contract():
    run_layer_test(GatingFusion, {"modalities": ["title", "genres"], "output_dim": 6}, make_inputs(),
                   expected_output_shape=(3, 6))


def test_gated_sum_of_modalities():
    x = make_inputs()
    layer = GatingFusion(["title", "genres"], output_dim=6)
    out = np.asarray(layer(x))
    f = []
    for name in ("title", "genres"):
        mask = x[f"tokens_mask_{name}"][..., None]
        mean = (x[f"tokens_{name}"] * mask).sum(1) / mask.sum(1)
        w, b = (v.numpy() for v in layer.encoders[name].weights)
        f.append(np.tanh(mean @ w + b))
    wg, bg = (v.numpy() for v in layer.gate.weights)
    g = 1 / (1 + np.exp(-(np.concatenate(f, -1) @ wg + bg)))
    expected = g[:, :6] * f[0] + g[:, 6:] * f[1]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="modalities"):
        GatingFusion([])
