"""The promotion rule of the refresh cycle, and the drift warnings that go with any decision.

Pure functions of figures already computed (metrics, the operating-point comparison, drift),
so that every branch of the rule is tested on hand-made numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraudlab.evaluation import choose_thresholds, compare_operating_points, tier_of
from fraudlab.features import LABEL

from ._config import FraudlabConfig, RefreshConfig


@dataclass
class Decision:
    """Whether to promote, and why, in words with the numbers."""

    promote: bool
    reasons: list[str]
    warnings: list[str] = field(default_factory=list)


def _money(v: float) -> str:
    return f"{v:,.2f}"


def _signed_money(v: float) -> str:
    return ("+" if v >= 0 else "-") + _money(abs(v))


def decide(rule: RefreshConfig, champion: dict | None, challenger: dict,
           comparison=None, *, review_capacity_per_day: float | None = None) -> Decision:
    """Apply the configured promotion rule.

    Parameters
    ----------
    rule : RefreshConfig
    champion, challenger : dict or None
        Window metrics (``average_precision_score``, ``block_precision``); ``champion`` is
        None when there is no champion yet.
    comparison : OperatingComparison, optional
        Both models at their operating points on the same window (needed by the
        ``operating_point`` rule).
    review_capacity_per_day : float, optional
        Stated next to the review volumes.

    Returns
    -------
    Decision
        A tie never promotes; a missing value is said as such, never compared.
    """
    if champion is None:
        return Decision(True, ["no champion yet: the first model becomes champion"])
    ap_c, ap_n = champion["average_precision_score"], challenger["average_precision_score"]
    decayed = bool(np.isfinite(ap_c) and np.isfinite(ap_n) and ap_c < rule.champion_floor
                   and ap_n > ap_c)
    if rule.rule == "average_precision":
        better, guard_ok, reasons = _by_average_precision(rule, ap_c, ap_n, challenger)
        if comparison is not None:  # what the operating-point rule would see, said too
            _, _, seen = _by_operating_point(rule, comparison, ap_c, ap_n,
                                             review_capacity_per_day)
            reasons += [f"for information, not decided on: {r}" for r in seen[:1] + seen[2:-1]]
    else:
        if comparison is None:
            raise ValueError("the operating_point rule needs the operating-point comparison")
        better, guard_ok, reasons = _by_operating_point(rule, comparison, ap_c, ap_n,
                                                        review_capacity_per_day)
    if decayed:
        reasons.append(f"the champion's average precision {ap_c:.4f} decayed below its floor "
                       f"{rule.champion_floor:.3f} and the challenger's is higher")
    return Decision(guard_ok and (better or decayed), reasons)


def _by_average_precision(rule: RefreshConfig, ap_c: float, ap_n: float,
                          challenger: dict) -> tuple[bool, bool, list[str]]:
    better = bool(np.isfinite(ap_n) and np.isfinite(ap_c) and ap_n > ap_c + rule.promotion_margin)
    reasons = [f"challenger average precision {ap_n:.4f} vs champion {ap_c:.4f} (margin "
               f"{rule.promotion_margin:+.4f}): " + ("better" if better else "not better")]
    prec = challenger.get("block_precision")
    if prec is None or not np.isfinite(prec):
        reasons.append("no payment reached the challenger's block tier: its block precision "
                       f"cannot be checked against the floor {rule.tier_precision_floor:.2f}, "
                       "and it blocks nothing")
        tier_ok = True
    else:
        tier_ok = prec >= rule.tier_precision_floor
        reasons.append(f"challenger block-tier precision {prec:.3f} (floor "
                       f"{rule.tier_precision_floor:.2f}): {'ok' if tier_ok else 'below floor'}")
    return better, tier_ok, reasons


def _by_operating_point(rule: RefreshConfig, cmp, ap_c: float, ap_n: float,
                        capacity: float | None) -> tuple[bool, bool, list[str]]:
    ch, nw, d = cmp.champion, cmp.challenger, cmp.difference
    lo, hi = cmp.interval["fraud_amount_caught"]
    f_lo, f_hi = cmp.interval["frauds_caught"]
    pct = f"{cmp.confidence:.0%}"
    reasons = [
        f"on the newest matured window ({cmp.days:.1f} days, {cmp.rows:,} payments, "
        f"{cmp.frauds:,} frauds) block and review catch {nw['frauds_caught']:,.0f} frauds "
        f"worth {_money(nw['fraud_amount_caught'])} with the challenger against "
        f"{ch['frauds_caught']:,.0f} worth {_money(ch['fraud_amount_caught'])} with the "
        f"champion: {d['frauds_caught']:+,.0f} frauds ({pct} interval {f_lo:+,.0f} to "
        f"{f_hi:+,.0f}), {_signed_money(d['fraud_amount_caught'])} ({pct} interval "
        f"{_signed_money(lo)} to {_signed_money(hi)}; paired bootstrap over "
        f"{cmp.groups:,} accounts, {cmp.n_boot:,} resamples)"]
    better = lo > rule.min_gain
    reasons.append(f"the caught amount's lower bound {_signed_money(lo)} is "
                   + (f"above the minimum gain {_money(rule.min_gain)}: better" if better else
                      f"not above the minimum gain {_money(rule.min_gain)}: not shown to be "
                      "better"))
    if ch["blocked"] == 0 and nw["blocked"] == 0:
        fb_ok = True
        reasons.append("no payment reached either model's block tier: no legitimate payment "
                       "blocked by either")
    else:
        per_day = d["false_blocks"] / cmp.days
        fb_ok = per_day <= rule.max_false_block_increase
        reasons.append(
            f"legitimate payments blocked: {nw['false_blocks']:,.0f} against "
            f"{ch['false_blocks']:,.0f} ({per_day:+.2f} a day; at most "
            f"{rule.max_false_block_increase:+.2f} allowed): "
            + ("ok" if fb_ok else "too many more"))
    cap = f"; capacity {capacity:g} a day" if capacity is not None else ""
    reasons.append(f"reviews: {nw['reviews']:,.0f} against {ch['reviews']:,.0f} "
                   f"({nw['reviews'] / cmp.days:.1f} and {ch['reviews'] / cmp.days:.1f} a day"
                   f"{cap})")
    reasons.append(f"average precision {ap_n:.4f} against {ap_c:.4f} (reported, not decided on)")
    return better, fb_ok, reasons


def drift_warnings(rule: RefreshConfig, drift: dict) -> list[str]:
    """Warnings for shifts above the configured limits, whatever the decision."""
    out = []
    psi = drift.get("score_psi")
    if psi is not None and np.isfinite(psi) and psi > rule.warn_score_psi:
        out.append(f"the champion's scores shifted: PSI {psi:.3f} between its training period "
                   f"and the newest window (warning above {rule.warn_score_psi:g})")
    rates = drift.get("fraud_rate") or {}
    ref, cur = rates.get("reference"), rates.get("current")
    if ref is not None and cur is not None and np.isfinite(ref) and np.isfinite(cur):
        if ref > 0 and cur > 0:
            ratio = cur / ref
            if max(ratio, 1 / ratio) > rule.warn_fraud_rate_ratio:
                out.append(f"the fraud rate moved from {ref:.3%} in the champion's training "
                           f"period to {cur:.3%} in the newest window (x{ratio:.2f}; warning "
                           f"beyond x{rule.warn_fraud_rate_ratio:g} either way)")
        elif (ref > 0) != (cur > 0):
            out.append(f"the fraud rate moved from {ref:.3%} to {cur:.3%}: one period has no "
                       "fraud at all")
    return out


@dataclass
class PairScores:
    """Champion and challenger scored on the decision window at their operating points
    (``champion_deployed_tiers``: the champion at its own stored thresholds)."""

    challenger: dict
    challenger_tiers: np.ndarray
    thresholds: dict
    champion: dict | None = None
    champion_tiers: np.ndarray | None = None
    champion_deployed_tiers: np.ndarray | None = None
    comparison: object = None


def rows_of(dataset: pd.DataFrame, tx_ids) -> pd.DataFrame:
    """The dataset's rows of ``tx_ids``, in that order."""
    return dataset.set_index("tx_id").loc[list(tx_ids)].reset_index()


