"""The labeled-dataset build on a Dask cluster: the same engine on entity-partitioned data.

A feature of an entity (an account's windows, a device's history, a payee's fraud reports)
reads only that entity's rows. So the build partitions each side by the entity's first
key column, hashed into ``partitions`` buckets: every bucket then holds complete entity
histories, and :func:`compute_features` on one bucket gives, for the bucket's
transactions, exactly what it gives on the whole table. Three stages of tasks run on the
cluster, exchanging Parquet files in a scratch folder (the shuffle; on several machines
it must be shared storage):

1. *split*, one task per group of raw files: read, normalise and validate them (their
   rows, on their own), keep what was known at the as-of time, and write the rows once
   per key they are partitioned by, plus the transactions once per time block, and the
   ids the contract's rules across files need, hashed by id;
   *keys*, one task per bucket of ids: a unique id repeated in two files, a label whose
   transaction is absent or later than its report (the rules the in-process contract
   states on whole tables);
2. *features*, one task per (key, bucket): the features keyed on that column for the
   bucket's transactions, written per time block;
3. *assemble*, one task per time block: the block's transactions, their labels, every
   key's features joined back on the row's sequence number, then the transaction's own
   values, blacklist hits and expressions (which may read the other features), the
   contract on the block, and the block's part of the dataset.

Small tables (labels, blacklist) are read whole by the tasks that need them; accounts are
partitioned with the account keys. No task holds a whole large table or the dataset;
the client only sees counts and contract results. The rows of the dataset are those of
:func:`build_dataset` in the same order (time, then input order: a raw table's files in
path order), and every feature is computed by the same kernels from the same rows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.data_contracts import (
    SCHEMAS,
    ContractReport,
    ContractsConfig,
    RawTable,
    RuleResult,
    json_safe,
    known_mask,
    parse_duration,
    quarantine_frame,
    to_utc,
    validate_dataset,
    validate_raw,
)

from ._catalog import as_feature_set, catalog_version, feature_settings, resolve_features
from ._config import FeaturesConfig, SourcesConfig
from ._dataset import _TX_META, LABEL, DatasetContractError, _label_metadata, available_features
from ._declarations import ROW_AGGS, Feature, FeatureSet, entity_columns
from ._engine import compute_features, region_codes
from ._lookup import positions
from ._sources import _find_file, _read_file, normalise_table, table_files

_SEQ = "_seq"  # (file rank << 40) + row in the file: the row's place in the input order
_BLOCK = "_block"
_ROW_BITS = 40
PARTS_FILE = "_dataset.json"
_BROADCAST = ("labels", "blacklist")
_KEYS = "keys"
_UNIQUE = {name: next(c.name for c in schema.columns if c.unique)
           for name, schema in SCHEMAS.items() if any(c.unique for c in schema.columns)}


class RawContractError(Exception):
    """A raw file failed its contract in the distributed build; ``report`` holds every
    file's results and the quarantined rows."""

    def __init__(self, report: ContractReport):
        self.report = report
        lines = "; ".join(r.line() for r in report.failures[:3])
        super().__init__(f"raw data failed their contracts: {lines}")


@dataclass(frozen=True)
class _Job:
    """What every task needs to know (sent to the workers once per task, small)."""

    scratch: str
    as_of: pd.Timestamp
    lo: pd.Timestamp | None
    hi: pd.Timestamp
    config: FeaturesConfig
    sources: SourcesConfig
    contracts: ContractsConfig | None
    after_as_of: str
    catalog: FeatureSet
    groups: dict  # key column -> (feature names, tables partitioned by it)
    row_features: tuple[str, ...]
    buckets: int
    block_us: int
    keyed: tuple[str, ...] = ()  # tables whose unique id the keys stage checks across files
    refs: bool = False  # the keys stage checks the labels against the transactions


def _key_of(f: Feature) -> str | None:
    """The column a feature's rows are partitioned by; None for features of the payment
    itself (its values, blacklist hits, expressions), computed per time block."""
    if f.source != "accounts" and (f.agg in ROW_AGGS or f.source == "blacklist"):
        return None
    return entity_columns(f.entity)[0]  # for an accounts lookup, the payer's or payee's id


