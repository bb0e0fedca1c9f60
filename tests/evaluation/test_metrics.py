"""Fraud metrics on hand-checkable fixtures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.evaluation import (
    ScoreCalibrator,
    account_precision_at_k_score,
    bootstrap_interval,
    calibration_table,
    expected_cost_loss,
    precision_at_k_score,
    recall_at_fpr_score,
)


def test_recall_at_fpr_counts_only_allowed_false_positives():
    # 10 legit scores 0.0..0.9; frauds at 0.95, 0.85, 0.05.
    legit = np.arange(10) / 10
    y = np.r_[np.zeros(10), np.ones(3)]
    s = np.r_[legit, 0.95, 0.85, 0.05]
    # 10% of 10 legit = 1 false positive allowed: threshold above 0.8, flags 0.9 (legit),
    # 0.95 and 0.85 -> 2 of 3 frauds.
    assert recall_at_fpr_score(y, s, 0.1) == pytest.approx(2 / 3)
    # 0 allowed: only scores above 0.9 -> 1 of 3.
    assert recall_at_fpr_score(y, s, 0.05) == pytest.approx(1 / 3)


def test_recall_at_fpr_does_not_cross_the_limit_through_ties():
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.9, 0.9, 0.1, 0.1, 0.9, 0.5])
    # One false positive allowed of 4 (25%), but the legit 0.9s come as a pair.
    assert recall_at_fpr_score(y, s, 0.25) == pytest.approx(0.0)
    assert recall_at_fpr_score(y, s, 0.5) == pytest.approx(1.0)


def test_precision_at_k():
    assert precision_at_k_score([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], 2) == 0.5
    assert precision_at_k_score([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], 3) == pytest.approx(2 / 3)


def test_account_precision_at_k_removes_accounts_caught_on_earlier_days():
    day1, day2 = pd.Timestamp("2026-01-01 10:00", tz="UTC"), pd.Timestamp("2026-01-02 10:00", tz="UTC")
    frame = pd.DataFrame({
        "account": ["a", "b", "c", "a", "b", "d"],
        "ts": [day1, day1, day1, day2, day2, day2],
        "y": [1, 0, 0, 1, 0, 1],
        "s": [0.9, 0.8, 0.1, 0.99, 0.7, 0.5],
    })
    # Day 1 top-1: a (fraud) -> 1.0. Day 2: a is already caught; top-1 of b, d is b -> 0.
    got = account_precision_at_k_score(frame["y"], frame["s"], frame["account"], frame["ts"], k=1)
    assert got == pytest.approx(0.5)
    got2 = account_precision_at_k_score(frame["y"], frame["s"], frame["account"], frame["ts"], k=2)
    assert got2 == pytest.approx((0.5 + 0.5) / 2)


def test_expected_cost_loss():
    y = np.array([1, 1, 0, 0])
    amounts = np.array([100.0, 50.0, 10.0, 10.0])
    blocked = np.array([1, 0, 1, 0])
    review = np.array([0, 1, 0, 1])
    # Missed: none (fraud 2 reviewed); false blocks: 1 x 15; reviews: 2 x 4.
    assert expected_cost_loss(y, blocked, amounts, false_block_cost=15, review=review,
                              review_cost=4) == 23.0
    assert expected_cost_loss(y, blocked, amounts, false_block_cost=15) == 50.0 + 15.0


def test_bootstrap_interval_brackets_the_value_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    s = y + rng.normal(0, 1, 500)
    v, lo, hi = bootstrap_interval(lambda a, b: precision_at_k_score(a, b, 50), y, s, n_resamples=100)
    assert lo <= v <= hi and hi - lo > 0
    assert bootstrap_interval(lambda a, b: precision_at_k_score(a, b, 50), y, s,
                              n_resamples=100) == (v, lo, hi)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrator_recovers_known_probabilities_and_round_trips(method):
    rng = np.random.default_rng(1)
    margin = rng.normal(-3, 2, 20_000)
    true_p = 1 / (1 + np.exp(-(0.5 * margin - 1)))  # a distorted model: true slope 0.5
    y = rng.random(len(margin)) < true_p
    cal = ScoreCalibrator(method).fit(margin, y)
    p = cal.predict(margin)
    table = calibration_table(y, p, n_bins=10)
    assert np.abs(table["predicted"] - table["observed"]).max() < 0.03
    again = ScoreCalibrator.from_dict(cal.to_dict()).predict(margin)
    np.testing.assert_array_equal(again, p)
