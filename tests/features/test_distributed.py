"""The Dask build equals the in-process build, row for row and feature for feature, on a
LocalCluster of two worker processes; bad raw files are refused by name."""

import json

import numpy as np
import pandas as pd
import pytest

from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.features import (
    CATALOG,
    FeaturesConfig,
    FeatureSet,
    PartitionedDataset,
    RawContractError,
    build_dataset,
    build_dataset_dask,
    load_features,
    load_raw,
    write_tables,
)

from .test_declarations import USER_FILE, _with_category

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

# Features of every kind of key: a region, an expression over a feature another key
# computes, on top of the user's file (composite entity, events filter, label reports).
MORE = """
  - name: region_tx_count_1h
    description: payments from this region in the last hour
    entity: region
    agg: count
    window: 1h
    nullable: true
  - name: big_3d_spender
    description: 1 when this account paid more than 500 in 3 days
    agg: expr
    expr: "amount_sum_3d > 500"
    max_value: 1
"""
AS_OF = pd.Timestamp("2026-01-20", tz="UTC")


def _tied_world():
    """200 accounts over 20 days with every time rounded to the minute, so that ties and
    exact window edges are common (the order among ties is the input order)."""
    w = simulate_world(SimulationConfig(accounts=200, days=20, seed=3, history_days=5,
                                        unlabeled_fraud_share=0))
    tables = {k: v.copy() for k, v in w.tables().items()}
    for name, cols in (("transactions", ["ts"]), ("events", ["ts"]), ("labels", ["reported_at"]),
                       ("blacklist", ["listed_at", "delisted_at"])):
        for c in cols:
            tables[name][c] = tables[name][c].dt.floor("min")
    return _with_category(tables, seed=2)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    path = tmp_path_factory.mktemp("decl") / "features.yaml"
    path.write_text(USER_FILE + MORE)
    user = load_features(path, settings=["high_amount"])
    return FeatureSet((*CATALOG, *user.features), user.columns)


CFG = FeaturesConfig(params={"high_amount": 300.0}, fraud_rate_min=0.0)