def plan_groups(catalog: FeatureSet) -> tuple[dict, tuple[str, ...]]:
    """Features by the column their rows are partitioned on, with the tables each key
    partitions (transactions always; events, accounts when its features read them), and
    the features of the payment itself."""
    groups: dict[str, tuple[list[str], set[str]]] = {}
    row: list[str] = []
    for f in catalog.features:
        key = _key_of(f)
        if key is None:
            row.append(f.name)
            continue
        names, tables = groups.setdefault(key, ([], {"transactions"}))
        names.append(f.name)
        if f.source in ("events", "accounts", "labels"):
            tables.add(f.source)
    return ({k: (tuple(n), tuple(sorted(t))) for k, (n, t) in groups.items()}, tuple(row))


def _bucket(frame: pd.DataFrame, key: str, job: _Job, table: str) -> np.ndarray:
    """Each row's bucket for ``key``: a hash of the value, the same in every table and
    on every machine (an accounts row's account_id for a payee key too). A row without
    the key is in no entity's history and reads none (its features of that key are
    missing), so those rows are spread over the buckets by their sequence number: in one
    bucket they were most of a table (no payee on 80% of the payments)."""
    if key == "_region":
        codes = region_codes(frame, job.config.region_cell_deg)
        values, null = pd.Series(codes), codes < 0
    else:
        values = frame["account_id" if table == "accounts" else key]
        null = values.isna().to_numpy()
    h = pd.util.hash_pandas_object(values, index=False).to_numpy()
    out = (h % np.uint64(job.buckets)).astype(np.int64)
    if null.any():
        out[null] = frame[_SEQ].to_numpy()[null] % job.buckets
    return out


def _hash(values: pd.Series, buckets: int) -> np.ndarray:
    """A bucket per value, the same for a value in any table (whatever its string dtype)."""
    h = pd.util.hash_pandas_object(pd.Series(values.to_numpy(dtype=object)), index=False)
    return (h.to_numpy() % np.uint64(buckets)).astype(np.int64)


def _keys(job: _Job, bucket: int, files: Mapping[str, Sequence[str]]) -> ContractReport:
    """The keys stage for one bucket of ids: the rules that need rows of several files, as
    the in-process contract states them. A unique id repeated in two files (every
    occurrence fails), a label whose transaction is not in the data, a label reported
    before its transaction. Failing rows are read back from their own files for the
    quarantine."""
    root = Path(job.scratch) / _KEYS
    got = {t: _read_dir(root / t / f"b={bucket}") for t in (*job.keyed, "transactions", "labels")}
    results: list[RuleResult] = []
    bad: dict[str, dict[int, list[tuple[str, str]]]] = {}

    def rule(table, name, expectation, column, failing: np.ndarray, frame, reason, shown):
        results.append(RuleResult(table, table, name, expectation, column, "row",
                                  not failing.any(), int(failing.sum()),
                                  [json_safe(v) for v in frame[shown].to_numpy()[failing][:5]]))
        for seq in frame[_SEQ].to_numpy()[failing]:
            bad.setdefault(table, {}).setdefault(int(seq), []).append((name, reason))

    for table in job.keyed:
        f, col = got.get(table), _UNIQUE[table]
        if f is not None:
            dup = f[col].duplicated(keep=False).to_numpy() & f[col].notna().to_numpy()
            rule(table, f"{col} is unique", "expect_column_values_to_be_unique", col, dup, f,
                 f"{col} is duplicated", col)
    lab, tx = got.get("labels"), got.get("transactions")
    if job.refs and lab is not None:
        if tx is None:
            tx = pd.DataFrame({"tx_id": pd.Series(dtype=object),
                               "ts": pd.Series(dtype="datetime64[us, UTC]")})
        known = lab["tx_id"].isin(tx["tx_id"]).to_numpy()
        rule("labels", "tx_id refers to a known transaction", "expect_column_values_to_be_in_set",
             "tx_id", ~known, lab, "label for an unknown transaction", "tx_id")
        first = tx.drop_duplicates("tx_id").set_index("tx_id")["ts"]  # in input order
        ts = first.reindex(lab["tx_id"]).to_numpy()
        rep = lab["reported_at"].to_numpy()
        early = ~pd.isna(ts) & ~pd.isna(rep) & (rep < ts)
        rule("labels", "reported_at >= the transaction's ts",
             "expect_column_pair_values_a_to_be_greater_than_b", "reported_at", early, lab,
             "label reported before its transaction happened", "tx_id")
    quarantine = [q for table, rows in bad.items() for q in _key_quarantine(job, table, rows, files)]
    q = pd.concat(quarantine, ignore_index=True) if quarantine else None
    return ContractReport(results, q if q is not None else pd.DataFrame(), job.as_of, {})


