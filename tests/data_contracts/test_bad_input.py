"""Bad input: each corruption must name the failing rule, column and count, and
quarantine exactly the bad rows."""

import numpy as np
import pandas as pd
import pytest

from fraudlab.data_contracts import validate_raw
from fraudlab.features import SourceError, SourcesConfig, load_raw


def _check(folder, as_of, config=None):
    return validate_raw(load_raw(folder, config).tables, as_of=as_of)


def _rewrite(folder, table, fn):
    path = folder / f"{table}.parquet"
    frame = pd.read_parquet(path)
    fn(frame).to_parquet(path, index=False)
    return frame


def _only_failure(report):
    failures = report.failures
    assert len(failures) == 1, [f.line() for f in failures]
    return failures[0]


def _set(frame, rows, column, value):
    out = frame.copy()
    if out[column].dtype.kind in "fiub" and isinstance(value, float):
        out[column] = out[column].astype(float)
    out.loc[rows, column] = value
    return out


def test_missing_column_is_a_table_failure(world_dir, as_of):
    _rewrite(world_dir, "transactions", lambda f: f.drop(columns="amount"))
    report = _check(world_dir, as_of)
    f = _only_failure(report)
    assert (f.table, f.rule, f.column, f.level) == ("transactions", "exact column set", "amount", "table")
    assert "missing column(s) ['amount']" in f.line()
    assert "transactions.parquet" in f.line()
    assert len(report.quarantine) == 0  # the table is unusable, not some rows


def test_wrong_dtype(world_dir, as_of):
    frame = _rewrite(world_dir, "transactions",
                     lambda f: f.assign(amount=["n/a"] * len(f)))
    f = _only_failure(_check(world_dir, as_of))
    assert (f.rule, f.expectation, f.column, f.failing_count) == (
        "amount is of kind float", "dtype", "amount", len(frame))


def test_negative_amount(world_dir, as_of):
    rows = [3, 10, 11]
    _rewrite(world_dir, "transactions", lambda f: _set(f, rows, "amount", -1.5))
    report = _check(world_dir, as_of)
    f = _only_failure(report)
    assert (f.column, f.expectation, f.failing_count) == (
        "amount", "expect_column_values_to_be_between", 3)
    assert f.rule.startswith("amount >= 0")
    assert report.quarantined_rows("transactions").tolist() == rows
    assert set(report.quarantine["reasons"]) == {"amount out of range (amount >= 0 and amount <= 1e+07)"}


def test_missing_amount(world_dir, as_of):
    _rewrite(world_dir, "transactions", lambda f: _set(f, [0, 7], "amount", np.nan))
    f = _only_failure(_check(world_dir, as_of))
    assert (f.rule, f.column, f.failing_count) == ("amount is not null", "amount", 2)


def test_duplicate_tx_id_quarantines_every_copy(world_dir, as_of):
    def dup(f):
        f = f.copy()
        f.loc[5, "tx_id"] = f.loc[4, "tx_id"]
        return f

    _rewrite(world_dir, "transactions", dup)
    report = _check(world_dir, as_of)
    f = _only_failure(report)
    assert (f.rule, f.column, f.failing_count) == ("tx_id is unique", "tx_id", 2)
    assert report.quarantined_rows("transactions").tolist() == [4, 5]


def test_null_timestamp(world_dir, as_of):
    _rewrite(world_dir, "transactions", lambda f: _set(f, [20, 21], "ts", pd.NaT))
    f = _only_failure(_check(world_dir, as_of))
    assert (f.rule, f.column, f.failing_count) == ("ts is not null", "ts", 2)


def test_timestamps_in_the_future(world_dir):
    tx = pd.read_parquet(world_dir / "transactions.parquet")
    as_of = tx["ts"].iloc[-5]  # the last few transactions lie after it
    late = int((tx["ts"] > as_of).sum())
    report = validate_raw(load_raw(world_dir, tables=("transactions",)).tables, as_of=as_of)
    f = _only_failure(report)
    assert f.column == "ts" and f.failing_count == late > 0
    assert f.rule.startswith("ts between 2000-01-01 and as-of")


def test_unknown_enumeration_value(world_dir, as_of):
    _rewrite(world_dir, "transactions", lambda f: _set(f, [1, 2, 3, 4], "channel", "carrier_pigeon"))
    report = _check(world_dir, as_of)
    f = _only_failure(report)
    assert (f.column, f.expectation, f.failing_count) == (
        "channel", "expect_column_values_to_be_in_set", 4)
    assert f.examples[0] == "carrier_pigeon"


