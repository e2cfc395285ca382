import numpy as np
import pytest

from tfjoint.features import SYNTHETIC
from tfjoint.joint import build_joint_model
from tfjoint.layers.multi_task.adaptive_information_transfer_multi_task import AdaptiveInformationTransferMultiTask
from tfjoint.testing import bce, fake_batch, fake_vocab_sizes, run_layer_test

SIZES = fake_vocab_sizes(SYNTHETIC, 9)


def _batch(n=64, seed=0):
    return fake_batch(SYNTHETIC, n=n, seed=seed)

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")


def test_layer_contract():
    run_layer_test(
        AdaptiveInformationTransferMultiTask,
        {"task_names": ["click", "conversion", "purchase"], "tower_units": [8, 4]},
        X,
        expected_output_shape={"click": (5, 4), "conversion": (5, 4), "purchase": (5, 4)},
    )


def test_ait_module_is_attention_over_transferred_and_own_representation():
    layer = AdaptiveInformationTransferMultiTask(["click", "conversion"], tower_units=[8, 4])
    out = {k: np.asarray(v) for k, v in layer(X).items()}
    q1 = np.asarray(layer.towers["click"](X))
    q2 = np.asarray(layer.towers["conversion"](X))
    np.testing.assert_allclose(out["click"], q1, rtol=1e-6)
    w_t, b_t = (v.numpy() for v in layer.transfers["conversion"].weights)
    p1 = np.maximum(q1 @ w_t + b_t, 0)
    h1, h2, h3 = (t["conversion"].kernel.numpy() for t in (layer.value, layer.query, layer.key))
    units = np.stack([p1, q2], axis=1)
    scores = ((units @ h2) * (units @ h3)).sum(-1) / np.sqrt(4)
    w = np.exp(scores - scores.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    np.testing.assert_allclose(out["conversion"], (w[..., None] * (units @ h1)).sum(1), rtol=1e-5, atol=1e-6)


def test_joint_model_serves_joint_and_conditional_outputs():
    model = build_joint_model(SYNTHETIC, SIZES, task_architecture="aitm")
    x, _ = _batch()
    out = model.predict(x, verbose=0)
    assert {"click", "conversion", "conversion_joint", "score"} <= set(out)
    expected = np.clip(out["conversion_joint"] / np.maximum(out["click"], 1e-6), 0, 1)
    np.testing.assert_allclose(out["conversion"], expected, rtol=1e-5)


def test_loss_is_entire_space_cross_entropy_plus_calibrator():
    alpha = 0.7
    model = build_joint_model(SYNTHETIC, SIZES, task_architecture="aitm",
                              component_kwargs={"task_architecture": {"calibrator_weight": alpha}})
    x, y = _batch()
    pred = {k: np.array(v) for k, v in model(x).items()}
    # Force calibrator violations on a few rows: conversion above click.
    pred["conversion_joint"][:5] = np.minimum(pred["click"][:5] + 0.2, 0.99)
    label = (y["click"] * y["conversion"])[:, 0]
    joint, ctr = pred["conversion_joint"][:, 0], pred["click"][:, 0]
    expected = bce(label, joint).mean() + alpha * np.maximum(joint - ctr, 0).mean()
    np.testing.assert_allclose(float(model.task_losses(y, pred)["conversion"]), expected, rtol=1e-4)
    assert np.maximum(joint - ctr, 0).mean() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="calibrator_weight"):
        AdaptiveInformationTransferMultiTask(["a", "b"], calibrator_weight=-1)
