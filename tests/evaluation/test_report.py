"""Tiers, explanations and the reviewer report, checked the way a reviewer would."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from fraudlab.evaluation import (
    EvaluationConfig,
    choose_thresholds,
    contributions,
    evaluate,
    reason_codes,
    render_report,
    tier_table,
)


@pytest.fixture(scope="module")
def fitted(labeled_dataset):
    """A model with XGBoost's defaults under the training protocol (fast, no search)."""
    from fraudlab.training import TrainingConfig, build_protocol, fit_final
    from fraudlab.training._search import BASELINE_PARAMS

    cfg = TrainingConfig(n_splits=1, validation_window="14d", gap="7d")
    protocol = build_protocol(labeled_dataset, cfg)
    model = fit_final(protocol, BASELINE_PARAMS, cfg, EvaluationConfig(review_capacity_per_day=20))
    return model, protocol


def test_thresholds_match_an_independent_recomputation():
    rng = np.random.default_rng(3)
    n = 5000
    y = rng.random(n) < 0.02
    s = np.clip(rng.normal(0.05, 0.05, n) + 0.6 * y * rng.random(n), 0, 1).round(3)  # ties
    times = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    t = choose_thresholds(y, s, times, block_precision_target=0.8, review_capacity_per_day=10)
    # Naive: try every distinct score as a block threshold, keep the lowest that works.
    best = np.inf
    for cut in np.unique(s)[::-1]:
        m = s >= cut
        if m.sum() >= 5 and y[m].mean() >= 0.8:
            best = cut
    assert t["block"] == best
    days = (times.max() - times.min()) / pd.Timedelta("1D")
    budget = int(np.floor(10 * days))
    candidates = [c for c in np.unique(s) if c < best and ((s >= c) & (s < best)).sum() <= budget]
    assert t["review"] == min(candidates)
    table = tier_table(y, s, t, times=times)
    assert table["transactions"].sum() == n
    assert table.loc[table["tier"] == "block", "precision"].item() >= 0.8
    assert table.loc[table["tier"] == "review", "transactions"].item() <= budget


def test_contributions_add_up_to_the_margin_and_match_shap(fitted):
    import shap

    model, protocol = fitted
    X = protocol.test.X[:300]
    c = contributions(model.booster, X, protocol.spec["features"])
    margin = model.booster.inplace_predict(X, predict_type="margin")
    np.testing.assert_allclose(c.sum(axis=1), margin, rtol=1e-4, atol=1e-4)
    explainer = shap.TreeExplainer(model.booster)
    sv = explainer.shap_values(X)
    np.testing.assert_allclose(c.drop(columns="bias").to_numpy(), sv, rtol=1e-3, atol=1e-4)


def test_reason_codes_quote_the_catalog_with_value_and_usual():
    contrib = pd.DataFrame({"small_tx_count_1h": [1.2], "amount": [-0.5],
                            "distance_from_home_km": [0.3], "bias": [-5.0]})
    values = pd.DataFrame({"small_tx_count_1h": [14.0], "amount": [20.0],
                           "distance_from_home_km": [850.0]})
    usual = pd.DataFrame({"small_tx_count_1h": [0.3], "amount": [35.0],
                          "distance_from_home_km": [2.0]})
    [reasons] = reason_codes(contrib, values, usual, top=3)
    assert [r["feature"] for r in reasons] == ["small_tx_count_1h", "distance_from_home_km"]
    assert reasons[0]["text"].endswith(": 14 transactions (usual for this account: 0.30 transactions)")
    assert "850 km" in reasons[1]["text"] and "(usual for this account: 2 km)" in reasons[1]["text"]


@pytest.fixture(scope="module")
def evaluation(fitted, labeled_dataset):
    model, protocol = fitted
    scorer = model.scorer()
    return evaluate(labeled_dataset, scorer, scorer.spec["tiers"],
                    start=protocol.times["test_start"], summary={"model": "test"},
                    n_resamples=50, max_cases=20)


def test_listed_cases_reasons_are_their_largest_contributions(evaluation, fitted, labeled_dataset):
    model, _ = fitted
    cases = evaluation.cases
    assert len(cases) > 0 and (cases["tier"] != "pass").all()
    rows = labeled_dataset.set_index("tx_id").loc[cases["tx_id"]].reset_index()
    c = contributions(model.booster, model.scorer().encode(rows), model.spec["features"])
    for i, reasons in enumerate(cases["reasons"]):
        top = c.drop(columns="bias").iloc[i].sort_values(ascending=False)
        assert [r["feature"] for r in reasons] == list(top.index[: len(reasons)])
        assert reasons[0]["contribution"] == pytest.approx(top.iloc[0], rel=1e-5)


def test_tier_table_uses_the_stored_thresholds(evaluation, fitted, labeled_dataset):
    model, protocol = fitted
    scorer = model.scorer()
    d = labeled_dataset[labeled_dataset["ts"] >= protocol.times["test_start"]]
    p = scorer.predict(None, d)
    blocked = int((p >= scorer.spec["tiers"]["block"]).sum())
    assert evaluation.tiers.set_index("tier").loc["block", "transactions"] == blocked


def test_report_opens_in_headless_chromium(evaluation, tmp_path, chromium):
    html = render_report(evaluation)
    out = tmp_path / "report.html"
    out.write_text(html, encoding="utf-8")
    assert "http://" not in html and "https://" not in html  # nothing loads from the network
    n_img = html.count("<img ")
    assert n_img >= 8
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=10000", "--dump-dom", out.as_uri()]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dom = run.stdout
    assert re.search(rf'data-images="{n_img}"', dom), "the page's load check did not run"
    assert 'data-broken-images="0"' in dom
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    for heading in ("Model summary and lineage", "How good is the model", "Decision tiers",
                    "Why the model flags payments", "Top flagged incidents", "by fraud type"):
        assert heading in dom
    assert dom.count("<table") >= 7

