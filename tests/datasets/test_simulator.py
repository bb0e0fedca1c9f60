from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlab.data_contracts import SCHEMAS
from fraudlab.datasets import FRAUD_TYPES, SimulationConfig, simulate_world
from fraudlab.features import write_tables


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_identical_files(tmp_path):
    cfg = SimulationConfig(accounts=150, days=20, seed=42)
    for folder in ("a", "b"):
        w = simulate_world(cfg)
        write_tables(w.tables(), tmp_path / folder, w.manifest)
    a, b = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    assert sorted(a) == ["accounts.parquet", "blacklist.parquet", "events.parquet",
                         "labels.parquet", "manifest.json", "transactions.parquet"]
    assert a == b


def test_different_seeds_give_different_worlds():
    a = simulate_world(SimulationConfig(accounts=150, days=20, seed=1)).transactions
    b = simulate_world(SimulationConfig(accounts=150, days=20, seed=2)).transactions
    assert not a["amount"].head(100).equals(b["amount"].head(100))


def test_tables_follow_the_canonical_schema(small_world):
    for name, frame in small_world.tables().items():
        assert list(frame.columns) == SCHEMAS[name].column_names, name
        for col in SCHEMAS[name].columns:
            if col.kind == "timestamp":
                assert str(frame[col.name].dtype) == "datetime64[us, UTC]", (name, col.name)
    tx = small_world.transactions
    assert tx["tx_id"].is_unique
    assert tx["ts"].is_monotonic_increasing


def test_every_fraud_type_is_present_and_emerging_only_after_its_start(small_world):
    labels = small_world.labels.merge(small_world.transactions[["tx_id", "ts"]], on="tx_id")
    fraud = labels[labels["is_fraud"] & labels["fraud_type"].notna()]
    assert set(fraud["fraud_type"]) == set(FRAUD_TYPES)
    start = pd.Timestamp(small_world.manifest["period"]["emerging_from"])
    farm = fraud[fraud["fraud_type"] == "device_farm"]
    assert (farm["ts"] >= start).all()
    assert len(farm) == small_world.manifest["fraud"]["transactions_by_type"]["device_farm"]


def test_no_emerging_pattern_when_it_starts_after_the_period():
    import datetime as dt

    w = simulate_world(SimulationConfig(accounts=150, days=20, seed=3,
                                        emerging_from=dt.date(2030, 1, 1)))
    assert "device_farm" not in set(w.labels["fraud_type"].dropna())


def test_labels_arrive_after_the_transaction_with_source_specific_delays():
    w = simulate_world(SimulationConfig(accounts=1500, days=60, seed=9))
    lab = w.labels.merge(w.transactions[["tx_id", "ts"]], on="tx_id")
    delay_days = (lab["reported_at"] - lab["ts"]).dt.total_seconds() / 86400
    assert (delay_days >= 0).all()
    median = delay_days.groupby(lab["source"]).median()
    # Chargebacks take weeks, customer reports days, reviews hours.
    assert median["chargeback"] > 10
    assert 0.5 < median["customer_report"] < 10
    assert median["manual_review"] < 2
    assert median["chargeback"] > median["customer_report"] > median["manual_review"]


def test_fraud_rate_default_is_in_the_realistic_band():
    w = simulate_world(SimulationConfig(accounts=1500, days=60, seed=9))
    rate = w.manifest["fraud"]["fraud_rate"]
    assert 0.001 <= rate <= 0.01
    counts = w.manifest["fraud"]
    never = counts["never_labelled"]
    total = sum(counts["transactions_by_type"].values())
    assert total == sum(counts["labelled_by_type"].values()) + never
    # Wrong reports on legitimate payments: only the manifest knows which they are.
    wrong = w.labels[w.labels["tx_id"].isin(counts["wrong_report_tx_ids"])]
    assert len(wrong) == counts["noisy_reports_on_legit"] > 0
    assert wrong["is_fraud"].all()


