import duckdb
import pandas as pd
import pytest

from fraudlab.data_contracts import validate_raw
from fraudlab.features import SourcesConfig, load_raw, normalise_table


def test_column_map_renames_a_users_frame_without_touching_it(small_world):
    user = small_world.transactions.rename(columns={"tx_id": "TransactionID", "amount": "Amt"})
    before = user.copy()
    cfg = SourcesConfig(column_map={"transactions": {"tx_id": "TransactionID", "amount": "Amt"}})
    raw = load_raw({"transactions": user}, cfg)
    pd.testing.assert_frame_equal(raw.frame("transactions"), small_world.transactions)
    pd.testing.assert_frame_equal(user, before)


def test_csv_and_parquet_load_identically(world_dir, tmp_path):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for name in ("transactions", "labels", "blacklist"):
        pd.read_parquet(world_dir / f"{name}.parquet").to_csv(csv_dir / f"{name}.csv", index=False)
    a, b = load_raw(world_dir), load_raw(csv_dir)
    for name in ("transactions", "labels", "blacklist"):
        pd.testing.assert_frame_equal(a.frame(name), b.frame(name), check_exact=False, rtol=1e-12)
        assert not b.tables[name].parse_failures


def test_naive_timestamps_are_read_in_the_configured_zone():
    tx = pd.DataFrame({"tx_id": ["t1"], "ts": ["2026-03-01 08:00:00"]})
    t = normalise_table(tx, "transactions", "x.csv", SourcesConfig(naive_timezone="Asia/Shanghai"))
    assert t.frame["ts"].iloc[0] == pd.Timestamp("2026-03-01 00:00:00", tz="UTC")


def test_is_fraud_column_becomes_labels_with_the_default_delay(small_world):
    tx = small_world.transactions.head(50).copy()
    tx["is_fraud"] = [True] + [False] * 49
    raw = load_raw({"transactions": tx}, SourcesConfig(default_label_delay="10d"))
    labels = raw.frame("labels")
    assert "is_fraud" not in raw.frame("transactions").columns
    assert len(labels) == 50 and labels["is_fraud"].sum() == 1
    assert (labels["reported_at"] - tx["ts"].reset_index(drop=True) == pd.Timedelta("10D")).all()
    assert raw.tables["labels"].derived == "reported_at = ts + 10d"


def test_labels_without_arrival_times_get_the_default_delay(small_world):
    labels = small_world.labels[["tx_id", "is_fraud"]].copy()
    raw = load_raw({"transactions": small_world.transactions, "labels": labels},
                   SourcesConfig(default_label_delay="7d"))
    got = raw.frame("labels").merge(small_world.transactions[["tx_id", "ts"]], on="tx_id")
    assert (got["reported_at"] - got["ts"] == pd.Timedelta("7D")).all()
    assert list(raw.frame("labels").columns) == ["tx_id", "is_fraud", "reported_at", "source",
                                                 "fraud_type"]


def test_as_of_keeps_only_what_was_known_then(small_world):
    as_of = small_world.transactions["ts"].quantile(0.5)
    raw = load_raw(small_world.tables(), as_of=as_of)
    assert (raw.frame("transactions")["ts"] < as_of).all()
    assert (raw.frame("labels")["reported_at"] <= as_of).all()
    bl = raw.frame("blacklist")
    assert (bl["listed_at"] <= as_of).all()
    assert not (bl["delisted_at"] > as_of).any()  # a later delisting is not known yet
    assert len(raw.frame("transactions")) < len(small_world.transactions)


def test_duckdb_source(small_world, tmp_path, as_of):
    path = tmp_path / "raw.duckdb"
    with duckdb.connect(str(path)) as con:
        for name, frame in small_world.tables().items():
            con.register("f", frame)
            con.execute(f"create table {name} as select * from f")
            con.unregister("f")
    raw = load_raw(tmp_path, SourcesConfig(format="duckdb", sql_url=str(path)))
    assert set(raw.tables) == set(small_world.tables())
    assert raw.tables["transactions"].origin.endswith(":transactions")
    assert validate_raw(raw.tables, as_of=as_of).success


