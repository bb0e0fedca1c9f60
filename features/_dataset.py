"""The labeled dataset: features, the label as known at the as-of time, and metadata.

Metadata columns (ids, timestamps, fraud_type, label arrival, maturity) travel beside the
features but are never model inputs: :func:`split_features` is the one place that turns a
dataset into model inputs, and it refuses a feature list that names a metadata column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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

from . import _expr
from ._catalog import (
    CATALOG,
    as_feature_set,
    catalog_version,
    feature_settings,
    resolve_features,
)
from ._config import FeaturesConfig
from ._declarations import LABEL, METADATA, Feature, FeatureSet, features_from_dict
from ._engine import compute_features
from ._lookup import positions, take_rows
from ._sources import RawData, known_at


class DatasetContractError(Exception):
    """The labeled dataset failed its contract; ``report`` says which rules and rows."""

    def __init__(self, report: ContractReport):
        self.report = report
        lines = "; ".join(r.line() for r in report.failures[:5])
        super().__init__(f"the labeled dataset failed its contract: {lines}")


def dataset_schema(catalog: FeatureSet | Sequence[Feature] = CATALOG) -> TableSchema:
    """The labeled dataset's canonical schema, derived from the feature declarations."""
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
        for f in as_feature_set(catalog).features)
    return TableSchema("dataset", columns=meta + feats, time_columns=("ts",), key="tx_id",
                       description="Labeled dataset: metadata, label and features.")


def available_features(tables: Mapping[str, pd.DataFrame | None],
                       catalog: FeatureSet | Sequence[Feature] = CATALOG) -> FeatureSet:
    """The features whose source tables are present: each optional source (events,
    labels, blacklist, accounts) adds its features. An ``expr`` feature that reads one
    left out is left out too."""
    fs = as_feature_set(catalog)
    present = {name for name, frame in tables.items() if frame is not None}
    kept: list[Feature] = []
    names: set[str] = set()
    declared = set(fs.names())
    for f in fs.features:
        if f.source not in present:
            continue
        if f.agg == "expr" and any(n in declared and n not in names
                                   for n in _expr.names(_expr.parse(f.expr))):
            continue
        kept.append(f)
        names.add(f.name)
    return FeatureSet(tuple(kept), fs.columns)


def dataset_features(dataset: pd.DataFrame) -> FeatureSet:
    """The feature set a dataset was built with (from its ``attrs``); for a dataset without
    it, the built-in features among its columns."""
    doc = dataset.attrs.get("features")
    if doc:
        return features_from_dict({k: v for k, v in doc.items() if k != "settings"},
                                  origin="<dataset attrs>",
                                  settings=(doc.get("settings") or {}).get("params", {}))
    return FeatureSet(tuple(f for f in CATALOG if f.name in dataset.columns))

_TX_META = ("tx_id", "ts", "account_id", "counterparty_id", "merchant_id")


def _label_metadata(meta: pd.DataFrame, labels: pd.DataFrame | None, as_of: pd.Timestamp,
                   maturity: str) -> pd.DataFrame:
    """The transactions' metadata (``_TX_META``) with their label as known at ``as_of``:
    when it arrived, its source and fraud type, maturity and the 0/1 label. A new frame;
    both engines of the build go through here."""
    meta = meta.copy(deep=False)  # new columns on a new frame; the input keeps its own
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
    meta["is_mature"] = (meta["ts"] <= as_of - parse_duration(maturity)).to_numpy()
    meta[LABEL] = is_fraud.astype(np.int64)
    return meta


def build_dataset(raw: RawData | Mapping[str, pd.DataFrame], as_of, *, start=None, end=None,
                  config: FeaturesConfig | None = None,
                  catalog: FeatureSet | Sequence[Feature] | None = None,
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
    catalog : FeatureSet or sequence of Feature, optional
        The features to compute; default the set ``config`` asks for
        (:func:`resolve_features`), those whose source table is present (see
        :func:`available_features`).
    validate : bool
        Run the labeled-dataset contract and raise :class:`DatasetContractError` on failure.

    Returns
    -------
    DataFrame
        Metadata columns (``METADATA``), the label (``LABEL``) and the features in catalog
        order, sorted by time. ``attrs`` holds the as-of time, the feature declarations
        and settings (``features``), their hash (``catalog_version``) and the contract report.
    """
    config = config or FeaturesConfig()
    as_of = to_utc(as_of)
    tables = known_at(raw, as_of)
    catalog = (available_features(tables, resolve_features(config)) if catalog is None
               else as_feature_set(catalog, tuple(config.params)))
    missing = sorted({f.source for f in catalog.features} - set(tables))
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

    meta = take_rows(tx[list(_TX_META)], rows).reset_index(drop=True)
    meta = _label_metadata(meta, tables.get("labels"), as_of, config.label_maturity)
    dataset = pd.concat([meta, features], axis=1)
    dataset.attrs.update({"as_of": as_of.isoformat(),
                          "catalog_version": catalog_version(catalog, config),
                          "features": {**catalog.to_dict(), "settings": feature_settings(config)},
                          "start": lo.isoformat() if len(tx) else None, "end": hi.isoformat()})
    if validate:
        report = validate_dataset(
            RawTable("dataset", dataset, "<labeled dataset>"), dataset_schema(catalog),
            as_of=as_of, label=LABEL, mature="is_mature",
            fraud_rate=(config.fraud_rate_min, config.fraud_rate_max),
            features=catalog.names())
        dataset.attrs["contract"] = report.to_dict()
        if not report.success:
            raise DatasetContractError(report)
    return dataset


def split_features(dataset: pd.DataFrame,
                   catalog: FeatureSet | Sequence[Feature] | None = None,
                   *, mature_only: bool = True) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Split a labeled dataset into model inputs, the label and the metadata.

    Parameters
    ----------
    dataset : DataFrame
        From :func:`build_dataset`.
    catalog : FeatureSet or sequence of Feature, optional
        The features that are model inputs; default those the dataset was built with
        (:func:`dataset_features`).
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
    names = (dataset_features(dataset) if catalog is None else as_feature_set(catalog)).names()
    leaked = sorted(set(names) & (set(METADATA) | {LABEL}))
    if leaked:
        raise ValueError(f"metadata or label columns {leaked} may not be model inputs")
    data = dataset[dataset["is_mature"].to_numpy()] if mature_only else dataset
    return data[names], data[LABEL], data[list(METADATA)]
