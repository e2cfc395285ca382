import numpy as np
import pytest

from tfjoint.features import SYNTHETIC, TaskSpec
from tfjoint.joint import build_joint_model
from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceMultiTask
from tfjoint.testing import bce, fake_batch, fake_vocab_sizes, run_layer_test

SIZES = fake_vocab_sizes(SYNTHETIC, 9)


def test_layer_contract():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    run_layer_test(EntireSpaceMultiTask, {"task_names": ["click", "conversion"], "tower_units": [8, 4]}, x,
                   expected_output_shape={"click": (4, 4), "conversion": (4, 4)})


def _batch(n=64, seed=0):
    x, _ = fake_batch(SYNTHETIC, n=n, seed=seed)
    rng = np.random.default_rng(seed)
    click = rng.integers(0, 2, (n, 1)).astype("float32")
    y = {"click": click, "conversion": click * rng.integers(0, 2, (n, 1)), "score": rng.normal(size=(n, 1))}
    return x, y


def test_ctcvr_output_is_ctr_times_cvr():
    model = build_joint_model(SYNTHETIC, SIZES, task_architecture="esmm")
    assert model.entire_space_tasks == ["conversion"]
    x, _ = _batch()
    out = model.predict(x, verbose=0)
    assert set(out) == {"click", "conversion", "conversion_joint", "score"}
    np.testing.assert_allclose(out["conversion_joint"], out["click"] * out["conversion"], rtol=1e-6)


def test_ctcvr_loss_is_over_all_impressions():
    model = build_joint_model(SYNTHETIC, SIZES, task_architecture="esmm")
    x, y = _batch()
    pred = {k: np.asarray(v) for k, v in model(x).items()}

    losses = {k: float(v) for k, v in model.task_losses(y, pred).items()}
    expected_ctcvr = bce(y["click"] * y["conversion"], pred["click"] * pred["conversion"]).mean()
    np.testing.assert_allclose(losses["conversion"], expected_ctcvr, rtol=1e-4)
    np.testing.assert_allclose(losses["click"], bce(y["click"], pred["click"]).mean(), rtol=1e-4)
    # The regression task is not a cascade step: it keeps its own loss.
    np.testing.assert_allclose(losses["score"], ((y["score"] - pred["score"]) ** 2).mean(), rtol=1e-4)


def test_unclicked_rows_train_the_cvr_tower():
    """Unlike a masked CVR loss, ESMM's loss depends on pCVR on unclicked impressions."""
    model = build_joint_model(SYNTHETIC, SIZES, task_architecture="esmm")
    x, y = _batch()
    pred = {k: np.array(v) for k, v in model(x).items()}
    before = float(model.task_losses(y, pred)["conversion"])
    unclicked = y["click"][:, 0] == 0
    pred["conversion"][unclicked] = 0.99
    pred["conversion_joint"] = pred["click"] * pred["conversion"]
    assert float(model.task_losses(y, pred)["conversion"]) > before


def test_a_parent_must_come_first():
    with pytest.raises(ValueError, match="must come before"):
        build_joint_model(
            SYNTHETIC, SIZES, task_architecture="esmm",
            tasks=[TaskSpec("conversion", parent="click"), TaskSpec("click")],
        )


@pytest.mark.parametrize("variant", ["ips", "dr"])
def test_escm2_layer_contract(variant):
    from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceCounterfactualMultiTask

    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    shapes = {"click": (4, 4), "conversion": (4, 4)}
    if variant == "dr":
        shapes.update({"conversion_imputed_error": (4, 1)})
    run_layer_test(
        EntireSpaceCounterfactualMultiTask,
        {"task_names": ["click", "conversion"], "variant": variant, "tower_units": [8, 4],
         "imputed_tasks": ["conversion"]},
        x,
        expected_output_shape=shapes,
    )


@pytest.mark.parametrize("variant", ["ips", "dr"])
def test_escm2_loss_is_ctcvr_plus_counterfactual_risk(variant):
    weight, clip = 0.3, 0.2
    model = build_joint_model(
        SYNTHETIC, SIZES, task_architecture="escm2",
        component_kwargs={"task_architecture": {"variant": variant, "counterfactual_weight": weight,
                                                "propensity_clip": clip}},
    )
    x, y = _batch()
    pred = {k: np.array(v) for k, v in model(x).items()}
    o = y["click"][:, 0]
    label = (y["click"] * y["conversion"])[:, 0]
    ctr, cvr = pred["click"][:, 0], pred["conversion"][:, 0]
    ctcvr = bce(label, ctr * cvr).mean()
    error = bce(label, cvr)
    p_hat = np.maximum(ctr, clip)
    if variant == "ips":
        risk = (o * error / p_hat).mean()
    else:
        imputed = pred["conversion_imputed_error"][:, 0]
        risk = (imputed + o * (error - imputed) / p_hat).mean() + (o * (error - imputed) ** 2 / p_hat).mean()
    loss = float(model.task_losses(y, pred)["conversion"])
    np.testing.assert_allclose(loss, ctcvr + weight * risk, rtol=1e-4)
    if variant == "dr":
        # Only the cascade step (conversion under click) has an imputation tower: every
        # weight the model holds is one its loss trains.
        assert model.task_architecture.imputed_tasks == ["conversion"]
        assert [k for k in pred if k.endswith("_imputed_error")] == ["conversion_imputed_error"]


def test_escm2_ips_weights_clicked_rows_by_inverse_propensity():
    """Lowering pCTR on a clicked row raises that row's weight in the CVR risk."""
    model = build_joint_model(SYNTHETIC, SIZES, task_architecture="escm2",
                              component_kwargs={"task_architecture": {"propensity_clip": 0.01}})
    x, y = _batch()
    pred = {k: np.array(v) for k, v in model(x).items()}
    clicked = np.flatnonzero(y["click"][:, 0] == 1)[0]
    before = float(model.task_losses(y, pred)["conversion"])
    pred["click"][clicked] *= 0.1
    pred["conversion_joint"] = pred["click"] * pred["conversion"]
    assert float(model.task_losses(y, pred)["conversion"]) != pytest.approx(before)


def test_escm2_bad_arguments():
    from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceCounterfactualMultiTask

    with pytest.raises(ValueError, match="variant"):
        EntireSpaceCounterfactualMultiTask(["a"], variant="snips")
    with pytest.raises(ValueError, match="propensity_clip"):
        EntireSpaceCounterfactualMultiTask(["a"], propensity_clip=0.0)
    with pytest.raises(ValueError, match="imputed_tasks"):
        EntireSpaceCounterfactualMultiTask(["a", "b"], variant="dr", imputed_tasks=["c"])
