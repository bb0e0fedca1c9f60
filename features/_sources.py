"""Reading raw tables from files or SQL, mapping user column names onto the canonical ones.

Loading only reads and normalises: it renames columns through the column map, converts
timestamps to UTC and turns text columns of numbers, booleans and timestamps into their
types, recording every value that does not parse. It never drops a row; deciding what is
bad is the data contracts' job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.data_contracts import (
    SCHEMAS,
    Column,
    ParseFailure,
    RawTable,
    TableSchema,
    known_mask,
    parse_duration,
    to_utc,
)

from ._config import SourcesConfig

_FORMATS = ("parquet", "csv")


class SourceError(Exception):
    """A raw table that cannot be read at all; names the file and the problem."""

    def __init__(self, origin: str, message: str):
        self.origin = origin
        self.message = message
        super().__init__(f"{origin}: {message}")


@dataclass
class RawData:
    """The raw tables of one load, each with where it came from."""

    tables: dict[str, RawTable] = field(default_factory=dict)

    def frame(self, name: str) -> pd.DataFrame | None:
        """The canonical frame of table ``name``, or None when the source has none."""
        t = self.tables.get(name)
        return None if t is None else t.frame

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def known_at(self, as_of) -> RawData:
        """The tables as known at ``as_of`` (see :func:`load_raw`), origins kept."""
        return _known_at(self, to_utc(as_of))


def expand_env(value: str, setting: str) -> str:
    """``value`` with every ``${VAR}`` replaced by that environment variable.

    Credentials stay in the environment, never in a configuration file.

    Parameters
    ----------
    value : str
    setting : str
        The setting that holds it, for the message (e.g. ``"sources.sql_url"``).

    Raises
    ------
    ValueError
        When a variable is not set (its value is never printed).
    """
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ValueError(f"{setting} refers to ${{{name}}}, which is not set")
        return os.environ[name]

    return re.sub(r"\$\{(\w+)\}", sub, value)


def _find_file(raw_dir: Path, name: str, config: SourcesConfig) -> Path | None:
    base = config.tables.get(name, name)
    if (raw_dir / base).is_dir():  # a table kept as many Parquet files
        return raw_dir / base
    if Path(base).suffix:
        p = raw_dir / base
        return p if p.exists() else None
    formats = _FORMATS if config.format == "auto" else (config.format,)
    for fmt in formats:
        p = raw_dir / f"{base}.{fmt}"
        if p.exists():
            return p
    return None


def table_files(path: Path) -> list[Path]:
    """The files of a table: the file itself, or every Parquet file under its directory
    (for example hive-partitioned by day) in path order, which is the table's row order.

    Raises
    ------
    SourceError
        A directory without Parquet files.
    """
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        raise SourceError(str(path), "is a directory without Parquet files (a table may be "
                                     "one file or a directory of .parquet files)")
    return files


def _read_file(path: Path, config: SourcesConfig) -> pd.DataFrame:
    if path.is_dir():
        # Each file read on its own: a hive partition key (day=...) is in the path, not a
        # column, so the rows are the same as those of one file with the same content.
        return pd.concat([_read_file(p, config) for p in table_files(path)], ignore_index=True)
    if path.stat().st_size == 0:
        raise SourceError(str(path), "the file is empty (0 bytes)")
    try:
        if path.suffix == ".csv":
            # Read text as text; typing happens in normalise_table, which records what fails.
            return pd.read_csv(path, dtype=str, keep_default_na=True,
                               sep=config.csv_separator or _sniff_separator(path))
        return pd.read_parquet(path)
    except Exception as exc:  # a reader failure of any kind is the file's, named here
        import pyarrow as pa

        if not isinstance(exc, OSError | ValueError | pd.errors.ParserError | pa.ArrowException):
            raise
        first = _first_line(exc)
        hint = " (the file is damaged or truncated)" if path.suffix == ".parquet" else ""
        raise SourceError(str(path), f"cannot be read as {path.suffix[1:]}{hint}: {first}") from exc


def _sniff_separator(path: Path) -> str:
    """The field separator of a CSV file, read from its header line."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_sql(name: str, config: SourcesConfig) -> tuple[pd.DataFrame, str] | None:
    table = config.tables.get(name, name)
    try:
        url = expand_env(config.sql_url or "", "sources.sql_url")
    except ValueError as exc:
        raise SourceError("config", str(exc)) from None
    if not url:
        raise SourceError("config", f"format {config.format!r} needs sources.sql_url")
    if config.format == "duckdb":
        from fraudlab._optional import require

        duckdb = require("duckdb", "sql", "sources.format 'duckdb'")

        try:
            with duckdb.connect(url, read_only=True) as con:
                names = {r[0] for r in con.execute(
                    "select table_name from information_schema.tables").fetchall()}
                if table not in names:
                    return None
                frame = con.sql(f'select * from "{table}"').to_arrow_table().to_pandas()
        except duckdb.Error as exc:
            raise SourceError(url, f"cannot read the DuckDB database: {_first_line(exc)}") from exc
        return frame, f"{url}:{table}"
    import sqlalchemy as sa

    # Never print credentials: name the source with the URL's password hidden.
    try:
        safe = sa.engine.make_url(url).render_as_string(hide_password=True)
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        hint = " (database drivers: pip install 'fraudlab[sql]')" if isinstance(exc, ImportError) else ""
        raise SourceError("config", f"sources.sql_url is not a usable SQLAlchemy URL: "
                                    f"{_first_line(exc)}{hint}") from exc
    try:
        if not sa.inspect(engine).has_table(table):
            return None
        with engine.connect() as con:
            frame = pd.read_sql_table(table, con)
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(safe, f"cannot read table {table!r}: "
                                f"{_first_line(getattr(exc, 'orig', None) or exc)}") from exc
    finally:
        engine.dispose()
    return frame, f"{safe}:{table}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def extended_schema(name: str, extra: Mapping | None) -> TableSchema:
    """A table's canonical schema with the extra columns a features file declares (a
    category with categories checked as an enumeration)."""
    schema = SCHEMAS[name]
    if not extra:
        return schema
    cols = tuple(Column(col, "string" if spec.kind == "category" else spec.kind,
                        nullable=spec.nullable, values=spec.categories or None,
                        description=spec.description or "declared in a features file")
                 for col, spec in extra.items())
    return replace(schema, columns=schema.columns + cols)


