from fraudlab.data_contracts import validate_raw
from fraudlab.features import load_raw


def test_simulated_world_passes_every_contract(world_dir, as_of):
    report = validate_raw(load_raw(world_dir).tables, as_of=as_of)
    assert [r.line() for r in report.failures] == []
    assert report.success
    assert len(report.quarantine) == 0
    assert set(report.tables) == {"transactions", "labels", "events", "blacklist", "accounts"}
    # Every table ran its row-level rules too, not just the table-level ones.
    assert {r.table for r in report.results if r.level == "row"} == set(report.tables)


def test_each_table_is_fetched_by_great_expectations_once(world_dir, as_of, monkeypatch):
    # GX fingerprints (hashes) every value of a frame each time it fetches it as a batch,
    # which dominates validation time on large tables: the table-level and row-level suites
    # of a table, and their detail passes, must share one fetch.
    from great_expectations.execution_engine import pandas_execution_engine as engine

    fetched = []
    original = engine.hash_pandas_dataframe
    monkeypatch.setattr(engine, "hash_pandas_dataframe",
                        lambda df: fetched.append(len(df)) or original(df))
    raw = load_raw(world_dir)
    report = validate_raw(raw.tables, as_of=as_of)
    assert report.success
    sizes = sorted(len(t.frame) for t in raw.tables.values())
    # one fetch per table, plus the labels joined to their transactions for the
    # reference rules (a second frame of the labels' size)
    assert sorted(n for n in fetched if n) == sorted(sizes + [len(raw.tables["labels"].frame)])
