"""Feature declarations: the ``Feature`` object, the YAML features file, and their checks.

A features file and a tuple of :class:`Feature` are the same thing: :func:`load_features`
reads one, :func:`dump_features` writes it back, and the built-in set (``builtin.yaml``
beside this module) is loaded the same way. Every field is documented on :class:`Feature`;
``docs/features.md`` has the aggregations with examples.

Checks run when a set is loaded, against the tables' columns (the canonical schema and the
file's ``columns:``), and name the file, the feature and the field of the first problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fraudlab.data_contracts import SCHEMAS, parse_duration

from . import _expr

FORMAT_VERSION = 1
"""Version of the features-file and ``features.json`` format."""

WINDOW_AGGS = ("count", "sum", "mean", "min", "max", "std", "nunique", "ratio_to_mean",
               "zscore")
HISTORY_AGGS = ("since_last", "since_first", "first_use", "seen_before", "last_distance",
                "last_speed")
LABEL_AGGS = ("fraud_reports", "fraud_rate")
ROW_AGGS = ("value", "expr")
LOOKUP_AGGS = ("value", "age", "distance")
BLACKLIST_AGGS = ("blacklist_hit", "blacklist_days", "blacklist_source")
AGGS = tuple(dict.fromkeys(WINDOW_AGGS + HISTORY_AGGS + LABEL_AGGS + ROW_AGGS + LOOKUP_AGGS
                           + BLACKLIST_AGGS))
"""Every aggregation a declaration may name."""

ENTITY_COLUMNS = {"account": "account_id", "device": "device_id",
                  "counterparty": "counterparty_id", "merchant": "merchant_id",
                  "region": "_region"}
"""Entity names that stand for a canonical column; any other part names a column itself.
``region`` is the grid cell of the row's location (``features.region_cell_deg``)."""

def entity_columns(entity: str) -> tuple[str, ...]:
    """The columns an entity such as ``account+merchant_category`` is keyed on."""
    return tuple(ENTITY_COLUMNS.get(p, p) for p in entity.split("+"))


BLACKLIST_ENTITIES = ("account", "device", "ip", "counterparty", "merchant")
TIME_UNITS = {"seconds": 1e6, "minutes": 60e6, "hours": 3_600e6, "days": 86_400e6}
# Label columns: reading them outside the label-aware aggregations would leak the target.
LEAKY_COLUMNS = ("is_fraud", "reported_at", "label_source", "fraud_type")
SETTINGS = ("small_amount", "region_cell_deg", "far_from_home_km", "large_amount_ratio",
            "night_end_hour")
"""The ``FeaturesConfig`` settings declarations may read (plus ``features.params``)."""

LABEL = "is_fraud"
"""The target column: 1 if a fraud label was reported by the as-of time, else 0."""

METADATA = (
    "tx_id", "ts", "account_id", "counterparty_id", "merchant_id", "label_reported_at",
    "label_source", "fraud_type", "is_mature",
)
"""Columns kept beside the features for evaluation and audit; never model inputs."""

