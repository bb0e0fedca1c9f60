"""The feature engine against hand-computed values, a naive reference, and the future."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudlab.data_contracts import parse_duration
from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.features import (
    CATALOG,
    FeaturesConfig,
    compute_features,
    known_at,
)

T = pd.Timestamp("2026-01-05 10:00:00", tz="UTC")


def _tx(rows):
    cols = ["tx_id", "ts", "account_id", "counterparty_id", "merchant_id", "amount", "currency",
            "channel", "tx_type", "device_id", "ip", "lat", "lon"]
    f = pd.DataFrame(rows, columns=cols)
    f["ts"] = pd.to_datetime(f["ts"], utc=True).astype("datetime64[us, UTC]")
    for c in ("amount", "lat", "lon"):
        f[c] = f[c].astype(float)
    return f


@pytest.fixture
def tiny():
    """One account's morning, with a tie at 10:05 and rows exactly on window edges."""
    m = pd.Timedelta
    tx = _tx([
        ("t0", T, "A", None, "M1", 10, "CNY", "app", "payment", "D1", "1.1.1.1", 31.0, 121.0),
        ("t1", T + m("5min"), "A", "C", None, 20, "CNY", "app", "transfer", "D1", "1.1.1.1", 31.0, 121.0),
        ("t2", T + m("5min"), "A", "C", None, 30, "CNY", "web", "transfer", "D2", "1.1.1.1", None, None),
        ("t3", T + m("15min"), "A", None, "M1", 5, "CNY", "app", "payment", "D1", "2.2.2.2", 32.0, 121.0),
        ("t4", T + m("60min"), "A", None, "M1", 100, "CNY", "app", "payment", "D1", "1.1.1.1", 31.0, 121.0),
        ("b0", T + m("10min"), "B", "C", None, 70, "CNY", "app", "transfer", "D1", "3.3.3.3", 30.0, 120.0),
    ]).sort_values("ts", kind="stable").reset_index(drop=True)
    events = pd.DataFrame({
        "event_id": ["e0", "e1", "e2", "e3"],
        "ts": pd.to_datetime([T - m("30min"), T, T - m("2h"), T + m("1min")], utc=True),
        "account_id": ["A", "A", "A", "A"],
        "event_type": ["login_failed", "login_failed", "password_reset", "login"],
        "device_id": ["D9", "D9", "D9", "D2"], "ip": ["9.9.9.9"] * 4,
        "lat": [40.0, 40.0, 40.0, 31.0], "lon": [116.0, 116.0, 116.0, 121.0],
        "is_emulator": [False, False, False, True], "is_rooted": [False] * 4,
    })
    events["ts"] = events["ts"].astype("datetime64[us, UTC]")
    blacklist = pd.DataFrame({
        "entity_type": ["device", "counterparty"], "entity_value": ["D1", "C"],
        "listed_at": pd.to_datetime([T + m("5min"), T - m("1D")], utc=True).astype("datetime64[us, UTC]"),
        "delisted_at": pd.to_datetime([T + m("60min"), None], utc=True).astype("datetime64[us, UTC]"),
        "source": ["bank", "regulator"], "reason": ["x", "y"],
    })
    labels = pd.DataFrame({
        "tx_id": ["t0"], "is_fraud": [True],
        "reported_at": pd.to_datetime([T + m("10min")], utc=True).astype("datetime64[us, UTC]"),
        "source": ["manual_review"], "fraud_type": ["card_testing"],
    })
    accounts = pd.DataFrame({
        "account_id": ["A", "B", "C"],
        "created_at": pd.to_datetime([T - m("10D"), T - m("400D"), T - m("2D")], utc=True)
        .astype("datetime64[us, UTC]"),
        "home_lat": [31.0, 30.0, 30.0], "home_lon": [121.0, 120.0, 120.0], "kyc_level": [2, 3, 0],
    })
    return {"transactions": tx, "events": events, "blacklist": blacklist, "labels": labels,
            "accounts": accounts}


