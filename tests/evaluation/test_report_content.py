"""The reviewer report read as a fraud analyst reads it: each point of the rendered HTML
that used to mislead is checked on the page itself."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fraudlab.evaluation import EvaluationConfig, evaluate, reason_codes, render_report
from fraudlab.evaluation._report import log_calibration_table


@pytest.fixture(scope="module")
def fitted(labeled_dataset):
    from fraudlab.training import TrainingConfig, build_protocol, fit_final
    from fraudlab.training._search import BASELINE_PARAMS

    cfg = TrainingConfig(n_splits=1, validation_window="14d", gap="7d")
    protocol = build_protocol(labeled_dataset, cfg)
    return fit_final(protocol, BASELINE_PARAMS, cfg, EvaluationConfig(review_capacity_per_day=20)), protocol


@pytest.fixture(scope="module")
def report(fitted, labeled_dataset):
    model, protocol = fitted
    scorer = model.scorer()
    ev = evaluate(labeled_dataset, scorer, scorer.spec["tiers"], champion=scorer,
                  config=EvaluationConfig(review_capacity_per_day=1, currency="CNY"),
                  start=protocol.times["test_start"], n_resamples=50, max_cases=20,
                  summary={"test window starts": "2026-03-22T23:59:09.000001+00:00"})
    return ev, render_report(ev)


def _section(html: str, heading: str) -> str:
    start = html.index(heading)
    end = html.find("<h2", start + 1)
    return html[start:end if end > 0 else None]


def test_average_precision_by_fraud_type_ranks_each_type_against_legitimate_payments(report):
    ev, html = report
    table = ev.by_fraud_type
    assert "average_precision_vs_legitimate" in table.columns
    assert (table["average_precision_vs_legitimate"] < 1).any()  # not 1 for every type
    assert "legitimate" not in set(table["fraud_type"])


def test_amount_bands_in_order(report):
    ev, html = report
    bands = list(ev.by_amount["amount_band"])
    order = ["0-50", "50-200", "200-1,000", "1,000-5,000", "5,000 and more"]
    assert bands == [b for b in order if b in bands]
    section = _section(html, "by amount band")
    assert [b for b in order if b in section] == bands


def test_amounts_carry_two_decimals_and_the_currency(report):
    ev, html = report
    assert ev.currency == "CNY"
    section = _section(html, "by fraud type")
    amounts = re.findall(r'class="n">([\d,]+\.\d+)</td>', section)
    assert amounts and all(len(a.split(".")[1]) in (2, 3) for a in amounts)
    tiers = _section(html, "Decision tiers")
    assert "fraud amount caught (CNY)" in tiers
    assert " currency" not in html  # the unit is the currency, not the word


def test_the_pass_tier_affects_no_customer(report):
    ev, html = report
    rows = re.findall(r'<tr><td class="tier-pass">pass</td>(.*?)</tr>', html, flags=re.S)
    assert rows and rows[0].rstrip().endswith("&ndash;</td>")


def test_review_volume_over_capacity_is_flagged(report):
    ev, html = report
    per_day = ev.tiers.set_index("tier").loc["review", "per_day"]
    assert per_day > 1
    assert "more than the configured capacity of 1 a day" in html
    assert 'class="n over"' in _section(html, "Decision tiers")


def test_flagged_payments_are_grouped_into_incidents(report):
    ev, html = report
    inc = ev.incidents
    assert inc["account_id"].is_unique and len(inc) <= 20
    listed = inc["cases"].map(len)
    assert (listed <= 20).all() and listed.sum() == len(ev.cases)  # max_cases=20 per incident
    # The incident counts all of its account's flagged payments, listed or not.
    flagged = ev.cases.groupby("account_id").size()
    assert (inc.set_index("account_id")["payments"] >= flagged.reindex(inc["account_id"])).all()
    whole = inc[(inc["payments"] > 1) & (listed == inc["payments"])]
    assert len(whole), "the fixture has no burst listed whole"
    first = whole.iloc[0]
    assert first["first"] == min(c["ts"] for c in first["cases"]) <= first["last"]
    assert first["amount"] == pytest.approx(sum(c["amount"] for c in first["cases"]))
    section = _section(html, "Top flagged incidents")
    assert section.count("<details>") == len(inc)
    for account in inc["account_id"]:
        assert section.count(f"<td>{account}</td>") == 1  # one row per account


def test_missing_values_are_said_in_words():
    contrib = pd.DataFrame({"distance_from_home_km": [1.5], "merchant_fraud_rate_7d": [0.5],
                            "bias": [-5.0]})
    values = pd.DataFrame({"distance_from_home_km": [np.nan], "merchant_fraud_rate_7d": [0.0]})
    usual = pd.DataFrame({"distance_from_home_km": [3.54], "merchant_fraud_rate_7d": [0.0]})
    [reasons] = reason_codes(contrib, values, usual)
    assert reasons[0]["text"] == ("distance between the transaction and the account's home: "
                                  "no location was sent with this payment, or the account has "
                                  "no known home")
    assert "none" not in reasons[0]["text"] and "usual" not in reasons[0]["text"]
    assert "usual for this account's payments: 0)" in reasons[1]["text"]
    assert "ratio" not in reasons[1]["text"]


def test_calibration_bins_suit_rare_events():
    rng = np.random.default_rng(0)
    p = np.clip(rng.lognormal(-6, 1.5, 20_000), 0, 1)
    y = rng.random(20_000) < p
    cal = log_calibration_table(y, p)
    assert len(cal) >= 6  # quantile bins of a 0.5% rate would show two points
    assert cal["rows"].sum() == 20_000 and cal["frauds"].sum() == y.sum()
    assert (np.diff(cal["predicted"]) > 0).all()


def test_times_print_to_the_minute(report):
    ev, html = report
    assert "2026-03-22 23:59 UTC" in html
    assert ".000001" not in html and not re.search(r"\d\d:\d\d:\d\d\.\d{6}", html)


def test_the_population_matches_the_test_window(report, fitted, labeled_dataset):
    ev, html = report
    model, protocol = fitted
    assert ev.window["rows"] == len(protocol.test.y)  # the same rows the run was tested on
    assert "accounts with a fraud reported before the window starts are left out" in html


def test_the_champion_comparison_has_a_paired_interval(report):
    ev, html = report
    ap = ev.metrics.set_index("metric").loc["average_precision_score"]
    # The same model as its own champion: a difference of exactly zero in every resample.
    assert (ap["difference"], ap["difference_low"], ap["difference_high"]) == (0, 0, 0)
    assert "difference (95% interval, paired)" in html
    assert "+0.0000 (+0.0000 to +0.0000)" in html
