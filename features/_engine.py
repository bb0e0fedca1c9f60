"""The point-in-time feature engine: computes every catalog feature from its declaration.

For each (source table, entity, row filter) the data rows are sorted once by (entity, time);
every feature on that key reuses the sorted arrays, and every window length is searched
once and shared by the features that use it. Features of an entity's history before the
transaction (time since its last or first row, first use, distance from its last location)
need no window: they come from one pass over the rows and queries in time order that keeps
a small state per entity. Aggregates come from the compiled kernels in ``_kernels.py``.
Nothing here loops over rows in Python.

When the queries are most of the transactions themselves (a dataset build), the windows of
a transactions side are not searched for per query: every row's own window comes from one
forward pass over the side, the aggregates are computed in the side's order, and each query
takes its row's value (``_own_positions``); the same holds for an account's first use of a
channel, device or region (``_own_pair_history``). Both read the side in order instead of
at random, which matters most once a side no longer fits the cache (5M rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numba
import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration

from . import _kernels as K
from ._catalog import CATALOG, Feature
from ._config import FeaturesConfig
from ._factorize import factorize_strings
from ._lookup import positions, take_rows
from ._memory import OutputRows, reuse_freed_memory

_US_PER = {"seconds": 1e6, "minutes": 60e6, "days": 86_400e6, "hours": 3_600e6}
# Which columns of which table name an entity.
_ENTITY_COLUMNS = {
    "transactions": {"account": ("account_id",), "device": ("device_id",), "ip": ("ip",),
                     "counterparty": ("counterparty_id",), "merchant": ("merchant_id",),
                     "account+channel": ("account_id", "channel"),
                     "account+device": ("account_id", "device_id"),
                     "account+region": ("account_id", "_region")},
    "events": {"account": ("account_id",), "device": ("device_id",)},
}
_SUM_MODES = {"sum": K.SUM, "mean": K.MEAN, "ratio_to_mean": K.RATIO_TO_MEAN}
# Features of an entity's history before the transaction, from one time-ordered pass.
_HISTORY_MODES = {"since_last": K.SINCE_LAST, "since_first": K.SINCE_FIRST,
                  "first_use": K.FIRST_USE, "seen_before": K.SEEN, "seen_flag": K.SEEN,
                  "last_distance": K.DISTANCE, "last_speed": K.SPEED}
# History features that need only the first earlier row.
_FIRST_MODES = ("since_first", "first_use", "seen_before", "seen_flag")
_NONE = np.empty(0)  # no values: an argument a kernel does not read in this mode
_ALL = np.empty(0, dtype=bool)  # no row filter: a time-ordered pass uses every row with an entity
_COUNT_ALL = np.int64(2**62)  # a window longer than any history: nothing ever leaves it
_BLACKLIST_TYPES = {"account": ("account",), "device": ("device",), "ip": ("ip",),
                    "counterparty": ("counterparty", "account"), "merchant": ("merchant",)}


def _micros(ts: pd.Series) -> np.ndarray:
    return ts.astype("datetime64[us, UTC]").array.asi8.astype(np.int64)


def _window_us(window: str | None) -> np.int64:
    return K.UNBOUNDED if window is None else np.int64(parse_duration(window).value // 1000)


# Identifier columns that share one vocabulary, so a payee's account id and a payer's
# account id get the same code (and a listed account matches both).
_DOMAINS = {
    "account": (("transactions", "account_id"), ("transactions", "counterparty_id"),
                ("events", "account_id"), ("accounts", "account_id")),
    "device": (("transactions", "device_id"), ("events", "device_id")),
    # No feature reads the events' ip (hashing it was a third of all identifier hashing).
    "ip": (("transactions", "ip"),),
    "merchant": (("transactions", "merchant_id"),),
    "channel": (("transactions", "channel"),),
}
_DOMAIN_OF = {col: d for d, cols in _DOMAINS.items() for col in cols}
# Region codes are lat_cell * 100_000 + lon_cell, offset to be non-negative: below this.
_REGION_WIDTH = 100_000 * 100_000
# Blacklist entity types whose values belong to each vocabulary.
_DOMAIN_LISTINGS = {"account": ("account", "counterparty"), "device": ("device",), "ip": ("ip",),
                    "merchant": ("merchant",), "channel": ()}


def _codes(series: list[pd.Series]) -> tuple[list[np.ndarray], int]:
    """Integer codes (-1 for null) of several columns over one shared vocabulary."""
    codes, n_codes = factorize_strings(series)
    out, start = [], 0
    for x in series:
        out.append(codes[start:start + len(x)])
        start += len(x)
    return out, n_codes


def _time_sorted(times: np.ndarray) -> bool:
    """Whether times never decrease (then a stable sort by entity keeps them in order)."""
    return len(times) < 2 or bool(np.all(times[1:] >= times[:-1]))


def _entity_time_order(ecode: np.ndarray, ets: np.ndarray,
                        time_sorted: bool | None = None) -> np.ndarray:
    """Row order by (entity, time).

    Rows already in time order (``time_sorted``; checked when None) only need a stable
    sort by entity: a counting sort, or a merge sort when there are few rows for the size
    of the vocabulary (a rare event type).
    """
    if _time_sorted(ets) if time_sorted is None else time_sorted:
        top = int(ecode.max()) if len(ecode) else 0
        if top < 4 * len(ecode) + 1024:
            return K.counting_order(ecode, top + 1)
        return np.argsort(ecode, kind="stable")
    return np.lexsort((ets, ecode))


def _dense_cells(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Region cell codes (arithmetic, -1 without a location) numbered 0.. as they appear."""
    located = codes >= 0
    cells, uniques = pd.factorize(codes[located])
    dense = np.full(len(codes), -1, np.int64)
    dense[located] = cells
    return dense, len(uniques)