def _by_id(tables, **kw):
    f = compute_features(tables, config=FeaturesConfig(small_amount=25), **kw)
    f.index = tables["transactions"]["tx_id"]
    return f


def test_velocity_by_hand_with_ties_and_edges(tiny):
    f = _by_id(tiny)
    # 10-minute window at t3 (10:15) is (10:05, 10:15): the 10:05 rows sit on the edge, out.
    assert f.loc["t3", "tx_count_10min"] == 1
    # t1 and t2 share 10:05: neither is "before" the other.
    assert f.loc["t1", "tx_count_10min"] == 2 and f.loc["t2", "tx_count_10min"] == 2
    assert f.loc["t2", "amount_sum_10min"] == 40
    assert f.loc["t3", "tx_count_1h"] == 4 and f.loc["t3", "amount_sum_1h"] == 65
    assert f.loc["t3", "amount_max_1h"] == 30
    # 1 h at t4 (11:00) is (10:00, 11:00): t0 at exactly 10:00 is out.
    assert f.loc["t4", "tx_count_1h"] == 4 and f.loc["t4", "amount_sum_1h"] == 155
    assert f.loc["t4", "amount_mean_1h"] == pytest.approx(155 / 4)
    assert f.loc["t3", "small_tx_count_10min"] == 1  # 5 < 25
    assert f.loc["t2", "small_tx_count_10min"] == 1  # t0 (10) yes, itself (30) no
    gap_to_previous = f["seconds_since_prev_tx"]
    assert math.isnan(gap_to_previous["t0"])
    assert gap_to_previous["t2"] == 300  # its tie t1 is not "previous"
    assert gap_to_previous["t4"] == 2700
    assert f.loc["t2", "distinct_counterparties_24h"] == 1
    assert f.loc["t3", "amount_to_mean_30d"] == pytest.approx(5 / 20)
    prior = np.array([10, 20, 30, 5])
    assert f.loc["t4", "amount_zscore"] == pytest.approx((100 - prior.mean()) / prior.std(ddof=1))


def test_channel_device_and_geography_by_hand(tiny):
    f = _by_id(tiny)
    assert f.loc["t0", "first_use_of_channel"] == 1 and f.loc["t1", "first_use_of_channel"] == 0
    assert f.loc["t2", "first_use_of_channel"] == 1  # first web payment
    assert f.loc["t0", "device_known_for_account"] == 0 and f.loc["t3", "device_known_for_account"] == 1
    assert f.loc["t4", "device_age_days_for_account"] == pytest.approx(1 / 24)
    assert f.loc["b0", "accounts_per_device_24h"] == 2  # A used D1 before, B now
    assert f.loc["t3", "distance_from_prev_km"] == pytest.approx(111.19, abs=0.1)
    assert f.loc["t3", "speed_from_prev_kmh"] == pytest.approx(111.19 / (10 / 60), rel=1e-3)
    assert math.isnan(f.loc["t2", "distance_from_prev_km"])  # no location
    assert f.loc["t3", "first_tx_in_region"] == 1 and f.loc["t4", "first_tx_in_region"] == 0
    assert f.loc["t0", "distance_from_home_km"] == pytest.approx(0.0, abs=1e-6)
    assert f.loc["t0", "account_age_days"] == pytest.approx(10)
    assert f.loc["t1", "counterparty_age_days"] == pytest.approx(2 + 5 / 1440)


