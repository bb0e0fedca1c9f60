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
