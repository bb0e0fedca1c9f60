"""Backtests replay history with labels as they arrived."""

from __future__ import annotations

import pandas as pd
import pytest

from fraudlab.training import dataset_known_at, load_config, run_backtest

SHORT = {"n_splits": 1, "validation_window": "7d", "gap": "3d", "calibration_window": "7d",
         "test_window": "7d"}


def test_dataset_known_at_hides_later_labels_and_rows(labeled_dataset):
    t = pd.Timestamp("2026-03-01", tz="UTC")
    view = dataset_known_at(labeled_dataset, t, "7d")
    assert view["ts"].max() < t
    late = labeled_dataset[(labeled_dataset["ts"] < t) & (labeled_dataset["label_reported_at"] > t)
                           & (labeled_dataset["is_fraud"] == 1)]
    assert len(late) and (view.set_index("tx_id").loc[late["tx_id"], "is_fraud"] == 0).all()
    assert view["label_reported_at"].max() <= t
    assert (view["is_mature"] == (view["ts"] <= t - pd.Timedelta(days=7))).all()


@pytest.fixture(scope="module")
def backtest(labeled_dataset, tmp_path_factory):
    config = load_config(None, paths={"root": str(tmp_path_factory.mktemp("bt"))},
                         features={"label_maturity": "7d"}, training=SHORT)
    return run_backtest(labeled_dataset, config, "2026-03-13", "2026-04-03", every="7d",
                        log=lambda m: None)


def test_policies_retrain_as_they_say(backtest):
    p = backtest.periods
    assert p.groupby("policy")["retrained"].sum().to_dict()["never"] == 1
    assert p[p["policy"] == "always"]["retrained"].all()
    assert len(p[p["policy"] == "always"]) == 3


def test_every_policy_faces_the_same_frauds_and_the_first_period_is_shared(backtest):
    p = backtest.periods
    per = p.pivot(index="period_start", columns="policy", values="frauds")
    assert (per.nunique(axis=1) == 1).all()
    assert (p["fraud_caught"] <= p["frauds"]).all()
    first = p[p["period_start"] == p["period_start"].min()]
    assert first["fraud_caught"].nunique() == 1 and first["reviews"].nunique() == 1
    assert set(backtest.first_caught.columns) >= {"fraud_type", "first_seen", "never", "always"}


def test_the_promotion_rules_replay_the_refresh_decisions(backtest, labeled_dataset):
    """Each period's challenger is the policy's champion only when its rule promoted it:
    ap_rule and operating_rule score a period with the same model as 'always' when they
    promoted, and with their previous model when they did not."""
    p = backtest.periods.set_index(["period_start", "policy"])
    periods = sorted(backtest.periods["period_start"].unique())
    for policy in ("ap_rule", "operating_rule"):
        rows = p.xs(policy, level="policy")
        assert rows["retrained"].all()  # a challenger every period
        assert bool(rows["promoted"].iloc[0])  # the first model
        for t in periods:
            same_as_always = (rows.loc[t, "fraud_amount_saved"], rows.loc[t, "false_blocks"]) == (
                p.loc[(t, "always"), "fraud_amount_saved"], p.loc[(t, "always"), "false_blocks"])
            if rows.loc[t, "promoted"]:
                assert same_as_always
    assert backtest.periods.groupby("policy")["promoted"].sum().loc["always"] == len(periods)