def _key_quarantine(job: _Job, table: str, rows: dict[int, list[tuple[str, str]]],
                    files: Mapping[str, Sequence[str]]) -> list[pd.DataFrame]:
    """Quarantine rows of the keys stage, read back from each row's own file."""
    by_file: dict[int, dict[int, list]] = {}
    for seq, why in rows.items():
        by_file.setdefault(seq >> _ROW_BITS, {})[seq & ((1 << _ROW_BITS) - 1)] = why
    out = []
    for rank, bad in sorted(by_file.items()):
        path = files[table][rank]
        raw = normalise_table(_read_file(Path(path), job.sources), table, path, job.sources,
                              job.catalog.columns.get(table))
        out.append(quarantine_frame(raw, bad))
    return out


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)  # a retried task rewrites whole files only


def _read_dir(path: Path) -> pd.DataFrame | None:
    """Every part under a folder (None when there are none), in input order."""
    if not path.exists():
        return None
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        return None
    frame = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    return frame.sort_values(_SEQ, kind="stable", ignore_index=True)


def _split(job: _Job, table: str, paths: list[str], first_rank: int) -> dict:
    """Stage 1 for consecutive files of one table: normalise and validate them together
    (one contract run for many small files; the quarantine names each row's own file
    and row), cut at as-of, partition, write one file per bucket."""
    frames = [_read_file(Path(p), job.sources) for p in paths]
    sizes = np.array([len(f) for f in frames], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    origin = paths[0] if len(paths) == 1 else \
        f"{Path(paths[0]).parent} ({len(paths)} files, {Path(paths[0]).name} to {Path(paths[-1]).name})"
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    del frames
    raw = normalise_table(frame, table, origin, job.sources, job.catalog.columns.get(table))
    del frame
    report = None
    if job.contracts is not None:
        check = raw
        if table in job.keyed:  # unique across files: the keys stage checks it
            schema = raw.schema or SCHEMAS[table]
            check = dataclasses.replace(raw, schema=dataclasses.replace(schema, columns=tuple(
                dataclasses.replace(c, unique=False) for c in schema.columns)))
        report = validate_raw({table: check}, job.contracts, as_of=job.as_of,
                              after_as_of=job.after_as_of)
        if len(paths) > 1 and len(report.quarantine):
            q = report.quarantine.copy()
            i = np.searchsorted(offsets, q["row"].to_numpy(), side="right") - 1
            q["origin"] = np.asarray(paths, dtype=object)[i]
            q["row"] = q["row"].to_numpy() - offsets[i]
            report.quarantine = q
        if not report.success:
            return {"table": table, "report": report, "rows": 0, "blocks": []}
    rank = first_rank + np.repeat(np.arange(len(paths), dtype=np.int64), sizes)
    row = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], sizes)
    root = Path(job.scratch)
    name = f"{first_rank:06d}.parquet"
    f = raw.frame
    if job.contracts is not None and (table in job.keyed or
                                      (job.refs and table in ("transactions", "labels"))):
        col = _UNIQUE[table]
        keys = pd.DataFrame({col: f[col], _SEQ: (rank << _ROW_BITS) + row})
        extra = {"transactions": "ts", "labels": "reported_at"}.get(table)
        if extra:
            keys[extra] = f[extra]
        _write_groups(keys, _hash(f[col], job.buckets),
                      lambda i: root / _KEYS / table / f"b={i}" / name)
    keep = known_mask(table, f, job.as_of)
    f = f[keep].reset_index(drop=True)
    if table == "blacklist" and "delisted_at" in f.columns:
        f = f.assign(delisted_at=f["delisted_at"].where(f["delisted_at"] <= job.as_of))
    f[_SEQ] = (rank[keep] << _ROW_BITS) + row[keep]
    if table in _BROADCAST:
        _write(f, root / table / name)
        return {"table": table, "report": report, "rows": len(f), "blocks": []}
    if table == "accounts":
        # Partitioned once, by account_id: a payee's id hashes as the same payer's does.
        _write_groups(f, _bucket(f, "account_id", job, table),
                      lambda i: root / table / f"b={i}" / name)
    for key, (_, tables) in job.groups.items():
        if table in tables and table != "accounts":
            _write_groups(f, _bucket(f, key, job, table),
                          lambda i, key=key: root / table / _safe(key) / f"b={i}" / name)
    blocks: list[int] = []
    if table == "transactions":
        blocks = _write_groups(f, _micros(f["ts"]) // job.block_us,
                               lambda i: root / "blocks" / f"k={i}" / name)
    return {"table": table, "report": report, "rows": len(f), "blocks": blocks}


