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
    """R_IPS = mean(o * e / p_hat): each clicked row's CVR error counts 1 / pCTR times."""
    weight, clip = 1.0, 0.01
    model = build_joint_model(
        SYNTHETIC, SIZES, task_architecture="escm2",
        component_kwargs={"task_architecture": {"counterfactual_weight": weight, "propensity_clip": clip}},
    )
    x, y = _batch()
    pred = {k: np.array(v) for k, v in model(x).items()}
    # Propensities far from uniform (an untrained CTR head predicts about 0.5 everywhere).
    rng = np.random.default_rng(7)
    n = len(pred["click"])
    pred["click"] = rng.uniform(0.02, 0.9, (n, 1)).astype("float32")
    pred["conversion"] = rng.uniform(0.05, 0.95, (n, 1)).astype("float32")
    pred["conversion_joint"] = pred["click"] * pred["conversion"]
    o = y["click"][:, 0]
    label = (y["click"] * y["conversion"])[:, 0]
    p_hat = np.maximum(pred["click"][:, 0], clip)
    error = bce(label, pred["conversion"][:, 0])
    ctcvr = bce(label, pred["conversion_joint"][:, 0]).mean()
    ips, unweighted = (o * error / p_hat).mean(), (o * error).mean()
    assert ips > 2.0 * unweighted  # the reference can tell the weighting from its absence
    loss = float(model.task_losses(y, pred)["conversion"])
    np.testing.assert_allclose(loss - ctcvr, weight * ips, rtol=1e-4)

    # Lowering pCTR on one clicked row, pCTCVR held, adds exactly that row's extra weight.
    row = np.flatnonzero(o == 1)[0]
    lowered = {k: v.copy() for k, v in pred.items()}
    lowered["click"][row] *= 0.1
    extra = weight * error[row] * (1.0 / max(0.1 * pred["click"][row, 0], clip) - 1.0 / p_hat[row]) / n
    assert extra > 0.01
    np.testing.assert_allclose(float(model.task_losses(y, lowered)["conversion"]) - loss, extra, rtol=1e-3)


def _escm2(variant, weight=0.7, clip=0.1, **kwargs):
    from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceCounterfactualMultiTask

    return EntireSpaceCounterfactualMultiTask(
        ["click", "conversion"], variant=variant, counterfactual_weight=weight, propensity_clip=clip,
        imputed_tasks=["conversion"], **kwargs,
    )


def _step_values(n=64, seed=0):
    """One cascade step's inputs, each (n, 1); ``joint`` is independent of ``ctr`` and ``cvr``,
    so the CTCVR term's gradient reaches neither and every gradient below is the risk's."""
    rng = np.random.default_rng(seed)
    o = rng.integers(0, 2, (n, 1)).astype("float32")
    o[:2] = [[1.0], [0.0]]
    values = {
        "o": o,
        "label": o * rng.integers(0, 2, (n, 1)).astype("float32"),
        "ctr": rng.uniform(0.15, 0.95, (n, 1)).astype("float32"),  # above the clip
        "cvr": rng.uniform(0.05, 0.95, (n, 1)).astype("float32"),
        "joint": rng.uniform(0.05, 0.5, (n, 1)).astype("float32"),
        "imputed": rng.uniform(0.1, 1.5, (n, 1)).astype("float32"),
    }
    return values


