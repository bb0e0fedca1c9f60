"""The labeled dataset: features, the label as known at the as-of time, and metadata.

Metadata columns (ids, timestamps, fraud_type, label arrival, maturity) travel beside the
features but are never model inputs: :func:`split_features` is the one place that turns a
dataset into model inputs, and it refuses a feature list that names a metadata column.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from fraudlab.data_contracts import (
    TRANSACTIONS,
    Column,
    ContractReport,
    RawTable,
    TableSchema,
    parse_duration,
    to_utc,
    validate_dataset,
)

from ._catalog import CATALOG, Feature, catalog_version
from ._config import FeaturesConfig
from ._engine import compute_features
from ._lookup import positions, take_rows
from ._memory import reuse_freed_memory
from ._sources import RawData, known_at

LABEL = "is_fraud"
"""The target column: 1 if a fraud label was reported by the as-of time, else 0."""

METADATA = (
    "tx_id", "ts", "account_id", "counterparty_id", "merchant_id", "label_reported_at",
    "label_source", "fraud_type", "is_mature",
)
"""Columns kept beside the features for evaluation and audit; never model inputs."""


class DatasetContractError(Exception):
    """The labeled dataset failed its contract; ``report`` says which rules and rows."""

    def __init__(self, report: ContractReport):
        self.report = report
        lines = "; ".join(r.line() for r in report.failures[:5])
        super().__init__(f"the labeled dataset failed its contract: {lines}")


def dataset_schema(catalog: tuple[Feature, ...] = CATALOG) -> TableSchema:
    """The labeled dataset's canonical schema, derived from the feature catalog."""
    meta = (
        *(TRANSACTIONS.column(c) for c in ("tx_id", "ts", "account_id", "counterparty_id",
                                           "merchant_id")),
        Column("label_reported_at", "timestamp", nullable=True,
               description="When the label became known (null: no label by the as-of time)."),
        Column("label_source", "string", nullable=True, description="Where the label came from."),
        Column("fraud_type", "string", nullable=True, description="Fraud scenario, if known."),
        Column("is_mature", "bool", description="Old enough for its label to have arrived."),
        Column(LABEL, "int", min_value=0, max_value=1, description="Fraud as known at as-of."),
    )
    feats = tuple(
        Column(f.name, "category" if f.kind == "category" else "float", nullable=f.nullable,
               min_value=f.min_value if f.kind == "float" else None,
               max_value=f.max_value if f.kind == "float" else None,
               description=f.description)
        for f in catalog)
    return TableSchema("dataset", columns=meta + feats, time_columns=("ts",), key="tx_id",
                       description="Labeled dataset: metadata, label and features.")


def available_features(tables: Mapping[str, pd.DataFrame | None],
                       catalog: tuple[Feature, ...] = CATALOG) -> tuple[Feature, ...]:
    """The features whose source tables are present: each optional source (events,
    labels, blacklist, accounts) adds its features."""
    present = {name for name, frame in tables.items() if frame is not None}
    return tuple(f for f in catalog if f.source in present)