def _write_groups(frame: pd.DataFrame, group: np.ndarray, path_of) -> list[int]:
    """Write the rows of each value of ``group`` (in input order) to ``path_of(value)``;
    the values written."""
    order = np.argsort(group, kind="stable")
    cuts = np.flatnonzero(np.diff(group[order])) + 1
    written = []
    for rows in np.split(order, cuts) if len(order) else []:
        value = int(group[rows[0]])
        _write(frame.iloc[rows], path_of(value))
        written.append(value)
    return written


def _safe(key: str) -> str:
    return "key=" + key.replace("/", "_")


def _micros(ts: pd.Series) -> np.ndarray:
    return ts.astype("datetime64[us, UTC]").array.asi8


def _features(job: _Job, key: str, bucket: int) -> int:
    """Stage 2 for one (key, bucket): its features for its transactions, per time block."""
    root = Path(job.scratch)
    names, tables = job.groups[key]
    tx = _read_dir(root / "transactions" / _safe(key) / f"b={bucket}")
    if tx is None:
        return 0
    tx = tx.sort_values("ts", kind="stable", ignore_index=True)  # input order among ties
    frames = {"transactions": tx}
    if "events" in tables:
        ev = _read_dir(root / "events" / _safe(key) / f"b={bucket}")
        if ev is not None:
            frames["events"] = ev
    if "accounts" in tables:
        acc = _read_dir(root / "accounts" / f"b={bucket}")
        if acc is not None:
            frames["accounts"] = acc
    if "labels" in tables:
        labels = _read_dir(root / "labels")
        if labels is not None:
            frames["labels"] = labels[labels["tx_id"].isin(tx["tx_id"])].reset_index(drop=True)
    ts = tx["ts"]
    mask = ts < job.hi
    if job.lo is not None:
        mask &= ts >= job.lo
    rows = np.flatnonzero(mask.to_numpy())
    wanted = FeatureSet(tuple(f for f in job.catalog.features if f.name in names),
                        job.catalog.columns)
    out = compute_features(frames, rows=rows, config=job.config, catalog=wanted)
    out.insert(0, _SEQ, tx[_SEQ].to_numpy()[rows])
    blk = _micros(ts)[rows] // job.block_us
    for i in np.unique(blk):
        _write(out[blk == i], root / "features" / _safe(key) / f"k={i}" / f"b={bucket:06d}.parquet")
    return len(rows)