def normalise_table(frame: pd.DataFrame, name: str, origin: str,
                    config: SourcesConfig | None = None,
                    extra: Mapping | None = None) -> RawTable:
    """Rename a user's table onto a canonical one and type its columns.

    Parameters
    ----------
    frame : DataFrame
        The table as the user has it. It is not modified.
    name : str
        The canonical table name ("transactions", "labels", ...).
    origin : str
        Where the table came from (a file path), for messages.
    config : SourcesConfig, optional
        Column map, naive time zone and default label delay.
    extra : mapping of str to ColumnSpec, optional
        Extra columns a features file declares for this table: kept, typed and checked.

    Returns
    -------
    RawTable
        The canonical frame (canonical columns, then the declared extra ones), the origin,
        every value that failed to parse, by column, and the names of the columns left
        out because nothing declares them (``dropped``).

    Raises
    ------
    SourceError
        When the column map names a column the table does not have.
    """
    config = config or SourcesConfig()
    schema = extended_schema(name, extra)
    mapping = config.column_map.get(name, {})
    # A transactions table may carry its labels as an is_fraud column.
    allowed = schema.column_names + (["is_fraud"] if name == "transactions" else [])
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise SourceError(origin, f"column map for {name} maps unknown canonical column(s) "
                                  f"{unknown}; canonical columns are {schema.column_names}")
    missing = [f"{user!r} (for {canon})" for canon, user in mapping.items()
               if user not in frame.columns]
    if missing:
        raise SourceError(origin, f"column map names column(s) {', '.join(missing)} that "
                                  f"the file does not have; it has {list(frame.columns)}")
    sources = set(mapping.values())
    shadowed = [f"{user!r} onto {canon!r}" for canon, user in mapping.items()
                if canon != user and canon in frame.columns and canon not in sources]
    if shadowed:
        raise SourceError(origin, f"column map for {name} maps {', '.join(shadowed)}, but the "
                                  "file has its own column of that name too: map the file's "
                                  "column onto a declared extra column (columns: in a "
                                  "features file) or leave it out of the file")
    out = frame.rename(columns={user: canon for canon, user in mapping.items()})
    fills = {c: v for c, v in config.fill_missing.get(name, {}).items() if c not in out.columns}
    unknown = [c for c in fills if c not in schema.column_names]
    if unknown:
        raise SourceError(origin, f"fill_missing for {name} names unknown canonical column(s) "
                                  f"{unknown}")
    if fills:
        out = out.assign(**{c: _constant(schema.column(c).kind, v, len(out))
                            for c, v in fills.items()})
    failures: list[ParseFailure] = []
    data = {}
    for col in schema.columns:
        if col.name not in out.columns:
            continue
        try:
            data[col.name], bad = _as_kind(out[col.name], col.kind, config.naive_timezone,
                                           config.date_format)
        except _AmbiguousDates as exc:
            raise SourceError(origin, f"column {col.name}: {exc.count} timestamp(s) such as "
                                      f"{exc.examples} could be day/month or month/day; set "
                                      "sources.date_format, e.g. '%d/%m/%Y %H:%M' or "
                                      "'%m/%d/%Y %H:%M'") from None
        if bad is not None and bad.any():
            if bad.all() and out[col.name].notna().any():
                # Nothing parses: this is a column of the wrong type, not a few bad values.
                data[col.name] = out[col.name]
            else:
                raw_values = out[col.name].to_numpy()[np.flatnonzero(bad)[:5]]
                failures.append(ParseFailure(col.name, col.kind, bad, tuple(raw_values.tolist())))
    # Undeclared columns are left out (and named); a labels column on the transactions
    # is kept for _add_default_labels.
    keep = ["is_fraud"] if name == "transactions" and "is_fraud" in out.columns else []
    dropped = tuple(str(c) for c in out.columns
                    if c not in schema.column_names and c not in keep)
    result = pd.DataFrame(data, index=pd.RangeIndex(len(out)))
    for c in keep:
        result[c] = out[c].to_numpy()
    derived = ", ".join(f"{c} = {v!r} (filled)" for c, v in fills.items()) or None
    return RawTable(name=name, frame=result, origin=origin, parse_failures=tuple(failures),
                    derived=derived, schema=schema if extra else None, dropped=dropped)