@reuse_freed_memory()  # the whole build reuses its freed columns (see _memory.py)
def build_dataset(raw: RawData | Mapping[str, pd.DataFrame], as_of, *, start=None, end=None,
                  config: FeaturesConfig | None = None,
                  catalog: tuple[Feature, ...] | None = None,
                  validate: bool = True) -> pd.DataFrame:
    """Build the point-in-time-correct labeled dataset.

    Parameters
    ----------
    raw : RawData or mapping of str to DataFrame
        Canonical raw tables (from :func:`load_raw`, or DataFrames in a notebook).
    as_of : timestamp
        The moment the dataset is built "at": nothing later is used, not a transaction,
        event, listing nor label. A transaction is fraud only if its fraud label was
        reported by then.
    start, end : timestamp, optional
        Rows are the transactions with ``start <= ts < end`` (default: all before
        ``as_of``). Earlier history still feeds their windows.
    config : FeaturesConfig, optional
        Feature parameters and the label maturity window.
    catalog : tuple of Feature, optional
        The features to compute; default every catalog feature whose source table is
        present (see :func:`available_features`).
    validate : bool
        Run the labeled-dataset contract and raise :class:`DatasetContractError` on failure.

    Returns
    -------
    DataFrame
        Metadata columns (``METADATA``), the label (``LABEL``) and the features in catalog
        order, sorted by time. ``attrs`` holds the as-of time, the catalog version and the
        contract report.
    """
    config = config or FeaturesConfig()
    as_of = to_utc(as_of)
    tables = known_at(raw, as_of)
    if catalog is None:
        catalog = available_features(tables)
    missing = sorted({f.source for f in catalog} - set(tables))
    if missing:
        raise ValueError(f"features need the table(s) {missing}, which the data do not have")
    tx = tables["transactions"]
    if not tx["ts"].is_monotonic_increasing:  # ties keep their input order
        tx = tx.sort_values("ts", kind="stable")
    tx = tx.reset_index(drop=True)
    tables = {**tables, "transactions": tx}
    lo = to_utc(start) if start is not None else tx["ts"].min()
    hi = min(to_utc(end), as_of) if end is not None else as_of
    rows = np.flatnonzero(((tx["ts"] >= lo) & (tx["ts"] < hi)).to_numpy())
    features = compute_features(tables, rows=rows, config=config, catalog=catalog)

    labels = tables.get("labels")
    meta = take_rows(tx[["tx_id", "ts", "account_id", "counterparty_id", "merchant_id"]],
                     rows).reset_index(drop=True)
    if labels is not None and len(labels):
        # The latest label known at as-of decides (a cleared review can follow a report).
        last = labels.sort_values("reported_at", kind="stable").drop_duplicates("tx_id", keep="last")
        last = last.set_index("tx_id")
        pos = positions(meta["tx_id"], last.index)
        # Taking from the columns' own arrays keeps their dtypes (no round trip through
        # Python objects, which cost a second per million rows); position -1 (no label)
        # takes a missing value, in the same pass.
        for out, col in (("label_reported_at", "reported_at"), ("label_source", "source"),
                         ("fraud_type", "fraud_type")):
            v = pd.Series(last[col].array.take(pos, allow_fill=True))
            meta[out] = v if out == "label_reported_at" else v.astype("str")
        is_fraud = (pos >= 0) & last["is_fraud"].to_numpy(dtype=bool)[np.maximum(pos, 0)]
    else:
        meta["label_reported_at"] = pd.Series(pd.NaT, index=meta.index, dtype="datetime64[us, UTC]")
        meta["label_source"] = pd.Series(None, index=meta.index, dtype="str")
        meta["fraud_type"] = pd.Series(None, index=meta.index, dtype="str")
        is_fraud = np.zeros(len(meta), bool)
    meta["is_mature"] = (meta["ts"] <= as_of - parse_duration(config.label_maturity)).to_numpy()
    meta[LABEL] = is_fraud.astype(np.int64)
    dataset = pd.concat([meta, features], axis=1)
    dataset.attrs.update({"as_of": as_of.isoformat(), "catalog_version": catalog_version(catalog),
                          "start": lo.isoformat() if len(tx) else None, "end": hi.isoformat()})
    if validate:
        report = validate_dataset(
            RawTable("dataset", dataset, "<labeled dataset>"), dataset_schema(catalog),
            as_of=as_of, label=LABEL, mature="is_mature",
            fraud_rate=(config.fraud_rate_min, config.fraud_rate_max),
            features=[f.name for f in catalog])
        dataset.attrs["contract"] = report.to_dict()
        if not report.success:
            raise DatasetContractError(report)
    return dataset


def split_features(dataset: pd.DataFrame, catalog: tuple[Feature, ...] = CATALOG,
                   *, mature_only: bool = True) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Split a labeled dataset into model inputs, the label and the metadata.

    Parameters
    ----------
    dataset : DataFrame
        From :func:`build_dataset`.
    catalog : tuple of Feature
        The features that are model inputs.
    mature_only : bool
        Leave out rows whose labels cannot have arrived yet (``is_mature`` False).

    Returns
    -------
    X, y, meta : DataFrame, Series, DataFrame

    Raises
    ------
    ValueError
        If a catalog feature is a metadata or label column (a leak by construction).
    """
    names = [f.name for f in catalog]
    leaked = sorted(set(names) & (set(METADATA) | {LABEL}))
    if leaked:
        raise ValueError(f"metadata or label columns {leaked} may not be model inputs")
    data = dataset[dataset["is_mature"].to_numpy()] if mature_only else dataset
    return data[names], data[LABEL], data[list(METADATA)]