def test_behaviour_counterparty_merchant_blacklist_by_hand(tiny):
    f = _by_id(tiny)
    # The failed login at exactly 10:00 is not before the 10:00 payment.
    assert f.loc["t0", "login_failed_count_1h"] == 1
    assert f.loc["t1", "login_failed_count_1h"] == 2
    assert f.loc["t0", "minutes_since_password_reset"] == pytest.approx(120)
    assert math.isnan(f.loc["t0", "minutes_since_device_bind"])
    assert f.loc["t2", "device_emulator_seen"] == 1 and f.loc["t1", "device_emulator_seen"] == 0
    assert f.loc["t2", "login_distance_km"] != f.loc["t2", "login_distance_km"]  # t2 has no location
    assert f.loc["t3", "login_distance_km"] == pytest.approx(111.19, abs=0.1)
    assert f.loc["b0", "counterparty_inbound_count_24h"] == 3
    assert f.loc["b0", "counterparty_distinct_payers_24h"] == 2
    assert math.isnan(f.loc["t0", "counterparty_inbound_count_24h"])
    # t0's fraud report arrived at 10:10: t3 (10:15) sees it, t0 itself does not.
    assert f.loc["t0", "merchant_fraud_reports_1d"] == 0
    assert f.loc["t3", "merchant_fraud_reports_1d"] == 1
    assert f.loc["t3", "merchant_fraud_rate_1d"] == 1.0  # 1 report / 1 earlier tx at M1
    assert f.loc["t4", "merchant_fraud_rate_1d"] == 0.5
    # D1 is listed from 10:05 (inclusive) until 11:00 (exclusive).
    assert f.loc["t0", "blacklist_device_hit"] == 0
    assert f.loc["t1", "blacklist_device_hit"] == 1
    assert f.loc["t4", "blacklist_device_hit"] == 0
    assert f.loc["t1", "blacklist_counterparty_hit"] == 1
    assert math.isnan(f.loc["t0", "blacklist_counterparty_hit"])  # no payee
    assert f.loc["t1", "blacklist_days_since_listing"] == 0  # the device, listed just now
    assert f.loc["t1", "blacklist_source"] == "bank"
    assert f.loc["t0", "blacklist_source"] != f.loc["t0", "blacklist_source"]  # missing


@pytest.mark.parametrize("merchant_listed", ["5min", "6min"])
def test_the_newest_listing_names_the_source_whatever_the_catalog_order(tiny, merchant_listed):
    """t3 pays merchant M1 on device D1, both listed: the newer listing gives the source;
    listed at the same time, the device's (entity order: account, device, ip,
    counterparty, merchant), however the catalog orders the hit features."""
    bl = tiny["blacklist"]
    extra = pd.DataFrame({"entity_type": ["merchant"], "entity_value": ["M1"],
                          "listed_at": [T + pd.Timedelta(merchant_listed)],
                          "delisted_at": pd.Series([pd.NaT], dtype=bl["delisted_at"].dtype),
                          "source": ["regulator"], "reason": ["z"]}).astype(bl.dtypes.to_dict())
    tables = {**tiny, "blacklist": pd.concat([bl, extra], ignore_index=True)}
    expected = "bank" if merchant_listed == "5min" else "regulator"
    by_name = {f.name: f for f in CATALOG}
    for names in (("blacklist_device_hit", "blacklist_merchant_hit", "blacklist_source"),
                  ("blacklist_merchant_hit", "blacklist_device_hit", "blacklist_source"),
                  ("blacklist_days_since_listing", "blacklist_source")):
        f = _by_id(tables, catalog=tuple(by_name[n] for n in names))
        assert f.loc["t3", "blacklist_source"] == expected, names
    f = _by_id(tables)
    assert f.loc["t3", "blacklist_merchant_hit"] == 1 and f.loc["t3", "blacklist_device_hit"] == 1
    assert f.loc["t3", "blacklist_days_since_listing"] == pytest.approx(
        (pd.Timedelta("15min") - pd.Timedelta(merchant_listed)) / pd.Timedelta("1D"))


