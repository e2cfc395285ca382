import numpy as np

from tfjoint.layers.multi_modal import EarlyFusion
from tfjoint.layers.multi_modal.modality_fusion_test import MODALITIES, PRESENT, make_inputs, numpy_encodings
from tfjoint.testing import run_layer_test


def test_layer_contract():
    run_layer_test(EarlyFusion, {"modalities": MODALITIES, "output_dim": 6}, make_inputs(), expected_output_shape=(4, 6))


def test_missing_modalities_are_imputed_with_their_learned_default_then_concatenated():
    x = make_inputs()
    layer = EarlyFusion(MODALITIES, output_dim=3)
    layer(x)
    rng = np.random.default_rng(1)
    layer.defaults.assign(rng.normal(size=(2, 3)).astype("float32"))
    f = numpy_encodings(layer, x)
    d = layer.defaults.numpy()
    filled = PRESENT[..., None] * f + (1 - PRESENT[..., None]) * d[None]
    w, b = (v.numpy() for v in layer.fusion.weights)
    expected = filled.reshape(4, 6) @ w + b
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)
    # the row with neither modality is the projection of the defaults alone
    np.testing.assert_allclose(np.asarray(layer(x))[3], d.reshape(6) @ w + b, rtol=1e-5, atol=1e-6)
