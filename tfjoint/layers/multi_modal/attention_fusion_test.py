import numpy as np
import pytest

from tfjoint.layers.multi_modal import AttentionFusion
from tfjoint.layers.multi_modal.modality_fusion_test import MODALITIES, make_inputs, numpy_encodings
from tfjoint.testing import run_layer_test


def test_layer_contract():
    run_layer_test(
        AttentionFusion, {"modalities": MODALITIES, "output_dim": 6, "attention_dim": 4, "seed": 0}, make_inputs(),
        expected_output_shape=(4, 6),
    )


def test_han_attention_over_present_modalities_and_the_default_for_none():
    x = make_inputs()
    layer = AttentionFusion(MODALITIES, output_dim=3, attention_dim=4, seed=0)
    layer(x)
    layer.default.assign(np.array([1.0, -2.0, 3.0], "float32"))
    f = numpy_encodings(layer, x)
    w, b = (v.numpy() for v in layer.attention.weights)
    logits = np.tanh(f @ w + b) @ layer.query.numpy()  # (4, 2)
    alpha0 = np.exp(logits[0]) / np.exp(logits[0]).sum()
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out[0], alpha0 @ f[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], f[1, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[2], f[2, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[3], [1.0, -2.0, 3.0], rtol=1e-6)
    alpha = np.asarray(layer.attention_weights(x))
    np.testing.assert_allclose(alpha[0], alpha0, rtol=1e-5)
    np.testing.assert_array_equal(alpha[3], [0.0, 0.0])


def test_attention_dim_is_validated():
    with pytest.raises(ValueError, match="attention_dim must be >= 1"):
        AttentionFusion(MODALITIES, attention_dim=0)
