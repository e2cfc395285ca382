import numpy as np

from tfjoint.layers.multi_modal import LateFusion
from tfjoint.layers.multi_modal.modality_fusion_test import MODALITIES, make_inputs, numpy_encodings
from tfjoint.testing import run_layer_test


def test_layer_contract():
    run_layer_test(LateFusion, {"modalities": MODALITIES, "output_dim": 6}, make_inputs(), expected_output_shape=(4, 6))


def test_weighted_mean_over_present_modalities_and_the_default_for_none():
    x = make_inputs()
    layer = LateFusion(MODALITIES, output_dim=3)
    layer(x)
    layer.modality_logits.assign(np.array([0.5, -1.0], "float32"))
    layer.default.assign(np.array([1.0, -2.0, 3.0], "float32"))
    f = numpy_encodings(layer, x)
    out = np.asarray(layer(x))
    w_title = np.exp(0.5) / (np.exp(0.5) + np.exp(-1.0))  # 0.8176
    np.testing.assert_allclose(out[0], w_title * f[0, 0] + (1 - w_title) * f[0, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], f[1, 1], rtol=1e-5, atol=1e-6)  # no title: genres alone
    np.testing.assert_allclose(out[2], f[2, 0], rtol=1e-5, atol=1e-6)  # no genres: title alone
    np.testing.assert_allclose(out[3], [1.0, -2.0, 3.0], rtol=1e-6)  # neither: the default
    np.testing.assert_allclose(np.asarray(layer.modality_weights(x))[:, 0], [w_title, 0.0, 1.0, 0.0], rtol=1e-5)