def test_sql_source_hides_the_password_and_reads_env(small_world, tmp_path, monkeypatch):
    import sqlalchemy as sa

    db = tmp_path / "raw.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    small_world.transactions.head(20).to_sql("payments", engine, index=False)
    engine.dispose()
    monkeypatch.setenv("FRAUDLAB_TEST_DB", str(db))
    cfg = SourcesConfig(format="sql", sql_url="sqlite:///${FRAUDLAB_TEST_DB}",
                        tables={"transactions": "payments"})
    raw = load_raw(tmp_path, cfg)
    assert len(raw.frame("transactions")) == 20
    assert str(raw.frame("transactions")["ts"].dtype) == "datetime64[us, UTC]"


def test_missing_transactions_is_an_error(tmp_path):
    from fraudlab.features import SourceError

    with pytest.raises(SourceError, match="no transactions table"):
        load_raw(tmp_path)


def test_a_public_style_dataset_through_the_column_map(tmp_path, as_of):
    """Columns as in the simulated dataset of the Fraud Detection Handbook
    (Le Borgne et al.): no channel, device, IP or location, an is_fraud flag on each row."""
    from fraudlab.features import build_dataset

    ts = pd.date_range("2026-01-01", periods=12, freq="6h", tz="UTC")
    public = pd.DataFrame({
        "TRANSACTION_ID": range(12), "TX_DATETIME": ts.tz_localize(None).astype(str),
        "CUSTOMER_ID": [1, 2] * 6, "TERMINAL_ID": [7, 8, 9] * 4,
        "TX_AMOUNT": [10.0, 20.0, 30.0] * 4, "TX_FRAUD": [0] * 11 + [1],
    })
    public.to_csv(tmp_path / "transactions.csv", index=False)
    cfg = SourcesConfig(
        column_map={"transactions": {"tx_id": "TRANSACTION_ID", "ts": "TX_DATETIME",
                                     "account_id": "CUSTOMER_ID", "merchant_id": "TERMINAL_ID",
                                     "amount": "TX_AMOUNT", "is_fraud": "TX_FRAUD"}},
        fill_missing={"transactions": {"counterparty_id": None, "currency": "EUR",
                                       "channel": "pos_card", "tx_type": "payment",
                                       "device_id": None, "ip": None, "lat": None, "lon": None}},
        default_label_delay="7d")
    raw = load_raw(tmp_path, cfg)
    report = validate_raw(raw.tables, as_of=as_of)
    assert report.success, [r.line() for r in report.failures]
    assert "channel = 'pos_card' (filled)" in raw.tables["transactions"].derived
    ds = build_dataset(raw, as_of).set_index("tx_id")
    # The Handbook's CUSTOMER_ID_NB_TX_1DAY_WINDOW: the customer's transactions in the last
    # day, the current one included; customer 1 pays every 12 hours.
    assert ds.loc["4", "tx_count_24h"] == 2  # 12:00 on day 1 and 00:00 on day 2 (24 h earlier is out)
    assert ds.loc["4", "amount_mean_24h"] == pytest.approx((30.0 + 20.0) / 2)
    assert ds["is_fraud"].sum() == 1


def test_fill_missing_only_fills_what_it_names(world_dir):
    from fraudlab.features import SourceError

    tx = pd.read_parquet(world_dir / "transactions.parquet").drop(columns=["lat", "lon"])
    raw = load_raw({"transactions": tx}, SourcesConfig(fill_missing={"transactions": {"lat": None}}))
    assert "lat" in raw.frame("transactions").columns
    assert "lon" not in raw.frame("transactions").columns  # the contract will name it
    with pytest.raises(SourceError, match="unknown canonical"):
        load_raw({"transactions": tx}, SourcesConfig(fill_missing={"transactions": {"latitude": 1.0}}))


