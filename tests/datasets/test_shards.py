"""Worlds in shards of accounts: defined by the seed and the shard size, disjoint
identifiers, and written partitioned so that the raw tables read back are the shards'."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlab.datasets import SimulationConfig, merge_manifests, simulate_shards

CFG = dict(days=12, history_days=5, seed=9)


def _shards(accounts: int, size: int) -> list:
    return list(simulate_shards(SimulationConfig(accounts=accounts, **CFG), shard_accounts=size))


@pytest.fixture(scope="module")
def shards():
    return _shards(50, 20)


def test_the_same_seed_and_shard_size_give_the_same_world(shards):
    again = _shards(50, 20)
    assert [s for s, _ in shards] == [0, 1, 2]
    for (_, a), (_, b) in zip(shards, again, strict=True):
        for name, frame in a.tables().items():
            pd.testing.assert_frame_equal(frame, b.tables()[name])


def test_a_shard_does_not_depend_on_how_many_follow_it(shards):
    """The first shards of a larger world are those of the smaller one."""
    bigger = _shards(80, 20)
    for (_, a), (_, b) in zip(shards[:2], bigger[:2], strict=True):
        pd.testing.assert_frame_equal(a.transactions, b.transactions)
    assert len(bigger) == 4


def test_shards_share_no_account_device_merchant_or_transaction(shards):
    seen: dict[str, set] = {c: set() for c in ("tx_id", "account_id", "device_id", "merchant_id")}
    for s, world in shards:
        tx = world.transactions
        prefix = f"S{s:04d}-"
        for c in seen:
            values = set(tx[c].dropna())
            assert all(v.startswith(prefix) for v in values), c
            assert not (values & seen[c]), c
            seen[c] |= values
        assert world.accounts["account_id"].str.startswith(prefix).all()
        assert set(world.labels["tx_id"]) <= set(tx["tx_id"])
        bl = world.blacklist
        listed = bl[bl["entity_type"].isin(["account", "device", "merchant", "counterparty"])]
        assert listed["entity_value"].str.startswith(prefix).all()


def test_the_merged_manifest_sums_the_shards(shards):
    m = merge_manifests([w.manifest for _, w in shards], SimulationConfig(accounts=50, **CFG))
    assert m["shards"] == 3 and m["shard_accounts"] == 20
    assert m["rows"]["transactions"] == sum(len(w.transactions) for _, w in shards)
    by_type: dict[str, int] = {}
    for _, w in shards:
        for k, v in w.manifest["fraud"]["transactions_by_type"].items():
            by_type[k] = by_type.get(k, 0) + v
    assert m["fraud"]["transactions_by_type"] == by_type and sum(by_type.values()) > 0
    assert m["fraud"]["fraud_rate"] == round(sum(by_type.values()) / m["rows"]["transactions"], 6)


def test_simulate_in_shards_writes_tables_that_read_back_as_the_shards(shards, tmp_path):
    from fraudlab.features import load_raw
    from fraudlab.training._cli import app

    out = tmp_path / "world"
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), "--accounts", "50",
                                      "--days", "12", "--history-days", "5", "--seed", "9",
                                      "--shard-accounts", "20"], terminal_width=200)
    assert result.exit_code == 0, result.output
    days = sorted(p.name for p in (out / "transactions").iterdir())
    assert days[0].startswith("day=") and len(days) >= 12
    assert all(p.name.startswith("month=") for p in (out / "events").iterdir())
    manifest = json.loads((out / "manifest.json").read_text())
    raw = load_raw(out)
    tx = raw.tables["transactions"].frame
    assert len(tx) == manifest["rows"]["transactions"]
    want = pd.concat([w.transactions for _, w in shards], ignore_index=True)
    assert sorted(tx["tx_id"]) == sorted(want["tx_id"])
    got = tx.set_index("tx_id").sort_index()
    exp = want.set_index("tx_id").sort_index()
    pd.testing.assert_series_equal(got["amount"], exp["amount"], check_dtype=False)