def window_scores(model, frame: pd.DataFrame, thresholds: dict) -> tuple[dict, np.ndarray]:
    """A model's metrics on the decision window, and its tier for every row."""
    from ._fit import window_metrics

    p = model.predict(None, frame)
    y = frame[LABEL].to_numpy().astype(np.int8)
    out = window_metrics(y, p, frame)
    tiers = tier_of(p, thresholds)
    blocked = tiers == "block"
    out["block_precision"] = float(y[blocked].mean()) if blocked.any() else float("nan")
    out["flagged_recall"] = float((tiers[y == 1] != "pass").mean()) if y.any() else float("nan")
    return out, tiers


def score_pair(config: FraudlabConfig, protocol, dataset: pd.DataFrame, challenger,
               champion=None) -> PairScores:
    """Threshold both models the same way on the protocol's calibration rows, then score
    them on its test window (the newest matured window) and compare their operating points.

    The challenger is the model fitted on ``protocol``; the champion, if any, is scored on
    the same rows. Thresholds come from :func:`choose_thresholds` with the evaluation's
    block precision target and review capacity, as in training.
    """
    ev = config.evaluation
    cal, test = protocol.calibration, rows_of(dataset, protocol.test.meta["tx_id"])
    cal_frame = rows_of(dataset, cal.meta["tx_id"])

    def thresholds(model) -> dict:
        return choose_thresholds(cal.y, model.predict(None, cal_frame), cal.meta["ts"],
                                 block_precision_target=ev.block_precision_target,
                                 review_capacity_per_day=ev.review_capacity_per_day)

    th = {"challenger": thresholds(challenger)}
    chall_m, chall_t = window_scores(challenger, test, th["challenger"])
    out = PairScores(challenger=chall_m, challenger_tiers=chall_t, thresholds=th)
    if champion is not None:
        th["champion"] = thresholds(champion)
        out.champion, out.champion_tiers = window_scores(champion, test, th["champion"])
        # What the champion did as deployed, at the thresholds stored with it: the frauds it
        # let pass there are the new patterns to explain.
        out.champion_deployed_tiers = tier_of(champion.predict(None, test), champion.spec["tiers"])
        out.comparison = compare_operating_points(
            test[LABEL].to_numpy(), test["amount"].to_numpy(), test["account_id"].to_numpy(),
            test["ts"].to_numpy(), out.champion_tiers, chall_t,
            confidence=config.refresh.confidence, n_boot=config.refresh.bootstrap_resamples,
            random_state=config.training.seed)
    return out
