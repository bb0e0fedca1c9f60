import numpy as np
import pandas as pd
import pytest

from fraudlab.features import (
    CATALOG,
    LABEL,
    METADATA,
    DatasetContractError,
    Feature,
    FeaturesConfig,
    build_dataset,
    catalog_markdown,
    split_features,
)


@pytest.fixture(scope="module")
def world_tables(small_world_module):
    return small_world_module.tables()


@pytest.fixture(scope="module")
def small_world_module():
    from fraudlab.datasets import SimulationConfig, simulate_world

    return simulate_world(SimulationConfig(accounts=200, days=40, seed=5, unlabeled_fraud_share=0))


def test_labels_are_as_known_at_the_as_of_time(world_tables):
    tx = world_tables["transactions"]
    as_of = tx["ts"].quantile(0.8)
    ds = build_dataset(world_tables, as_of)
    assert list(ds.columns[: len(METADATA) + 1]) == [*METADATA, LABEL]
    assert (ds["ts"] < as_of).all() and ds["tx_id"].is_unique
    labels = world_tables["labels"]
    known = labels[labels["is_fraud"] & (labels["reported_at"] <= as_of)]["tx_id"]
    later = labels[labels["is_fraud"] & (labels["reported_at"] > as_of)]["tx_id"]
    assert set(ds.loc[ds[LABEL] == 1, "tx_id"]) == set(known) & set(ds["tx_id"])
    assert ds.loc[ds["tx_id"].isin(later), LABEL].sum() == 0
    # Label metadata travels along, but only for labels known at as_of.
    assert (ds["label_reported_at"].dropna() <= as_of).all()
    maturity = pd.Timedelta(FeaturesConfig().label_maturity.replace("d", "D"))
    assert (ds["is_mature"] == (ds["ts"] <= as_of - maturity)).all()
    assert ds.attrs["contract"]["success"] is True


def test_python_string_ids_give_the_same_dataset_as_arrow_strings(world_tables):
    # Ids held as Python objects (which the contract rejects: normalise_table makes them
    # strings) are matched through pandas instead of Arrow, with the same labels and
    # merchant fraud reports.
    as_of = world_tables["transactions"]["ts"].max()
    plain = {name: t.astype({c: object for c in t.columns if t[c].dtype == "str"})
             for name, t in world_tables.items()}
    assert plain["labels"]["tx_id"].dtype == object
    arrow = build_dataset(world_tables, as_of, validate=False)
    python = build_dataset(plain, as_of, validate=False)
    assert arrow[LABEL].sum() >= 5
    cols = [LABEL, "label_reported_at", *[f.name for f in CATALOG if f.source == "labels"]]
    pd.testing.assert_frame_equal(arrow[cols], python[cols])
    assert arrow["label_source"].astype(object).equals(python["label_source"].astype(object))


def test_start_and_end_select_rows_but_history_still_counts(world_tables):
    tx = world_tables["transactions"]
    as_of = tx["ts"].max() + pd.Timedelta("1D")
    start, end = tx["ts"].quantile(0.5), tx["ts"].quantile(0.7)
    full = build_dataset(world_tables, as_of).set_index("tx_id")
    part = build_dataset(world_tables, as_of, start=start, end=end).set_index("tx_id")
    assert (part["ts"] >= start).all() and (part["ts"] < end).all()
    cols = [f.name for f in CATALOG]
    pd.testing.assert_frame_equal(part[cols], full.loc[part.index, cols])


def test_split_features_keeps_metadata_out_of_the_model(world_tables):
    ds = build_dataset(world_tables, world_tables["transactions"]["ts"].max())
    X, y, meta = split_features(ds)
    assert list(X.columns) == [f.name for f in CATALOG]
    assert not set(X.columns) & set(METADATA)
    assert len(X) == ds["is_mature"].sum() == len(y) == len(meta)
    leaky = (*CATALOG, Feature(name="fraud_type", description="leak", agg="value",
                               of="fraud_type", source="labels"))
    with pytest.raises(ValueError, match="fraud_type"):
        split_features(ds, leaky)