def test_wrong_reports_name_the_fraud_the_reporter_claims():
    w = simulate_world(SimulationConfig(accounts=1500, days=60, seed=9, noisy_report_rate=0.01))
    wrong = w.labels[w.labels["tx_id"].isin(w.manifest["fraud"]["wrong_report_tx_ids"])]
    wrong = wrong.merge(w.transactions[["tx_id", "tx_type"]], on="tx_id")
    assert wrong["fraud_type"].notna().all()
    assert set(wrong["fraud_type"]) <= set(FRAUD_TYPES) - {"device_farm"}
    transfers = wrong[wrong["tx_type"] == "transfer"]
    assert set(transfers["fraud_type"]) <= {"account_takeover", "mule_account"}
    assert wrong["fraud_type"].nunique() >= 3
    # Every fraud report carries a type, wrong or not.
    assert w.labels.loc[w.labels["is_fraud"], "fraud_type"].notna().all()


def test_scenarios_leave_their_traces(small_world):
    wrong = small_world.manifest["fraud"]["wrong_report_tx_ids"]
    labels = small_world.labels[~small_world.labels["tx_id"].isin(wrong)]
    tx = small_world.transactions.merge(labels, on="tx_id", how="left")
    ct = tx[tx["fraud_type"] == "card_testing"]
    assert (ct["amount"] < 5).mean() > 0.6  # bursts of tiny charges
    farm = tx[tx["fraud_type"] == "device_farm"]
    assert (farm["channel"] == "mini_program").all()
    ev = small_world.events
    farm_devices = set(farm["device_id"])
    assert ev.loc[ev["device_id"].isin(farm_devices), "is_emulator"].all()
    ato = tx[tx["fraud_type"] == "account_takeover"]
    for acct in ato["account_id"].unique()[:3]:
        first = ato.loc[ato["account_id"] == acct, "ts"].min()
        before = ev[(ev["account_id"] == acct) & (ev["ts"] < first)
                    & (ev["ts"] > first - pd.Timedelta("1D"))]
        assert {"login_failed", "password_reset", "device_bind"} <= set(before["event_type"])
    mule = tx[(tx["fraud_type"] == "mule_account") & (tx["tx_type"] == "transfer")]
    assert mule.groupby("counterparty_id")["account_id"].nunique().max() >= 5
    bl = small_world.blacklist
    assert (bl["listed_at"] > small_world.transactions["ts"].min()).any()  # listed after fraud
    assert (bl["listed_at"] < small_world.transactions["ts"].min()).any()  # listed before


@pytest.mark.parametrize("n", [10, 50])
def test_tiny_worlds_still_work(n):
    w = simulate_world(SimulationConfig(accounts=n, days=3, seed=0))
    assert len(w.transactions) > 0
    assert np.isfinite(w.transactions["amount"]).all()


def test_activity_happens_inside_the_history_and_the_period(small_world):
    period = small_world.manifest["period"]
    history, start, end = (pd.Timestamp(period[k]) for k in ("history_from", "start", "end"))
    assert start - history == pd.Timedelta(days=30)  # the fixture's history_days
    tx, ev = small_world.transactions, small_world.events
    assert tx["ts"].min() >= history and tx["ts"].max() < end
    assert (tx["ts"] < start).any() and (tx["ts"] >= start).any()
    # Logins and failures go back as far as the transactions; lifecycle events further.
    activity = ev[ev["event_type"].isin(["login", "login_failed", "otp_failed"])]
    assert activity["ts"].min() >= history and ev["ts"].max() < end
    lifecycle = ev[ev["ts"] < history]
    assert len(lifecycle) and set(lifecycle["event_type"]) <= {"device_bind", "password_reset",
                                                               "profile_change"}
    opened = lifecycle["account_id"].map(small_world.accounts.set_index("account_id")["created_at"])
    assert (opened <= lifecycle["ts"]).all()
    # No pile-up of clipped timestamps at the start of the history.
    assert (ev["ts"] == history).sum() <= 1