def _assemble(job: _Job, block: int, out_dir: str, origin: str, part: int) -> dict:
    """Stage 3 for one time block: metadata, label, every feature, contract, write."""
    from ._dataset import dataset_schema

    root = Path(job.scratch)
    tx = _read_dir(root / "blocks" / f"k={block}")
    tx = tx.sort_values("ts", kind="stable", ignore_index=True)
    mask = tx["ts"] < job.hi
    if job.lo is not None:
        mask &= tx["ts"] >= job.lo
    tx = tx[mask.to_numpy()].reset_index(drop=True)
    labels = _read_dir(root / "labels")
    meta = _label_metadata(tx[list(_TX_META)], labels, job.as_of, job.config.label_maturity)
    given = {}
    for key, (names, _) in job.groups.items():
        parts = [pd.read_parquet(p) for p in
                 sorted((root / "features" / _safe(key) / f"k={block}").glob("b=*.parquet"))]
        got = pd.concat(parts, ignore_index=True)
        pos = positions(tx[_SEQ], pd.Index(got[_SEQ]))
        if len(got) != len(tx) or (pos < 0).any():
            raise RuntimeError(f"time block {block}: the features keyed on {key} hold "
                               f"{len(got)} rows for {len(tx)} transactions")
        for n in names:
            given[n] = got[n].iloc[pos].reset_index(drop=True)
    if job.row_features:
        frames = {"transactions": pd.concat([tx, pd.DataFrame(given)], axis=1)}
        blacklist = _read_dir(root / "blacklist")
        if blacklist is not None:
            frames["blacklist"] = blacklist
        wanted = FeatureSet(tuple(f for f in job.catalog.features if f.name in job.row_features),
                            job.catalog.columns)
        own = compute_features(frames, config=job.config, catalog=wanted)
        given.update({n: own[n] for n in own.columns})
    features = pd.DataFrame({f.name: given[f.name] for f in job.catalog.features})
    dataset = pd.concat([meta, features], axis=1)
    name = f"part-{part:05d}.parquet"
    report = validate_dataset(
        RawTable("dataset", dataset, f"{origin}/{name}"), dataset_schema(job.catalog),
        as_of=job.as_of, label=LABEL, mature="is_mature", fraud_rate=(0.0, 1.0),
        features=job.catalog.names())
    report.results = [r for r in report.results if not r.rule.startswith("fraud rate")]
    _write(dataset, Path(out_dir) / name)
    mature = dataset["is_mature"].to_numpy()
    return {"file": name, "rows": len(dataset), "block": block,
            "start": dataset["ts"].min().isoformat() if len(dataset) else None,
            "end": dataset["ts"].max().isoformat() if len(dataset) else None,
            "mature": int(mature.sum()), "mature_frauds": int(dataset[LABEL].to_numpy()[mature].sum()),
            "report": report}


# --------------------------------------------------------------------------- client side


