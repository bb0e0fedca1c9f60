"""The promotion rule, branch by branch, on hand-made figures; and the drift warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.evaluation import compare_operating_points, operating_counts
from fraudlab.training import RefreshConfig
from fraudlab.training._decision import decide, drift_warnings

TIMES = pd.date_range("2026-03-01", periods=8, freq="1D", tz="UTC")


def _window():
    """Eight payments of four accounts over 7 days: frauds at rows 0, 1 and 4."""
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    amount = np.array([100.0, 50.0, 20.0, 30.0, 200.0, 10.0, 10.0, 10.0])
    accounts = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    return y, amount, accounts


def _cmp(champion_tiers, challenger_tiers, **kw):
    y, amount, accounts = _window()
    return compare_operating_points(y, amount, accounts, TIMES, np.array(champion_tiers),
                                    np.array(challenger_tiers), n_boot=500, **kw)


def _ap(champion, challenger, block=0.9):
    return ({"average_precision_score": champion, "block_precision": 0.9},
            {"average_precision_score": challenger, "block_precision": block})


P, R, B = "pass", "review", "block"


def test_operating_counts_by_hand():
    y, amount, _ = _window()
    counts = operating_counts(y, np.array([B, R, B, P, P, R, P, P]), amount)
    assert counts == {"frauds_caught": 2, "fraud_amount_caught": 150.0, "frauds_blocked": 1,
                      "false_blocks": 1, "reviews": 2, "blocked": 2}


OP = RefreshConfig()  # the default rule: operating_point


def test_identical_models_tie_and_are_kept():
    tiers = [B, R, P, P, P, P, P, P]
    cmp = _cmp(tiers, tiers)
    assert cmp.difference["fraud_amount_caught"] == 0
    assert cmp.interval["fraud_amount_caught"] == (0.0, 0.0)
    assert not decide(RefreshConfig(rule="average_precision"), *_ap(0.5, 0.5), cmp).promote
    d = decide(OP, *_ap(0.5, 0.5), cmp)
    assert not d.promote
    assert "not above the minimum gain 0.00: not shown to be better" in " ".join(d.reasons)


def test_a_challenger_that_catches_more_in_every_resample_is_promoted():
    # The challenger also catches account c's 200.00 fraud; nothing else changes.
    champion = [B, R, P, P, P, P, P, P]
    challenger = [B, R, P, P, R, P, P, P]
    cmp = _cmp(champion, challenger)
    assert cmp.difference["fraud_amount_caught"] == 200.0
    low, high = cmp.interval["fraud_amount_caught"]
    assert low <= 200.0 <= high and high % 200 == 0  # resamples hold account c 0, 1, 2... times
    # With 4 accounts, about (3/4)^4 = 32% of resamples miss account c: the lower bound is 0.
    assert low == 0.0
    d = decide(OP, *_ap(0.5, 0.6), cmp)
    assert not d.promote  # a gain that a third of resamples do not see is not shown
    # A 30% interval starts at the 35th percentile, past the 32% of resamples without c.
    d = decide(RefreshConfig(rule="operating_point", confidence=0.3), *_ap(0.5, 0.6), _cmp(champion, challenger,
                                                                   confidence=0.3))
    assert d.promote and "above the minimum gain 0.00: better" in " ".join(d.reasons)


def test_the_minimum_gain_is_a_bound_on_the_interval():
    champion = [P] * 8
    challenger = [R, R, P, P, R, P, P, P]  # +350.00 over accounts a and c
    cmp = _cmp(champion, challenger, confidence=0.5)
    low = cmp.interval["fraud_amount_caught"][0]
    assert low > 0
    assert decide(RefreshConfig(rule="operating_point", confidence=0.5, min_gain=low - 1), *_ap(0.1, 0.2), cmp).promote
    assert not decide(RefreshConfig(rule="operating_point", confidence=0.5, min_gain=low), *_ap(0.1, 0.2), cmp).promote


def test_more_false_blocks_than_allowed_stop_a_promotion():
    champion = [P] * 8
    challenger = [B, B, B, B, B, P, P, P]  # catches 350.00 but blocks b's two payments
    cmp = _cmp(champion, challenger, confidence=0.5)
    assert cmp.difference["false_blocks"] == 2 and cmp.days == 7.0
    strict = decide(RefreshConfig(rule="operating_point", confidence=0.5, max_false_block_increase=0.25),
                    *_ap(0.1, 0.2), cmp)
    assert not strict.promote
    assert "(+0.29 a day; at most +0.25 allowed): too many more" in " ".join(strict.reasons)
    assert decide(RefreshConfig(rule="operating_point", confidence=0.5, max_false_block_increase=0.3),
                  *_ap(0.1, 0.2), cmp).promote


def test_no_block_tier_is_said_not_compared():
    cmp = _cmp([R, P, P, P, P, P, P, P], [R, R, P, P, R, P, P, P], confidence=0.5)
    d = decide(RefreshConfig(rule="operating_point", confidence=0.5), *_ap(0.1, 0.2, block=float("nan")), cmp)
    assert "no payment reached either model's block tier" in " ".join(d.reasons)
    assert "nan" not in " ".join(d.reasons)
    assert d.promote


def test_a_decayed_champion_is_replaced_when_the_guard_holds():
    tiers = [B, R, P, P, P, P, P, P]
    cmp = _cmp(tiers, tiers)
    rule = RefreshConfig(rule="operating_point", champion_floor=0.3)
    d = decide(rule, *_ap(0.2, 0.25), cmp)
    assert d.promote and "decayed below its floor 0.300" in " ".join(d.reasons)
    assert not decide(rule, *_ap(0.2, 0.2), cmp).promote  # not higher: kept
    worse = _cmp(tiers, [B, R, B, B, P, P, P, P])  # decayed, but blocks b's payments
    assert not decide(RefreshConfig(rule="operating_point", champion_floor=0.3,
                                    max_false_block_increase=0.1),
                      *_ap(0.2, 0.25), worse).promote


def test_the_average_precision_rule():
    rule = RefreshConfig(rule="average_precision", promotion_margin=0.01)
    assert decide(rule, *_ap(0.50, 0.52)).promote
    assert not decide(rule, *_ap(0.50, 0.51)).promote  # equal to champion + margin: a tie
    assert not decide(RefreshConfig(rule="average_precision"), *_ap(0.5, 0.5)).promote
    low = decide(rule, *_ap(0.50, 0.60, block=0.3))
    assert not low.promote and "below floor" in " ".join(low.reasons)
    none = decide(rule, *_ap(0.50, 0.60, block=float("nan")))
    assert none.promote and "no payment reached the challenger's block tier" in none.reasons[1]
    assert "nan" not in " ".join(none.reasons)


def test_no_champion_makes_the_first():
    d = decide(RefreshConfig(), None, {"average_precision_score": 0.3})
    assert d.promote and d.reasons == ["no champion yet: the first model becomes champion"]


def test_the_operating_point_rule_needs_the_comparison():
    with pytest.raises(ValueError, match="operating-point comparison"):
        decide(OP, *_ap(0.5, 0.6))


def test_the_average_precision_rule_reports_the_operating_points_without_deciding_on_them():
    cmp = _cmp([B, R, P, P, R, P, P, P], [P] * 8)  # the challenger catches nothing
    d = decide(RefreshConfig(rule="average_precision"), *_ap(0.5, 0.6), cmp)
    assert d.promote  # decided on average precision alone
    info = [r for r in d.reasons if r.startswith("for information, not decided on: ")]
    assert len(info) == 3 and "block and review catch 0 frauds" in info[0]
    assert not any("average precision 0.6000 against" in r for r in info)


def test_the_bootstrap_is_seeded_and_paired():
    champion, challenger = [P] * 8, [R, R, P, P, R, P, P, P]
    assert _cmp(champion, challenger).interval == _cmp(champion, challenger).interval
    # Paired: swapping the models mirrors the interval.
    a = _cmp(champion, challenger).interval["fraud_amount_caught"]
    b = _cmp(challenger, champion).interval["fraud_amount_caught"]
    assert b == pytest.approx((-a[1], -a[0]))


def test_drift_warnings():
    rule = RefreshConfig(warn_score_psi=0.25, warn_fraud_rate_ratio=2.0)
    assert drift_warnings(rule, {"score_psi": 0.1,
                                 "fraud_rate": {"reference": 0.004, "current": 0.005}}) == []
    w = drift_warnings(rule, {"score_psi": 0.595,
                              "fraud_rate": {"reference": 0.002, "current": 0.0045}})
    assert len(w) == 2
    assert "PSI 0.595" in w[0] and "x2.25" in w[1]
    w = drift_warnings(rule, {"score_psi": float("nan"),
                              "fraud_rate": {"reference": 0.004, "current": 0.0}})
    assert w == ["the fraud rate moved from 0.400% to 0.000%: one period has no fraud at all"]
