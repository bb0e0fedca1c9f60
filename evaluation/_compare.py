"""Two models compared where the business lives: at their operating points, with a paired
bootstrap interval on every difference.

Each model's tiers (block, review, pass) are applied to the same window; what a risk team
counts is then compared: frauds and fraud amount caught by the block and review tiers,
legitimate payments blocked, reviews. The interval resamples whole accounts (a burst of one
account is one incident, not many independent payments), the same accounts for both models,
so the interval is on the difference itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MEASURES = ("frauds_caught", "fraud_amount_caught", "frauds_blocked", "false_blocks",
            "reviews", "blocked")
"""What :func:`compare_operating_points` counts for each model, over the window."""


def operating_counts(y_true, tiers, amounts) -> dict[str, float]:
    """The counts of :data:`MEASURES` for one model's tiers on one window."""
    per_row = _per_row(np.asarray(y_true).astype(bool), np.asarray(tiers),
                       np.asarray(amounts, dtype=np.float64))
    return {m: float(per_row[:, j].sum()) for j, m in enumerate(MEASURES)}


def _per_row(y: np.ndarray, tiers: np.ndarray, amount: np.ndarray) -> np.ndarray:
    caught = (tiers == "block") | (tiers == "review")
    blocked = tiers == "block"
    return np.column_stack([caught & y, np.where(caught & y, amount, 0.0), blocked & y,
                            blocked & ~y, tiers == "review", blocked]).astype(np.float64)


@dataclass
class OperatingComparison:
    """Champion and challenger at their operating points on one window.

    Attributes
    ----------
    champion, challenger : dict
        :data:`MEASURES` counted over the window.
    difference : dict
        Challenger minus champion, per measure.
    interval : dict
        Per measure, the ``(low, high)`` paired bootstrap interval of the difference at
        ``confidence``.
    days : float
        Length of the window in days (for per-day figures).
    groups : int
        Accounts resampled by the bootstrap.
    """

    champion: dict
    challenger: dict
    difference: dict
    interval: dict
    confidence: float
    n_boot: int
    days: float
    rows: int
    frauds: int
    groups: int

    @classmethod
    def from_dict(cls, data: dict) -> OperatingComparison:
        """The inverse of :meth:`to_dict` (a decision record read back)."""
        return cls(**{**data, "interval": {k: tuple(v) for k, v in data["interval"].items()}})

    def to_dict(self) -> dict:
        return {"champion": self.champion, "challenger": self.challenger,
                "difference": self.difference,
                "interval": {k: list(v) for k, v in self.interval.items()},
                "confidence": self.confidence, "n_boot": self.n_boot, "days": self.days,
                "rows": self.rows, "frauds": self.frauds, "groups": self.groups}


def compare_operating_points(y_true, amounts, groups, times, champion_tiers, challenger_tiers,
                             *, confidence: float = 0.9, n_boot: int = 2000,
                             random_state: int = 0) -> OperatingComparison:
    """Compare two models' tiers on one labelled window, with paired bootstrap intervals.

    Parameters
    ----------
    y_true : array-like of {0, 1}
        Labels of the window.
    amounts : array-like of float
        Payment amounts.
    groups : array-like
        The unit of resampling (accounts): all of a group's rows are drawn together.
    times : array-like of datetime
        Payment times (for the window's length in days).
    champion_tiers, challenger_tiers : array-like of {"block", "review", "pass"}
        Each model's tier for every row, from its own thresholds.
    confidence : float
        Coverage of the intervals (percentile bootstrap).
    n_boot : int
        Bootstrap resamples.
    random_state : int
        Seed of the resampling.

    Returns
    -------
    OperatingComparison
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    y = np.asarray(y_true).astype(bool)
    amount = np.asarray(amounts, dtype=np.float64)
    a = _per_row(y, np.asarray(champion_tiers), amount)
    b = _per_row(y, np.asarray(challenger_tiers), amount)
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups)), use_na_sentinel=False)
    n_groups = len(uniques)
    diff = np.zeros((n_groups, len(MEASURES)))
    np.add.at(diff, codes, b - a)
    # Only groups whose difference is not zero move the resampled sum; draw how many of the
    # n resampled groups fall among them, then which ones: the multinomial bootstrap exactly.
    moving = np.flatnonzero(np.any(diff != 0, axis=1))
    rng = np.random.default_rng(random_state)
    sums = np.zeros((n_boot, len(MEASURES)))
    if len(moving) and n_groups:
        hits = rng.binomial(n_groups, len(moving) / n_groups, size=n_boot)
        for i, m in enumerate(hits):
            picks = rng.integers(0, len(moving), size=m)
            sums[i] = diff[moving[picks]].sum(axis=0)
    lo, hi = np.quantile(sums, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    champ = {m: float(a[:, j].sum()) for j, m in enumerate(MEASURES)}
    chall = {m: float(b[:, j].sum()) for j, m in enumerate(MEASURES)}
    t = pd.to_datetime(pd.Series(np.asarray(times)))
    days = max((t.max() - t.min()) / pd.Timedelta("1D"), 1.0) if len(t) else 1.0
    return OperatingComparison(
        champion=champ, challenger=chall,
        difference={m: chall[m] - champ[m] for m in MEASURES},
        interval={m: (float(lo[j]), float(hi[j])) for j, m in enumerate(MEASURES)},
        confidence=confidence, n_boot=n_boot, days=float(days), rows=int(len(y)),
        frauds=int(y.sum()), groups=int(n_groups))