def _constant(kind: str, value, n: int) -> pd.Series:
    """A column of one configured value, typed as its canonical kind."""
    dtype = {"string": "str", "float": "float64", "int": "Int64", "bool": "boolean",
             "timestamp": "datetime64[us, UTC]"}[kind]
    return pd.Series([value] * n, dtype=dtype)


class _AmbiguousDates(ValueError):
    """Text timestamps whose day and month cannot be told apart."""

    def __init__(self, count: int, examples: list):
        self.count, self.examples = count, examples
        super().__init__(f"{count} value(s) like {examples}")


# An explicit UTC offset after the time of day: Z, +08, +0800 or +08:00 (a date alone,
# such as 2026-01-05, ends in digits that are not an offset).
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
# Numeric dates that do not start with the year: 05/03/2026 is March or May.
_DAY_MONTH = r"^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(?:\D|$)"


def _parse_times(text: pd.Series, tz: str, date_format: str | None) -> pd.Series:
    """Text timestamps as UTC; NaT where a value does not parse.

    Values with an explicit offset are read in UTC (several offsets may mix, as across a
    daylight-saving change); the others are local times of ``tz``. Without
    ``date_format`` a value must be ISO 8601; other spellings are tried by dateutil
    unless they are numeric day/month dates, which are refused as ambiguous.
    """
    text = text.str.strip().where(lambda v: v != "")
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    present = text.notna()
    with_offset = present & text.str.contains(_OFFSET, regex=True, na=False)
    for mask, utc in ((with_offset, True), (present & ~with_offset, False)):
        if not mask.any():
            continue
        part = text[mask]
        fmt = date_format or "ISO8601"
        t = pd.to_datetime(part, format=fmt, errors="coerce", utc=utc)
        if date_format is None:
            rest = t.isna()
            if rest.any():
                ambiguous = part[rest].str.contains(_DAY_MONTH, regex=True)
                if ambiguous.any():
                    raise _AmbiguousDates(int(ambiguous.sum()),
                                          part[rest][ambiguous].head(3).tolist())
                spelled = pd.to_datetime(part[rest], format="mixed", errors="coerce", utc=utc)
                if spelled.dtype == t.dtype:  # else an offset this parser cannot line up
                    t = t.mask(rest, spelled.reindex(t.index))
        if not utc:
            t = t.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        out[mask] = t.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return out