def test_dataset_contract_catches_an_implausible_fraud_rate(world_tables):
    as_of = world_tables["transactions"]["ts"].max()
    with pytest.raises(DatasetContractError) as err:
        build_dataset(world_tables, as_of, config=FeaturesConfig(fraud_rate_min=0.15))
    [failed] = err.value.report.failures
    assert (failed.rule, failed.column, failed.expectation) == (
        "fraud rate of mature rows in [0.15, 0.2]", "is_fraud", "expect_column_mean_to_be_between")
    assert 0 < failed.examples[0] < 0.15  # the observed rate


def test_dataset_contract_catches_out_of_range_features(world_tables):
    as_of = world_tables["transactions"]["ts"].max()
    bad = (*CATALOG[:1], Feature(name="amount_zscore_bad", description="bad", entity="account",
                                 agg="zscore", of="amount", nullable=True, min_value=0.0))
    with pytest.raises(DatasetContractError) as err:
        build_dataset(world_tables, as_of, catalog=bad)
    f = err.value.report.failures
    assert [r.column for r in f] == ["amount_zscore_bad"]
    assert f[0].failing_count == int((build_dataset(world_tables, as_of, catalog=bad, validate=False)
                                      ["amount_zscore_bad"] < 0).sum())


def test_features_separate_the_fraud_scenarios(world_tables):
    ds = build_dataset(world_tables, world_tables["transactions"]["ts"].max() + pd.Timedelta("90D"))
    by = ds.groupby(ds["fraud_type"].fillna("legit"))
    assert by["small_tx_count_1h"].mean()["card_testing"] > 5 * by["small_tx_count_1h"].mean()["legit"]
    assert by["login_failed_count_24h"].mean()["account_takeover"] > 2
    assert by["counterparty_distinct_payers_7d"].mean()["mule_account"] > 3
    assert by["device_emulator_seen"].mean()["device_farm"] > 0.5
    assert by["distance_from_home_km"].median()["large_off_location"] > 1000


def test_docs_features_md_is_generated_from_the_catalog():
    from pathlib import Path

    docs = Path(__file__).parents[2] / "docs" / "features.md"
    assert docs.read_text() == catalog_markdown(), "run: fraudlab features list --markdown > docs/features.md"
    assert np.all([f.description for f in CATALOG])


def test_dataset_contract_catches_nulls_the_catalog_does_not_allow(world_tables):
    as_of = world_tables["transactions"]["ts"].max()
    strict = (*CATALOG[:1], Feature(name="secs_since_prev_strict", description="not nullable",
                                    entity="account", agg="since_last", unit="seconds"))
    loose = build_dataset(world_tables, as_of, catalog=strict, validate=False)
    with pytest.raises(DatasetContractError) as err:
        build_dataset(world_tables, as_of, catalog=strict)
    [f] = err.value.report.failures
    assert (f.rule, f.column) == ("secs_since_prev_strict is not null", "secs_since_prev_strict")
    assert f.failing_count == int(loose["secs_since_prev_strict"].isna().sum()) > 0


def test_dataset_contract_catches_duplicate_transactions(world_tables):
    from fraudlab.data_contracts import RawTable, validate_dataset
    from fraudlab.features import dataset_schema

    as_of = world_tables["transactions"]["ts"].max()
    ds = build_dataset(world_tables, as_of, validate=False)
    ds.loc[1, "tx_id"] = ds.loc[0, "tx_id"]
    report = validate_dataset(RawTable("dataset", ds, "<test>"), dataset_schema(), as_of=as_of,
                              label=LABEL, mature="is_mature", fraud_rate=(0.0, 1.0),
                              features=[f.name for f in CATALOG])
    [f] = report.failures
    assert (f.rule, f.column, f.failing_count) == ("tx_id is unique", "tx_id", 2)
    assert f.examples == [ds.loc[0, "tx_id"]] * 2
    assert report.quarantined_rows("dataset").tolist() == [0, 1]
