import numpy as np
import pytest
import tensorflow as tf

from tfjoint.layers.multi_modal.item_content_encoders import BootstrapContentEncoder, VisualContentEncoder
from tfjoint.layers.multi_modal.modality_fusion_test import MODALITIES, PRESENT, make_inputs
from tfjoint.testing import run_layer_test


def with_target(x, dim=6, seed=1):
    return {**x, "target": np.random.default_rng(seed).normal(size=(len(x["tokens_title"]), dim)).astype("float32")}


def numpy_content(x):
    """f_i = [masked mean of each modality's tokens], 0 for a missing modality."""
    means = []
    for name in MODALITIES:
        mask = x[f"tokens_mask_{name}"][..., None]
        means.append((x[f"tokens_{name}"] * mask).sum(1) / np.maximum(mask.sum(1), 1.0))
    return np.concatenate(means, axis=-1)


def numpy_cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_vbpr_encoder_layer_contract():
    run_layer_test(VisualContentEncoder, {"modalities": MODALITIES, "output_dim": 5}, make_inputs(), expected_output_shape=(4, 5))


def test_vbpr_encoder_is_e_times_the_content_vector_without_bias():
    x = make_inputs()
    layer = VisualContentEncoder(MODALITIES, output_dim=5)
    out = np.asarray(layer(x))
    expected = numpy_content(x) @ layer.projection.numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[PRESENT.sum(1) == 0], 0.0)  # no content: E f_i = 0


def bm3(**kwargs):
    return BootstrapContentEncoder(MODALITIES, **{"dropout": 0.0, "seed": 0, **kwargs})


def test_bm3_encoder_layer_contract_and_the_view_ignores_the_id():
    x = with_target(make_inputs())
    # q only feeds the alignment loss, which the shared test's output loss does not read
    layer = run_layer_test(
        BootstrapContentEncoder, {"modalities": MODALITIES, "seed": 0}, x, expected_output_shape=(4, 6),
        frozen_weights=lambda path: "predictor" in path,
    )
    out = np.asarray(layer(x))
    w, b = (v.numpy() for v in layer.projection.weights)
    np.testing.assert_allclose(out, numpy_content(x) @ w + b, rtol=1e-5, atol=1e-6)  # h^m = W_m f_i + b_m
    # a cold item (any id row) gets the same E^M: content alone
    np.testing.assert_array_equal(np.asarray(layer(with_target(make_inputs(), seed=7))), out)


def test_bm3_alignment_loss_is_one_minus_cosine_to_a_stop_gradient_id_view():
    x = with_target(make_inputs())
    layer = bm3(cl_weight=0.5)
    layer(x)
    assert not layer.losses  # inference adds nothing
    target = tf.Variable(x["target"])
    with tf.GradientTape(persistent=True) as tape:
        view = layer({**x, "target": target}, training=True)
        (loss,) = layer.losses
    q = layer.alignment.predictor
    h_m = np.asarray(view)
    present = PRESENT.max(1) > 0  # the row without any modality is left out
    per_row = 1.0 - numpy_cos(h_m[present] @ q.kernel.numpy() + q.bias.numpy(), x["target"][present])
    np.testing.assert_allclose(float(loss), 0.5 * per_row.mean(), rtol=1e-5)
    grad_target = tape.gradient(loss, target)
    assert grad_target is None or not np.any(grad_target.numpy())
    grads = tape.gradient(loss, [*layer.projection.trainable_variables, *q.trainable_variables])
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)


def test_bm3_infonce_alignment_is_the_shared_info_nce_and_reaches_the_id_view():
    from tfjoint.layers.multi_modal.contrastive_alignment_test import numpy_info_nce

    x = with_target(make_inputs())
    x = {k: v[:3] for k, v in x.items()}  # rows with content only
    layer = bm3(alignment="infonce", temperature=0.5)
    target = tf.Variable(x["target"])
    with tf.GradientTape() as tape:
        view = layer({**x, "target": target}, training=True)
        (loss,) = layer.losses
    q = layer.alignment.predictor
    expected = numpy_info_nce(np.asarray(view) @ q.kernel.numpy() + q.bias.numpy(), x["target"], 0.5).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert np.abs(tape.gradient(loss, target).numpy()).max() > 0


def test_bm3_encoder_arguments():
    with pytest.raises(ValueError, match="alignment must be one of"):
        BootstrapContentEncoder(MODALITIES, alignment="cosine")
    with pytest.raises(ValueError, match="dropout must be in"):
        BootstrapContentEncoder(MODALITIES, dropout=1.0)
    with pytest.raises(ValueError, match="cl_weight"):
        BootstrapContentEncoder(MODALITIES, cl_weight=-1.0)
    with pytest.raises(ValueError, match="output_dim must equal the id embedding width 6"):
        BootstrapContentEncoder(MODALITIES, output_dim=4)(with_target(make_inputs()))
    with pytest.raises(ValueError, match="needs|only for a dataset with a behavior sequence"):
        BootstrapContentEncoder(MODALITIES)(make_inputs())


def test_bm3_encoder_adds_its_loss_in_the_joint_model():
    from tfjoint.features import MOVIELENS_100K
    from tfjoint.joint import build_joint_model
    from tfjoint.testing import fake_batch, fake_vocab_sizes

    model = build_joint_model(MOVIELENS_100K, fake_vocab_sizes(MOVIELENS_100K), modality_encoder="bm3_encoder")
    x, y = fake_batch(MOVIELENS_100K)
    model(x, training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
    model(x, training=False)
    assert not model.losses
    # q reads nothing but the alignment loss: its gradient is non-zero only if the loss is in the objective
    predictor = model.modality_encoder.alignment.predictor.kernel
    with tf.GradientTape() as tape:
        objective = model.compute_loss(x, y, model(x, training=True))
    assert np.abs(tape.gradient(objective, predictor).numpy()).max() > 0


def test_vbpr_encoder_gives_a_cold_item_its_content_representation_in_the_joint_model():
    import keras

    from tfjoint.features import MOVIELENS_100K
    from tfjoint.joint import build_joint_model
    from tfjoint.testing import fake_batch, fake_vocab_sizes

    sizes = fake_vocab_sizes(MOVIELENS_100K)
    model = build_joint_model(MOVIELENS_100K, sizes, modality_encoder="vbpr_encoder")
    e_m = keras.Model(model.inputs, model.modality_encoder.output)
    x, _ = fake_batch(MOVIELENS_100K)
    item = MOVIELENS_100K.sequence.item_feature
    cold = {**x, item: np.full_like(x[item], sizes[item] + 1)}  # the out-of-vocabulary id
    warm_out, cold_out = np.asarray(e_m(x)), np.asarray(e_m(cold))
    np.testing.assert_array_equal(cold_out, warm_out)  # E^M reads the content, not the id
    assert np.abs(cold_out).max() > 0
    moved = {k: v if not k.startswith(tuple(t.name for t in MOVIELENS_100K.tokens)) else v[::-1] for k, v in x.items()}
    assert not np.allclose(np.asarray(e_m(moved)), warm_out)  # and the content changes it