def _as_kind(s: pd.Series, kind: str, tz: str,
             date_format: str | None = None) -> tuple[pd.Series, np.ndarray | None]:
    """Convert ``s`` to the canonical dtype of ``kind``; also return where parsing failed."""
    s = s.reset_index(drop=True)
    present = s.notna().to_numpy()
    is_text = s.dtype == object or pd.api.types.is_string_dtype(s.dtype)
    if kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            t = s
            if getattr(t.dt, "tz", None) is None:
                t = t.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
            t = t.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        elif is_text:
            t = _parse_times(s.astype("str").where(s.notna()), tz, date_format)
        else:
            return s, None
        return t, present & t.isna().to_numpy()
    if kind in ("float", "int"):
        if pd.api.types.is_bool_dtype(s.dtype):
            return s, None
        if pd.api.types.is_numeric_dtype(s.dtype):
            v = s
        elif is_text:
            v = pd.to_numeric(s.str.strip(), errors="coerce")
        else:
            return s, None
        bad = present & v.isna().to_numpy()
        if kind == "int":
            whole = v.isna() | (v == np.floor(v))
            bad |= ~whole.to_numpy()
            if bad.any():
                return v.astype("float64"), bad
            # Whole numbers with gaps stay integers (nullable), so the not-null rule, not
            # the type rule, speaks of the gaps.
            return v.astype("Int64" if v.isna().any() else "int64"), bad
        return v.astype("float64"), bad
    if kind == "bool":
        if pd.api.types.is_bool_dtype(s.dtype):
            return (s.astype(bool) if not s.isna().any() else s), None
        if pd.api.types.is_numeric_dtype(s.dtype):
            v = s.map({1: True, 0: False})
        elif is_text:
            v = s.str.strip().str.lower().map(
                {"true": True, "false": False, "1": True, "0": False, "t": True, "f": False,
                 "yes": True, "no": False})
        else:
            return s, None
        bad = present & v.isna().to_numpy()
        return (v.astype(bool) if not v.isna().any() else v.astype("boolean")), bad
    # strings
    if is_text:
        return s.astype("str"), None
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("str").where(present, None), None
    return s, None


