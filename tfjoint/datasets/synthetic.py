"""Seeded, offline synthetic data with known ground truth.

:func:`mmoe_regression` is the synthetic two-task regression of the MMoE paper, whose label
correlation is set by one knob: J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong, E. H. Chi,
"Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
KDD 2018, section 4.2.

:func:`load_synthetic_frames` generates impressions for ``features.SYNTHETIC`` with the
click / conversion cascade of ESMM (X. Ma et al., "Entire Space Multi-Task Model", SIGIR
2018): a conversion is only observed after a click, so a CVR model trained on clicked rows
alone is biased on unclicked impressions. Because the true click and conversion
probabilities of every impression are returned (``true_ctr``, ``true_cvr``), that bias can
be measured. The generative model, per impression of user ``u`` and item ``i`` at time
``t`` in scenario ``s`` with context ``x ~ N(0, I_8)``:

- ``affinity = <p_u, q_i>`` of latent factors; the user segment is a coarse view of
  ``p_u``, the item tags a coarse view of ``q_i``;
- ``logit_ctr = b + user_bias + item_bias + 1.5 * affinity + context_scale * x @ w_s
  + [s == 2] * scenario_shift * (1 + x_1)`` with ``w_s = w`` (``CONTEXT_WEIGHTS``) in
  scenarios 0 and 1 and ``w_2 = shifted_context_weights`` (default ``w``) in scenario 2
  ("detail"). Two known kinds of shift of the detail click function (the defaults give
  the additive one with ``scenario_shift = 1`` and no context shift):

  * *additive* (``scenario_shift``): the intercept and the slope of ``x_1`` move. Its
    effect is additive in ``[x, scenario]``, so any model that embeds the scenario id
    can represent it; a large shift also raises detail's mean CTR toward 1 (saturation,
    which makes that scenario *easier*, not harder);
  * *context* (``shifted_context_weights``): detail clicks follow a different function
    of the context, e.g. ``REVERSED_CONTEXT_WEIGHTS = -w``. The true logits of detail
    and of the other scenarios then differ by exactly
    ``context_scale * x @ (w_2 - w)``, a scenario-by-feature *interaction*, which is
    what scenario-specific parameters (STAR's ``W_p ⊙ W``, low-rank or adapter paths,
    per-scenario gates) represent directly. Since ``x ~ N(0, I)``, ``x @ w_2`` has the
    distribution of ``x @ w`` whenever ``||w_2|| = ||w||``: the shift changes neither
    detail's mean CTR nor the spread of its logits. ``context_scale > 1`` makes the
    context part count more against the user/item part;
- ``logit_cvr = b' + correlation * z(logit_ctr) + sqrt(1 - correlation^2) * z(g)`` where
  ``z`` standardizes and ``g = 4 * <p'_u, q'_i> + x_6 - x_7`` is a conversion driver from
  independent latent factors and context, so ``correlation`` is (up to sampling noise)
  the Pearson correlation of the two true logits;
- ``click ~ Bernoulli(sigmoid(logit_ctr))``, ``conversion = click * Bernoulli(true_cvr)``,
  ``score = 2 * affinity + x_3 + N(0, 0.5^2)``.

The behavior sequence of an impression is the user's earlier events strictly before ``t``:
a pre-window history of items drawn near the user's taste, then the user's clicks in the
window (view = clicked, cart = clicked and carted, buy = converted). The split is by time
like MovieLens: rows before the ``1 - eval_fraction`` time quantile are train, the rest eval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tfjoint import features
from tfjoint.datasets import sequences

SPEC = features.SYNTHETIC
# The spec lists its keys in this order; unpacking fails loudly if their number changes.
USER_KEY, ITEM_KEY, SEGMENT_KEY = SPEC.categorical
CLICK_KEY, CONVERSION_KEY, SCORE_KEY = SPEC.label_keys
(TAGS,) = SPEC.tokens
SEQUENCE_TIMESTAMPS_KEY = "seq_timestamps"
TRUE_CTR_KEY = "true_ctr"
TRUE_CVR_KEY = "true_cvr"
"""Ground truth columns (not written to tf.Example): P(click) and P(conversion | click)."""

SHIFTED_SCENARIO = 2
LATENT_DIM = 4
NUM_SEGMENTS = 4
NUM_TAGS = 16
START_TIME = 1_600_000_000
WINDOW_SECONDS = 30 * 24 * 3600
PRE_HISTORY_LEN = 8
TAGS_PER_ITEM = 3
# Context weights of the click logit: enough signal in x alone for a linear model. x_3
# drives the score, x_6 and x_7 the conversion.
CONTEXT_WEIGHTS = np.array([0.8, -0.6, 0.5, 0.0, 0.3, -0.3, 0.0, 0.0])
# Detail's context weights for the *context* shift: the same norm, the opposite direction.
REVERSED_CONTEXT_WEIGHTS = tuple(float(v) for v in -CONTEXT_WEIGHTS)


def _check_correlation(correlation: float) -> None:
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(
            f"correlation must be in [-1, 1]; Received: correlation={correlation}"
        )


def mmoe_regression(
    n: int,
    correlation: float,
    dim: int = 100,
    num_sin: int = 10,
    seed: int = 0,
    scale: float = 1.0,
    sinusoid_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two regression tasks whose relatedness is ``correlation`` (MMoE, KDD 2018, 4.2).

    With orthogonal unit vectors ``u1, u2``, ``w1 = c * u1`` and
    ``w2 = c * (p * u1 + sqrt(1 - p^2) * u2)`` (``p = correlation``, ``c = scale``), and
    ``x ~ N(0, I_dim)``, each label is
    ``y_k = w_k^T x + sum_j sin(alpha_j * w_k^T x + beta_j) + eps``, ``eps ~ N(0, 0.01)``,
    with ``alpha_j, beta_j ~ N(0, 1)`` shared by both tasks. ``p`` is the cosine of the
    two tasks' weight vectors; the labels' Pearson correlation falls as ``p`` falls.

    ``seed`` draws everything, the sinusoids' ``alpha_j, beta_j`` included, unless
    ``sinusoid_seed`` is given: then they come from that seed alone, so every ``seed`` shares
    one task function family (the paper's "given parameters") and only the directions, the
    inputs and the noise change. A larger ``scale`` makes the tasks more oscillatory.

    Returns:
        ``(x, y)`` with shapes ``[n, dim]`` and ``[n, 2]``.
    """
    _check_correlation(correlation)
    if n < 1 or dim < 2 or num_sin < 0:
        raise ValueError(
            f"need n >= 1, dim >= 2 and num_sin >= 0; Received: n={n}, dim={dim}, num_sin={num_sin}"
        )
    if not scale > 0:
        raise ValueError(f"scale must be > 0; Received: scale={scale}")
    rng = np.random.default_rng(seed)
    # QR of a Gaussian matrix gives two orthonormal columns.
    basis, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    u1, u2 = basis[:, 0], basis[:, 1]
    w = scale * np.stack([u1, correlation * u1 + np.sqrt(1.0 - correlation**2) * u2], axis=1)
    waves_rng = rng if sinusoid_seed is None else np.random.default_rng(sinusoid_seed)
    alpha = waves_rng.standard_normal(num_sin)
    beta = waves_rng.standard_normal(num_sin)
    x = rng.standard_normal((n, dim))
    projections = x @ w  # [n, 2]
    waves = np.sin(projections[:, :, None] * alpha + beta).sum(axis=-1)
    y = projections + waves + rng.normal(0.0, 0.1, size=(n, 2))
    return x, y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _standardize(z: np.ndarray) -> np.ndarray:
    return (z - z.mean()) / (z.std() + 1e-12)