def test_farmed_accounts_are_nurtured_before_the_attack(small_world):
    """The farm's accounts pay small sums from their own (emulated) device for weeks before
    the attack, near their stated home: at the attack the device is not new to the account
    and the amount is not far from its usual ones. Those payments are never reported."""
    w = small_world
    fraud_ids = set(w.labels.loc[w.labels["is_fraud"], "tx_id"])
    truth = w.transactions.merge(w.labels[["tx_id", "fraud_type"]], on="tx_id", how="left")
    wrong = set(w.manifest["fraud"]["wrong_report_tx_ids"])
    farm = truth[(truth["fraud_type"] == "device_farm") & ~truth["tx_id"].isin(wrong)]
    assert farm["account_id"].nunique() >= 8
    emulated = set(w.events.loc[w.events["is_emulator"], "device_id"])
    for acct, attack in farm.groupby("account_id"):
        first = attack["ts"].min()
        before = w.transactions[(w.transactions["account_id"] == acct)
                                & (w.transactions["ts"] < first)]
        assert len(before) >= 2, acct
        assert not before["tx_id"].isin(fraud_ids).any()
        assert set(before["device_id"]) <= emulated
        assert set(attack["device_id"]) <= set(before["device_id"]) | emulated
        assert (first - before["ts"].min()) > pd.Timedelta("7D")
        assert before["lat"].notna().all() and attack["lat"].notna().all()
    assert (farm["ts"].dt.hour >= 18).all()  # in the evening rush, not the small hours


def test_without_history_everything_starts_with_the_period():
    w = simulate_world(SimulationConfig(accounts=150, days=20, seed=3, history_days=0))
    start = pd.Timestamp(w.manifest["period"]["start"])
    assert w.transactions["ts"].min() >= start


def test_every_device_id_is_bound_when_first_used():
    w = simulate_world(SimulationConfig(accounts=400, days=30, seed=5, history_days=60))
    ev, tx = w.events, w.transactions
    binds = ev[ev["event_type"] == "device_bind"].groupby(["account_id", "device_id"])["ts"].min()
    real = tx[tx["device_id"].notna() & ~tx["device_id"].isin(ev.loc[ev["is_emulator"], "device_id"])]
    legit = real[~real["tx_id"].isin(w.labels.loc[w.labels["is_fraud"], "tx_id"])]
    first = legit.groupby(["account_id", "device_id"])["ts"].min()
    bound = binds.reindex(first.index)
    assert bound.notna().mean() > 0.99
    assert (bound.dropna() <= first[bound.notna()]).all()
    # Device ids change over time: accounts use more than one phone over 90 days.
    assert legit.groupby("account_id")["device_id"].nunique().mean() > 1.2


def test_history_makes_legitimate_features_stationary_over_the_demo_period():
    """On the demo world every feature of legitimate payments by accounts open for 30 days
    or more has the same distribution in the first and the last 30 days of the period
    (PSI < 0.1). Without the history, device age, amount z-score and 10 more drift."""
    import yaml

    from fraudlab.evaluation import feature_drift
    from fraudlab.features import build_dataset, dataset_features

    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs" / "demo.yaml").read_text())
    w = simulate_world(SimulationConfig(**cfg["simulation"]))
    start, end = (pd.Timestamp(w.manifest["period"][k]) for k in ("start", "end"))
    ds = build_dataset(w.tables(), end, validate=False)
    opened = pd.to_datetime(ds["account_id"].map(w.accounts.set_index("account_id")["created_at"]),
                            utc=True)
    keep = (ds["is_fraud"] == 0) & (ds["ts"] - opened >= pd.Timedelta("30D"))
    first = ds[keep & (ds["ts"] >= start) & (ds["ts"] < start + pd.Timedelta("30D"))]
    last = ds[keep & (ds["ts"] >= end - pd.Timedelta("30D"))]
    drift = feature_drift(first, last, dataset_features(ds).names())
    assert len(drift) == 76 and drift["psi"].notna().all()
    assert drift["psi"].max() < 0.1, drift.head(5)[["feature", "psi"]].to_string()


def test_payees_exist_when_they_are_paid(small_world):
    tx = small_world.transactions.dropna(subset=["counterparty_id"])
    created = small_world.accounts.set_index("account_id")["created_at"]
    opened = tx["counterparty_id"].map(created)
    assert opened.notna().all()
    assert (opened <= tx["ts"]).all()


def test_device_ids_are_never_reused_across_owners():
    w = simulate_world(SimulationConfig(accounts=3000, days=10, seed=4))
    ev = w.events.dropna(subset=["device_id"])
    # Outside emulator farms, every device that logs in belongs to exactly one account.
    real = ev[~ev["is_emulator"]]
    assert real.groupby("device_id")["account_id"].nunique().max() == 1
    assert ev.loc[ev["is_emulator"], "device_id"].nunique() > 0  # farms do share devices