def test_label_for_unknown_transaction(world_dir, as_of):
    def ghost(f):
        f = f.copy()
        f.loc[[0, 1], "tx_id"] = ["T999999998", "T999999999"]
        return f

    _rewrite(world_dir, "labels", ghost)
    report = _check(world_dir, as_of)
    f = _only_failure(report)
    assert (f.table, f.rule, f.column, f.failing_count) == (
        "labels", "tx_id refers to a known transaction", "tx_id", 2)
    assert sorted(report.quarantine["key"]) == ["T999999998", "T999999999"]


def test_label_reported_before_its_transaction(world_dir, as_of):
    tx = pd.read_parquet(world_dir / "transactions.parquet").set_index("tx_id")["ts"]

    def early(f):
        f = f.copy()
        f.loc[0, "reported_at"] = tx[f.loc[0, "tx_id"]] - pd.Timedelta("1h")
        return f

    _rewrite(world_dir, "labels", early)
    f = _only_failure(_check(world_dir, as_of))
    assert (f.rule, f.column, f.failing_count) == ("reported_at >= the transaction's ts", "reported_at", 1)


def test_delisted_before_listed(world_dir, as_of):
    def swap(f):
        f = f.copy()
        f.loc[0, "delisted_at"] = f.loc[0, "listed_at"] - pd.Timedelta("3D")
        return f

    _rewrite(world_dir, "blacklist", swap)
    report = _check(world_dir, as_of)
    f = _only_failure(report)
    assert (f.table, f.rule, f.column, f.failing_count) == (
        "blacklist", "delisted_at >= listed_at", "delisted_at", 1)
    assert report.quarantined_rows("blacklist").tolist() == [0]


def test_empty_file_is_named(world_dir):
    (world_dir / "events.parquet").write_bytes(b"")
    with pytest.raises(SourceError) as err:
        load_raw(world_dir)
    assert "events.parquet" in str(err.value) and "empty" in str(err.value)


def test_table_without_rows(world_dir, as_of):
    _rewrite(world_dir, "events", lambda f: f.iloc[:0])
    f = _only_failure(_check(world_dir, as_of))
    assert (f.table, f.rule, f.level, f.failing_count) == ("events", "at least one row", "table", 0)
    assert "no rows" in f.line()


def test_unreadable_file_is_named(world_dir):
    (world_dir / "transactions.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(SourceError) as err:
        load_raw(world_dir)
    assert "transactions.parquet" in str(err.value) and "cannot be read" in str(err.value)


def test_column_map_naming_a_missing_column(world_dir):
    cfg = SourcesConfig(column_map={"transactions": {"amount": "TransactionAmt"}})
    with pytest.raises(SourceError) as err:
        load_raw(world_dir, cfg)
    msg = str(err.value)
    assert "transactions.parquet" in msg and "'TransactionAmt' (for amount)" in msg


def test_unparseable_values_in_a_csv_are_quarantined(world_dir, as_of):
    tx = pd.read_parquet(world_dir / "transactions.parquet")
    tx["amount"] = tx["amount"].astype(str)
    tx.loc[[6, 9], "amount"] = ["abc", "12,5"]
    (world_dir / "transactions.parquet").unlink()
    tx.to_csv(world_dir / "transactions.csv", index=False)
    report = _check(world_dir, as_of)
    f = _only_failure(report)
    assert (f.rule, f.column, f.failing_count) == ("amount is a valid float", "amount", 2)
    assert f.examples == ["abc", "12,5"]
    assert report.quarantined_rows("transactions").tolist() == [6, 9]


def test_several_problems_at_once_keep_good_rows_out_of_quarantine(world_dir, as_of):
    def corrupt(f):
        f = _set(f, [2], "amount", -3.0)
        f = _set(f, [2, 8], "tx_type", "gift")
        return f

    tx = _rewrite(world_dir, "transactions", corrupt)
    report = _check(world_dir, as_of)
    assert sorted((r.column, r.failing_count) for r in report.failures) == [
        ("amount", 1), ("tx_type", 2)]
    q = report.quarantine
    assert q["row"].tolist() == [2, 8]
    assert q.loc[q["row"] == 2, "reasons"].item().count(";") == 1  # both reasons, one row
    assert len(q) < len(tx)