def _sample_by_affinity(
    rng: np.random.Generator, users: np.ndarray, affinity: np.ndarray, chunk: int = 8192
) -> np.ndarray:
    """One item per entry of ``users``, drawn from ``softmax(2 * affinity[user])``.

    Gumbel-max sampling, in chunks so that memory stays ``chunk * num_items``.
    """
    out = np.empty(len(users), dtype=np.int64)
    for start in range(0, len(users), chunk):
        logits = 2.0 * affinity[users[start : start + chunk]]
        out[start : start + chunk] = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return out


def load_synthetic_frames(
    n: int = 20000,
    correlation: float = 0.5,
    scenario_shift: float = 1.0,
    seed: int = 0,
    eval_fraction: float = 0.2,
    click_intercept: float = -1.0,
    shifted_context_weights: Sequence[float] | None = None,
    context_scale: float = 1.0,
) -> dict[str, pd.DataFrame]:
    """Synthetic impressions ``{"train": ..., "eval": ...}`` for ``features.SYNTHETIC``.

    Args:
        n: number of impressions.
        correlation: Pearson correlation of the true click and conversion logits.
        scenario_shift: additive shift ``scenario_shift * (1 + x_1)`` of the click logit in
            scenario 2 (0 = no shift).
        seed: seed of everything; equal seeds give equal frames.
        eval_fraction: fraction of impressions, by time, in the eval split.
        click_intercept: intercept ``b`` of the click logit; -1 gives a CTR of about 0.5,
            -4 about 0.11 (closer to e-commerce: the ESMM paper's Taobao data has a CTR of
            about 4%), where conversions are observed on few rows.
        shifted_context_weights: the context weights of the click logit in scenario 2, one
            per dense feature (``None``: ``CONTEXT_WEIGHTS``, as in the other scenarios).
        context_scale: factor on the context part ``x @ w_s`` of the click logit, in every
            scenario. The defaults of these two give the same frames as before they existed.

    Returns:
        One row per impression with every key of the spec, plus ``timestamp``,
        ``seq_timestamps``, ``true_ctr`` and ``true_cvr`` (the conversion probability of
        every impression, clicked or not). See the module docstring for the model.
    """
    _check_correlation(correlation)
    if n < 100:
        raise ValueError(f"n must be >= 100; Received: n={n}")
    if shifted_context_weights is not None and len(shifted_context_weights) != len(CONTEXT_WEIGHTS):
        raise ValueError(
            f"shifted_context_weights needs {len(CONTEXT_WEIGHTS)} weights; "
            f"Received: {len(shifted_context_weights)}"
        )
    rng = np.random.default_rng(seed)
    num_users = max(20, n // 40)
    # Capped so that a large n gets more impressions per item, not a huge catalogue.
    num_items = min(1000, max(20, n // 100))

    # Users and items.
    user_factors = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (num_users, LATENT_DIM))
    item_factors = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (num_items, LATENT_DIM))
    # Conversion taste is independent of click taste, so that `correlation` alone ties them.
    user_cvr_factors = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (num_users, LATENT_DIM))
    item_cvr_factors = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (num_items, LATENT_DIM))
    user_bias = rng.normal(0.0, 0.5, num_users)
    item_bias = rng.normal(0.0, 0.5, num_items)
    # The segment is the sign pattern of the first two taste dimensions.
    segments = (user_factors[:, 0] > 0).astype(int) * 2 + (user_factors[:, 1] > 0).astype(int)
    # Tags are the item's strongest directions among NUM_TAGS fixed random directions.
    tag_directions = rng.standard_normal((LATENT_DIM, NUM_TAGS))
    top_tags = np.argsort(-(item_factors @ tag_directions), axis=1)[:, :TAGS_PER_ITEM]
    item_tags = sequences.object_array([[f"tag{t}" for t in row] for row in top_tags])
    affinity_all = user_factors @ item_factors.T  # [users, items]

    # Impressions: users appear uniformly, items by affinity (a recommender shows items
    # that roughly fit), at uniform times in the window.
    users = rng.integers(0, num_users, n)
    items = _sample_by_affinity(rng, users, affinity_all)
    times = np.sort(rng.integers(START_TIME, START_TIME + WINDOW_SECONDS, n))
    scenario = rng.integers(0, SPEC.num_scenarios, n)
    x = rng.standard_normal((n, len(SPEC.dense)))
    affinity = affinity_all[users, items]

    context = x @ CONTEXT_WEIGHTS
    if shifted_context_weights is not None:
        shifted = scenario == SHIFTED_SCENARIO
        context[shifted] = x[shifted] @ np.asarray(shifted_context_weights, dtype=np.float64)
    if context_scale != 1.0:
        context = context_scale * context
    logit_ctr = click_intercept + user_bias[users] + item_bias[items] + 1.5 * affinity + context
    logit_ctr = logit_ctr + (scenario == SHIFTED_SCENARIO) * scenario_shift * (1.0 + x[:, 1])
    driver = 4.0 * (user_cvr_factors[users] * item_cvr_factors[items]).sum(axis=1) + x[:, 6] - x[:, 7]
    independent = np.sqrt(1.0 - correlation**2)
    logit_cvr = -1.0 + correlation * _standardize(logit_ctr) + independent * _standardize(driver)
    true_ctr, true_cvr = _sigmoid(logit_ctr), _sigmoid(logit_cvr)
    click = rng.random(n) < true_ctr
    conversion = click & (rng.random(n) < true_cvr)
    score = 2.0 * affinity + x[:, 3] + rng.normal(0.0, 0.5, n)

    # Events that sequences are drawn from: a pre-window history near each user's taste,
    # then the in-window clicks. Behavior ids are 1 + the index in the spec's behaviors.
    view, cart, buy = (SPEC.sequence.behaviors.index(b) + 1 for b in ("view", "cart", "buy"))
    pre_users = np.repeat(np.arange(num_users), PRE_HISTORY_LEN)
    pre_items = _sample_by_affinity(rng, pre_users, affinity_all)
    pre_times = rng.integers(START_TIME - WINDOW_SECONDS, START_TIME, len(pre_users))
    pre_behaviors = rng.choice([view, cart, buy], size=len(pre_users), p=[0.7, 0.2, 0.1])
    click_behaviors = np.where(conversion, buy, np.where(rng.random(n) < 0.25, cart, view))
    history = sequences.strict_histories(
        np.concatenate([pre_users, users[click]]),
        np.concatenate([pre_times, times[click]]),
        np.concatenate([pre_items, items[click]]).astype(str).astype(object),
        np.concatenate([pre_behaviors, click_behaviors[click]]).astype(np.int64),
        users, times, SPEC.sequence.max_len,
    )

    frame = pd.DataFrame(
        {
            USER_KEY: users.astype(str).astype(object),
            ITEM_KEY: items.astype(str).astype(object),
            SEGMENT_KEY: segments[users].astype(str).astype(object),
            **{key: x[:, j] for j, key in enumerate(SPEC.dense)},
            features.SCENARIO_KEY: scenario.astype(np.int64),
            features.SEQUENCE_ITEMS_KEY: sequences.object_array(history.items),
            features.SEQUENCE_BEHAVIORS_KEY: sequences.object_array(history.behaviors),
            SEQUENCE_TIMESTAMPS_KEY: sequences.object_array(history.timestamps),
            TAGS.name: item_tags[items],
            CLICK_KEY: click.astype(np.float64),
            CONVERSION_KEY: conversion.astype(np.float64),
            SCORE_KEY: score,
            features.TIMESTAMP_KEY: times.astype(np.int64),
            TRUE_CTR_KEY: true_ctr,
            TRUE_CVR_KEY: true_cvr,
        }
    )
    is_train, _ = sequences.time_split_mask(times, eval_fraction)
    return {
        "train": frame[is_train].reset_index(drop=True),
        "eval": frame[~is_train].reset_index(drop=True),
    }
