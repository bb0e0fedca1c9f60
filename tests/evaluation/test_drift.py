"""Drift measures and missed-fraud patterns on hand-checkable data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.evaluation import feature_drift, missed_fraud_patterns, psi


def test_psi_is_zero_for_the_same_distribution_and_matches_the_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10_000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    # Two bins at the reference median: 50/50 against 80/20.
    ref = np.r_[np.zeros(50), np.ones(50)]
    cur = np.r_[np.zeros(80), np.ones(20)]
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(ref, cur, bins=2, eps=0) == pytest.approx(expected)


def test_missing_values_that_appear_count_as_drift():
    ref = np.arange(1000, dtype=float)
    cur = ref.copy()
    cur[:300] = np.nan
    assert psi(ref, cur) > 0.25


def test_feature_drift_ranks_and_labels_categoricals():
    ref = pd.DataFrame({"channel": pd.Categorical(["app"] * 90 + ["web"] * 10),
                        "amount": np.arange(100, dtype=float)})
    cur = pd.DataFrame({"channel": pd.Categorical(["app"] * 40 + ["mini_program"] * 60),
                        "amount": np.arange(100, dtype=float)})
    out = feature_drift(ref, cur, ["amount", "channel"])
    assert list(out["feature"]) == ["channel", "amount"]
    assert out.loc[0, "verdict"] == "major" and out.loc[1, "verdict"] == "stable"


def test_patterns_separate_two_kinds_of_missed_fraud_and_describe_them():
    rng = np.random.default_rng(1)
    farm = pd.DataFrame({"device_emulator_seen": rng.normal(2.0, 0.05, 12),
                         "distance_from_home_km": rng.normal(0.0, 0.05, 12), "bias": -6.0})
    travel = pd.DataFrame({"device_emulator_seen": rng.normal(0.0, 0.05, 8),
                           "distance_from_home_km": rng.normal(1.5, 0.05, 8), "bias": -6.0})
    contrib = pd.concat([farm, travel], ignore_index=True)
    meta = pd.DataFrame({"amount": [10.0] * 12 + [500.0] * 8,
                         "channel": ["mini_program"] * 12 + ["pos_card"] * 8,
                         "fraud_type": ["device_farm"] * 12 + ["large_off_location"] * 8})
    patterns = missed_fraud_patterns(contrib, meta)
    assert [p["size"] for p in patterns] == [12, 8]
    assert patterns[0]["reasons"][0]["feature"] == "device_emulator_seen"
    assert patterns[0]["channels"] == {"mini_program": 1.0}
    assert patterns[0]["fraud_types"] == {"device_farm": 1.0}
    assert patterns[1]["fraud_amount"] == pytest.approx(4000.0)
    assert "emulator" in patterns[0]["summary"]


def test_one_pattern_is_not_split_into_look_alike_clusters():
    rng = np.random.default_rng(2)
    contrib = pd.DataFrame({"device_emulator_seen": rng.normal(2.0, 0.3, 18),
                            "distance_from_home_km": rng.normal(0.5, 0.3, 18), "bias": -6.0})
    meta = pd.DataFrame({"amount": np.ones(18), "channel": ["mini_program"] * 18})
    assert len(missed_fraud_patterns(contrib, meta)) == 1


def test_a_flag_that_starts_to_be_set_is_major_drift():
    """A reference that is all 0 (a new fraud signal nobody had) against a window where a
    third of the rows have it: every value the reference never took is a bin of its own."""
    ref = np.zeros(700)
    cur = np.r_[np.zeros(20), np.ones(10)]
    got = psi(ref, cur)
    expected = (20 / 30 - 1) * np.log((20 / 30 + 1e-4) / (1 + 1e-4)) \
        + (10 / 30) * np.log((10 / 30 + 1e-4) / 1e-4)
    assert got == pytest.approx(expected)
    assert got > 0.25
    # Small counts: 3 and 4 accounts on one device, never seen in the reference.
    assert psi(np.r_[np.ones(95), np.full(5, 2.0)], np.r_[np.ones(80), np.full(20, 3.0)]) > 1


def test_what_changed_reads_amounts_as_money_and_escapes_text():
    from fraudlab.evaluation import PeriodChanges

    drift = pd.DataFrame({"feature": ["amount"], "psi": [0.01], "verdict": ["stable"],
                          "description": ["amount <b>"]})
    changes = PeriodChanges(
        drift=drift, fraud_drift=drift, score_psi=0.01,
        fraud_rate={"reference": 0.004, "current": 0.005},
        attribution=pd.DataFrame({"feature": ["amount"], "reference": [0.1], "current": [0.2],
                                  "change": [0.1]}),
        patterns=[], missed=3,
        caught=pd.DataFrame({"fraud_type": ["device_farm"], "frauds": [46],
                             "amount": [11518.900391]}))
    html = changes.to_html()
    assert "11,518.90" in html and "11518.9" not in html
    assert "amount &lt;b&gt;" in html
    assert "No matured fraud of this window was missed" in html