def load_raw(source: str | Path | Mapping[str, pd.DataFrame],
             config: SourcesConfig | None = None, *,
             as_of: pd.Timestamp | str | None = None,
             tables: tuple[str, ...] | None = None,
             columns: Mapping | None = None) -> RawData:
    """Load the canonical raw tables from a directory, a SQL source, or DataFrames.

    Parameters
    ----------
    source : path or mapping of DataFrames
        A directory holding ``<table>.parquet`` or ``<table>.csv`` files (names may be
        overridden in ``config.tables``), or, for ``format: duckdb`` / ``sql``, ignored in
        favour of ``config.sql_url``; or a mapping of table name to a DataFrame the user
        already has (for example in a notebook).
    config : SourcesConfig, optional
        Format, column map, time zone and default label delay.
    as_of : timestamp, optional
        When given, only data known at that time is kept: transactions and events before
        it, labels reported by then, blacklist listings made by then (a later delisting is
        not yet known). Used to replay history; :func:`fraudlab.data_contracts.validate_raw`
        is what flags timestamps after the as-of time in data that claims to be current.
    tables : tuple of str, optional
        Which tables to load; default all the canonical tables that are present.
    columns : mapping, optional
        Per table, the extra columns to keep (``FeatureSet.columns`` of the features that
        will be built); any other column beyond the canonical ones is left out and named
        in ``RawTable.dropped``.

    Returns
    -------
    RawData

    Raises
    ------
    SourceError
        A file that cannot be read, a missing transactions table, or a column map that
        names a column the table lacks.
    """
    config = config or SourcesConfig()
    names = tables or tuple(SCHEMAS)
    raw = RawData()
    for name in names:
        if isinstance(source, Mapping):
            if name not in source:
                continue
            origin, frame = f"<{name} DataFrame>", source[name]
        elif config.format in ("duckdb", "sql"):
            got = _read_sql(name, config)
            if got is None:
                continue
            frame, origin = got
        else:
            path = _find_file(Path(source), name, config)
            if path is None:
                continue
            origin, frame = str(path), _read_file(path, config)
        raw.tables[name] = normalise_table(frame, name, origin, config,
                                           (columns or {}).get(name))
    if "transactions" not in raw.tables:
        where = source if not isinstance(source, Mapping) else "the given tables"
        raise SourceError(str(where), "no transactions table found (looked for "
                                      "transactions.parquet / transactions.csv)")
    _add_default_labels(raw, config)
    if as_of is not None:
        raw = _known_at(raw, to_utc(as_of))
    return raw


def known_at(raw: RawData | Mapping[str, pd.DataFrame], as_of) -> dict[str, pd.DataFrame]:
    """The canonical tables as they were known at ``as_of`` (see :func:`load_raw`).

    Parameters
    ----------
    raw : RawData or mapping of str to DataFrame
    as_of : timestamp

    Returns
    -------
    dict of str to DataFrame
        New frames; the inputs are not modified.
    """
    if not isinstance(raw, RawData):
        raw = RawData({k: RawTable(k, v, f"<{k}>") for k, v in raw.items() if v is not None})
    return {k: t.frame for k, t in _known_at(raw, to_utc(as_of)).tables.items()}


def _add_default_labels(raw: RawData, config: SourcesConfig) -> None:
    """Labels without arrival times get one from the configured default label delay.

    Two shapes are handled: a labels table without ``reported_at``, and no labels table
    but an ``is_fraud`` column on the transactions (then that column becomes the labels).
    """
    delay = parse_duration(config.default_label_delay)
    tx = raw.tables["transactions"]
    labels = raw.tables.get("labels")
    if labels is None and "is_fraud" in tx.frame.columns:
        f = tx.frame
        flag, bad = _as_kind(f["is_fraud"], "bool", config.naive_timezone)
        lab = pd.DataFrame({"tx_id": f["tx_id"], "is_fraud": flag,
                            "reported_at": f["ts"] + delay, "source": "internal",
                            "fraud_type": pd.Series([None] * len(f), dtype="str")})
        failures = ((ParseFailure("is_fraud", "bool", bad),)
                    if bad is not None and bad.any() else ())
        raw.tables["labels"] = RawTable("labels", lab, f"{tx.origin} (is_fraud column)",
                                        failures, derived=f"reported_at = ts + {config.default_label_delay}")
        raw.tables["transactions"] = RawTable("transactions", f.drop(columns="is_fraud"),
                                              tx.origin, tx.parse_failures, tx.derived)
    elif labels is not None and "reported_at" not in labels.frame.columns:
        f = labels.frame.copy()
        ts = tx.frame.set_index("tx_id")["ts"] if "ts" in tx.frame.columns else None
        if ts is not None and ts.index.is_unique:
            f["reported_at"] = f["tx_id"].map(ts).to_numpy() + delay
            if "source" not in f.columns:
                f["source"] = "internal"
            if "fraud_type" not in f.columns:
                f["fraud_type"] = pd.Series([None] * len(f), dtype="str")
            cols = [c for c in SCHEMAS["labels"].column_names if c in f.columns]
            f = f[cols + [c for c in f.columns if c not in cols]]
            raw.tables["labels"] = RawTable("labels", f, labels.origin, labels.parse_failures,
                                            derived=f"reported_at = ts + {config.default_label_delay}")


