"""Tests of tfjoint.datasets.synthetic: seeded ground truth with known knobs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tfjoint import features
from tfjoint.datasets import synthetic

SPEC = features.SYNTHETIC


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return synthetic.load_synthetic_frames()


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def test_mmoe_regression_shapes_and_seed():
    x, y = synthetic.mmoe_regression(500, 0.5, dim=20, seed=3)
    assert x.shape == (500, 20) and y.shape == (500, 2)
    x2, y2 = synthetic.mmoe_regression(500, 0.5, dim=20, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="correlation"):
        synthetic.mmoe_regression(10, 1.5)


def test_mmoe_regression_scale_sets_the_weight_norms_and_their_cosine():
    # Without sinusoids each label is w_k^T x + noise: least squares recovers w_k, whose norm
    # is the scale c and whose cosine is the task correlation p.
    x, y = synthetic.mmoe_regression(20_000, 0.5, dim=10, num_sin=0, seed=1, scale=3.0)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), [3.0, 3.0], atol=0.01)
    assert w[:, 0] @ w[:, 1] / 9.0 == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="scale"):
        synthetic.mmoe_regression(10, 0.5, scale=0.0)


def _task_function(x, y, scale, bins):
    """``E[y_1 | z_1]`` over ``bins`` of ``z_1 = c u_1^T x``. For Gaussian ``x``, least
    squares of ``y_1 = f(z_1) + eps`` on ``x`` points along ``u_1`` (Stein's lemma)."""
    b, *_ = np.linalg.lstsq(x, y[:, 0], rcond=None)
    z = scale * x @ (b / np.linalg.norm(b))
    index = np.digitize(z, bins)
    return np.array([y[index == i, 0].mean() for i in range(1, len(bins))])


def test_mmoe_regression_sinusoid_seed_fixes_the_task_function_across_seeds():
    bins = np.linspace(-2.0, 2.0, 9)
    kwargs = {"dim": 10, "scale": 1.0}
    f1 = _task_function(*synthetic.mmoe_regression(40_000, 1.0, seed=1, sinusoid_seed=7, **kwargs), 1.0, bins)
    f2 = _task_function(*synthetic.mmoe_regression(40_000, 1.0, seed=2, sinusoid_seed=7, **kwargs), 1.0, bins)
    f3 = _task_function(*synthetic.mmoe_regression(40_000, 1.0, seed=2, sinusoid_seed=8, **kwargs), 1.0, bins)
    # Different seeds, one sinusoid seed: the same f (bin means within sampling noise);
    # another sinusoid seed: another f.
    np.testing.assert_allclose(f1, f2, atol=0.15)
    assert np.abs(f1 - f3).max() > 0.5
    # Without a sinusoid seed, the seed alone draws everything, as before.
    x, y = synthetic.mmoe_regression(100, 0.5, dim=10, seed=4)
    x2, y2 = synthetic.mmoe_regression(100, 0.5, dim=10, seed=4, sinusoid_seed=None)
    np.testing.assert_array_equal(y, y2)


def test_mmoe_label_correlation_falls_with_task_correlation():
    corr = {
        p: np.corrcoef(synthetic.mmoe_regression(20_000, p, seed=0)[1].T)[0, 1]
        for p in (0.9, 0.5, 0.0)
    }
    assert corr[0.9] > corr[0.5] > corr[0.0]
    assert corr[0.9] > 0.6 and abs(corr[0.0]) < 0.1


def test_frames_have_every_key(frames):
    for frame in frames.values():
        for key in SPEC.feature_keys + SPEC.label_keys:
            assert key in frame.columns, key
        for key in (synthetic.TRUE_CTR_KEY, synthetic.TRUE_CVR_KEY, features.TIMESTAMP_KEY):
            assert key in frame.columns, key
    assert len(frames["train"]) + len(frames["eval"]) == 20_000


def test_deterministic_by_seed(frames):
    again = synthetic.load_synthetic_frames()
    for split in frames:
        pd.testing.assert_frame_equal(again[split], frames[split])
    other = synthetic.load_synthetic_frames(seed=1)
    assert not other["train"][SPEC.label_keys[0]].equals(frames["train"][SPEC.label_keys[0]])


def test_conversion_only_where_clicked(frames):
    both = pd.concat(frames.values())
    click, conversion = both[synthetic.CLICK_KEY], both[synthetic.CONVERSION_KEY]
    assert (conversion[click == 0] == 0).all()
    assert conversion.sum() > 100
    # The CVR of unclicked impressions is known, and differs from the clicked ones':
    # exactly the selection bias that ESMM-style models must not inherit.
    assert both[synthetic.TRUE_CVR_KEY].notna().all()
    clicked_cvr = both.loc[click == 1, synthetic.TRUE_CVR_KEY].mean()
    assert clicked_cvr > both.loc[click == 0, synthetic.TRUE_CVR_KEY].mean() + 0.05


@pytest.mark.parametrize("correlation", [0.0, 0.5, 0.9])
def test_correlation_knob(correlation):
    frame = synthetic.load_synthetic_frames(n=5_000, correlation=correlation)["train"]
    measured = np.corrcoef(_logit(frame[synthetic.TRUE_CTR_KEY]), _logit(frame[synthetic.TRUE_CVR_KEY]))[0, 1]
    assert measured == pytest.approx(correlation, abs=0.06)


def test_scenario_shift_is_visible_in_click_rate():
    def click_rates(shift: float) -> np.ndarray:
        frame = pd.concat(synthetic.load_synthetic_frames(scenario_shift=shift).values())
        return frame.groupby(features.SCENARIO_KEY)[synthetic.CLICK_KEY].mean().to_numpy()

    shifted, flat = click_rates(1.0), click_rates(0.0)
    assert shifted[synthetic.SHIFTED_SCENARIO] > max(shifted[:2]) + 0.1
    assert np.ptp(flat) < 0.04


def test_context_shift_reverses_the_context_function_without_saturation():
    kwargs = {"n": 6_000, "scenario_shift": 0.0, "context_scale": 3.0}
    flat = pd.concat(synthetic.load_synthetic_frames(**kwargs).values(), ignore_index=True)
    shifted = pd.concat(
        synthetic.load_synthetic_frames(
            **kwargs, shifted_context_weights=synthetic.REVERSED_CONTEXT_WEIGHTS
        ).values(),
        ignore_index=True,
    )
    # Same seed, same draws: the frames differ only in the true click logit of detail, by
    # exactly context_scale * x @ (w_2 - w) (and in what is drawn from that logit).
    x = shifted[list(SPEC.dense)].to_numpy()
    delta = 3.0 * x @ (np.asarray(synthetic.REVERSED_CONTEXT_WEIGHTS) - synthetic.CONTEXT_WEIGHTS)
    is_detail = shifted[features.SCENARIO_KEY].to_numpy() == synthetic.SHIFTED_SCENARIO
    difference = _logit(shifted[synthetic.TRUE_CTR_KEY].to_numpy()) - _logit(flat[synthetic.TRUE_CTR_KEY].to_numpy())
    np.testing.assert_allclose(difference[is_detail], delta[is_detail], atol=1e-6)
    np.testing.assert_array_equal(difference[~is_detail], 0.0)
    assert np.abs(delta[is_detail]).mean() > 1.0  # a large change of the click function
    # No saturation: detail's mean true CTR stays that of the other scenarios.
    ctr = shifted.groupby(features.SCENARIO_KEY)[synthetic.TRUE_CTR_KEY].mean().to_numpy()
    assert 0.3 < ctr[synthetic.SHIFTED_SCENARIO] < 0.7
    assert abs(ctr[synthetic.SHIFTED_SCENARIO] - ctr[:2].mean()) < 0.03
    with pytest.raises(ValueError, match="shifted_context_weights"):
        synthetic.load_synthetic_frames(n=200, shifted_context_weights=[1.0, 2.0])


def test_sequences_are_before_the_row_and_carry_taste(frames):
    both = pd.concat(frames.values(), ignore_index=True)
    lengths = both[features.SEQUENCE_ITEMS_KEY].map(len).to_numpy()
    assert lengths.max() == SPEC.sequence.max_len
    seq_times = np.concatenate(both[synthetic.SEQUENCE_TIMESTAMPS_KEY].tolist())
    assert (seq_times < np.repeat(both[features.TIMESTAMP_KEY].to_numpy(), lengths)).all()
    behaviors = np.concatenate(both[features.SEQUENCE_BEHAVIORS_KEY].tolist())
    assert set(behaviors.tolist()) == {1, 2, 3}
    # The clicked item appears in the user's earlier sequence more often than a random one.
    in_history = np.array([item in set(seq) for item, seq in zip(both["item_id"], both["seq_items"])])
    clicked = both[synthetic.CLICK_KEY].to_numpy() == 1
    assert in_history[clicked].mean() > in_history[~clicked].mean()


def test_split_is_by_time(frames):
    assert frames["train"][features.TIMESTAMP_KEY].max() < frames["eval"][features.TIMESTAMP_KEY].min()
    assert len(frames["eval"]) == pytest.approx(4_000, rel=0.01)


def test_logistic_model_learns_click(frames):
    train, eval_ = frames["train"], frames["eval"]
    columns = list(SPEC.categorical) + [features.SCENARIO_KEY]
    one_hot = pd.get_dummies(pd.concat([train, eval_])[columns].astype(str)).to_numpy(dtype=float)
    dense = pd.concat([train, eval_])[list(SPEC.dense)].to_numpy()
    x = np.hstack([one_hot, dense])
    model = LogisticRegression(max_iter=1_000).fit(x[: len(train)], train[synthetic.CLICK_KEY])
    auc = roc_auc_score(eval_[synthetic.CLICK_KEY], model.predict_proba(x[len(train):])[:, 1])
    assert auc > 0.7


def test_click_intercept_shifts_every_true_click_logit_by_the_same_amount():
    base = synthetic.load_synthetic_frames(n=2000, seed=5)
    rare = synthetic.load_synthetic_frames(n=2000, seed=5, click_intercept=-4.0)
    for split in ("train", "eval"):
        shift = _logit(rare[split][synthetic.TRUE_CTR_KEY].to_numpy()) - _logit(
            base[split][synthetic.TRUE_CTR_KEY].to_numpy()
        )
        np.testing.assert_allclose(shift, -3.0, atol=1e-6)
    assert rare["train"][synthetic.CLICK_KEY].mean() < 0.5 * base["train"][synthetic.CLICK_KEY].mean()