@dataclass
class PartitionedDataset:
    """A labeled dataset written as Parquet parts, one per time block, with
    ``_dataset.json`` (the attributes of :func:`build_dataset`'s frame, the parts and the
    contract). Read it whole or a time window at a time with :meth:`read`."""

    path: Path
    attrs: dict = field(default_factory=dict)
    parts: list[dict] = field(default_factory=list)

    @classmethod
    def open(cls, path: str | Path) -> PartitionedDataset:
        path = Path(path)
        doc = json.loads((path / PARTS_FILE).read_text())
        return cls(path, doc["attrs"], doc["parts"])

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.parts)

    def iter_parts(self, start=None, end=None, columns: Sequence[str] | None = None):
        """Each part whose time block overlaps ``start <= ts < end`` as a DataFrame of its
        rows in the window, one part in memory at a time."""
        lo = to_utc(start) if start is not None else None
        hi = to_utc(end) if end is not None else None
        for p in self.parts:
            if not p["rows"] or (lo is not None and to_utc(p["end"]) < lo) \
                    or (hi is not None and to_utc(p["start"]) >= hi):
                continue
            f = pd.read_parquet(self.path / p["file"], columns=list(columns) if columns else None)
            if lo is not None or hi is not None:
                keep = np.ones(len(f), bool)
                if lo is not None:
                    keep &= (f["ts"] >= lo).to_numpy()
                if hi is not None:
                    keep &= (f["ts"] < hi).to_numpy()
                f = f[keep]
            yield f

    def read(self, start=None, end=None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows with ``start <= ts < end`` (default all), reading only the parts whose
        time block overlaps the window; ``attrs`` as :func:`build_dataset` sets them."""
        frames = list(self.iter_parts(start, end, columns))
        if not frames:
            first = pd.read_parquet(self.path / self.parts[0]["file"], columns=columns) \
                if self.parts else pd.DataFrame()
            frames = [first.iloc[:0]]
        out = pd.concat(frames, ignore_index=True)
        out.attrs = dict(self.attrs)
        return out


def _sum_results(results: list[RuleResult], origin: str) -> list[RuleResult]:
    """One result per (rule, column) over the parts: failing rows summed, a few examples."""
    merged: dict[tuple, RuleResult] = {}
    for r in results:
        k = (r.rule, r.column, r.level)
        if k not in merged:
            merged[k] = RuleResult(r.table, origin, r.rule, r.expectation, r.column, r.level,
                                   r.success, r.failing_count, list(r.examples[:5]), r.message)
            continue
        m = merged[k]
        m.success = m.success and r.success
        m.failing_count += r.failing_count
        m.examples = (m.examples + list(r.examples))[:5]
        if not r.success and m.message != r.message:
            m.message = m.message or r.message
    return list(merged.values())


def _merge_reports(reports: list[ContractReport], as_of: pd.Timestamp) -> ContractReport:
    results = [r for rep in reports for r in rep.results]
    qs = [rep.quarantine for rep in reports if len(rep.quarantine)]
    quarantine = pd.concat(qs, ignore_index=True) if qs else reports[0].quarantine.iloc[:0]
    tables: dict[str, int] = {}
    later: dict[str, int] = {}
    for rep in reports:
        for k, n in rep.tables.items():
            tables[k] = tables.get(k, 0) + n
        for k, n in rep.later_rows.items():
            later[k] = later.get(k, 0) + n
    return ContractReport(results, quarantine, as_of, tables, later)


def _with_key_results(report: ContractReport, keyed: list[ContractReport],
                      files: Mapping[str, list[Path]]) -> ContractReport:
    """The raw report with the keys stage's results, summed per table and rule over the
    buckets; a row failing rules of both stages is one quarantine row naming them all."""
    by_table: dict[str, list[RuleResult]] = {}
    for rep in keyed:
        for r in rep.results:
            by_table.setdefault(r.table, []).append(r)
    summed: list[RuleResult] = []
    for table, results in by_table.items():
        where = files[table]
        origin = str(where[0]) if len(where) == 1 else f"{where[0].parent} ({len(where)} files)"
        summed += _sum_results(results, origin)
    qs = [report.quarantine, *(rep.quarantine for rep in keyed if len(rep.quarantine))]
    q = pd.concat([x for x in qs if len(x)], ignore_index=True) if any(len(x) for x in qs) \
        else report.quarantine
    if len(q):
        def join(values):
            return "; ".join(dict.fromkeys(v for x in values for v in x.split("; ")))

        q = (q.groupby(["table", "origin", "row"], sort=False, as_index=False)
             .agg(key=("key", "first"), rules=("rules", join), reasons=("reasons", join),
                  record=("record", "first"))[list(report.quarantine.columns)])
    return ContractReport([*report.results, *summed], q, report.as_of, report.tables,
                          report.later_rows)


def _rows_of(path: Path) -> int:
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return max(1, path.stat().st_size // 100)  # a CSV line is about 100 bytes


_GROUP_ROWS = 1_000_000


def _file_groups(paths: list[Path], rows: int | None = None):
    """Consecutive files of a table in groups of about ``rows`` rows (default
    ``_GROUP_ROWS``; a file larger than that is a group of its own), each with the rank of
    its first file."""
    rows = rows or _GROUP_ROWS
    group: list[Path] = []
    start = total = 0
    for i, p in enumerate(paths):
        n = _rows_of(p)
        if group and total + n > rows:
            yield start, group
            group, start, total = [], i, 0
        group.append(p)
        total += n
    if group:
        yield start, group


def _default_buckets(files: Mapping[str, list[Path]], workers: int) -> int:
    """About a million transactions per bucket, and at least two buckets per worker."""
    rows = sum(_rows_of(p) for p in files.get("transactions", []))
    return max(2 * workers, -(-rows // 1_000_000))


def build_dataset_dask(raw: str | Path, as_of, out: str | Path, *, client=None, start=None,
                       end=None, config: FeaturesConfig | None = None,
                       sources: SourcesConfig | None = None,
                       contracts: ContractsConfig | None = None, after_as_of: str = "quarantine",
                       catalog: FeatureSet | Sequence[Feature] | None = None,
                       partitions: int | None = None, block: str = "7d",
                       scratch: str | Path | None = None,
                       progress: Callable[[str, int, int], None] | None = None,
                       ) -> PartitionedDataset:
    """Build the labeled dataset of :func:`build_dataset` on a Dask cluster.

    Parameters
    ----------
    raw : path
        A folder of raw tables: each ``<table>.parquet`` / ``.csv`` or a ``<table>/``
        directory of Parquet files (for example hive-partitioned by day).
    as_of, start, end, config, catalog
        As for :func:`build_dataset`.
    out : path
        The dataset's folder: ``part-NNNNN.parquet`` per time block and ``_dataset.json``.
        Written under a temporary name and renamed when complete, so a failed build
        leaves no dataset.
    client : distributed.Client, optional
        The cluster; default the current client (``distributed.get_client``).
    sources : SourcesConfig, optional
        Column map, formats and time zone of the raw files.
    contracts : ContractsConfig, optional
        When given, the raw files are validated in groups (their rows and columns), then
        the rules across files (unique ids, labels against their transactions) by id
        bucket, and :class:`RawContractError` is raised on any failure, with the
        quarantine naming each row's own file and row.
    after_as_of : {"quarantine", "ignore"}
        What a raw row dated after ``as_of`` is (see :func:`validate_raw`).
    partitions : int, optional
        Buckets each entity key is hashed into (default: about a million transactions
        per bucket, at least two per worker). More buckets, smaller tasks.
    block : str
        The time span of one part of the dataset (default ``7d``).
    scratch : path, optional
        The folder the stages exchange files through (default next to ``out``); on a
        cluster of several machines, storage every worker reads and writes.
    progress : callable, optional
        ``progress(stage, done, total)`` after each task.

    Returns
    -------
    PartitionedDataset

    Raises
    ------
    RawContractError
        A raw file failed its contract (nothing is built).
    DatasetContractError
        The dataset failed its contract (nothing is written at ``out``).
    """
    from distributed import as_completed, get_client

    client = client or get_client()
    config = config or FeaturesConfig()
    sources = sources or SourcesConfig()
    as_of = to_utc(as_of)
    raw, out = Path(raw), Path(out)
    files: dict[str, list[Path]] = {}
    for name in SCHEMAS:
        p = _find_file(raw, name, sources)
        if p is not None:
            files[name] = table_files(p)
    if "transactions" not in files:
        from ._sources import SourceError

        raise SourceError(str(raw), "no transactions table found (looked for "
                                    "transactions.parquet / .csv or a transactions/ directory)")
    present = {name: pd.DataFrame() for name in files}
    catalog = (available_features(present, resolve_features(config)) if catalog is None
               else as_feature_set(catalog, tuple(config.params)))
    missing = sorted({f.source for f in catalog.features} - set(files))
    if missing:
        raise ValueError(f"features need the table(s) {missing}, which the data do not have")
    groups, row_features = plan_groups(catalog)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    buckets = partitions or _default_buckets(files, workers)
    scratch_dir = Path(scratch) if scratch is not None else \
        out.parent / f".{out.name}.scratch-{uuid.uuid4().hex[:8]}"
    tmp_out = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    groups_of = {name: list(_file_groups(paths)) for name, paths in files.items()}
    job = _Job(str(scratch_dir), as_of, to_utc(start) if start is not None else None,
               min(to_utc(end), as_of) if end is not None else as_of, config, sources,
               contracts, after_as_of, catalog, groups, row_features, buckets,
               int(parse_duration(block).value // 1000),
               keyed=tuple(t for t in files if t in _UNIQUE and len(groups_of[t]) > 1),
               refs="labels" in files)

    def run(stage: str, futures: list) -> list:
        done = 0
        results = [None] * len(futures)
        index = {f.key: i for i, f in enumerate(futures)}
        if progress is not None:
            progress(stage, 0, len(futures))
        try:
            for fut in as_completed(futures):
                results[index[fut.key]] = fut.result()
                done += 1
                if progress is not None:
                    progress(stage, done, len(futures))
        except BaseException:
            client.cancel(futures)
            raise
        return results

    try:
        # Tables in dependency order, files in path order: the rank orders the rows.
        tasks = [(name, [str(p) for p in group], rank)
                 for name in files for rank, group in groups_of[name]]
        split = run("split", [client.submit(_split, job, *t, pure=False) for t in tasks])
        reports = [s["report"] for s in split if s["report"] is not None]
        raw_report = _merge_reports(reports, as_of) if reports else None
        if raw_report is not None and not raw_report.success:
            raise RawContractError(raw_report)
        if raw_report is not None and (job.keyed or job.refs):
            names = {t: [str(p) for p in files[t]] for t in files}
            keyed = run("keys", [client.submit(_keys, job, b, names, pure=False)
                                 for b in range(buckets)])
            raw_report = _with_key_results(raw_report, keyed, files)
            if not raw_report.success:
                raise RawContractError(raw_report)
        blocks = sorted({b for s in split for b in s["blocks"]})
        run("features", [client.submit(_features, job, key, b, pure=False)
                         for key in groups for b in range(buckets)])
        tmp_out.mkdir(parents=True)
        parts = run("assemble", [client.submit(_assemble, job, blk, str(tmp_out), str(out), i,
                                               pure=False)
                                 for i, blk in enumerate(blocks)])
        parts = [p for p in parts if p["rows"]] or parts[:1]
        report = _dataset_report(parts, job, out)
        tx_rows = [p for p in parts if p["rows"]]
        attrs = {"as_of": as_of.isoformat(), "catalog_version": catalog_version(catalog, config),
                 "features": {**catalog.to_dict(), "settings": feature_settings(config)},
                 "start": (job.lo.isoformat() if job.lo is not None else
                           (tx_rows[0]["start"] if tx_rows else None)),
                 "end": job.hi.isoformat()}
        doc = {"attrs": attrs, "engine": "dask", "partitions": buckets, "block": block,
               "parts": [{k: v for k, v in p.items() if k != "report"} for p in parts],
               "contract": {"raw": raw_report.to_dict() if raw_report else None,
                            "dataset": report.to_dict()}}
        if not report.success:
            raise DatasetContractError(report)
        for p in tmp_out.iterdir():
            if not p.name.startswith("part-"):
                p.unlink()
        (tmp_out / PARTS_FILE).write_text(json.dumps(json_safe(doc), indent=2,
                                                     allow_nan=False) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(tmp_out, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_out, out)
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
        shutil.rmtree(tmp_out, ignore_errors=True)
    ds = PartitionedDataset(out, attrs, doc["parts"])
    ds.attrs["contract"] = doc["contract"]
    return ds


def _dataset_report(parts: list[dict], job: _Job, out: Path) -> ContractReport:
    """The parts' contract results summed per rule, and the fraud rate of all mature rows
    checked against its band (a rate is not the sum of the parts' rates)."""
    from fraudlab.data_contracts import fraud_rate_result

    reports = [p["report"] for p in parts]
    merged = _merge_reports(reports, job.as_of)
    results = _sum_results(merged.results, str(out))
    mature = sum(p["mature"] for p in parts)
    if mature:
        frauds = sum(p["mature_frauds"] for p in parts)
        results.append(fraud_rate_result("dataset", str(out), LABEL, frauds / mature, mature,
                                         (job.config.fraud_rate_min, job.config.fraud_rate_max)))
    return ContractReport(results, merged.quarantine, job.as_of,
                          {"dataset": sum(p["rows"] for p in parts)})