ColumnKind = Literal["category", "string", "float", "int", "bool", "timestamp"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DeclarationError(ValueError):
    """A feature declaration that cannot be computed; names the file, feature and field."""

    def __init__(self, origin: str, feature: str | None, field_name: str | None, message: str):
        self.origin, self.feature, self.field = origin, feature, field_name
        where = origin
        if feature:
            where += f", feature {feature!r}"
        if field_name:
            where += f", field {field_name!r}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ColumnSpec:
    """An extra column of a raw table, beyond the canonical schema.

    Parameters
    ----------
    kind : {"category", "string", "float", "int", "bool", "timestamp"}
        Its type; a category is text from a fixed set when ``categories`` are given.
    categories : tuple of str
        The allowed values (checked by the contract); empty for any value.
    nullable : bool
        Whether missing values are allowed.
    description : str
    """

    kind: ColumnKind = "string"
    categories: tuple[str, ...] = ()
    nullable: bool = True
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class Feature:
    """One feature's declaration (a ``features:`` entry of a features file).

    Parameters
    ----------
    name : str
        Column name in the labeled dataset (letters, digits, underscores).
    description : str
        One line for a reviewer, with units; reason codes quote it.
    agg : str
        The aggregation, one of ``AGGS``:

        - over the rows of the entity in the window, before the transaction (``source``
          transactions or events): ``count``, ``sum``, ``mean``, ``min``, ``max``, ``std``
          (sample, at least two rows), ``nunique`` (distinct values of ``of``),
          ``ratio_to_mean`` (this amount over the mean of ``of``), ``zscore``;
        - over the entity's history: ``since_last``, ``since_first`` (time since its last
          or first row, in ``unit``), ``first_use`` (1 if no earlier row), ``seen_before``
          (1 if an earlier row), ``last_distance`` / ``last_speed`` (km and km/h from the
          last row with a location);
        - label-aware (``source: labels``): ``fraud_reports`` (fraud reports received in
          the window about the entity's transactions, counted at their ``reported_at``) and
          ``fraud_rate`` (those reports per transaction of the entity in the window);
        - of the transaction itself (``entity: transaction``): ``value`` (a column),
          ``expr`` (an expression over its columns, settings and earlier features);
        - looked up in ``accounts`` for the payer (``entity: account``) or the payee
          (``counterparty``): ``value`` (a column), ``age`` (time since the timestamp
          ``of``, in ``unit``, missing if later), ``distance`` (km from the point
          ``of: [lat_column, lon_column]`` to the transaction's location);
        - ``blacklist``: ``blacklist_hit`` (1 if the entity is listed at payment time),
          ``blacklist_days`` / ``blacklist_source`` (age and source of the newest active
          listing of any entity of the payment).
    entity : str
        What the feature is keyed on: ``account``, ``device``, ``counterparty``,
        ``merchant``, ``region``, any column of the source (``ip``, ``card_country``), or a
        composite joined by ``+`` (``account+merchant_category``); ``transaction`` for the
        row's own values.
    source : str
        The table the rows come from: transactions, events, labels, accounts, blacklist.
    window : str, optional
        Any duration (``90s``, ``10min``, ``3d``); none for the whole history. A window
        ``w`` at time ``t`` holds the rows with ``t - w < time < t``.
    include_current : bool
        Whether the transaction being scored counts in its own aggregate (transactions
        only; it must also pass ``where``).
    of : str or tuple of str, optional
        The column aggregated, counted distinct, or looked up.
    where : str, optional
        A row filter in the expression language (``features/_expr.py``), for example
        ``"event_type == 'login_failed' and channel == 'web'"`` or ``"amount < small_amount"``.
    expr : str, optional
        The expression of an ``expr`` feature, for example ``"hour(ts) < night_end_hour"``.
    unit : str
        Unit of the value, for reports; a time unit (seconds, minutes, hours, days) for
        ``since_last``, ``since_first`` and ``age``, which it scales.
    group : str
        Feature group, for listings and ``features.include`` / ``exclude``.
    nullable : bool
        Whether the value may be missing (unknown entity, no history, no location).
    min_value, max_value : float, optional
        The range the dataset contract enforces.
    kind : {"float", "category"}
        Numeric, or a category (stored as pandas ``category``).
    categories : tuple of str
        The fixed categories of a category feature, so that its encoding never depends
        on which values a dataset happens to contain.
    dtype : {"float32", "float64"}
        Storage of a numeric feature: float32 (what XGBoost trains on) unless the value
        needs more than about 7 significant digits.
    """

    name: str
    description: str
    agg: str
    entity: str = "transaction"
    source: str = "transactions"
    window: str | None = None
    include_current: bool = False
    of: str | tuple[str, ...] | None = None
    where: str | None = None
    expr: str | None = None
    unit: str = ""
    group: str = "user"
    nullable: bool = False
    min_value: float | None = 0.0
    max_value: float | None = None
    kind: Literal["float", "category"] = "float"
    categories: tuple[str, ...] = ()
    dtype: Literal["float32", "float64"] = "float32"

    def entity_parts(self) -> tuple[str, ...]:
        """The columns the entity is keyed on (``region`` as ``_region``)."""
        return () if self.entity == "transaction" else entity_columns(self.entity)

    def to_dict(self) -> dict:
        """The declaration as a features-file entry (fields at their default left out)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "description", "agg") or value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class FeatureSet:
    """Declarations and the extra raw columns they read.

    Parameters
    ----------
    features : tuple of Feature
        In dataset column order.
    columns : mapping of str to mapping of str to ColumnSpec
        Per raw table, the extra columns kept through loading.
    """

    features: tuple[Feature, ...]
    columns: Mapping[str, Mapping[str, ColumnSpec]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> dict:
        return {"format": FORMAT_VERSION,
                "columns": {t: {c: _spec_dict(s) for c, s in cols.items()}
                            for t, cols in self.columns.items() if cols},
                "features": [f.to_dict() for f in self.features]}


def _spec_dict(spec: ColumnSpec) -> dict:
    out = {"kind": spec.kind}
    if spec.categories:
        out["categories"] = list(spec.categories)
    if not spec.nullable:
        out["nullable"] = False
    if spec.description:
        out["description"] = spec.description
    return out


_FIELDS = {f.name: f for f in dataclasses.fields(Feature)}


def feature_from_dict(doc: Mapping, *, origin: str = "<declaration>") -> Feature:
    """One declaration from its features-file entry (types checked, not yet its columns)."""
    if not isinstance(doc, Mapping):
        raise DeclarationError(origin, None, None,
                               f"a feature must be a mapping of fields, not {doc!r}")
    name = doc.get("name")
    label = name if isinstance(name, str) else None
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(_FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DeclarationError(origin, label, unknown[0], f"unknown field{hint}; the fields "
                               f"are {sorted(_FIELDS)}")
    for required in ("name", "description", "agg"):
        if not isinstance(doc.get(required), str) or not doc[required].strip():
            raise DeclarationError(origin, label, required, "required, a non-empty string")
    values = dict(doc)
    for key in ("of", "categories"):
        if isinstance(values.get(key), list):
            values[key] = tuple(str(v) for v in values[key])
    if "window" in values and values["window"] is not None:
        values["window"] = str(values["window"])
    for key, types in (("include_current", bool), ("nullable", bool)):
        if key in values and not isinstance(values[key], types):
            raise DeclarationError(origin, label, key, f"must be true or false, not {values[key]!r}")
    for key in ("min_value", "max_value"):
        v = values.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise DeclarationError(origin, label, key, f"must be a number, not {v!r}")
    for key in ("entity", "source", "where", "expr", "unit", "group", "kind"):
        v = values.get(key)
        if v is not None and not isinstance(v, str):
            raise DeclarationError(origin, label, key, f"must be a string, not {v!r}")
    return Feature(**values)


def column_spec_from_dict(doc, *, origin: str, table: str, column: str) -> ColumnSpec:
    where = f"columns.{table}.{column}"
    if not isinstance(doc, Mapping):
        raise DeclarationError(origin, None, where, "must be a mapping such as {kind: category}")
    unknown = sorted(set(doc) - {"kind", "categories", "nullable", "description"})
    if unknown:
        raise DeclarationError(origin, None, f"{where}.{unknown[0]}", "unknown field; the "
                               "fields are kind, categories, nullable, description")
    kind = doc.get("kind", "string")
    if kind not in ColumnKind.__args__:
        raise DeclarationError(origin, None, f"{where}.kind",
                               f"unknown kind {kind!r}; the kinds are {list(ColumnKind.__args__)}")
    cats = doc.get("categories") or ()
    if not isinstance(cats, list | tuple):
        raise DeclarationError(origin, None, f"{where}.categories", "must be a list of values")
    return ColumnSpec(kind, tuple(str(c) for c in cats), bool(doc.get("nullable", True)),
                      str(doc.get("description", "")))


def features_from_dict(doc: Mapping, *, origin: str = "<features>",
                       settings: Iterable[str] = ()) -> FeatureSet:
    """A feature set from a features-file document, checked.

    Parameters
    ----------
    doc : mapping
        ``{columns: {table: {column: {kind: ...}}}, features: [ ... ]}``.
    origin : str
        The file, for messages.
    settings : iterable of str
        Names of user parameters (``features.params``) expressions may read, beyond
        ``SETTINGS``.

    Raises
    ------
    DeclarationError
    """
    if not isinstance(doc, Mapping):
        raise DeclarationError(origin, None, None, "a features file is a mapping with "
                               "'features' (and optionally 'columns' and 'format')")
    unknown = sorted(set(doc) - {"format", "columns", "features"})
    if unknown:
        raise DeclarationError(origin, None, unknown[0], "unknown top-level key; a features "
                               "file has 'format', 'columns' and 'features'")
    fmt = doc.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise DeclarationError(origin, None, "format", f"format version {fmt!r} is not "
                               f"supported (this fraudlab reads version {FORMAT_VERSION})")
    columns: dict[str, dict[str, ColumnSpec]] = {}
    for table, cols in (doc.get("columns") or {}).items():
        if table not in SCHEMAS:
            raise DeclarationError(origin, None, f"columns.{table}",
                                   f"unknown table; the tables are {list(SCHEMAS)}")
        if not isinstance(cols, Mapping):
            raise DeclarationError(origin, None, f"columns.{table}", "must map column names "
                                   "to their kind")
        for col, spec in cols.items():
            if col in SCHEMAS[table].column_names:
                raise DeclarationError(origin, None, f"columns.{table}.{col}", "is a canonical "
                                       "column already; declare only extra columns")
            if not _NAME.match(str(col)):
                raise DeclarationError(origin, None, f"columns.{table}.{col}",
                                       "a column name is letters, digits and underscores")
            columns.setdefault(table, {})[str(col)] = column_spec_from_dict(
                spec, origin=origin, table=table, column=col)
    entries = doc.get("features")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise DeclarationError(origin, None, "features", "must be a list of features")
    feats = tuple(feature_from_dict(e, origin=origin) for e in entries)
    fs = FeatureSet(feats, columns)
    check_features(fs, origin=origin, settings=settings)
    return fs


def load_features(path: str | Path, *, settings: Iterable[str] = ()) -> FeatureSet:
    """Read and check a YAML (or JSON) features file.

    Parameters
    ----------
    path : str or Path
    settings : iterable of str
        Names of ``features.params`` the expressions may read.

    Returns
    -------
    FeatureSet

    Raises
    ------
    DeclarationError
        The file cannot be read or parsed, or a declaration is wrong.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeclarationError(str(path), None, None, f"cannot read the file: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeclarationError(str(path), None, None,
                               f"not valid YAML: {str(exc).splitlines()[0]}") from None
    return features_from_dict(doc or {}, origin=str(path), settings=settings)


def dump_features(features: FeatureSet | Sequence[Feature], path: str | Path | None = None) -> str:
    """Write declarations as a features file (YAML); returns the text.

    ``load_features(path)`` gives back equal declarations.
    """
    import yaml

    fs = features if isinstance(features, FeatureSet) else FeatureSet(tuple(features))
    text = yaml.safe_dump(fs.to_dict(), sort_keys=False, allow_unicode=True, width=100)
    if path is not None:
        Path(path).write_text(text)
    return text


def merge_sets(sets: Sequence[FeatureSet], *, origin: str = "features.definitions") -> FeatureSet:
    """Several sets as one: features in order, extra columns united (a column declared
    twice must be declared the same way), and no feature name twice."""
    feats: list[Feature] = []
    columns: dict[str, dict[str, ColumnSpec]] = {}
    seen: dict[str, Feature] = {}
    for fs in sets:
        for f in fs.features:
            if f.name in seen:
                raise DeclarationError(origin, f.name, "name", "declared twice (in the "
                                       "built-in set or another file); rename one")
            seen[f.name] = f
            feats.append(f)
        for table, cols in fs.columns.items():
            for col, spec in cols.items():
                known = columns.setdefault(table, {}).get(col)
                if known is not None and known != spec:
                    raise DeclarationError(origin, None, f"columns.{table}.{col}",
                                           "declared twice with different kinds")
                columns[table][col] = spec
    return FeatureSet(tuple(feats), columns)


def table_columns(table: str, extra: Mapping[str, Mapping[str, ColumnSpec]] | None = None
                  ) -> dict[str, str]:
    """Column -> kind of a raw table: the canonical schema and the declared extras."""
    out = {c.name: c.kind for c in SCHEMAS[table].columns}
    for col, spec in (extra or {}).get(table, {}).items():
        out[col] = spec.kind
    if table in ("transactions", "events"):
        out["_region"] = "region"
    return out


def check_features(fs: FeatureSet, *, origin: str = "<features>",
                   settings: Iterable[str] = ()) -> None:
    """Check every declaration of a set against the tables' columns.

    Raises
    ------
    DeclarationError
        For the first wrong declaration.
    """
    settings = set(SETTINGS) | set(settings)
    seen: set[str] = set()
    for f in fs.features:
        def fail(field_name, message, f=f):
            raise DeclarationError(origin, f.name, field_name, message)

        if not _NAME.match(f.name):
            fail("name", "a feature name is letters, digits and underscores")
        if f.name in seen:
            fail("name", "declared twice")
        if f.name in (*METADATA, LABEL):
            fail("name", f"{f.name!r} is a metadata or label column of the dataset")
        if f.agg not in AGGS:
            import difflib

            close = difflib.get_close_matches(f.agg, AGGS, n=1)
            fail("agg", f"unknown aggregation {f.agg!r}"
                 + (f" (did you mean {close[0]!r}?)" if close else "")
                 + f"; the aggregations are {list(AGGS)}")
        if f.source not in SCHEMAS:
            fail("source", f"unknown table {f.source!r}; the tables are {list(SCHEMAS)}")
        if f.kind not in ("float", "category"):
            fail("kind", f"unknown kind {f.kind!r}; a feature is 'float' or 'category'")
        if f.dtype not in ("float32", "float64"):
            fail("dtype", f"unknown dtype {f.dtype!r}; a numeric feature is float32 or float64")
        if f.kind == "category" and not f.categories:
            fail("categories", "a category feature needs its categories, so that its "
                 "encoding never depends on the values a dataset happens to hold")
        if f.window is not None:
            try:
                w = parse_duration(f.window)
            except (ValueError, TypeError):
                fail("window", f"{f.window!r} is not a duration such as '90s', '10min', '3d'")
            if w.value <= 0:
                fail("window", "a window must be longer than zero")
        cols = table_columns(f.source, fs.columns)
        _check_leakage(f, fail)
        _check_shape(f, cols, fs, settings, seen, fail)
        seen.add(f.name)


def _check_leakage(f: Feature, fail) -> None:
    if f.agg in LABEL_AGGS:
        return
    read = set(f.entity_parts())
    read |= set((f.of,) if isinstance(f.of, str) else (f.of or ()))
    for text in (f.where, f.expr):
        if text:
            with contextlib.suppress(_expr.ExpressionError):  # reported with its field later
                read |= _expr.names(_expr.parse(text))
    leaked = sorted(read & set(LEAKY_COLUMNS))
    if leaked or f.source == "labels" and f.agg not in LABEL_AGGS:
        fail("source" if not leaked else ("where" if f.where and leaked[0] in f.where
                                          else "of"),
             f"reads the label ({', '.join(leaked) or 'labels'}) outside the label-aware "
             f"aggregations {list(LABEL_AGGS)}: that is the target leaking into the features")


def _check_expression(text: str, field_name: str, allowed: set[str], fail) -> None:
    try:
        tree = _expr.parse(text)
    except _expr.ExpressionError as exc:
        fail(field_name, f"does not parse: {exc}")
    unknown = sorted(_expr.names(tree) - allowed)
    if unknown:
        fail(field_name, f"unknown name {unknown[0]!r}; an expression reads the columns of "
             f"its table ({', '.join(sorted(a for a in allowed if not a.startswith('_')))})")


def _check_shape(f: Feature, cols: dict[str, str], fs: FeatureSet, settings: set[str],
                 earlier: set[str], fail) -> None:
    numeric = {c for c, k in cols.items() if k in ("float", "int", "bool")}
    of = (f.of,) if isinstance(f.of, str) else tuple(f.of or ())
    if f.where is not None:
        if f.agg in LABEL_AGGS or f.source in ("accounts", "blacklist") or f.agg in ROW_AGGS:
            fail("where", "a filter applies to window and history aggregations over "
                 "transactions or events")
        _check_expression(f.where, "where", set(cols) - {"_region"} | settings, fail)
    if f.expr is not None and f.agg != "expr":
        fail("expr", "only an 'expr' feature has an expression")
    if f.include_current and f.source != "transactions":
        fail("include_current", "only a transactions feature can count the transaction "
             "being scored")
    if f.agg in ("since_last", "since_first", "age") and f.unit not in TIME_UNITS:
        fail("unit", f"the unit of {f.agg} is a time unit: {list(TIME_UNITS)}")

    if f.source == "blacklist":
        if f.agg not in BLACKLIST_AGGS:
            fail("agg", f"a blacklist feature is one of {list(BLACKLIST_AGGS)}")
        if f.agg == "blacklist_hit" and f.entity not in BLACKLIST_ENTITIES:
            fail("entity", f"a blacklist hit is looked up for one of {list(BLACKLIST_ENTITIES)}")
        if f.agg != "blacklist_hit" and f.entity != "transaction":
            fail("entity", f"{f.agg} is over every entity of the payment: entity transaction")
        if f.agg == "blacklist_source" and f.kind != "category":
            fail("kind", "blacklist_source is a category")
        return
    if f.agg in BLACKLIST_AGGS:
        fail("source", f"{f.agg} reads the blacklist: source blacklist")

    if f.source == "accounts":
        if f.agg not in LOOKUP_AGGS:
            fail("agg", f"an accounts feature is one of {list(LOOKUP_AGGS)}")
        if f.entity not in ("account", "counterparty"):
            fail("entity", "an accounts feature is looked up for the payer (account) or the "
                 "payee (counterparty)")
        want = 2 if f.agg == "distance" else 1
        if len(of) != want:
            fail("of", "distance needs [latitude column, longitude column]" if want == 2
                 else f"{f.agg} needs the accounts column it reads")
        for c in of:
            if c not in cols:
                fail("of", f"accounts has no column {c!r}; it has {sorted(cols)}")
        if f.agg == "age" and cols[of[0]] != "timestamp":
            fail("of", f"age needs a timestamp column, and {of[0]!r} is {cols[of[0]]}")
        if f.agg in ("distance",) and any(c not in numeric for c in of):
            fail("of", "distance needs numeric latitude and longitude columns")
        if f.agg == "value" and f.kind == "float" and of[0] not in numeric:
            fail("of", f"{of[0]!r} is not numeric: declare kind: category with its categories")
        return

    if f.agg in ROW_AGGS:
        if f.entity != "transaction" or f.source != "transactions":
            fail("entity", f"{f.agg} is a value of the transaction itself: entity "
                 "transaction, source transactions (or source accounts for a lookup)")
        if f.agg == "value":
            if len(of) != 1 or of[0] not in cols or of[0] == "_region":
                fail("of", f"value needs a column of transactions; it has "
                     f"{sorted(c for c in cols if c != '_region')}")
            if f.kind == "float" and of[0] not in numeric:
                fail("kind", f"{of[0]!r} is {cols[of[0]]}: declare kind: category with its "
                     "categories, or a numeric column")
        else:
            if not f.expr:
                fail("expr", "an 'expr' feature needs its expression")
            if f.kind != "float":
                fail("kind", "an expression's value is a number")
            _check_expression(f.expr, "expr",
                              set(cols) - {"_region"} | settings | earlier, fail)
        return
    if f.entity == "transaction":
        fail("entity", f"{f.agg} aggregates rows of an entity: name it (account, device, ...)")

    parts = f.entity_parts()
    tx_cols = table_columns("transactions", fs.columns)
    if f.source == "labels":  # the entity of the reported transaction
        cols = tx_cols
    for part in parts:
        if part not in cols:
            fail("entity", f"{f.source} has no column {part!r} for the entity; it has "
                 f"{sorted(c for c in cols if c != '_region')}")
        if part not in tx_cols:
            fail("entity", f"the transactions have no column {part!r}, so a payment cannot "
                 "be matched to this entity")
        if cols[part] in ("float", "timestamp") and part != "_region":
            fail("entity", f"{part!r} is a {cols[part]} column: an entity is an identifier or "
                 "a category")
    if len(set(parts)) != len(parts):
        fail("entity", "names a column twice")

    if f.agg in LABEL_AGGS:
        if f.source != "labels":
            fail("source", f"{f.agg} counts fraud reports: source labels")
        return
    if f.source == "labels":
        fail("agg", f"a labels feature is one of {list(LABEL_AGGS)}")
    if f.source not in ("transactions", "events"):
        fail("source", f"{f.agg} aggregates transactions or events")
    if f.agg in ("sum", "mean", "min", "max", "std", "ratio_to_mean", "zscore"):
        if len(of) != 1 or of[0] not in numeric or of[0] == "_region":
            fail("of", f"{f.agg} needs a numeric column of {f.source}; the numeric columns are "
                 f"{sorted(numeric)}")
        if f.agg == "zscore" and f.include_current:
            fail("include_current", "zscore compares this payment with the mean and spread "
                 "of the earlier rows; it cannot count itself")
        if f.agg in ("ratio_to_mean", "zscore") and f.source != "transactions":
            fail("source", f"{f.agg} compares this payment's value with the entity's rows: "
                 "source transactions")
    elif f.agg == "nunique":
        if len(of) != 1 or of[0] not in cols or cols[of[0]] in ("float", "timestamp"):
            fail("of", "nunique counts the distinct values of an identifier or category column")
        if f.source != "transactions" and of[0] not in tx_cols:
            fail("of", f"the transactions have no column {of[0]!r}")
    elif of:
        fail("of", f"{f.agg} reads no column")
    if f.agg in HISTORY_AGGS and f.window is not None:
        fail("window", f"{f.agg} reads the entity's whole history; for a window, count the "
             "rows in it (agg: count)")
    if f.agg in ("last_distance", "last_speed") and not {"lat", "lon"} <= set(cols):
        fail("source", f"{f.source} has no location")


def features_hash(fs: FeatureSet, settings: Mapping[str, object]) -> str:
    """A short hash of the declarations and the settings they read (the catalog version)."""
    doc = json.dumps({**fs.to_dict(), "settings": dict(settings)}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:12]