def _known_at(raw: RawData, as_of: pd.Timestamp) -> RawData:
    """What was known at ``as_of``: the data a refresh at that time could have seen."""
    out = RawData()
    for name, t in raw.tables.items():
        f = t.frame
        keep = known_mask(name, f, as_of)
        if name == "blacklist" and "delisted_at" in f.columns:
            f = f.assign(delisted_at=f["delisted_at"].where(f["delisted_at"] <= as_of))
        failures = tuple(ParseFailure(p.column, p.kind, p.mask[keep], p.examples)
                         for p in t.parse_failures)
        kept = f.reset_index(drop=True) if keep.all() else f[keep].reset_index(drop=True)
        out.tables[name] = RawTable(name, kept, t.origin,
                                    tuple(p for p in failures if p.mask.any()), t.derived)
    return out


# --------------------------------------------------------------------------- writing


def write_tables(tables: Mapping[str, pd.DataFrame], out_dir: str | Path,
                 manifest: dict | None = None, *, partition: str | None = None,
                 part: int | None = None) -> dict[str, Path]:
    """Write canonical tables as ``<name>.parquet`` (and ``manifest.json``) into a folder.

    The files are deterministic: the same frames give byte-identical files, and the
    manifest records each file's SHA-256.

    Parameters
    ----------
    tables : mapping of str to DataFrame
    out_dir : path
    manifest : dict, optional
    partition : {None, "day"}
        ``"day"``: the transactions are written as a directory hive-partitioned by the UTC
        day of ``ts`` (``transactions/day=2026-01-01/part-0.parquet``), the layout of a
        table too large for one file, and the events by month (``month=2026-01``: account
        lifecycle events reach years back, a few a day); the other tables stay single
        files.
    part : int, optional
        With ``partition``: the number of this piece of a table written in several calls
        (the shards of a large world): files are ``part-NNNNN.parquet`` and every table
        is a directory (``accounts/part-00003.parquet``).
    """
    if partition not in (None, "day"):
        raise ValueError(f"partition must be None or 'day', not {partition!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    digests = {}
    if part is not None and partition is None:
        raise ValueError("part needs a partition")
    piece = "part-0.parquet" if part is None else f"part-{part:05d}.parquet"
    for name, frame in tables.items():
        if part is not None and name not in ("transactions", "events"):
            p = out / name / piece
            p.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(p, index=False, compression="zstd")
            paths[name] = p.parent
            digests[p.relative_to(out).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
            continue
        if partition == "day" and name in ("transactions", "events"):
            paths[name] = out / name
            # Events by month: account lifecycle events reach years back, a few a day.
            key, fmt = ("day", "%Y-%m-%d") if name == "transactions" else ("month", "%Y-%m")
            day = frame["ts"].dt.strftime(fmt).fillna("unknown").to_numpy(dtype=object)
            for d in np.unique(day):
                p = out / name / f"{key}={d}" / piece
                p.parent.mkdir(parents=True, exist_ok=True)
                frame[day == d].to_parquet(p, index=False, compression="zstd")
                digests[p.relative_to(out).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
            continue
        p = out / f"{name}.parquet"
        frame.to_parquet(p, index=False, compression="zstd")
        paths[name] = p
        digests[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    if manifest is not None:
        doc = {**manifest, "files": digests}
        p = out / "manifest.json"
        p.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        paths["manifest"] = p
    return paths