def test_calendar_fields_match_pandas_including_before_1970(tiny):
    times = pd.to_datetime(["1969-12-31 23:59:59", "1970-01-01 00:00:00", "2024-02-29 06:59:59",
                            "2024-03-31 02:30:00", "2026-01-05 07:00:00"], utc=True)
    tx = pd.concat([tiny["transactions"].iloc[[0]]] * len(times), ignore_index=True)
    tx["ts"], tx["tx_id"] = times.astype("datetime64[us, UTC]"), [f"x{i}" for i in range(len(times))]
    names = ("hour_of_day", "day_of_week", "is_night")
    f = compute_features({"transactions": tx}, config=FeaturesConfig(night_end_hour=7),
                         catalog=tuple(x for x in CATALOG if x.name in names))
    assert f["hour_of_day"].tolist() == [23, 0, 6, 2, 7] == times.hour.tolist()
    assert f["day_of_week"].tolist() == [2, 3, 3, 6, 0] == times.day_of_week.tolist()
    assert f["is_night"].tolist() == [0, 1, 1, 1, 0]


def test_queries_outside_the_history_match_rows(tiny):
    by_rows = compute_features(tiny, rows=[3, 4])
    by_frame = compute_features(tiny, queries=tiny["transactions"].iloc[[3, 4]])
    pd.testing.assert_frame_equal(by_rows, by_frame)


# --------------------------------------------------------------------------- reference


def _hav(a, b, c, d):
    p1, p2 = math.radians(a), math.radians(c)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(d - b) / 2) ** 2
    return 6371.0088 * 2 * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def _nan(x):
    return x is None or (isinstance(x, float) and math.isnan(x))


SETTINGS = ("small_amount", "region_cell_deg", "far_from_home_km", "large_amount_ratio",
            "night_end_hour")
_BL = (("account", "account_id", ("account",)), ("device", "device_id", ("device",)),
       ("ip", "ip", ("ip",)), ("counterparty", "counterparty_id", ("counterparty", "account")),
       ("merchant", "merchant_id", ("merchant",)))
_ALIAS = {"account": "account_id", "device": "device_id", "counterparty": "counterparty_id",
          "merchant": "merchant_id", "region": "_region"}
_UNIT = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def reference_features(tables, cfg, catalog=CATALOG):
    """Every feature of ``catalog``, read from its declaration and computed by plain loops
    over plain Python records: nothing shared with the engine but the expression parser."""
    from fraudlab.features._expr import evaluate_row, parse

    tx = tables["transactions"].to_dict("records")
    ev = tables["events"].to_dict("records") if "events" in tables else []
    bl = tables["blacklist"].to_dict("records") if "blacklist" in tables else []
    lab = tables["labels"].to_dict("records") if "labels" in tables else []
    accounts = {}
    for r in (tables["accounts"].to_dict("records") if "accounts" in tables else []):
        accounts.setdefault(r["account_id"], r)
    tx_of = {r["tx_id"]: r for r in tx}
    settings = {k: getattr(cfg, k) for k in SETTINGS} | dict(cfg.params)
    cell = cfg.region_cell_deg

    def region(r):
        if _nan(r.get("lat")) or _nan(r.get("lon")):
            return None
        return (math.floor(r["lat"] / cell), math.floor(r["lon"] / cell))

    def key(r, entity):
        parts = [_ALIAS.get(p, p) for p in entity.split("+")]
        vals = [region(r) if p == "_region" else r.get(p) for p in parts]
        return None if any(_nan(v) for v in vals) else tuple(vals)

    def passes(f, r):
        return f.where is None or evaluate_row(parse(f.where), {**settings, **r}) is True

    out = []
    for q in tx:
        t = q["ts"]
        row = {}
        for f in catalog:
            row[f.name] = _reference_value(f, q, t, row, tx, ev, bl, lab, accounts, tx_of,
                                           settings, key, passes)
        out.append(row)
    return pd.DataFrame(out)