def _step_gradients(layer, v):
    """d(loss)/d(ctr, cvr, joint, imputed) of one cascade step, zeros where unconnected."""
    import tensorflow as tf

    t = {k: tf.constant(v[k]) for k in ("ctr", "cvr", "joint", "imputed")}
    with tf.GradientTape() as tape:
        for value in t.values():
            tape.watch(value)
        loss = layer.cascade_step_loss(
            "conversion", parent_label=tf.constant(v["o"]), label=tf.constant(v["label"]),
            parent_joint=t["ctr"], conditional=t["cvr"], joint=t["joint"],
            outputs={"conversion_imputed_error": t["imputed"]},
        )
    grads = tape.gradient(loss, list(t.values()), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return dict(zip(t, (g.numpy() for g in grads)))


@pytest.mark.parametrize("variant", ["ips", "dr"])
def test_escm2_propensity_is_stop_gradient(variant):
    """Stop-gradient (1): the counterfactual risk never trains pCTR through 1 / p_hat."""
    grads = _step_gradients(_escm2(variant), _step_values())
    np.testing.assert_array_equal(grads["ctr"], 0.0)
    assert np.abs(grads["cvr"]).max() > 1e-3  # the risk does train the CVR head


def test_escm2_counterfactual_risk_does_not_train_the_ctr_tower():
    """Stop-gradient (1) in the joint model: the conversion step's loss minus its CTCVR term
    has no gradient on the CTR tower and head (only the CTCVR and CTR losses train them)."""
    import keras
    import tensorflow as tf

    model = build_joint_model(
        SYNTHETIC, SIZES, task_architecture="escm2",
        component_kwargs={"task_architecture": {"counterfactual_weight": 1.0, "propensity_clip": 0.01}},
    )
    x, y = _batch()
    label = (y["click"] * y["conversion"]).astype("float32")
    ctr_variables = [*model.task_architecture.towers["click"].trainable_variables,
                     *model.get_layer("click").trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        pred = model(x, training=True)
        loss = model.task_losses(y, pred)["conversion"]
        ctcvr = tf.reduce_mean(keras.losses.binary_crossentropy(label, pred["conversion_joint"]))
        risk = loss - ctcvr
    ctcvr_grads = tape.gradient(ctcvr, ctr_variables)
    risk_grads = tape.gradient(risk, ctr_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in ctcvr_grads) > 1e-3
    for g in risk_grads:
        np.testing.assert_allclose(g.numpy(), 0.0, atol=1e-7)


def test_escm2_dr_risk_does_not_train_the_imputation():
    """Stop-gradient (2): e_hat is fixed in R_DR, so d(loss)/d(e_hat) is the imputation loss's
    alone, lambda * (-2 o (e - e_hat) / p_hat) / n, and exactly 0 on unclicked rows."""
    weight, clip = 0.7, 0.1
    v = _step_values()
    grads = _step_gradients(_escm2("dr", weight, clip), v)
    n, o = len(v["o"]), v["o"]
    error = bce(v["label"], v["cvr"])
    p_hat = np.maximum(v["ctr"], clip)
    expected = weight * (-2.0 * o * (error - v["imputed"]) / p_hat) / n
    np.testing.assert_allclose(grads["imputed"], expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(grads["imputed"][o[:, 0] == 0], 0.0)


def test_escm2_dr_imputation_loss_does_not_train_the_cvr_tower():
    """Stop-gradient (3): e is fixed in the imputation loss, so d(loss)/d(pCVR) is R_DR's alone,
    lambda * o / p_hat * de/dpCVR / n: the same as the IPS risk's."""
    weight, clip = 0.7, 0.1
    v = _step_values()
    grads = _step_gradients(_escm2("dr", weight, clip), v)
    n, o, y, c = len(v["o"]), v["o"], v["label"], v["cvr"]
    p_hat = np.maximum(v["ctr"], clip)
    d_error = -y / c + (1.0 - y) / (1.0 - c)
    np.testing.assert_allclose(grads["cvr"], weight * o / p_hat * d_error / n, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grads["cvr"], _step_gradients(_escm2("ips", weight, clip), v)["cvr"], rtol=1e-5)


def test_escm2_dr_imputation_cannot_die():
    """The imputation ends in the reference code's sigmoid, not a ReLU: with its output unit's
    pre-activation negative on every row, e_hat stays positive and its loss still trains it."""
    import tensorflow as tf

    layer = _escm2("dr", tower_units=[8, 4])
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    layer.build(x.shape)
    imputation = [w for w in layer.trainable_variables if "imputation" in w.path]
    output_bias = [w for w in imputation if w.path.endswith("bias") and tuple(w.shape) == (1,)][-1]
    output_bias.assign([-20.0])
    v = _step_values(n=32)
    with tf.GradientTape() as tape:
        outputs = layer(x)
        loss = layer.cascade_step_loss(
            "conversion", parent_label=tf.constant(v["o"]), label=tf.constant(v["label"]),
            parent_joint=tf.constant(v["ctr"]), conditional=tf.constant(v["cvr"]),
            joint=tf.constant(v["joint"]), outputs=outputs,
        )
    imputed = outputs["conversion_imputed_error"].numpy()
    assert np.all(imputed > 0.0)
    grad = tape.gradient(loss, output_bias, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert abs(float(grad[0])) > 0.0


def test_escm2_imputation_activation_is_configurable():
    layer = _escm2("dr", imputation_activation="softplus")
    assert layer.get_config()["imputation_activation"] == "softplus"
    assert _escm2("dr").get_config()["imputation_activation"] == "sigmoid"
    with pytest.raises(ValueError):
        _escm2("dr", imputation_activation="no_such_activation")


def test_escm2_bad_arguments():
    from tfjoint.layers.multi_task.entire_space_multi_task import EntireSpaceCounterfactualMultiTask

    with pytest.raises(ValueError, match="variant"):
        EntireSpaceCounterfactualMultiTask(["a"], variant="snips")
    with pytest.raises(ValueError, match="propensity_clip"):
        EntireSpaceCounterfactualMultiTask(["a"], propensity_clip=0.0)
    with pytest.raises(ValueError, match="imputed_tasks"):
        EntireSpaceCounterfactualMultiTask(["a", "b"], variant="dr", imputed_tasks=["c"])
