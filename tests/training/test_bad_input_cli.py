"""Bad input through the command line, as a scheduler runs it: every case ends with its exit
code, a message naming the file, column, rule and count, and exactly the bad rows in the
quarantine. Nothing is dropped unseen, and no case ends in a traceback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fraudlab.training._cli import (
    EXIT_CONTRACT,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_USAGE,
    app,
)

AS_OF = "2026-02-05"  # the small world runs 2025-12-02 .. 2026-02-09: some rows lie after it
runner = CliRunner()


@pytest.fixture
def project(tmp_path, world_dir):
    """A project whose raw folder is the small world; the test corrupts it."""
    raw = tmp_path / "raw"
    if not raw.exists():
        world_dir.rename(raw)
    return tmp_path


def _config(root, **sections) -> str:
    cfg = {"paths": {"raw": "raw"}, **sections}
    path = root / "fraudlab.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(root, *args, config=None):
    cfg = config or (root / "fraudlab.yaml" if (root / "fraudlab.yaml").exists()
                     else _config(root))
    result = runner.invoke(app, [*args, "-c", str(cfg)], terminal_width=250)
    # Failures a user can act on end in a message, never in a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _build(root, config=None):
    return _run(root, "features", "build", "--as-of", AS_OF, "--out",
                str(root / "ds.parquet"), config=config)


def _quarantine(root) -> dict[str, list[int]]:
    q = pd.read_parquet(root / "reports" / "contracts" / "quarantine.parquet")
    return {t: sorted(g["row"].tolist()) for t, g in q.groupby("table")}


def _frame(root, table):
    return pd.read_parquet(root / "raw" / f"{table}.parquet")


def _write(root, table, frame, fmt="parquet"):
    for old in (root / "raw").glob(f"{table}.*"):
        old.unlink()
    path = root / "raw" / f"{table}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _set(frame, rows, column, value):
    out = frame.copy()
    if isinstance(value, float) and out[column].dtype.kind in "iub":
        out[column] = out[column].astype(float)
    if isinstance(value, str) and out[column].dtype.kind not in "OU":
        out[column] = out[column].astype(object)
    out.loc[rows, column] = value
    return out


def _expect(result, code, *fragments):
    assert result.exit_code == code, result.output
    text = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in text, (fragment, result.output)


# ------------------------------------------------------------------ rows never cut unseen


def test_missing_timestamps_are_quarantined_not_cut_away(project):
    _write(project, "transactions", _set(_frame(project, "transactions"), [20, 21], "ts", pd.NaT))
    _expect(_build(project), EXIT_CONTRACT, "transactions.parquet", "column ts",
            "2 row(s) fail 'ts is not null'", "nothing registered")
    assert _quarantine(project) == {"transactions": [20, 21]}


def test_rows_after_the_as_of_time_are_counted_and_left_out(project):
    tx = _frame(project, "transactions")
    later = int((tx["ts"] >= pd.Timestamp(AS_OF, tz="UTC")).sum())
    assert later > 0
    result = _build(project)
    _expect(result, EXIT_OK, "left out of this period", f"transactions {later:,}")
    ds = pd.read_parquet(project / "ds.parquet")
    assert len(ds) == len(tx) - later


def test_rows_after_the_as_of_time_fail_when_configured_to(project):
    cut = pd.Timestamp(AS_OF, tz="UTC")
    expected = {}
    for table, column in (("transactions", "ts"), ("events", "ts"), ("labels", "reported_at"),
                          ("blacklist", "listed_at"), ("accounts", "created_at")):
        rows = np.flatnonzero((_frame(project, table)[column] > cut).to_numpy()).tolist()
        if rows:
            expected[table] = rows
    cfg = _config(project, contracts={"after_as_of": "quarantine"})
    n_tx = len(expected["transactions"])
    _expect(_build(project, cfg), EXIT_CONTRACT, "transactions.parquet: column ts:",
            f"{n_tx} row(s) fail 'ts between 2000-01-01 and as-of 2026-02-05")
    assert _quarantine(project) == expected


def test_epoch_milliseconds_in_parquet_are_a_type_error(project):
    tx = _frame(project, "transactions")
    tx["ts"] = tx["ts"].astype("int64") // 1000  # microseconds -> milliseconds
    _write(project, "transactions", tx)
    _expect(_build(project), EXIT_CONTRACT, "transactions.parquet: column ts:",
            "has type int64, expected timestamp")
    assert _quarantine(project) == {}


def test_epoch_milliseconds_among_csv_timestamps_are_quarantined(project):
    tx = _frame(project, "transactions").astype({"ts": object})
    tx.loc[[3, 4], "ts"] = "1767225600000"
    _write(project, "transactions", tx, "csv")
    _expect(_build(project), EXIT_CONTRACT, "transactions.csv: column ts:",
            "2 row(s) fail 'ts is a valid timestamp'", "1767225600000")
    assert _quarantine(project) == {"transactions": [3, 4]}


def test_a_label_of_a_transaction_without_time_names_the_transaction(project):
    tx = _frame(project, "transactions")
    labels = _frame(project, "labels")
    row = int(np.flatnonzero(tx["tx_id"].isin(labels["tx_id"]).to_numpy())[0])
    _write(project, "transactions", _set(tx, [row], "ts", pd.NaT))
    result = _build(project)
    _expect(result, EXIT_CONTRACT, "1 row(s) fail 'ts is not null'")
    assert "unknown transaction" not in result.output
    assert _quarantine(project) == {"transactions": [row]}


# ------------------------------------------------------------------ timestamps in text


def _as_text(tx, fmt):
    return tx.assign(ts=tx["ts"].dt.strftime(fmt))


def test_day_first_dates_are_refused_as_ambiguous(project):
    tx = _frame(project, "transactions")
    _write(project, "transactions", _as_text(tx, "%d/%m/%Y %H:%M:%S"), "csv")
    _expect(_build(project), EXIT_SOURCE, "transactions.csv", "column ts",
            "could be day/month or month/day", "sources.date_format")


def test_day_first_dates_read_with_the_configured_format(project):
    tx = _frame(project, "transactions")
    _write(project, "transactions", _as_text(tx, "%d/%m/%Y %H:%M:%S"), "csv")
    cfg = _config(project, sources={"date_format": "%d/%m/%Y %H:%M:%S"})
    _expect(_build(project, cfg), EXIT_OK)
    ds = pd.read_parquet(project / "ds.parquet")
    want = tx.set_index("tx_id")["ts"].dt.floor("s")
    assert (ds.set_index("tx_id")["ts"] == want.loc[ds["tx_id"]]).all()


def test_timestamps_with_several_utc_offsets(project):
    tx = _frame(project, "transactions")
    text = tx["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").astype(object)
    odd = np.arange(len(tx)) % 2 == 1  # every other one in UTC+08:00, as after a zone change
    text[odd] = tx["ts"][odd].dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    _write(project, "transactions", tx.assign(ts=text), "csv")
    _expect(_build(project), EXIT_OK)
    ds = pd.read_parquet(project / "ds.parquet").set_index("tx_id")["ts"]
    assert (ds == tx.set_index("tx_id")["ts"].loc[ds.index]).all()


def test_utc_times_mixed_with_naive_ones_read_naive_ones_in_the_configured_zone(project):
    tx = _frame(project, "transactions")
    text = tx["ts"].dt.strftime("%Y-%m-%d %H:%M:%S.%f").astype(object)
    text[::3] = tx["ts"][::3].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _write(project, "transactions", tx.assign(ts=text), "csv")
    _expect(_build(project), EXIT_OK)
    ds = pd.read_parquet(project / "ds.parquet").set_index("tx_id")["ts"]
    assert (ds == tx.set_index("tx_id")["ts"].loc[ds.index]).all()


@pytest.mark.parametrize(("column", "row", "value", "kind"), [
    ("ts", 7, "not a time", "timestamp"), ("amount", 6, "abc", "float")])
def test_a_csv_value_that_does_not_parse_is_quarantined(project, column, row, value, kind):
    tx = _frame(project, "transactions").astype({column: object})
    tx.loc[[row], column] = value
    _write(project, "transactions", tx, "csv")
    _expect(_build(project), EXIT_CONTRACT, f"transactions.csv: column {column}:",
            f"1 row(s) fail '{column} is a valid {kind}'", value)
    assert _quarantine(project) == {"transactions": [row]}


def test_a_semicolon_separated_csv_is_read(project):
    tx = _frame(project, "transactions")
    path = project / "raw" / "transactions.csv"
    (project / "raw" / "transactions.parquet").unlink()
    tx.to_csv(path, index=False, sep=";")
    _expect(_build(project), EXIT_OK)
    assert len(pd.read_parquet(project / "ds.parquet")) == int(
        (tx["ts"] < pd.Timestamp(AS_OF, tz="UTC")).sum())


# ------------------------------------------------------------------ booleans and empty tables


def test_blank_is_fraud_values(project):
    labels = _frame(project, "labels").astype({"is_fraud": object})
    labels.loc[[1, 2], "is_fraud"] = None
    _write(project, "labels", labels, "csv")
    _expect(_build(project), EXIT_CONTRACT, "labels.csv: column is_fraud:",
            "2 row(s) fail 'is_fraud is not null'")
    assert _quarantine(project) == {"labels": [1, 2]}


def test_non_boolean_is_fraud_values(project):
    labels = _frame(project, "labels").astype({"is_fraud": object})
    labels.loc[[0], "is_fraud"] = "maybe"
    _write(project, "labels", labels, "csv")
    _expect(_build(project), EXIT_CONTRACT, "labels.csv: column is_fraud:",
            "1 row(s) fail 'is_fraud is a valid bool'", "maybe")
    assert _quarantine(project) == {"labels": [0]}


@pytest.mark.parametrize("column", ["is_emulator", "is_rooted"])
def test_blank_environment_flags(project, column):
    events = _frame(project, "events").astype({column: object})
    events.loc[[4, 9], column] = None
    _write(project, "events", events, "csv")
    _expect(_build(project), EXIT_CONTRACT, f"events.csv: column {column}:",
            f"2 row(s) fail '{column} is not null'")
    assert _quarantine(project) == {"events": [4, 9]}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_transactions_table_without_rows(project, fmt):
    _write(project, "transactions", _frame(project, "transactions").iloc[:0], fmt)
    _expect(_build(project), EXIT_CONTRACT, f"transactions.{fmt}:", "the table has no rows")


def test_misnamed_label_columns(project):
    _write(project, "labels", _frame(project, "labels").rename(columns={"is_fraud": "fraud"}))
    _expect(_build(project), EXIT_CONTRACT, "labels.parquet:",
            "missing column(s) ['is_fraud']", "unexpected column(s) ['fraud']")
    assert _quarantine(project) == {}


# ------------------------------------------------------------------ row rules


def test_negative_amounts(project):
    _write(project, "transactions", _set(_frame(project, "transactions"), [3, 10, 11], "amount", -1.5))
    _expect(_build(project), EXIT_CONTRACT, "transactions.parquet: column amount:",
            "3 row(s) fail 'amount >= 0")
    assert _quarantine(project) == {"transactions": [3, 10, 11]}


def test_duplicate_transaction_ids_quarantine_every_copy(project):
    tx = _frame(project, "transactions")
    tx.loc[5, "tx_id"] = tx.loc[4, "tx_id"]
    _write(project, "transactions", tx)
    _expect(_build(project), EXIT_CONTRACT, "transactions.parquet: column tx_id:",
            "2 row(s) fail 'tx_id is unique'")
    assert _quarantine(project)["transactions"] == [4, 5]


def test_an_unknown_channel(project):
    _write(project, "transactions",
           _set(_frame(project, "transactions"), [1, 2], "channel", "carrier_pigeon"))
    _expect(_build(project), EXIT_CONTRACT, "transactions.parquet: column channel:",
            "2 row(s) fail 'channel in {", "carrier_pigeon")
    assert _quarantine(project) == {"transactions": [1, 2]}


def test_a_label_of_an_unknown_transaction(project):
    labels = _frame(project, "labels")
    labels.loc[[0, 1], "tx_id"] = ["T-GHOST-1", "T-GHOST-2"]
    _write(project, "labels", labels)
    _expect(_build(project), EXIT_CONTRACT, "labels.parquet: column tx_id:",
            "2 row(s) fail 'tx_id refers to a known transaction'")
    assert _quarantine(project) == {"labels": [0, 1]}


def test_a_label_reported_before_its_transaction(project):
    tx = _frame(project, "transactions").set_index("tx_id")["ts"]
    labels = _frame(project, "labels")
    labels.loc[0, "reported_at"] = tx[labels.loc[0, "tx_id"]] - pd.Timedelta("1h")
    _write(project, "labels", labels)
    _expect(_build(project), EXIT_CONTRACT, "labels.parquet: column reported_at:",
            "1 row(s) fail 'reported_at >= the transaction's ts'")
    assert _quarantine(project) == {"labels": [0]}


def test_delisted_before_listed(project):
    bl = _frame(project, "blacklist")
    bl.loc[0, "delisted_at"] = bl.loc[0, "listed_at"] - pd.Timedelta("3D")
    _write(project, "blacklist", bl)
    _expect(_build(project), EXIT_CONTRACT, "blacklist.parquet: column delisted_at:",
            "1 row(s) fail 'delisted_at >= listed_at'")
    assert _quarantine(project) == {"blacklist": [0]}


def test_a_missing_column(project):
    _write(project, "transactions", _frame(project, "transactions").drop(columns="amount"))
    _expect(_build(project), EXIT_CONTRACT, "transactions.parquet:", "missing column(s) ['amount']")
    assert _quarantine(project) == {}


def test_timestamps_in_the_future_fail_the_check(project):
    tx = _frame(project, "transactions")
    as_of = tx["ts"].iloc[-5]
    late = np.flatnonzero((tx["ts"] > as_of).to_numpy()).tolist()
    result = _run(project, "contracts", "check", "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                  "--report-dir", str(project / "reports" / "contracts"))
    _expect(result, EXIT_CONTRACT, "transactions.parquet: column ts:",
            f"{len(late)} row(s) fail 'ts between 2000-01-01 and as-of")
    assert _quarantine(project)["transactions"] == late


# ------------------------------------------------------------------ files that cannot be read


def test_no_transactions_table(project):
    (project / "raw" / "transactions.parquet").unlink()
    _expect(_build(project), EXIT_SOURCE, "no transactions table found")


def test_an_empty_file(project):
    (project / "raw" / "labels.parquet").write_bytes(b"")
    _expect(_build(project), EXIT_SOURCE, "labels.parquet", "the file is empty (0 bytes)")


def test_a_labels_file_that_is_a_directory(project):
    (project / "raw" / "labels.parquet").unlink()
    (project / "raw" / "labels.parquet").mkdir()
    _expect(_build(project), EXIT_SOURCE, "labels.parquet", "is a directory without Parquet files")


def test_a_parquet_file_with_a_zeroed_page(project):
    path = project / "raw" / "transactions.parquet"
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid - 2000:mid + 2000] = bytes(4000)
    path.write_bytes(bytes(data))
    _expect(_build(project), EXIT_SOURCE, "transactions.parquet",
            "cannot be read as parquet (the file is damaged or truncated)")


def test_a_column_map_naming_a_column_the_file_lacks(project):
    cfg = _config(project, sources={"column_map": {"transactions": {"amount": "TransactionAmt"}}})
    _expect(_build(project, cfg), EXIT_SOURCE, "transactions.parquet",
            "'TransactionAmt' (for amount)")


def test_an_unreachable_sql_source(project):
    cfg = _config(project, sources={"format": "sql",
                                    "sql_url": "postgresql+psycopg://fraud:s3cret@127.0.0.1:1/none"})
    result = _build(project, cfg)
    _expect(result, EXIT_SOURCE, "127.0.0.1:1/none", "cannot read table 'transactions'")
    assert "s3cret" not in result.output


# ------------------------------------------------------------------ configuration


def test_malformed_yaml(project):
    path = project / "fraudlab.yaml"
    path.write_text("paths:\n  raw: raw\n training: [\n")
    _expect(_build(project, str(path)), EXIT_USAGE, "invalid configuration", "fraudlab.yaml")


def test_an_unknown_time_zone(project):
    cfg = _config(project, sources={"naive_timezone": "Mars/Olympus_Mons"})
    _expect(_build(project, cfg), EXIT_USAGE, "sources.naive_timezone",
            "unknown time zone 'Mars/Olympus_Mons'")


def test_a_misspelt_table_in_the_column_map(project):
    cfg = _config(project, sources={"column_map": {"transaction": {"amount": "amt"}}})
    _expect(_build(project, cfg), EXIT_USAGE, "sources.column_map",
            "unknown table 'transaction'", "did you mean 'transactions'?")


def test_too_little_history_for_the_protocol(project):
    result = _run(project, "train", "--as-of", AS_OF, "--no-register")
    _expect(result, EXIT_USAGE, "the mature rows span", "the configured protocol needs",
            "days; shorten training.n_splits")