def _haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    n = max(np.size(lat1), np.size(lat2))
    as_array = [np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)))
                for x in (lat1, lon1, lat2, lon2)]
    return K.haversine_km(*as_array)


@dataclass
class _Side:
    """Data rows of one (source, entity, filter), sorted by (entity, time), and where each
    query's entity lies among them."""

    rows: np.ndarray  # positions in the source frame, in sorted order
    ecode: np.ndarray
    ets: np.ndarray
    qcode: np.ndarray
    starts: np.ndarray  # starts[c]:starts[c + 1] is the segment of entity code c
    frame: pd.DataFrame | None = None
    bounds: dict = field(default_factory=dict)  # window bounds, sorted values, prefix sums
    until: np.ndarray | None = None  # blacklist: running max of delisting time
    source: np.ndarray | None = None  # blacklist: who listed (codes into the source names)


class FeatureEngine:
    """Computes catalog features for query transactions from the data known before them.

    Parameters
    ----------
    queries : DataFrame
        The transactions to compute features for (canonical columns).
    tables : mapping of str to DataFrame
        The canonical raw tables the features may read: ``transactions`` (all history,
        the queries included), and optionally ``events``, ``labels``, ``blacklist``,
        ``accounts``. Nothing is modified.
    config : FeaturesConfig
    """

    def __init__(self, queries: pd.DataFrame | None, tables: Mapping[str, pd.DataFrame],
                 config: FeaturesConfig, rows: np.ndarray | None = None):
        self.cfg = config
        self.tables = {k: v.reset_index(drop=True) for k, v in tables.items() if v is not None}
        # Queries given as positions in the transactions share its identifier codes.
        self.rows = None if queries is not None else (
            np.arange(len(self.tables["transactions"])) if rows is None else np.asarray(rows))
        if queries is None:
            queries = take_rows(self.tables["transactions"], self.rows)
        self.q = queries.reset_index(drop=True)
        self.qts = _micros(self.q["ts"])
        self._sides: dict[tuple, _Side] = {}
        self._codes: dict[tuple[str, str], np.ndarray] = {}
        # Per-run caches: entity orders, event-type codes, blacklist lookups.
        self._cache: dict[tuple, tuple] = {}
        self._values_out: dict[str, np.ndarray] = {}  # numeric features computed so far
        self._row: np.ndarray | None = None  # where the float feature being computed goes
        self._vocab: dict[str, int] = {}

    # -- identifiers -------------------------------------------------------------------
    def _frame(self, table: str) -> pd.DataFrame | None:
        return self.q if table == "queries" else self.tables.get(table)

    def codes(self, table: str, column: str) -> np.ndarray:
        """Integer codes of an identifier column, shared across tables (-1 for null)."""
        key = (table, column)
        if table == "queries" and self.rows is not None:
            if key not in self._codes:
                self._codes[key] = self.codes("transactions", column)[self.rows]
            return self._codes[key]
        if key not in self._codes:
            if column == "_region":
                self._codes[key] = self._region_codes(self._frame(table))
                return self._codes[key]
            self._domain_codes(_DOMAIN_OF[("transactions" if table == "queries" else table,
                                           column)])
        return self._codes[key]

    def _domain_codes(self, domain: str) -> None:
        """Factorise every column of one identifier vocabulary together (see ``_DOMAINS``)."""
        if domain in self._vocab:
            return
        members = [m for m in _DOMAINS[domain] if self._frame(m[0]) is not None]
        if self.rows is None:
            members += [("queries", c) for t, c in _DOMAINS[domain] if t == "transactions"]
        bl = self.tables.get("blacklist")
        if bl is not None:
            members.append((f"blacklist:{domain}", "entity_value"))
        series = []
        for t, c in members:
            if t.startswith("blacklist:"):
                series.append(bl["entity_value"].where(
                    bl["entity_type"].isin(_DOMAIN_LISTINGS[domain])))
            else:
                series.append(self._frame(t)[c])
        codes, n = _codes(series)
        for m, c in zip(members, codes, strict=True):
            self._codes[m] = c
        self._vocab[domain] = n

    def _prefetch_codes(self, catalog: tuple[Feature, ...]) -> None:
        """Factorise the vocabularies the catalog reads, two at a time.

        Hashing the identifier strings is the largest single cost of a build, and the
        hashing kernels (``_factorize.py``; Arrow too, on the fallback) release the GIL, so
        two threads use both cores.
        """
        columns = set()
        for f in catalog:
            if f.source == "blacklist":
                columns.update(_ENTITY_COLUMNS["transactions"][e][0] for e in _BLACKLIST_TYPES
                               if f.agg != "blacklist_hit" or e == f.entity)
            elif f.source == "labels":
                columns.add("merchant_id")
            elif f.source == "accounts":
                columns.update(("account_id", "counterparty_id"))
            elif f.agg != "value":
                table = "events" if f.source == "events" else "transactions"
                columns.update(_ENTITY_COLUMNS[table][f.entity])
                if f.agg == "nunique":
                    columns.add(f.of)
        domains = sorted({_DOMAIN_OF[("transactions", c)] for c in columns
                          if ("transactions", c) in _DOMAIN_OF} - set(self._vocab))
        if len(domains) > 1:
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(self._domain_codes, domains))

    def _region_codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Grid cell of each row's location: a fixed arithmetic code, the same for any rows."""
        cell = self.cfg.region_cell_deg
        lat = np.floor(frame["lat"].to_numpy(dtype=float) / cell)
        lon = np.floor(frame["lon"].to_numpy(dtype=float) / cell)
        ok = np.isfinite(lat) & np.isfinite(lon)
        side = _REGION_WIDTH // 100_000
        code = (np.nan_to_num(lat) + side // 2) * 100_000 + np.nan_to_num(lon) + side // 2
        return np.where(ok, code, -1).astype(np.int64)

    def _key(self, table: str, entity: str) -> np.ndarray:
        """One int64 code per row for a (possibly composite) entity; -1 where any part is null.

        A composite entity (account+device, ...) gets dense pair codes numbered over the
        transactions and the queries together, so its rows are ordered by a counting sort
        and its segments found from a histogram, as for a single identifier.
        """
        cols = _ENTITY_COLUMNS["events" if table == "events" else "transactions"][entity]
        if len(cols) == 1:
            return self.codes(table, cols[0])
        name = "+".join(cols)
        if (table, name) not in self._codes:
            if table == "queries" and self.rows is not None:
                self._codes[(table, name)] = self._key("transactions", entity)[self.rows]
                return self._codes[(table, name)]
            members = ["transactions"] + (["queries"] if self.rows is None else [])
            code, size = None, 0
            for c in cols:
                part = np.concatenate([self.codes(m, c) for m in members])
                if c == "_region":  # arithmetic cell codes: make them dense first
                    part, n_part = _dense_cells(part)
                else:
                    n_part = self._vocab[_DOMAIN_OF[("transactions", c)]]
                code, size = (part, n_part) if code is None else K.pair_codes(code, part, size,
                                                                               n_part)
            start = 0
            for m in members:
                k = len(self._frame(m))
                self._codes[(m, name)] = code[start:start + k]
                start += k
        return self._codes[(table, name)]

    # -- data sides --------------------------------------------------------------------
    def _mask(self, source: str, where: str | None) -> np.ndarray | None:
        f = self.tables[source]
        if where is None:
            return None
        if where == "small":
            return (f["amount"] < self.cfg.small_amount).to_numpy()
        if where.startswith("event_type="):
            key = ("_event_types", source)
            if key not in self._cache:  # compare small integer codes, not strings
                codes, names = pd.factorize(f["event_type"])
                self._cache[key] = (codes, list(names))
            codes, names = self._cache[key]
            wanted = where.split("=", 1)[1]
            return codes == (names.index(wanted) if wanted in names else -2)
        if where.startswith("flag="):
            return f[where.split("=", 1)[1]].to_numpy(dtype=bool)
        if where == "located":
            return (f["lat"].notna() & f["lon"].notna()).to_numpy()
        raise ValueError(f"unknown row filter {where!r}")

    def _make_side(self, ecode, ets, qcode, frame, base=None) -> _Side:
        if base is None:
            base = _entity_time_order(ecode, ets)
        order, sorted_codes, sorted_ts = K.gather_side(base, ecode, ets)
        top = max(int(sorted_codes.max()) if len(order) else 0,
                  int(qcode.max()) if len(qcode) else 0)
        if top >= 4 * (len(order) + len(qcode)) + 1024:
            # Few rows and queries for a large vocabulary (a rare event type, a handful
            # of queries): number only the codes present, so the segment table stays small.
            present = np.unique(np.concatenate([sorted_codes, qcode[qcode >= 0]]))
            sorted_codes = np.searchsorted(present, sorted_codes)
            qcode = np.where(qcode >= 0, np.searchsorted(present, qcode), -1)
            top = len(present) - 1
        starts = K.segment_starts(sorted_codes, top + 1)
        return _Side(order, sorted_codes, sorted_ts, qcode, starts, frame=frame)

    def side(self, source: str, entity: str, where: str | None = None) -> _Side | None:
        key = (source, entity, where)
        if key not in self._sides:
            frame = self.tables.get(source)
            if frame is None:
                self._sides[key] = None
                return None
            ecode, ets = self._key(source, entity), self._times(source)
            mask = self._mask(source, where)
            if mask is None:
                rows = self._entity_order(source, entity)
            else:
                # Filter first, then order only the rows kept: a filter that keeps few rows
                # (one event type) costs little, with no random reads over the rest.
                keep = np.flatnonzero(mask & (ecode >= 0))
                rows = keep[_entity_time_order(ecode[keep], ets[keep],
                                               self._source_time_sorted(source))]
            self._sides[key] = self._make_side(ecode, ets, self._key("queries", entity), frame,
                                               base=rows)
        return self._sides[key]

    def _entity_order(self, source: str, entity: str) -> np.ndarray:
        """The order of all of a source's rows by (entity, time), once per source and
        entity (kept until the last feature that reads the entity's rows)."""
        key = ("_order", source, entity)
        if key not in self._cache:
            self._cache[key] = _entity_time_order(self._key(source, entity), self._times(source),
                                                  self._source_time_sorted(source))
        return self._cache[key]

    def _source_time_sorted(self, source: str) -> bool:
        """Whether a source's rows are in time order, checked once per source."""
        key = ("_time_sorted", source)
        if key not in self._cache:
            self._cache[key] = _time_sorted(self._times(source))
        return self._cache[key]

    def _times(self, source: str) -> np.ndarray:
        key = ("_times", source)
        if key not in self._codes:
            self._codes[key] = _micros(self.tables[source]["ts"])
        return self._codes[key]

    def window(self, side: _Side, window: str | None) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of each query's window among the side's sorted rows (shared per length)."""
        if window not in side.bounds:
            if "end" not in side.bounds:
                side.bounds["end"] = K.window_ends(side.ets, side.starts, side.qcode, self.qts)
            hi = side.bounds["end"]
            side.bounds[window] = (K.window_starts(side.ets, side.starts, side.qcode, hi, self.qts,
                                                   _window_us(window)), hi)
        return side.bounds[window]

    def _values(self, side: _Side, column: str, squared: bool = False) -> np.ndarray:
        """Values of ``column`` in the side's sorted order (squared for variances)."""
        key = ("values", column, squared)
        if key not in side.bounds:
            v = side.frame[column].to_numpy(dtype=float)[side.rows]
            side.bounds[key] = v * v if squared else v
        return side.bounds[key]

    def _prefix(self, side: _Side, column: str, squared: bool = False):
        """Per-entity prefix sums of a column (and its sorted values), once per side."""
        vals = self._values(side, column, squared)
        key = ("prefix", column, squared)
        if key not in side.bounds:
            side.bounds[key] = K.segment_prefix(side.ecode, vals)
        return side.bounds[key], vals

    def _current(self, f: Feature) -> np.ndarray:
        """True where the query transaction itself counts in its own aggregate: the
        feature includes it and the query passes the feature's row filter."""
        n = len(self.q)
        if not f.include_current:
            return np.zeros(n, dtype=bool)
        if f.where == "small":
            return (self.q["amount"] < self.cfg.small_amount).to_numpy()
        return np.ones(n, dtype=bool)

    def _query_values(self, column: str) -> np.ndarray:
        key = ("_query_values", column)
        if key not in self._cache:
            self._cache[key] = self.q[column].to_numpy(dtype=float)
        return self._cache[key]

    # -- aggregations ------------------------------------------------------------------
    def compute(self, catalog: tuple[Feature, ...] = CATALOG) -> pd.DataFrame:
        """All features of ``catalog`` for the queries, as a DataFrame in catalog order."""
        # Sorted data and window bounds are freed after the last feature that needs them.
        last_use = {}
        for i, f in enumerate(catalog):
            for key in _sides_of(f):
                last_use[key] = i
        # Sides whose features are all window counts (and the merchant fraud rate's
        # transaction counts) are counted in one time-ordered pass (K.window_counts), for
        # every window length they need; the other sides are sorted and searched.
        aggs, windows = {}, {}
        for f in catalog:
            if f.source == "labels":  # fraud reports, and transactions at the merchant
                for key in (("labels", "merchant", None), ("transactions", "merchant", None)):
                    aggs.setdefault(key, set()).add("count")
                    windows.setdefault(key, set()).add(f.window)
            elif f.source != "blacklist" and f.agg != "value":
                key = (f.source, f.entity, f.where)
                aggs.setdefault(key, set()).add(f.agg)
                windows.setdefault(key, set()).add(f.window)
        self._count_windows = {k: sorted(w, key=str) for k, w in windows.items()
                               if aggs[k] == {"count"}
                               or k in (("labels", "merchant", None),
                                        ("transactions", "merchant", None))}
        self._prefetch_codes(catalog)
        columns = {}
        # Every float feature gets a row of one block, faulted in ahead of use; the last
        # kernel of a feature writes into it (see ``_out``), anything else is copied in.
        with OutputRows(sum(f.kind == "float" for f in catalog), len(self.q)) as block:
            for i, f in enumerate(catalog):
                self._row = row = block.take() if f.kind == "float" else None
                value = self._feature(f)
                self._row = None
                if row is not None:
                    if value is not row:
                        np.copyto(row, value)
                    value = self._values_out[f.name] = row
                elif not isinstance(value, pd.Categorical):
                    value = pd.Categorical(value, categories=list(f.categories))
                columns[f.name] = value
                for key in [k for k, last in last_use.items() if last == i]:
                    self._sides.pop(key, None)
                    if all(last <= i for k, last in last_use.items() if k[:2] == key[:2]):
                        self._cache.pop(("_order", *key[:2]), None)
        # One pandas block per column, each a view of its row: no copy of the features.
        return pd.DataFrame(columns, copy=False)

    def _out(self) -> np.ndarray:
        """Where a kernel writes the value of the float feature being computed: its row of
        the output block (handed out once), else a new array."""
        row, self._row = self._row, None
        return np.empty(len(self.q)) if row is None else row

    def _feature(self, f: Feature):
        if f.agg == "value":
            return self._value(f)
        if f.source == "blacklist":
            return self._blacklist(f)
        if f.source == "labels":
            return self._merchant_fraud(f)
        if f.agg in _HISTORY_MODES:
            return self._history(f)
        if f.agg == "count" and (f.source, f.entity, f.where) in self._count_windows:
            count = self._window_count(f.source, f.entity, f.where, f.window)
            if count is None:
                return np.full(len(self.q), np.nan)
            return K.count_feature(count, self._key("queries", f.entity), self._current(f),
                                   self._out())
        side = self.side(f.source, f.entity, f.where)
        n = len(self.q)
        if side is None:
            return np.full(n, np.nan)
        own = self._own_positions(side, f)
        if own is None:  # each query's window is searched for among the side's rows
            lo, hi = self.window(side, f.window)
            qcode, cur, qv = side.qcode, self._current(f), self._query_values
        else:  # every row's own window, in the side's order; the queries take theirs
            lo, hi = self._own_window(side, f.window)
            qcode, cur = side.ecode, np.full(len(side.ecode), f.include_current)
            qv = partial(self._values, side)
        value = self._aggregate(f, side, lo, hi, qcode, cur, qv, own=own is not None)
        return value if own is None else K.take_or(value, own, np.nan, self._out())

    def _aggregate(self, f: Feature, side: _Side, lo, hi, qcode, cur, qv, *,
                   own: bool) -> np.ndarray:
        """A window aggregate for each of ``qcode`` (the queries, or with ``own`` the side's
        own rows), whose window is [lo, hi) among the side's rows; ``qv`` gives their own
        values."""
        if f.agg == "count":
            return K.agg_count(lo, hi, qcode, cur)
        if f.agg in _SUM_MODES:
            prefix, vals = self._prefix(side, f.of)
            return K.agg_sum(prefix, vals, lo, hi, qcode, cur, qv(f.of), _SUM_MODES[f.agg])
        if f.agg == "max":
            return K.agg_max(self._values(side, f.of), lo, hi, qcode, cur, qv(f.of))
        if f.agg == "zscore":
            return K.agg_zscore(*self._prefix(side, f.of), *self._prefix(side, f.of, squared=True),
                                lo, hi, qcode, qv(f.of))
        if f.agg == "nunique":
            data_cats = self._sorted_codes(side, f.source, f.of)
            if own:  # the side's own rows: their own category
                current = np.where(cur, data_cats, -1)
            else:
                current = np.where(cur & (qcode >= 0), self.codes("queries", f.of), -1)
            n_cats = self._vocab[_DOMAIN_OF[(f.source, f.of)]]
            return K.window_nunique(data_cats, lo, hi, current, n_cats, qcode,
                                    numba.get_num_threads())
        raise ValueError(f"feature {f.name}: unknown aggregation {f.agg!r}")

    def _sorted_codes(self, side: _Side, source: str, column: str) -> np.ndarray:
        """Codes of an identifier column in the side's sorted order, once per side."""
        key = ("codes", column)
        if key not in side.bounds:
            side.bounds[key] = self.codes(source, column)[side.rows]
        return side.bounds[key]

    def _own_positions(self, side: _Side, f: Feature) -> np.ndarray | None:
        """Where each query lies among the side's sorted rows (-1 without an entity), when
        the queries are rows of the side itself (transactions, no row filter) and at least
        a quarter of them; else None.

        Then every row's window is found in one ordered pass over the side and aggregated
        in the side's order, where the window of the next row is next to this one's; the
        queries take their row's result. Searching for each query's window instead reads
        the side at random, which costs most once the side is larger than the cache.
        """
        if not self._owns(f):
            return None
        if "own" not in side.bounds:
            side.bounds["own"] = K.own_positions(side.rows, self.rows,
                                                 len(self.tables["transactions"]))
        return side.bounds["own"]

    def _own_window(self, side: _Side, window: str | None) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of each side row's own window among the side's rows (shared per length)."""
        key = ("own", window)
        if key not in side.bounds:
            if ("own", "end") not in side.bounds:
                side.bounds[("own", "end")] = K.own_window_ends(side.ets, side.ecode)
            hi = side.bounds[("own", "end")]
            side.bounds[key] = (K.own_window_starts(side.ets, side.ecode, hi, _window_us(window)),
                                hi)
        return side.bounds[key]

    def _value(self, f: Feature):
        q = self.q
        name = f.name
        if name == "amount":
            return q["amount"].to_numpy(dtype=float)
        # Calendar fields from the UTC microseconds (1970-01-01 was a Thursday, day 3).
        if name == "hour_of_day":
            return ((self.qts // 3_600_000_000) % 24).astype(float)
        if name == "day_of_week":
            return ((self.qts // 86_400_000_000 + 3) % 7).astype(float)
        if name == "is_night":
            return ((self.qts // 3_600_000_000) % 24 < self.cfg.night_end_hour).astype(float)
        if name in ("channel", "tx_type"):
            # Factorise (fast on Arrow strings), then map the few distinct values onto the
            # fixed categories; unknown values become missing, as with astype(category).
            codes, uniques = pd.factorize(q[name])
            to_cat = np.append(pd.Index(list(f.categories)).get_indexer(uniques), -1)
            return pd.Categorical.from_codes(to_cat[codes], categories=list(f.categories))
        if name == "large_amount_far_from_home":
            dist = self._computed("distance_from_home_km", f)
            ratio = self._computed("amount_to_mean_30d", f)
            v = ((dist > self.cfg.far_from_home_km) & (ratio > self.cfg.large_amount_ratio)).astype(float)
            return np.where(np.isnan(dist), np.nan, v)
        accounts = self.tables.get("accounts")
        if accounts is None:
            return np.full(len(q), np.nan)
        if name == "distance_from_home_km":
            lat = self._account_attr("home_lat", "account_id")
            lon = self._account_attr("home_lon", "account_id")
            return _haversine_km(lat, lon, q["lat"].to_numpy(dtype=float),
                                 q["lon"].to_numpy(dtype=float))
        if name in ("account_age_days", "counterparty_age_days"):
            col = "account_id" if name == "account_age_days" else "counterparty_id"
            created = self._account_attr("created_at", col)
            # An account opened after the payment was not known then: no age, not a negative one.
            with np.errstate(invalid="ignore"):
                return np.where(created <= self.qts, (self.qts - created) / _US_PER["days"], np.nan)
        if name == "kyc_level":
            return self._account_attr("kyc_level", "account_id")
        raise ValueError(f"feature {name}: no value rule")

    def _account_attr(self, attr: str, column: str) -> np.ndarray:
        """An accounts-table attribute for each query's account in ``column`` (NaN if unknown)."""
        accounts = self.tables["accounts"]
        codes = self.codes("accounts", "account_id")
        values = (_micros(accounts[attr]).astype(float) if attr == "created_at"
                  else accounts[attr].to_numpy(dtype=float))
        lookup = np.full(self._vocab["account"] + 1, np.nan)
        ok = codes >= 0
        lookup[codes[ok][::-1]] = values[ok][::-1]  # the first row wins for duplicates
        return lookup[self.codes("queries", column)]  # code -1 reads the trailing NaN

    def _computed(self, name: str, f: Feature) -> np.ndarray:
        """A numeric feature computed earlier in this run."""
        if name not in self._values_out:
            raise ValueError(f"feature {f.name} needs {name} declared before it in the catalog")
        return self._values_out[name]

    def _history(self, f: Feature):
        """Time since the entity's last or first earlier row, whether it has one, or the
        distance and speed from the last one's location (see ``K.sweep_history``)."""
        if f.agg in _FIRST_MODES and f.entity.startswith("account+") and self._owns(f):
            return self._own_pair_history(f)
        key = _history_key(f)
        located = key[3] == "located"
        if key not in self._sides:
            self._sides[key] = self._sweep_history(*key[:3], located=located)
        state = self._sides[key]
        if state is None:
            return np.full(len(self.q), np.nan)
        unit = _US_PER[f.unit] if f.agg.startswith("since_") else 1.0
        return K.history_feature(*state, self._key("queries", f.entity), self.qts,
                                 self._query_values("lat") if located else _NONE,
                                 self._query_values("lon") if located else _NONE,
                                 _HISTORY_MODES[f.agg], unit, self._out())

    def _owns(self, f: Feature) -> bool:
        """Whether the queries are rows of the feature's own table, unfiltered, and at
        least a quarter of it: then every row's feature is computed in one ordered pass
        and the queries take their row's (see ``_own_positions``)."""
        return (self.rows is not None and f.source == "transactions" and f.where is None
                and 4 * len(self.rows) >= len(self.tables["transactions"]))

    def _own_pair_history(self, f: Feature):
        """First use, seen before and time since first use of a pair (the account and its
        channel, device or region) from the account's rows in time order: for each row,
        when its account first had a row with the same second part, strictly before it.
        No pair codes are needed, and the table of the second part's first times is read
        by one account at a time."""
        key = (f.source, f.entity, f.where, "own")
        if key not in self._sides:
            rows, acode, ats, own = self._own_account_order()
            second = _ENTITY_COLUMNS["transactions"][f.entity][1]
            codes, n_codes = self._dense_codes(second)
            first = K.own_pair_first(acode, ats, codes[rows], n_codes)
            q_first = K.take_or(first, own, K.NEVER, np.empty(len(own), np.int64))
            qcode = np.where((own >= 0) & (codes[self.rows] >= 0), 0, -1)
            self._sides[key] = (q_first, qcode)
        q_first, qcode = self._sides[key]
        unit = _US_PER[f.unit] if f.agg.startswith("since_") else 1.0
        return K.history_feature(q_first, q_first, _NONE, _NONE, qcode, self.qts, _NONE, _NONE,
                                 _HISTORY_MODES[f.agg], unit, self._out())

    def _own_account_order(self):
        """The transactions with an account in (account, time) order: their positions,
        account codes and times, and where each query lies among them."""
        key = ("transactions", "account", None, "order")
        if key not in self._sides:
            ets = self._times("transactions")
            rows, acode, ats = K.gather_side(self._entity_order("transactions", "account"),
                                             self._key("transactions", "account"), ets)
            own = K.own_positions(rows, self.rows, len(ets))
            self._sides[key] = (rows, acode, ats, own)
        return self._sides[key]

    def _dense_codes(self, column: str) -> tuple[np.ndarray, int]:
        """Dense codes of a transactions column (regions numbered as they appear)."""
        codes = self.codes("transactions", column)
        if column != "_region":
            return codes, self._vocab[_DOMAIN_OF[("transactions", column)]]
        return _dense_cells(codes)

    def _sweep_history(self, source: str, entity: str, where: str | None, located: bool):
        frame = self.tables.get(source)
        if frame is None:
            return None
        dcode, dts, keep, rows = self._time_rows(source, entity, where)
        qcode = self._key("queries", entity)
        if located:
            lat = frame["lat"].to_numpy(dtype=float)
            lon = frame["lon"].to_numpy(dtype=float)
            if rows is not None:
                lat, lon = lat[rows], lon[rows]
        else:
            lat = lon = _NONE
        return K.sweep_history(dcode, dts, keep, lat, lon, self._time_order(), qcode, self.qts,
                               _n_codes(dcode, qcode), located)

    def _time_rows(self, source: str, entity: str, where: str | None):
        """A source's rows in time order (ties in row order), for a time-ordered pass: entity
        codes, times, which rows to use (empty: every row with an entity) and their
        positions (None: every row, in place).

        A source already in time order whose filter keeps at least half of it is passed
        whole with its filter, and the pass skips the rows it does not use: no copy of the
        rows kept, which at 5M rows cost more than the pass. Otherwise the rows kept are
        copied out (and put in time order), so that a pass over one rare event type reads
        only its rows.
        """
        ecode, ets = self._key(source, entity), self._times(source)
        mask = self._mask(source, where)
        if (self._source_time_sorted(source)
                and (mask is None or 2 * np.count_nonzero(mask) >= len(mask))):
            return ecode, ets, _ALL if mask is None else mask, None
        rows = np.flatnonzero(ecode >= 0 if mask is None else mask & (ecode >= 0))
        rows, dcode, dts = _in_time_order(rows, ecode[rows], ets[rows])
        return dcode, dts, _ALL, rows

    def _window_count(self, source: str, entity: str, where: str | None, window: str | None):
        """Rows of each query's entity in a window, for a side that only counts; the counts
        of every window length of the side come from one pass, kept until its last use."""
        key = (source, entity, where, "counts")
        if key not in self._sides:
            self._sides[key] = None
            if self.tables.get(source) is not None:
                windows = self._count_windows[(source, entity, where)]
                if source == "labels":
                    dcode, dts = self._fraud_reports()
                    keep = _ALL
                else:
                    dcode, dts, keep, _ = self._time_rows(source, entity, where)
                qcode = self._key("queries", entity)
                lengths = np.array([_COUNT_ALL if w is None else _window_us(w) for w in windows],
                                   dtype=np.int64)
                counts = K.window_counts(dcode, dts, keep, self._time_order(), qcode, self.qts,
                                         lengths, _n_codes(dcode, qcode))
                self._sides[key] = dict(zip(windows, counts, strict=True))
        counts = self._sides[key]
        return None if counts is None else counts[window]

    def _time_order(self) -> np.ndarray:
        """The queries in time order (ties in their given order)."""
        if "_time_order" not in self._cache:
            q = self.qts
            self._cache["_time_order"] = (np.arange(len(q)) if _time_sorted(q)
                                          else np.argsort(q, kind="stable"))
        return self._cache["_time_order"]

    def _merchant_fraud(self, f: Feature):
        """Fraud reports at the query's merchant in a window, and their rate per
        transaction there in the same window (0 without transactions)."""
        n = len(self.q)
        if self.tables.get("labels") is None:
            return np.full(n, np.nan)
        reports = self._window_count("labels", "merchant", None, f.window)
        qcode = self._key("queries", "merchant")
        if f.agg == "fraud_reports":
            return K.count_feature(reports, qcode, np.zeros(n, dtype=bool), self._out())
        return K.rate_feature(reports, self._window_count("transactions", "merchant", None,
                                                          f.window), qcode, self._out())

    def _fraud_reports(self) -> tuple[np.ndarray, np.ndarray]:
        """The merchant code and report time of every fraud report, in time order."""
        labels, tx = self.tables["labels"], self.tables["transactions"]
        fraud = labels.loc[labels["is_fraud"].astype(bool), ["tx_id", "reported_at"]]
        # Probe the many transactions against the few fraud labels (a small hash table);
        # every fraud report counts, a repeated one too.
        uniq = pd.Index(fraud["tx_id"].unique())
        label_of = positions(tx["tx_id"], uniq)
        matched = np.flatnonzero(label_of >= 0)
        where = np.full(len(uniq), -1, np.int64)
        where[label_of[matched]] = matched
        pos = where[positions(fraud["tx_id"], uniq)]
        fraud, pos = fraud[pos >= 0], pos[pos >= 0]
        ecode = self.codes("transactions", "merchant_id")[pos]
        keep = np.flatnonzero(ecode >= 0)
        _, dcode, dts = _in_time_order(keep, ecode[keep], _micros(fraud["reported_at"])[keep])
        return dcode, dts

    def _blacklist_side(self, entity: str) -> _Side | None:
        key = ("blacklist", entity, None)
        if key in self._sides:
            return self._sides[key]
        bl = self.tables.get("blacklist")
        if bl is None:
            self._sides[key] = None
            return None
        in_types = bl["entity_type"].isin(_BLACKLIST_TYPES[entity]).to_numpy()
        [column] = _ENTITY_COLUMNS["transactions"][entity]
        domain = _DOMAIN_OF[("transactions", column)]
        qcode = self.codes("queries", column)
        ecode = np.where(in_types, self._codes[(f"blacklist:{domain}", "entity_value")], -1)
        side = self._make_side(ecode, _micros(bl["listed_at"]),
                               qcode, bl)
        order = side.rows
        delisted = bl["delisted_at"]
        until = np.where(delisted.isna().to_numpy(), np.iinfo(np.int64).max,
                         _micros(delisted.fillna(pd.Timestamp(0, tz="UTC"))))[order]
        side.until = K.segment_cummax(side.ecode, until.astype(np.int64))
        codes, self._bl_sources = pd.factorize(bl["source"])
        side.source = codes.astype(np.int64)[order]
        self._sides[key] = side
        return side

    def _blacklist_hit(self, entity: str) -> np.ndarray:
        """Whether the query's entity is listed (1/0/NaN), once per entity; the newest
        active listing over the entities looked up so far is kept as it goes (see
        ``_newest_listing``)."""
        key = ("_blacklist_hit", entity)
        if key not in self._cache:
            n = len(self.q)
            if "_newest_listing" not in self._cache:
                self._cache["_newest_listing"] = (np.full(n, -1, np.int64),
                                                  np.full(n, -1, np.int64),
                                                  np.full(n, len(_BLACKLIST_TYPES), np.int64))
            side = self._blacklist_side(entity)
            if side is None or not len(side.ets):
                hit = np.full(n, np.nan) if side is None else np.where(side.qcode >= 0, 0.0, np.nan)
            else:
                hit = K.listing_lookup(side.ets, side.starts, self.qts, side.until, side.source,
                                       side.qcode, list(_BLACKLIST_TYPES).index(entity),
                                       *self._cache["_newest_listing"])
            self._cache[key] = hit
        return self._cache[key]

    def _newest_listing(self) -> tuple[np.ndarray, np.ndarray]:
        """Listing time and source code of the newest active listing of any of the query's
        entities (-1 if none; between equal times, the entity first in ``_BLACKLIST_TYPES``)."""
        for entity in _BLACKLIST_TYPES:
            self._blacklist_hit(entity)
        listed, source, _ = self._cache["_newest_listing"]
        return listed, source

    def _blacklist(self, f: Feature):
        if f.agg == "blacklist_hit":
            return self._blacklist_hit(f.entity)
        listed, source = self._newest_listing()
        if f.agg == "blacklist_days":
            return np.where(listed >= 0, (self.qts - listed) / _US_PER["days"], np.nan)
        names = list(getattr(self, "_bl_sources", []))
        order = [names.index(c) if c in names else -1 for c in f.categories]
        # Recode from this data's source codes to the feature's fixed categories.
        recode = np.full(len(names) + 1, -1, np.int64)
        for fixed, own in enumerate(order):
            if own >= 0:
                recode[own] = fixed
        return pd.Categorical.from_codes(recode[source], categories=list(f.categories))


def _sides_of(f: Feature) -> list[tuple]:
    """The cached data sides a feature reads, so they can be freed after their last use."""
    if f.agg == "value" or f.source == "blacklist":
        return []
    if f.source == "labels":
        return [("labels", "merchant", None, "counts"),
                ("transactions", "merchant", None, "counts")]
    if f.agg in _HISTORY_MODES:
        own = [(f.source, f.entity, f.where, "own"), ("transactions", "account", None, "order")]
        return [_history_key(f)] + (own if f.entity.startswith("account+") else [])
    return [(f.source, f.entity, f.where), (f.source, f.entity, f.where, "counts")]


def _in_time_order(rows, codes, times):
    """Rows with their codes and times, put in time order if they are not (stable)."""
    if not _time_sorted(times):
        order = np.argsort(times, kind="stable")
        rows, codes, times = rows[order], codes[order], times[order]
    return rows, codes, times


def _n_codes(dcode: np.ndarray, qcode: np.ndarray) -> int:
    """Size of a table indexed by the codes of data rows and queries."""
    return 1 + max(int(dcode.max()) if len(dcode) else -1, int(qcode.max()) if len(qcode) else -1)


def _history_key(f: Feature) -> tuple:
    """The history pass a feature reads: its rows, and whether it needs their locations
    (a location feature without a row filter reads the rows that have one)."""
    if f.agg in ("last_distance", "last_speed"):
        where = f.where or "located"
        return (f.source, f.entity, where, "located")
    return (f.source, f.entity, f.where, "times")


def compute_features(tables: Mapping[str, pd.DataFrame], *,
                     rows: np.ndarray | None = None,
                     queries: pd.DataFrame | None = None,
                     config: FeaturesConfig | None = None,
                     catalog: tuple[Feature, ...] = CATALOG) -> pd.DataFrame:
    """Compute catalog features for transactions, using only data from before each one.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Canonical tables: ``transactions`` (the full history), and optionally ``events``,
        ``labels``, ``blacklist``, ``accounts``. Nothing is modified. Rows dated after a
        transaction never reach its features; see the catalog for the window semantics.
    rows : array of int, optional
        Positions in ``tables["transactions"]`` of the transactions to compute features
        for; default all of them.
    queries : DataFrame, optional
        Instead of ``rows``: transactions that are not in the history (for example new
        payments to score), with the canonical transaction columns.
    config : FeaturesConfig, optional
    catalog : tuple of Feature
        Which features to compute, in order.

    Returns
    -------
    DataFrame
        One row per transaction scored (in the order given), one column per feature.
        The float columns are views of one 2-D array (no copy was made to assemble the
        frame), so its memory is released when the last of them is.
    """
    with reuse_freed_memory():
        engine = FeatureEngine(queries, tables, config or FeaturesConfig(), rows=rows)
        return engine.compute(catalog)
