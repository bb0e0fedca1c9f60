"""The incremental executor equals the batch build for every transaction and feature, across
ties, window edges, random declarations and a snapshot taken mid-way."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.features import (
    CATALOG,
    FeaturesConfig,
    FeatureSet,
    OnlineFeatures,
    compute_features,
    event_stream,
    features_from_dict,
    load_features,
    replay,
)

from .test_declarations import _COLUMNS, USER_FILE, _declarations, _with_category
from .test_engine import _world_with_ties


def _in_time_order(tables):
    tx = tables["transactions"].sort_values("ts", kind="stable").reset_index(drop=True)
    return {**tables, "transactions": tx}


def assert_online_equals_batch(tables, fs, cfg=None):
    """Replay and batch, transaction by transaction: integer-valued features exactly,
    floats within 1e-6 relative of float32 storage (1e-9 for float64), missing exactly
    where missing, categories equal."""
    cfg = cfg or FeaturesConfig()
    tables = _in_time_order(tables)
    batch = compute_features(tables, config=cfg, catalog=fs)
    online, ex = replay(tables, fs, cfg)
    assert online["tx_id"].tolist() == tables["transactions"]["tx_id"].tolist()
    assert ex.late == 0
    for f in fs.features:
        b, o = batch[f.name], online[f.name]
        if f.kind == "category":
            assert b.astype(object).where(b.notna(), None).tolist() == \
                   o.astype(object).where(o.notna(), None).tolist(), f.name
            continue
        bv = b.to_numpy(dtype=float)
        ov = o.to_numpy(dtype=float)
        assert np.array_equal(np.isnan(bv), np.isnan(ov)), f"{f.name}: missing differs"
        ok = ~np.isnan(bv)
        whole = np.all(bv[ok] == np.round(bv[ok])) and np.all(ov[ok] == np.round(ov[ok]))
        if whole and f.agg in ("count", "nunique", "first_use", "seen_before",
                               "blacklist_hit", "fraud_reports"):
            assert np.array_equal(bv[ok], ov[ok]), f.name
        else:
            stored = ov[ok].astype(b.dtype)
            rtol = 1e-9 if b.dtype == np.float64 else 1e-6
            np.testing.assert_allclose(bv[ok], stored, rtol=rtol, atol=1e-6, err_msg=f.name)
    return online, ex


@pytest.fixture(scope="module")
def world():
    w = simulate_world(SimulationConfig(accounts=300, days=45, seed=5, history_days=30))
    return _with_category(w.tables(), seed=3)


def test_the_builtin_set_and_user_features_equal_the_batch_build(world, tmp_path):
    """All 76 built-in features and a user's file (extra column, composite entity, a
    filter on events, label-aware reports per account), on a world with its history."""
    path = tmp_path / "features.yaml"
    path.write_text(USER_FILE)
    user = load_features(path, settings=["high_amount"])
    cfg = FeaturesConfig(params={"high_amount": 300.0})
    fs = FeatureSet((*CATALOG, *user.features), user.columns)
    online, ex = assert_online_equals_batch(world, fs, cfg)
    assert len(online) == len(world["transactions"]) > 5_000
    assert online["blacklist_days_since_listing"].notna().any()  # listings reach the state
    assert online["merchant_fraud_rate_30d"].max() > 0  # and so do label reports


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(decls=st.lists(_declarations(), min_size=1, max_size=4))
def test_random_declarations_equal_the_batch_build(decls):
    """Declarations nobody wrote by hand over a world with ties at the same instant."""
    fs = features_from_dict({"columns": _COLUMNS,
                             "features": [{**d, "name": f"f{i}"} for i, d in enumerate(decls)]})
    assert_online_equals_batch(_RANDOM_WORLD, fs)


_RANDOM_WORLD = _with_category(_world_with_ties(11), seed=4)


def _tiny():
    t0 = pd.Timestamp("2026-03-01 12:00", tz="UTC")
    tx = pd.DataFrame({
        "tx_id": ["t1", "t2", "t3", "t4"],
        "ts": [t0, t0, t0 + pd.Timedelta("10min"), t0 + pd.Timedelta("70min")],
        "account_id": ["A", "A", "A", "A"], "amount": [10.0, 20.0, 30.0, 40.0],
        "currency": "EUR", "channel": "web", "tx_type": "payment", "device_id": "D1",
        "ip": "1.1.1.1", "counterparty_id": None, "merchant_id": "M1",
        "lat": 1.0, "lon": 2.0})
    bl = pd.DataFrame({"entity_type": ["merchant"], "entity_value": ["M1"],
                       "listed_at": [t0 + pd.Timedelta("10min")],
                       "delisted_at": [t0 + pd.Timedelta("70min")], "source": ["internal"]})
    return {"transactions": tx, "blacklist": bl}


def _one(**fields):
    return features_from_dict({"features": [{"name": "f", "description": "d", **fields}]})


def test_ties_window_edges_and_listing_times_by_hand():
    tables = _tiny()
    count = _one(entity="account", agg="count", window="1h", nullable=True)
    out, _ = replay(tables, count)
    # t2 is tied with t1 (not before it); t3 sees both; for t4 the hour holds rows after
    # 12:10, so t3, at exactly 12:10, is on the window's edge and out.
    assert out["f"].tolist() == [0, 0, 2, 0]
    hit = _one(entity="merchant", source="blacklist", agg="blacklist_hit", nullable=True,
               max_value=1)
    out, _ = replay(tables, hit)
    # Listed at t3's instant (inclusive), delisted at t4's (exclusive).
    assert out["f"].tolist() == [0, 0, 1, 0]
    assert_online_equals_batch(tables, count)
    assert_online_equals_batch(tables, hit)


def test_late_rows_are_applied_and_counted():
    tables = _tiny()
    fs = _one(entity="account", agg="count", window="1d", nullable=True)
    ex = OnlineFeatures(fs)
    rows = tables["transactions"].to_dict("records")
    assert ex.score(rows[2])["f"] == 0
    ex.update("transactions", rows[0])  # older than t3, already scored: late
    assert ex.late == 1
    assert ex.score(rows[3])["f"] == 2  # the batch build would count t1 and t3 here


def test_a_snapshot_mid_way_continues_as_an_uninterrupted_replay(world, tmp_path):
    full, _ = replay(world)
    half = len(full) // 2
    first, ex = replay(world, stop_after=half)
    ex.snapshot(tmp_path / "state")
    restored = OnlineFeatures(CATALOG).restore(tmp_path / "state")
    rest, _ = replay(world, online=restored)
    pd.testing.assert_frame_equal(pd.concat([first, rest], ignore_index=True), full)
    assert len(first) == half


def test_a_snapshot_for_other_declarations_or_format_is_refused(world, tmp_path):
    _, ex = replay(world, stop_after=100)
    path = ex.snapshot(tmp_path / "state")
    other = _one(entity="account", agg="count", window="1h", nullable=True)
    with pytest.raises(ValueError, match="made for features .* not these declarations"):
        OnlineFeatures(other).restore(tmp_path / "state")
    with pytest.raises(ValueError, match="made for features"):
        OnlineFeatures(CATALOG, FeaturesConfig(small_amount=1.0)).restore(tmp_path / "state")
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(ValueError, match="not an online state of format version [0-9]+ .found .* version 99"):
        OnlineFeatures(CATALOG).restore(tmp_path / "state")


def test_state_is_bounded_by_the_windows(world):
    """Entities whose rows all left their windows are dropped from windowed state."""
    fs = _one(entity="account", agg="count", window="1h", nullable=True)
    _, ex = replay(world, fs)
    active_last_day = world["transactions"]["ts"] > world["transactions"]["ts"].max() - pd.Timedelta("26h")
    held = ex.state_size()["entities"]
    assert 0 < held <= world["transactions"].loc[active_last_day, "account_id"].nunique()


def test_a_models_features_json_builds_the_executor(world):
    from fraudlab.features import feature_settings

    cfg = FeaturesConfig(small_amount=5.0)
    doc = {**FeatureSet(CATALOG).to_dict(), "settings": feature_settings(cfg)}
    a = OnlineFeatures(doc)
    assert a.config.small_amount == 5.0 and a.features.names() == FeatureSet(CATALOG).names()


def test_a_late_transaction_reaches_every_window_of_its_entities(world):
    """A payment held back and sent after later ones were scored: the payments scored
    after it arrived equal the batch build (which saw it), in every window of the
    built-in set (the account's five windows share one copy of its rows)."""
    tables = _in_time_order(world)
    tx = tables["transactions"]
    batch = compute_features(tables).set_axis(tx["tx_id"].to_numpy())
    # A payment with a busy account, late by ten of its account's later payments.
    busy = tx["account_id"].value_counts().index[0]
    mine = tx.index[tx["account_id"] == busy]
    held, arrives_after = mine[len(mine) // 2], mine[len(mine) // 2 + 10]
    held_id = tx.at[held, "tx_id"]
    ex = OnlineFeatures(CATALOG)
    before, after, arrived = [], [], False
    held_t = tx.at[held, "ts"]
    for table, row in event_stream(tables):
        if table != "transactions":
            ex.update(table, row)
            continue
        if row["tx_id"] == held_id:
            continue
        (after if arrived else before).append((row["tx_id"], ex.score(row), row["ts"]))
        if row["tx_id"] == tx.at[arrives_after, "tx_id"]:
            late_row = {**tx.loc[held].to_dict(), "ts": held_t}
            late_row = {k: (None if isinstance(v, float) and np.isnan(v) else v)
                        for k, v in late_row.items()}
            ex.update("transactions", late_row)
            arrived = True
    assert ex.late == 1
    assert len(after) > 1_000
    held_us = held_t.value // 1_000
    checked = [(i, f) for i, f, t in before if t < held_us] + [(i, f) for i, f, _ in after]
    online = pd.DataFrame([f for _, f in checked], index=[i for i, _ in checked])
    for f in CATALOG:
        if f.kind == "category":
            continue
        b = batch.loc[online.index, f.name].to_numpy(dtype=float)
        o = online[f.name].to_numpy(dtype=float).astype(batch[f.name].dtype).astype(float)
        assert np.array_equal(np.isnan(b), np.isnan(o)), f.name
        ok = ~np.isnan(b)
        np.testing.assert_allclose(b[ok], o[ok], rtol=1e-6, atol=1e-6, err_msg=f.name)
