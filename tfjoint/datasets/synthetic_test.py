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