def _write_world(tables, out):
    """The transactions shuffled into three files and the events into two (ties at the
    same minute are common), the other tables as single files."""
    rng = np.random.default_rng(0)
    tx = tables["transactions"].iloc[rng.permutation(len(tables["transactions"]))]
    write_tables({k: v for k, v in tables.items() if k not in ("transactions", "events")}, out)
    for name, frame, n in (("transactions", tx, 3), ("events", tables["events"], 2)):
        (out / name).mkdir()
        for i, part in enumerate(np.array_split(np.arange(len(frame)), n)):
            frame.iloc[part].to_parquet(out / name / f"part-{i}.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    return _write_world(_tied_world(), tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def in_process(raw_dir, features):
    return build_dataset(load_raw(raw_dir, columns=features.columns), AS_OF, config=CFG,
                         catalog=features)


@pytest.fixture(scope="module")
def on_dask(raw_dir, features, client, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "dataset"
    seen = []
    ds = build_dataset_dask(raw_dir, AS_OF, out, client=client, config=CFG, catalog=features,
                            partitions=3, block="2d", progress=lambda *a: seen.append(a))
    return ds, seen


def test_the_dask_build_equals_the_in_process_build(in_process, on_dask, features):
    ds, seen = on_dask
    got = ds.read()
    assert len(in_process) > 1_500 and len(ds.parts) >= 5
    assert list(got.columns) == list(in_process.columns)
    # The engine's tolerances: float32 storage within 1e-6 relative; the rest exactly.
    pd.testing.assert_frame_equal(got, in_process, check_exact=False, rtol=1e-6, atol=1e-9)
    assert got["region_tx_count_1h"].max() >= 2 and got["big_3d_spender"].max() == 1
    assert got["account_fraud_reports_30d"].max() > 0
    for key in ("as_of", "catalog_version", "features", "start", "end"):
        assert got.attrs[key] == in_process.attrs[key], key
    assert ds.attrs["contract"]["dataset"]["success"]
    assert ds.attrs["contract"]["dataset"]["tables"] == {"dataset": len(in_process)}
    # Every stage reported each of its tasks; nothing of the scratch area is left.
    last = {stage: (done, total) for stage, done, total in seen}
    assert set(last) == {"split", "features", "assemble"}
    assert all(done == total > 0 for done, total in last.values())
    assert sorted(p.name for p in ds.path.parent.iterdir()) == ["dataset"]


def test_a_window_reads_only_the_parts_it_overlaps(on_dask, in_process, monkeypatch):
    ds, _ = on_dask
    again = PartitionedDataset.open(ds.path)
    assert again.rows == len(in_process)
    lo, hi = pd.Timestamp("2026-01-06", tz="UTC"), pd.Timestamp("2026-01-08", tz="UTC")
    opened = []
    read = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda p, **kw: opened.append(p) or read(p, **kw))
    window = again.read(lo, hi)
    want = in_process[(in_process["ts"] >= lo) & (in_process["ts"] < hi)].reset_index(drop=True)
    pd.testing.assert_frame_equal(window, want, check_exact=False, rtol=1e-6, atol=1e-9)
    assert 1 <= len(opened) <= 2 < len(again.parts)


def test_a_bad_raw_file_is_named_and_nothing_is_built(raw_dir, features, client, tmp_path):
    bad = tmp_path / "raw"
    for p in raw_dir.rglob("*.parquet"):
        (bad / p.relative_to(raw_dir)).parent.mkdir(parents=True, exist_ok=True)
        (bad / p.relative_to(raw_dir)).write_bytes(p.read_bytes())
    f = pd.read_parquet(bad / "transactions" / "part-1.parquet")
    f.loc[f.index[:3], "amount"] = -5.0
    f.to_parquet(bad / "transactions" / "part-1.parquet", index=False)
    out = tmp_path / "dataset"
    with pytest.raises(RawContractError) as err:
        from fraudlab.data_contracts import ContractsConfig

        build_dataset_dask(bad, AS_OF, out, client=client, config=CFG, catalog=features,
                           contracts=ContractsConfig(), after_as_of="ignore", partitions=2)
    # Small files are validated together; the quarantine names each row's own file.
    assert "transactions (3 files, part-0.parquet to part-2.parquet): column amount: 3 " \
           "row(s) fail" in str(err.value)
    q = err.value.report.quarantine
    assert len(q) == 3 and set(q["origin"]) == {str(bad / "transactions" / "part-1.parquet")}
    assert f.loc[q["row"], "amount"].eq(-5.0).all()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_features_build_engine_dask_from_the_cli(raw_dir, tmp_path, features):
    """The command line on a LocalCluster of its own; train reads the folder it wrote."""
    from typer.testing import CliRunner

    from fraudlab.training import read_dataset
    from fraudlab.training._cli import app

    feats = tmp_path / "features.yaml"
    feats.write_text(USER_FILE)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({
        "paths": {"root": str(tmp_path)},
        "features": {"definitions": [str(feats)], "params": {"high_amount": 300.0},
                     "fraud_rate_min": 0.0},
        "contracts": {"after_as_of": "ignore"}, "dask": {"block": "3d"}}))
    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["features", "build", "--engine", "dask", "--raw", str(raw_dir),
                                   "--as-of", "2026-01-20", "--out", str(out), "--workers", "1",
                                   "--memory-limit", "2GB", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "transactions in" in res.output and "part(s)" in res.output
    ds = read_dataset(out)
    assert ds.attrs["contract"]["raw"]["success"] and len(ds) > 1_500
    assert "big_gaming_payment" in ds.columns


def test_rules_across_files_fail_as_in_process(raw_dir, features, client, tmp_path, monkeypatch):
    """A tx_id in two files, a label of no transaction and one reported before its payment:
    the same rules fail for the same rows as in the in-process contract."""
    from fraudlab.data_contracts import ContractsConfig, validate_raw
    from fraudlab.features import _distributed

    monkeypatch.setattr(_distributed, "_GROUP_ROWS", 1)  # every file validated on its own
    bad = tmp_path / "raw"
    for p in raw_dir.rglob("*.parquet"):
        (bad / p.relative_to(raw_dir)).parent.mkdir(parents=True, exist_ok=True)
        (bad / p.relative_to(raw_dir)).write_bytes(p.read_bytes())
    first = pd.read_parquet(bad / "transactions" / "part-0.parquet")
    last = pd.read_parquet(bad / "transactions" / "part-2.parquet")
    last.loc[last.index[5], "tx_id"] = first["tx_id"].iloc[7]
    last.to_parquet(bad / "transactions" / "part-2.parquet", index=False)
    labels = pd.read_parquet(bad / "labels.parquet")
    ghost = labels.iloc[[0]].assign(tx_id="T-NOWHERE")
    tx_ts = first.set_index("tx_id")["ts"]
    early = labels[labels["tx_id"].isin(tx_ts.index)].iloc[[0]].copy()
    labels = labels[labels["tx_id"] != early["tx_id"].iloc[0]]
    early["reported_at"] = tx_ts[early["tx_id"].iloc[0]] - pd.Timedelta("1h")
    pd.concat([labels, ghost, early], ignore_index=True).to_parquet(bad / "labels.parquet",
                                                                    index=False)
    rules = ("tx_id is unique", "tx_id refers to a known transaction",
             "reported_at >= the transaction's ts")
    want = validate_raw(load_raw(bad, columns=features.columns).tables, ContractsConfig(),
                        as_of=AS_OF, after_as_of="ignore")
    with pytest.raises(RawContractError) as err:
        build_dataset_dask(bad, AS_OF, tmp_path / "dataset", client=client, config=CFG,
                           catalog=features, contracts=ContractsConfig(), after_as_of="ignore",
                           partitions=3)
    got = err.value.report

    def counts(report):
        return sorted((r.table, r.rule, r.failing_count) for r in report.failures if r.rule in rules)

    assert counts(got) == counts(want) == sorted([
        ("transactions", "tx_id is unique", 2), ("labels", "tx_id refers to a known transaction", 1),
        ("labels", "reported_at >= the transaction's ts", 1)])
    assert sorted(zip(got.quarantine["table"], got.quarantine["key"], got.quarantine["rules"],
                      strict=True)) == sorted(zip(want.quarantine["table"], want.quarantine["key"],
                                                  want.quarantine["rules"], strict=True))
    # Each quarantined payment is named by its own file and row there.
    tq = got.quarantine[got.quarantine["table"] == "transactions"]
    assert sorted(zip(tq["origin"].map(lambda o: o.rsplit("/", 1)[-1]), tq["row"], strict=True)) \
        == [("part-0.parquet", 7), ("part-2.parquet", 5)]
    assert "tx_id is unique" in str(err.value) or "refers to a known" in str(err.value)
