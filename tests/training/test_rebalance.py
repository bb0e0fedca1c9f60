"""Rebalancing: ratios reached, originals untouched, missing values and codes respected."""

from __future__ import annotations

import numpy as np
import pytest

from fraudlab.training import MissingAwareSMOTE, rebalance


@pytest.fixture
def fold():
    rng = np.random.default_rng(0)
    n, n_pos = 2000, 40
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[:, 2] = rng.integers(0, 3, n)  # a categorical code column
    X[rng.random(n) < 0.3, 1] = np.nan  # "never happened" is informative
    y = np.zeros(n, np.int8)
    y[:n_pos] = 1
    X[:n_pos, 0] += 3  # frauds sit apart on column 0
    return X, y


def test_missing_aware_smote_keeps_originals_and_respects_nan_and_codes(fold):
    X, y = fold
    Xr, yr = MissingAwareSMOTE(0.1, categorical=[2], random_state=1).fit_resample(X, y)
    np.testing.assert_array_equal(Xr[: len(X)], X)  # originals first and unchanged
    new = Xr[len(X):]
    assert (yr[len(X):] == 1).all()
    assert yr.sum() == int(0.1 * (len(y) - y.sum()))  # imbalanced-learn's ratio semantics
    assert set(np.unique(new[:, 2])) <= {0.0, 1.0, 2.0}  # codes are never interpolated
    assert np.isnan(new[:, 1]).any() and not np.isnan(new[:, 0]).any()
    # Each synthetic fraud is missing exactly where some real fraud is, with its codes.
    real = {(tuple(np.isnan(r)), r[2]) for r in X[y == 1]}
    assert all((tuple(np.isnan(r)), r[2]) in real for r in new)
    # Synthetic frauds stay among the frauds on column 0 (interpolated between them).
    lo, hi = X[:40, 0].min(), X[:40, 0].max()
    assert ((new[:, 0] >= lo - 1e-6) & (new[:, 0] <= hi + 1e-6)).all()


@pytest.mark.parametrize(("strategy", "ratio"), [("undersample", 0.2), ("smote", 0.1),
                                                 ("over_under", 0.05)])
def test_strategies_reach_their_ratio(fold, strategy, ratio):
    X, y = fold
    Xr, yr, spw = rebalance(X, y, strategy, ratio=ratio, under_ratio=ratio * 2,
                            categorical=[2], random_state=0)
    pos, neg = yr.sum(), len(yr) - yr.sum()
    target = ratio * 2 if strategy == "over_under" else ratio
    assert pos / neg == pytest.approx(target, rel=0.05)
    assert spw == 1.0


def test_scale_pos_weight_and_none_leave_rows_alone(fold):
    X, y = fold
    Xr, yr, spw = rebalance(X, y, "scale_pos_weight")
    assert Xr is X and spw == pytest.approx((len(y) - 40) / 40)
    assert rebalance(X, y, "none")[2] == 1.0
    with pytest.raises(ValueError, match="unknown rebalancing"):
        rebalance(X, y, "magic")
