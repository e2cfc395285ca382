"""The selection-bias experiment's setup: the selection in the data, the naive models, the verdict."""

import keras
import numpy as np
import pytest

from tfjoint.bench import selection_bias
from tfjoint.datasets import synthetic
from tfjoint.datasets.synthetic import CLICK_KEY, TRUE_CVR_KEY, load_synthetic_frames
from tfjoint.joint import build_joint_model
from tfjoint.testing import fake_batch, fake_vocab_sizes


def test_unclicked_impressions_have_a_lower_true_cvr_than_clicked_ones():
    # The selection the bias experiment rests on: click and conversion logits are correlated
    # (0.5), so a CVR fitted on clicked rows starts from a population whose true CVR is
    # higher than that of the unclicked rows it is applied to. The gap is about 0.10 at
    # every seed; its sampling noise at 2,000 eval rows is about 0.01.
    for seed in range(2):
        frames = load_synthetic_frames(
            n=10000,
            correlation=selection_bias.BIAS_CORRELATION,
            seed=seed,
            click_intercept=selection_bias.BIAS_CLICK_INTERCEPT,
        )
        for frame in frames.values():
            clicked = frame[CLICK_KEY].to_numpy() == 1.0
            true_cvr = frame[TRUE_CVR_KEY].to_numpy()
            assert true_cvr[clicked].mean() - true_cvr[~clicked].mean() > 0.05


def test_naive_cvr_learns_from_clicked_rows_only():
    """The ESMM paper's BASE: only the conversion loss on clicked rows trains it, so what the
    unclicked rows hold (features, labels of the other tasks) cannot change its weights."""
    spec = selection_bias.bias_spec("naive_cvr")
    assert {t.name: t.weight for t in spec.tasks} == {"click": 0.0, "conversion": 1.0, "score": 0.0}
    assert selection_bias.bias_spec("esmm") is synthetic.SPEC
    x, _ = fake_batch(spec, n=64, seed=3)
    rng = np.random.default_rng(4)
    click = rng.integers(0, 2, (64, 1)).astype("float32")
    y = {"click": click, "conversion": click * rng.integers(0, 2, (64, 1)), "score": rng.normal(size=(64, 1))}
    unclicked = click[:, 0] == 0
    # The same rows with the unclicked ones' inputs and non-conversion labels redrawn.
    x2 = {k: v.copy() for k, v in x.items()}
    other, _ = fake_batch(spec, n=64, seed=5)
    for k in x2:
        x2[k][unclicked] = other[k][unclicked]
    y2 = {**y, "score": rng.normal(size=(64, 1))}

    def trained(inputs, labels):
        keras.utils.set_random_seed(0)
        model = build_joint_model(
            spec,
            {k: 8 for k in (*spec.categorical, *(t.name for t in spec.tokens), spec.sequence.item_feature)},
            task_architecture=selection_bias.bias_architecture("naive_cvr"),
        )
        model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=True)
        model.fit(inputs, labels, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    first, second = trained(x, y), trained(x2, y2)
    assert any(
        not np.array_equal(a, b) for a, b in zip(first, trained(x, {**y, "conversion": 1 - y["conversion"]}))
    )
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_less_biased_than_reference_needs_two_standard_errors_of_the_paired_difference():
    def excess(mean, std):
        return {"mean": mean, "std": std, "values": []}

    bias = {
        "config": {"seeds": [0, 1, 2]},
        # 2 SE of the paired difference over 3 seeds = 2 * std / sqrt(3).
        "excess": {
            "esmm": excess(-0.058, 0.010),  # -0.058 + 0.012 < 0: less biased
            "escm2": excess(-0.010, 0.020),  # -0.010 + 0.023 > 0: within noise
            "escm2_dr": excess(0.040, 0.010),  # more biased
        },
    }
    assert selection_bias.less_biased_than_reference(bias) == ["esmm"]
    assert selection_bias.less_biased_than_reference({**bias, "config": {"seeds": [0]}}) == []


@pytest.mark.parametrize("name", selection_bias.BIAS_MODELS)
def test_only_the_entire_space_models_fit_pcvr_over_every_impression(name):
    # The naive models fit pCVR on clicked rows only (the conversion task's defined rows);
    # ESMM and ESCM2 judge pCTCVR = pCTR * pCVR on every impression.
    spec = selection_bias.bias_spec(name)
    model = build_joint_model(
        spec, fake_vocab_sizes(spec), task_architecture=selection_bias.bias_architecture(name)
    )
    expected = [] if name.startswith("naive_") else [synthetic.CONVERSION_KEY]
    assert model.entire_space_tasks == expected


def test_unknown_bias_model():
    with pytest.raises(ValueError, match="Received: 'base'"):
        selection_bias.bias_architecture("base")
