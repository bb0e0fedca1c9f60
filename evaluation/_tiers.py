"""Decision tiers: automatic block, manual review, pass.

Thresholds are chosen on calibrated scores of a window the model did not learn from:

- block: the lowest score at which the blocked rows still reach the target precision;
- review: the next band, as wide as the analysts' daily capacity allows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _days(times) -> float:
    t = pd.to_datetime(pd.Series(times))
    if t.empty:
        return 1.0
    return max((t.max() - t.min()) / pd.Timedelta("1D"), 1.0)


def choose_thresholds(y_true, y_score, times, *, block_precision_target: float,
                      review_capacity_per_day: float, min_blocked: int = 5) -> dict[str, float]:
    """Block and review thresholds from labelled, calibrated scores.

    Parameters
    ----------
    y_true, y_score, times : array-like
        Labels, calibrated scores and transaction times of the tuning window.
    block_precision_target : float
        Precision the block tier must reach.
    review_capacity_per_day : float
        Reviews the analysts can do per day.
    min_blocked : int
        At least this many rows must be blocked for a precision estimate to count;
        below it, nothing is blocked automatically.

    Returns
    -------
    dict
        ``block`` and ``review`` thresholds (a row with ``score >= block`` is blocked,
        ``review <= score < block`` goes to review; ``inf`` means the tier is empty).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    # Candidate cuts only where the score changes: ties are decided together.
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    k = np.arange(1, len(ss) + 1)
    precision = np.cumsum(ys) / k
    ok = last_of_tie & (precision >= block_precision_target) & (k >= min_blocked)
    n_block = int(k[ok].max()) if ok.any() else 0
    block = float(ss[n_block - 1]) if n_block else float("inf")
    budget = int(np.floor(review_capacity_per_day * _days(times)))
    n_review_end = min(n_block + budget, len(ss))
    # Move up to the last complete tie group within the budget.
    while n_review_end > n_block and not last_of_tie[n_review_end - 1]:
        n_review_end -= 1
    review = float(ss[n_review_end - 1]) if n_review_end > n_block else block
    return {"block": block, "review": review}


def tier_threshold(value: float | None) -> float:
    """A tier's threshold as a number: ``None`` (how JSON records carry ``inf``) is
    ``inf``, an empty tier."""
    return float("inf") if value is None else float(value)


def tier_of(y_score, thresholds: dict[str, float | None]) -> np.ndarray:
    """``"block"``, ``"review"`` or ``"pass"`` for each score.

    A threshold of ``inf``, or ``None`` (how JSON records carry ``inf``), leaves its tier
    empty.
    """
    s = np.asarray(y_score, dtype=np.float64)
    block, review = (tier_threshold(thresholds[k]) for k in ("block", "review"))
    return np.where(s >= block, "block", np.where(s >= review, "review", "pass"))


def tier_table(y_true, y_score, thresholds: dict[str, float], *, times, amounts=None,
               accounts=None) -> pd.DataFrame:
    """Per tier: volume per day, precision, recall, fraud amount caught, and legitimate
    customers affected, on any labelled window.

    Recall and fraud amount are cumulative down the tiers' order of severity only in the
    sense that each tier reports its own rows; ``pass`` holds what neither tier caught.
    """
    y = np.asarray(y_true).astype(bool)
    tiers = tier_of(y_score, thresholds)
    amt = np.asarray(amounts, float) if amounts is not None else np.zeros(len(y))
    acc = np.asarray(accounts) if accounts is not None else np.arange(len(y))
    days = _days(times)
    rows = []
    for name in ("block", "review", "pass"):
        m = tiers == name
        n = int(m.sum())
        rows.append({
            "tier": name,
            "threshold": thresholds.get(name, float("nan")),
            "transactions": n,
            "per_day": n / days,
            "frauds": int((m & y).sum()),
            "precision": float(y[m].mean()) if n else float("nan"),
            "recall": float((m & y).sum() / y.sum()) if y.any() else float("nan"),
            "fraud_amount": float(amt[m & y].sum()),
            # Passing a payment affects no customer.
            "legit_customers_affected": (int(len(np.unique(acc[m & ~y]))) if name != "pass"
                                         else float("nan")),
        })
    return pd.DataFrame(rows)