def _reference_value(f, q, t, row, tx, ev, bl, lab, accounts, tx_of, settings, key, passes):
    from fraudlab.features._expr import evaluate_row, parse

    w = parse_duration(f.window) if f.window else None

    def inside(ts):
        return ts < t and (w is None or ts > t - w)

    if f.agg == "expr":
        v = evaluate_row(parse(f.expr), {**settings, **q, **row})
        return math.nan if v is None else float(v)
    if f.source == "transactions" and f.agg == "value":
        v = q[f.of]
        return (None if _nan(v) else str(v)) if f.kind == "category" else float(v)
    if f.source == "accounts":
        acct = accounts.get(q[_ALIAS[f.entity]])
        if acct is None:
            return math.nan
        if f.agg == "value":
            return float(acct[f.of])
        if f.agg == "age":
            created = acct[f.of]
            return (t - created).total_seconds() / _UNIT[f.unit] if created <= t else math.nan
        lat, lon = (acct[c] for c in f.of)
        if _nan(lat) or _nan(lon) or _nan(q["lat"]) or _nan(q["lon"]):
            return math.nan
        return _hav(lat, lon, q["lat"], q["lon"])
    if f.source == "blacklist":
        def active(types, value):
            return [b for b in bl if b["entity_type"] in types and b["entity_value"] == value
                    and b["listed_at"] <= t and (pd.isna(b["delisted_at"]) or t < b["delisted_at"])]
        if f.agg == "blacklist_hit":
            _, col, types = next(x for x in _BL if x[0] == f.entity)
            return math.nan if _nan(q[col]) else (1.0 if active(types, q[col]) else 0.0)
        newest = None  # (listed_at, -entity rank, source): the newest, then the first entity
        for rank, (_, col, types) in enumerate(_BL):
            if _nan(q[col]):
                continue
            for b in active(types, q[col]):
                cand = (b["listed_at"], -rank, b["source"])
                newest = cand if newest is None or cand[:2] > newest[:2] else newest
        if f.agg == "blacklist_days":
            return math.nan if newest is None else (t - newest[0]).total_seconds() / 86400
        return None if newest is None else newest[2]
    k = key(q, f.entity)
    if k is None:
        return math.nan
    if f.source == "labels":
        reports = [r["reported_at"] for r in lab if r["is_fraud"] and r["tx_id"] in tx_of
                   and key(tx_of[r["tx_id"]], f.entity) == k and inside(r["reported_at"])]
        if f.agg == "fraud_reports":
            return float(len(reports))
        n_tx = sum(1 for r in tx if key(r, f.entity) == k and inside(r["ts"]))
        return len(reports) / n_tx if n_tx else 0.0
    data = tx if f.source == "transactions" else ev
    rows = [r for r in data if key(r, f.entity) == k and inside(r["ts"]) and passes(f, r)]
    cur = [q] if f.include_current and passes(f, q) else []
    vals = [r[f.of] for r in rows + cur] if f.of else []
    if f.agg == "count":
        v = len(rows) + len(cur)
    elif f.agg == "sum":
        v = sum(vals)
    elif f.agg == "mean":
        v = sum(vals) / len(vals) if vals else math.nan
    elif f.agg in ("max", "min"):
        vals = [x for x in vals if not _nan(x)]
        v = (max(vals) if f.agg == "max" else min(vals)) if vals else math.nan
    elif f.agg == "std":
        v = float(np.std(vals, ddof=1)) if len(vals) >= 2 else math.nan
    elif f.agg == "nunique":
        v = len({x for x in vals if not _nan(x)})
    elif f.agg == "since_last":
        v = (t - max(r["ts"] for r in rows)).total_seconds() / _UNIT[f.unit] if rows else math.nan
    elif f.agg == "since_first":
        v = (t - min(r["ts"] for r in rows)).total_seconds() / _UNIT[f.unit] if rows else 0.0
    elif f.agg == "first_use":
        v = 0.0 if rows else 1.0
    elif f.agg == "seen_before":
        v = 1.0 if rows else 0.0
    elif f.agg == "ratio_to_mean":
        mean = sum(vals) / len(vals) if vals else math.nan
        v = q[f.of] / mean if vals and mean > 0 else math.nan
    elif f.agg == "zscore":
        if len(vals) < 2:
            v = math.nan
        else:
            sd = float(np.std(vals, ddof=1))
            v = (q[f.of] - np.mean(vals)) / sd if sd > 1e-9 else math.nan
    elif f.agg in ("last_distance", "last_speed"):
        located = [r for r in rows if not _nan(r["lat"]) and not _nan(r["lon"])]
        if not located or _nan(q["lat"]) or _nan(q["lon"]):
            v = math.nan
        else:
            # The last earlier row; among rows tied at that instant, the last in the table.
            newest = max(r["ts"] for r in located)
            last = [r for r in located if r["ts"] == newest][-1]
            d = _hav(last["lat"], last["lon"], q["lat"], q["lon"])
            hours = max((t - last["ts"]).total_seconds() / 3600, 1 / 60)
            v = d if f.agg == "last_distance" else d / hours
    else:
        raise AssertionError(f.agg)
    return float(v)