def test_text_timestamps_with_and_without_offsets():
    from fraudlab.features import SourcesConfig, normalise_table

    frame = pd.DataFrame({"tx_id": ["a", "b", "c", "d"], "ts": [
        "2026-01-05",                 # a date alone: local midnight, not an offset of -05
        "2026-01-05 08:00:00",        # naive: local time
        "2026-01-05T08:00:00+08:00",  # an explicit offset
        "2026-01-05T00:00:00Z",
    ]})
    t = normalise_table(frame, "transactions", "<test>",
                        SourcesConfig(naive_timezone="Asia/Shanghai")).frame["ts"]
    assert t.tolist() == [pd.Timestamp("2026-01-04 16:00", tz="UTC"),
                          pd.Timestamp("2026-01-05 00:00", tz="UTC"),
                          pd.Timestamp("2026-01-05 00:00", tz="UTC"),
                          pd.Timestamp("2026-01-05 00:00", tz="UTC")]


def test_a_missing_sql_extra_names_the_install_command(tmp_path, monkeypatch):
    import sys

    from fraudlab._optional import MissingExtra

    monkeypatch.setitem(sys.modules, "duckdb", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"pip install 'fraudlab\[sql\]'"):
        load_raw(tmp_path, SourcesConfig(format="duckdb", sql_url=str(tmp_path / "x.duckdb")))


def test_a_column_mapped_onto_a_name_the_file_has_is_a_clear_error():
    """A card file with the holder's home (lat, long) and the merchant's place (merch_lat,
    merch_long): mapping merch_lat onto lat would leave two lat columns."""
    from fraudlab.features import SourceError

    cards = pd.DataFrame({"trans_num": ["t1", "t2"], "unix_time": [1_700_000_000, 1_700_000_060],
                          "cc_num": [11, 11], "amt": [10.0, 20.0], "lat": [40.1, 40.1],
                          "long": [-73.9, -73.9], "merch_lat": [40.5, 41.0],
                          "merch_long": [-74.0, -74.2]})
    mapping = {"tx_id": "trans_num", "ts": "unix_time", "account_id": "cc_num",
               "amount": "amt", "lat": "merch_lat", "lon": "merch_long"}
    with pytest.raises(SourceError, match=r"maps 'merch_lat' onto 'lat', but the file has its "
                                          r"own column of that name") as err:
        normalise_table(cards, "transactions", "cards.csv",
                        SourcesConfig(column_map={"transactions": mapping}))
    assert "cards.csv" in str(err.value)
    # Without the file's own lat and long, the same map works.
    table = normalise_table(cards.drop(columns=["lat", "long"]), "transactions", "cards.csv",
                            SourcesConfig(column_map={"transactions": mapping}))
    assert table.frame["lat"].tolist() == [40.5, 41.0]


def test_an_accounts_table_with_only_the_home_location(small_world):
    """Opening time and KYC level may be unknown: the account is known from the start, its
    home feeds the distance features, and its age and KYC level are missing, not invented."""
    from fraudlab.features import build_dataset

    homes = small_world.accounts[["account_id", "home_lat", "home_lon"]]
    tables = {**small_world.tables(), "accounts": homes}
    config = SourcesConfig(fill_missing={"accounts": {"created_at": None, "kyc_level": None}})
    as_of = small_world.transactions["ts"].quantile(0.8)
    raw = load_raw(tables, config, as_of=as_of)
    assert len(raw.frame("accounts")) == len(homes)  # none dropped for a missing opening time
    assert validate_raw(raw.tables, as_of=as_of).success
    ds = build_dataset(raw, as_of)
    assert ds["account_age_days"].isna().all() and ds["kyc_level"].isna().all()
    assert ds["distance_from_home_km"].notna().mean() > 0.5
