"""Fraud metrics: ranking quality, operating points, cost, calibration and uncertainty.

Names follow scikit-learn: ``*_score`` when higher is better, ``*_loss`` when lower is
better. Every function takes plain arrays (labels 0/1, scores where higher means more
suspicious) and is pure.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score as _sk_average_precision
from sklearn.metrics import brier_score_loss as _sk_brier
from sklearn.metrics import roc_auc_score as _sk_roc_auc


def _arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int8, copy=False)
    s = np.asarray(y_score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true and y_score must be 1-D of one length, got {y.shape} and {s.shape}")
    return y, s


def average_precision_score(y_true, y_score) -> float:
    """Average precision (area under the precision-recall curve); NaN without frauds."""
    y, s = _arrays(y_true, y_score)
    return float(_sk_average_precision(y, s)) if y.any() else float("nan")


def roc_auc_score(y_true, y_score) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y, s = _arrays(y_true, y_score)
    return float(_sk_roc_auc(y, s)) if 0 < y.sum() < len(y) else float("nan")


def brier_score_loss(y_true, y_prob) -> float:
    """Mean squared error of probabilities (lower is better)."""
    y, p = _arrays(y_true, y_prob)
    return float(_sk_brier(y, p))


def recall_at_fpr_score(y_true, y_score, max_fpr: float = 0.01) -> float:
    """Share of frauds caught when at most ``max_fpr`` of legitimate rows are flagged.

    The threshold is the lowest score that flags no more than ``floor(max_fpr * n_legit)``
    legitimate rows; ties at the threshold are flagged together, so a tie that would push
    the false-positive rate over the limit raises the threshold instead.
    """
    y, s = _arrays(y_true, y_score)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0:
        return float("nan")
    allowed = int(np.floor(max_fpr * n_neg))
    neg = np.sort(s[y == 0])[::-1]
    # Threshold t flags s >= t; the largest number of negatives we may flag is `allowed`.
    if allowed >= n_neg:
        return 1.0
    limit = neg[allowed]  # flagging this score would flag allowed + 1 negatives (or more)
    return float(np.mean(s[y == 1] > limit))


def precision_at_k_score(y_true, y_score, k: int) -> float:
    """Share of frauds among the ``k`` highest scores (ties broken by order)."""
    y, s = _arrays(y_true, y_score)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean()) if len(top) else float("nan")


def account_precision_at_k_score(y_true, y_score, accounts, times, k: int = 100) -> float:
    """Mean over days of the share of fraudulent accounts among the day's ``k`` most
    suspicious accounts, accounts already caught on an earlier day removed.

    This is the standard fraud-detection-system measure (an analyst team checks ``k``
    accounts a day; a compromised account counts once, on the first day it is flagged).

    Parameters
    ----------
    y_true, y_score : array-like
        Per-transaction labels and scores.
    accounts, times : array-like
        Per-transaction account identifier and timestamp.
    k : int
        Accounts checked per day.
    """
    y, s = _arrays(y_true, y_score)
    frame = pd.DataFrame({"y": y, "s": s, "account": np.asarray(accounts),
                          "day": pd.to_datetime(np.asarray(times)).floor("D")})
    per = frame.groupby(["day", "account"], sort=True).agg(y=("y", "max"), s=("s", "max"))
    caught: set = set()
    out = []
    for _, day in per.groupby(level="day", sort=True):
        day = day.droplevel("day")
        day = day[~day.index.isin(caught)]
        top = day.sort_values("s", ascending=False, kind="stable").head(k)
        if len(top):
            out.append(top["y"].mean())
        caught.update(top.index[top["y"].to_numpy() == 1])
    return float(np.mean(out)) if out else float("nan")


def expected_cost_loss(y_true, flagged, amounts, *, false_block_cost: float,
                       missed_fraud_cost_share: float = 1.0, review: np.ndarray | None = None,
                       review_cost: float = 0.0) -> float:
    """Total cost of a decision: missed fraud costs its amount (times a share), a blocked
    legitimate payment costs ``false_block_cost``, a manual review costs ``review_cost``.

    ``flagged`` marks blocked rows; ``review`` (optional) marks rows sent to review, which
    are assumed to be decided correctly by the analyst (fraud stopped, legitimate passed).
    """
    y = np.asarray(y_true).astype(bool)
    block = np.asarray(flagged).astype(bool)
    rev = np.zeros_like(block) if review is None else (np.asarray(review).astype(bool) & ~block)
    amt = np.asarray(amounts, dtype=np.float64)
    missed = y & ~block & ~rev
    return float(missed_fraud_cost_share * amt[missed].sum()
                 + false_block_cost * (block & ~y).sum() + review_cost * rev.sum())


def bootstrap_interval(metric: Callable[..., float], *arrays, n_resamples: int = 200,
                       confidence: float = 0.95, random_state: int | None = 0
                       ) -> tuple[float, float, float]:
    """The metric and a percentile bootstrap confidence interval.

    Rows are resampled with replacement; resamples where the metric is undefined (no fraud
    drawn) are skipped.

    Returns
    -------
    value, low, high : float
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    value = metric(*arrays)
    rng = np.random.default_rng(random_state)
    stats = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        v = metric(*(a[idx] for a in arrays))
        if np.isfinite(v):
            stats.append(v)
    if not stats:
        return value, float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return value, float(low), float(high)


def calibration_table(y_true, y_prob, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table: per quantile bin of predicted probability, the mean prediction,
    the observed fraud rate and the row count."""
    y, p = _arrays(y_true, y_prob)
    frame = pd.DataFrame({"y": y, "p": p})
    bins = pd.qcut(frame["p"].rank(method="first"), q=min(n_bins, len(frame)), labels=False)
    out = frame.groupby(bins).agg(predicted=("p", "mean"), observed=("y", "mean"), rows=("y", "size"))
    return out.reset_index(drop=True)