def _assert_equal_to_reference(fast, slow, atol=1e-9):
    """Equal within float32's precision (features are stored as float32)."""
    for name in slow.columns:
        if fast[name].dtype == "category":
            got = [None if _nan(x) else x for x in fast[name].astype(object)]
            assert got == [None if _nan(x) else x for x in slow[name]], name
            continue
        rtol = 1e-9 if fast[name].dtype == np.float64 else 1e-6
        np.testing.assert_allclose(fast[name].to_numpy(dtype=float),
                                   slow[name].to_numpy(dtype=float).astype(fast[name].dtype),
                                   rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


def _world_with_ties(seed):
    w = simulate_world(SimulationConfig(accounts=40, days=12, seed=seed, history_days=2))
    tables = {k: v.copy() for k, v in w.tables().items()}
    # Round times to the minute so that ties and exact window edges are common.
    for name, cols in (("transactions", ["ts"]), ("events", ["ts"]), ("labels", ["reported_at"]),
                       ("blacklist", ["listed_at", "delisted_at"])):
        for c in cols:
            tables[name][c] = tables[name][c].dt.floor("min")
    tables["transactions"] = tables["transactions"].sort_values("ts", kind="stable").reset_index(drop=True)
    return tables


@pytest.mark.parametrize("seed", [1, 2])
def test_engine_equals_the_naive_reference(seed):
    tables = _world_with_ties(seed)
    cfg = FeaturesConfig()
    fast = compute_features(tables, config=cfg)
    slow = reference_features(tables, cfg)
    assert list(slow.columns) == [f.name for f in CATALOG]
    _assert_equal_to_reference(fast, slow)


def test_windows_of_the_rows_themselves_equal_windows_searched_per_query():
    """Scoring most of the history computes every row's window in one ordered pass; scoring
    the same transactions as separate queries searches for each one's window. Both agree,
    ties at the same second and window edges included."""
    tables = _world_with_ties(5)
    tx = tables["transactions"]
    rows = np.arange(len(tx) // 5, len(tx))  # 80 %: the ordered pass
    by_rows = compute_features(tables, rows=rows)
    by_queries = compute_features(tables, queries=tx.iloc[rows])
    pd.testing.assert_frame_equal(by_rows, by_queries)


def test_the_order_of_the_rows_does_not_change_the_features():
    """Tables and queries in any row order (a notebook's frames): the same features per
    transaction. Times are made distinct, so no row order is ever needed to break a tie."""
    tables = {k: v.copy() for k, v in simulate_world(SimulationConfig(accounts=40, days=12, seed=4, history_days=2))
              .tables().items()}
    for name, col in (("transactions", "ts"), ("events", "ts"), ("blacklist", "listed_at")):
        t = tables[name]
        t[col] = t[col] + pd.to_timedelta(np.arange(len(t)), unit="us")
    tx = tables["transactions"]
    assert not tx["ts"].duplicated().any() and tx["ts"].is_monotonic_increasing
    expected = compute_features(tables).set_axis(tx["tx_id"])
    shuffled = {k: v.sample(frac=1.0, random_state=i).reset_index(drop=True)
                for i, (k, v) in enumerate(tables.items())}
    got = compute_features(shuffled).set_axis(shuffled["transactions"]["tx_id"])
    pd.testing.assert_frame_equal(got.loc[expected.index], expected)
    rows = np.array([30, 3, 17, 4])  # queries out of time order, from the sorted history
    pd.testing.assert_frame_equal(compute_features(tables, rows=rows),
                                  expected.iloc[rows].reset_index(drop=True))


def test_few_rows_in_a_large_vocabulary_match_the_naive_reference():
    """Few transactions scored against a vocabulary far larger than the data: the engine
    numbers only the codes present instead of a segment table for every code."""
    tables = _world_with_ties(3)
    accounts = tables["accounts"]
    extra = accounts.iloc[[0] * 40_000].reset_index(drop=True)
    extra["account_id"] = [f"Z{i:06d}" for i in range(len(extra))]
    padded = {**tables, "accounts": pd.concat([accounts, extra], ignore_index=True)}
    n = len(tables["transactions"])
    assert 4 * (n + n) + 1024 < len(extra)  # the sparse case, for every account side
    rows = np.arange(n - 6, n)
    fast = compute_features(padded, rows=rows)
    slow = reference_features(tables, FeaturesConfig()).iloc[rows].reset_index(drop=True)
    _assert_equal_to_reference(fast, slow)


# --------------------------------------------------------------------------- leakage


@pytest.fixture(scope="module")
def leak_world():
    return _world_with_ties(7)


def _perturb_future(tables, cut, mode):
    """Change or remove everything known only from ``cut`` on."""
    out = {k: v.copy() for k, v in tables.items()}
    tx, ev, lab, bl = out["transactions"], out["events"], out["labels"], out["blacklist"]
    late_tx, late_ev = tx["ts"] >= cut, ev["ts"] >= cut
    if mode == "remove":
        out["transactions"] = tx[~late_tx].reset_index(drop=True)
        out["events"] = ev[~late_ev]
        out["labels"] = lab[(lab["reported_at"] < cut) & lab["tx_id"].isin(out["transactions"]["tx_id"])]
        out["blacklist"] = bl[bl["listed_at"] < cut]
        out["accounts"] = out["accounts"][out["accounts"]["created_at"] < cut]
    else:
        tx.loc[late_tx, "amount"] = tx.loc[late_tx, "amount"] * 7 + 1
        tx.loc[late_tx, "device_id"] = "D_future"
        ev.loc[late_ev, "event_type"] = "login_failed"
        lab.loc[lab["reported_at"] >= cut, "is_fraud"] = True
        # Future listings of the very entities the past used.
        extra = pd.DataFrame({"entity_type": "device", "entity_value": tx["device_id"].dropna().unique()[:20]})
        extra["listed_at"] = pd.Series([cut] * len(extra), dtype="datetime64[us, UTC]")
        extra["delisted_at"] = pd.Series([pd.NaT] * len(extra), dtype="datetime64[us, UTC]")
        extra["source"], extra["reason"] = "internal", "future"
        out["blacklist"] = pd.concat([bl, extra], ignore_index=True)
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(0.05, 0.95), mode=st.sampled_from(["remove", "change"]))
def test_the_future_never_changes_the_past(leak_world, frac, mode):
    tx = leak_world["transactions"]
    cut = tx["ts"].quantile(frac).floor("min")
    past = np.flatnonzero((tx["ts"] < cut).to_numpy())
    assert len(past) > 0  # frac >= 0.05 of a world of a few hundred rows
    before = compute_features(leak_world, rows=past)
    after = compute_features(_perturb_future(leak_world, cut, mode), rows=past)
    pd.testing.assert_frame_equal(before, after)


def test_known_at_drops_what_was_not_known(leak_world):
    cut = leak_world["transactions"]["ts"].quantile(0.5)
    seen = known_at(leak_world, cut)
    assert (seen["transactions"]["ts"] < cut).all()
    assert (seen["labels"]["reported_at"] <= cut).all()
    assert not (seen["blacklist"]["delisted_at"] > cut).any()
