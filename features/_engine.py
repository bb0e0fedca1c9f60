"""The point-in-time feature engine: computes any declared feature from its declaration.

``FeatureEngine.plan`` assigns each declaration to one kind of pass (the transaction's own
values, an accounts lookup, the blacklist, fraud reports, a time-ordered history pass, a
first use of a pair, window counts, or a window side), and each kind keeps its own typed
state (``_Side``, ``_Listings``, ``_History``, ...), shared by the features that read it and
freed after the last one. No feature name is known here.

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

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numba
import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration

from . import _expr
from . import _kernels as K
from ._catalog import CATALOG, as_feature_set
from ._config import FeaturesConfig
from ._declarations import (
    ENTITY_COLUMNS,
    ROW_AGGS,
    TIME_UNITS,
    Feature,
    FeatureSet,
    entity_columns,
)
from ._factorize import factorize_strings
from ._lookup import positions, take_rows

_US_PER = TIME_UNITS
_SUM_MODES = {"sum": K.SUM, "mean": K.MEAN, "ratio_to_mean": K.RATIO_TO_MEAN}
# Features of an entity's history before the transaction, from one time-ordered pass.
_HISTORY_MODES = {"since_last": K.SINCE_LAST, "since_first": K.SINCE_FIRST,
                  "first_use": K.FIRST_USE, "seen_before": K.SEEN,
                  "last_distance": K.DISTANCE, "last_speed": K.SPEED}
# History features that need only the first earlier row.
_FIRST_MODES = ("since_first", "first_use", "seen_before")
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
# account id get the same code (and a listed account matches both). Any other column an
# entity or a distinct count reads gets a vocabulary of its own, shared by the tables that
# have it (see ``FeatureEngine._domain_of``).
_DOMAINS = {
    "account": (("transactions", "account_id"), ("transactions", "counterparty_id"),
                ("events", "account_id"), ("accounts", "account_id")),
    "device": (("transactions", "device_id"), ("events", "device_id")),
    # No feature reads the events' ip (hashing it was a third of all identifier hashing).
    "ip": (("transactions", "ip"),),
    "merchant": (("transactions", "merchant_id"),),
    "channel": (("transactions", "channel"),),
}
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


def region_codes(frame: pd.DataFrame, cell_deg: float) -> np.ndarray:
    """Grid cell of each row's location (-1 without one): a fixed arithmetic code, the
    same for any rows, so a region's rows can be found in any subset of them."""
    lat = np.floor(frame["lat"].to_numpy(dtype=float) / cell_deg)
    lon = np.floor(frame["lon"].to_numpy(dtype=float) / cell_deg)
    ok = np.isfinite(lat) & np.isfinite(lon)
    side = _REGION_WIDTH // 100_000
    code = (np.nan_to_num(lat) + side // 2) * 100_000 + np.nan_to_num(lon) + side // 2
    return np.where(ok, code, -1).astype(np.int64)


SideKey = tuple  # (source, entity, filter): the data rows one pass reads


@dataclass
class _Side:
    """A window pass: the data rows of one (source, entity, filter) sorted by (entity,
    time), where each query's entity lies among them, and what the side's features have
    derived from them (shared by the features of the side, freed with it)."""

    rows: np.ndarray  # positions in the source frame, in sorted order
    ecode: np.ndarray
    ets: np.ndarray
    qcode: np.ndarray
    starts: np.ndarray  # starts[c]:starts[c + 1] is the segment of entity code c
    frame: pd.DataFrame
    ends: np.ndarray | None = None  # each query's window end (every length ends there)
    window_starts: dict = field(default_factory=dict)  # window -> each query's window start
    values: dict = field(default_factory=dict)  # (column, squared) -> values in sorted order
    prefix: dict = field(default_factory=dict)  # (column, squared) -> per-entity prefix sums
    codes: dict = field(default_factory=dict)  # column -> identifier codes in sorted order
    own: np.ndarray | None = None  # each query's position among the rows (own windows)
    own_ends: np.ndarray | None = None  # each row's own window end
    own_starts: dict = field(default_factory=dict)  # window -> each row's own window start


@dataclass
class _Listings:
    """A blacklist pass: the listings of one entity type sorted by (entity, listing time),
    with the running latest delisting time and who listed."""

    ets: np.ndarray
    starts: np.ndarray
    qcode: np.ndarray
    until: np.ndarray
    source: np.ndarray  # codes into FeatureEngine._listing_sources


class _History(NamedTuple):
    """A time-ordered history pass: each query's entity's first and last earlier row
    (times, and the last location for distances; see ``K.sweep_history``)."""

    first: np.ndarray
    last: np.ndarray
    lat: np.ndarray
    lon: np.ndarray


class _PairFirst(NamedTuple):
    """When each query's account first had a row with the query's second part (an own
    pass over the account's rows), and 0 / -1 for whether the query has both parts."""

    first: np.ndarray
    qcode: np.ndarray


class _AccountOrder(NamedTuple):
    """The transactions with an account in (account, time) order: positions, account
    codes, times, and where each query lies among them."""

    rows: np.ndarray
    acode: np.ndarray
    ats: np.ndarray
    own: np.ndarray


@dataclass
class _Plan:
    """How a catalog is computed: the pass each feature reads, the window lengths of
    every counting pass, and after which feature each pass's state is freed."""

    passes: list[str]  # per feature: row, lookup, blacklist, labels, history, pair, counts, window
    count_windows: dict[SideKey, list]
    last_use: dict[tuple[str, tuple], int]  # (store, key) -> index of the last feature


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
        self._codes: dict[tuple[str, str], np.ndarray] = {}
        self._values_out: dict[str, object] = {}  # features computed so far
        # The state of each kind of pass, freed after the last feature that reads it.
        self._windows: dict[SideKey, _Side | None] = {}
        self._counts: dict[SideKey, dict | None] = {}
        self._histories: dict[tuple, _History | None] = {}
        self._pairs: dict[SideKey, _PairFirst] = {}
        self._account_order: dict[tuple, _AccountOrder] = {}
        self._orders: dict[tuple[str, str], np.ndarray] = {}  # rows by (entity, time)
        self._listings: dict[str, _Listings | None] = {}
        self._listing_sources: list[str] = []
        self._hits: dict[str, np.ndarray] = {}  # blacklist hit per entity
        self._newest: tuple[np.ndarray, ...] | None = None  # newest active listing so far
        # Per-run lookups, kept for the whole run.
        self._times_of: dict[str, np.ndarray] = {}
        self._sorted_by_time: dict[str, bool] = {}
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self._query_masks: dict[str, np.ndarray] = {}
        self._query_columns: dict[str, np.ndarray] = {}
        self._account_positions: dict[str, np.ndarray] = {}
        self._query_order: np.ndarray | None = None
        self._domains = {d: list(m) for d, m in _DOMAINS.items()}
        self._domain_index = {m: d for d, ms in _DOMAINS.items() for m in ms}
        self._event_pairs: set[str] = set()  # composite entities that events are keyed on
        self._scratch_buffer = np.empty(0)
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
            self._domain_codes(self._domain_of(table, column))
        return self._codes[key]

    def _domain_of(self, table: str, column: str) -> str:
        """The vocabulary of a column; a column outside ``_DOMAINS`` joins the vocabulary
        of the transactions column of its name (registered before it is built)."""
        t = "transactions" if table == "queries" else table
        domain = self._domain_index.get((t, column))
        if domain is None:
            domain = self._domain_index.get(("transactions", column), f"column:{column}")
            if domain in self._vocab:
                raise RuntimeError(f"{t}.{column} joined the vocabulary {domain} after it was "
                                   "built")
            members = self._domains.setdefault(domain, [])
            if t != "transactions" and ("transactions", column) not in self._domain_index \
                    and column in self.tables["transactions"].columns:
                members.append(("transactions", column))
                self._domain_index[("transactions", column)] = domain
            members.append((t, column))
            self._domain_index[(t, column)] = domain
        return domain

    def _register(self, catalog: tuple[Feature, ...]) -> None:
        """Put every identifier column the features read into its vocabulary before any
        vocabulary is built (an events column shares the transactions' codes)."""
        for f in catalog:
            if f.source not in ("transactions", "events", "labels") or f.agg in ROW_AGGS:
                continue
            cols = [c for c in entity_columns(f.entity) if c != "_region"]
            if f.agg == "nunique":
                cols.append(f.of)
            for c in cols:
                self._domain_of("transactions", c)
                if f.source == "events":
                    self._domain_of("events", c)
            if f.source == "events" and (len(entity_columns(f.entity)) > 1
                                         or f.entity == "region"):
                self._event_pairs.add(f.entity)

    def _domain_codes(self, domain: str) -> None:
        """Factorise every column of one identifier vocabulary together (see ``_DOMAINS``)."""
        if domain in self._vocab:
            return
        members = [m for m in self._domains[domain] if self._frame(m[0]) is not None]
        if self.rows is None:
            members += [("queries", c) for t, c in self._domains[domain] if t == "transactions"]
        bl = self.tables.get("blacklist")
        if bl is not None:
            members.append((f"blacklist:{domain}", "entity_value"))
        series = []
        for t, c in members:
            if t.startswith("blacklist:"):
                series.append(bl["entity_value"].where(
                    bl["entity_type"].isin(_DOMAIN_LISTINGS.get(domain, ()))))
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
                columns.update(ENTITY_COLUMNS.get(e, e) for e in _BLACKLIST_TYPES
                               if f.agg != "blacklist_hit" or e == f.entity)
            elif f.source == "accounts":
                columns.update(("account_id", ENTITY_COLUMNS[f.entity]))
            elif f.agg not in ROW_AGGS:
                columns.update(c for c in entity_columns(f.entity) if c != "_region")
                if f.agg == "nunique":
                    columns.add(f.of)
        domains = sorted({self._domain_of("transactions", c) for c in columns}
                         - set(self._vocab))
        if len(domains) > 1:
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(self._domain_codes, domains))

    def _region_codes(self, frame: pd.DataFrame) -> np.ndarray:
        return region_codes(frame, self.cfg.region_cell_deg)

    def _key(self, table: str, entity: str) -> np.ndarray:
        """One int64 code per row for a (possibly composite) entity; -1 where any part is null.

        A composite entity (account+device, ...) gets dense pair codes numbered over the
        transactions and the queries together, so its rows are ordered by a counting sort
        and its segments found from a histogram, as for a single identifier.
        """
        cols = entity_columns(entity)
        if len(cols) == 1 and cols[0] != "_region":
            return self.codes(table, cols[0])
        # Region cells are arithmetic codes far larger than the rows: numbered densely
        # here, alone or in a composite, so that tables indexed by code stay small.
        name = "+".join(cols) if len(cols) > 1 else "_region_dense"
        if (table, name) not in self._codes:
            if table == "queries" and self.rows is not None:
                self._codes[(table, name)] = self._key("transactions", entity)[self.rows]
                return self._codes[(table, name)]
            members = (["transactions"] + (["events"] if entity in self._event_pairs else [])
                       + (["queries"] if self.rows is None else []))
            code, size = None, 0
            for c in cols:
                part = np.concatenate([self.codes(m, c) for m in members])
                if c == "_region":  # arithmetic cell codes: make them dense first
                    part, n_part = _dense_cells(part)
                else:
                    n_part = self._vocab[self._domain_of("transactions", c)]
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
        """Rows of a source that pass a feature's filter (None: no filter); one mask per
        (source, filter), shared by the features that use it."""
        f = self.tables[source]
        if where is None:
            return None
        if where == "located":
            return (f["lat"].notna() & f["lon"].notna()).to_numpy()
        key = (source, where)
        if key not in self._masks:
            self._masks[key] = _expr.mask(_expr.parse(where), self._resolver(f), len(f))
        return self._masks[key]

    def _resolver(self, frame: pd.DataFrame, features: bool = False):
        """Names of an expression: the frame's columns, then (for the queries' own
        ``expr`` features) features computed earlier, then the settings."""
        def resolve(name: str):
            if name in frame.columns:
                return frame[name]
            if features and name in self._values_out:
                return self._values_out[name]
            if name in self.cfg.params:
                return float(self.cfg.params[name])
            return float(getattr(self.cfg, name))
        return resolve

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
        """The window pass of one (source, entity, filter), once per run."""
        key = (source, entity, where)
        if key not in self._windows:
            frame = self.tables.get(source)
            if frame is None:
                self._windows[key] = None
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
            self._windows[key] = self._make_side(ecode, ets, self._key("queries", entity), frame,
                                                 base=rows)
        return self._windows[key]

    def _entity_order(self, source: str, entity: str) -> np.ndarray:
        """The order of all of a source's rows by (entity, time), once per source and
        entity (kept until the last feature that reads the entity's rows)."""
        key = (source, entity)
        if key not in self._orders:
            self._orders[key] = _entity_time_order(self._key(source, entity), self._times(source),
                                                   self._source_time_sorted(source))
        return self._orders[key]

    def _source_time_sorted(self, source: str) -> bool:
        """Whether a source's rows are in time order, checked once per source."""
        if source not in self._sorted_by_time:
            self._sorted_by_time[source] = _time_sorted(self._times(source))
        return self._sorted_by_time[source]

    def _times(self, source: str) -> np.ndarray:
        if source not in self._times_of:
            self._times_of[source] = _micros(self.tables[source]["ts"])
        return self._times_of[source]

    def window(self, side: _Side, window: str | None) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of each query's window among the side's sorted rows (shared per length)."""
        if side.ends is None:
            side.ends = K.window_ends(side.ets, side.starts, side.qcode, self.qts)
        if window not in side.window_starts:
            side.window_starts[window] = K.window_starts(side.ets, side.starts, side.qcode,
                                                         side.ends, self.qts, _window_us(window))
        return side.window_starts[window], side.ends

    def _values(self, side: _Side, column: str, squared: bool = False) -> np.ndarray:
        """Values of ``column`` in the side's sorted order (squared for variances)."""
        key = (column, squared)
        if key not in side.values:
            v = side.frame[column].to_numpy(dtype=float, na_value=np.nan)[side.rows]
            side.values[key] = v * v if squared else v
        return side.values[key]

    def _prefix(self, side: _Side, column: str, squared: bool = False):
        """Per-entity prefix sums of a column (and its sorted values), once per side."""
        vals = self._values(side, column, squared)
        key = (column, squared)
        if key not in side.prefix:
            side.prefix[key] = K.segment_prefix(side.ecode, vals)
        return side.prefix[key], vals

    def _current(self, f: Feature) -> np.ndarray:
        """True where the query transaction itself counts in its own aggregate: the
        feature includes it and the query passes the feature's row filter."""
        n = len(self.q)
        if not f.include_current:
            return np.zeros(n, dtype=bool)
        if f.where is not None:
            if f.where not in self._query_masks:
                self._query_masks[f.where] = _expr.mask(_expr.parse(f.where),
                                                        self._resolver(self.q), n)
            return self._query_masks[f.where]
        return np.ones(n, dtype=bool)

    def _query_values(self, column: str) -> np.ndarray:
        if column not in self._query_columns:
            self._query_columns[column] = self.q[column].to_numpy(dtype=float, na_value=np.nan)
        return self._query_columns[column]

    # -- aggregations ------------------------------------------------------------------
    def plan(self, catalog: tuple[Feature, ...]) -> _Plan:
        """Which pass computes each feature, the window lengths of each counting pass, and
        the feature after which each pass's state can be freed.

        Passes: ``row`` (the transaction's own values), ``lookup`` (accounts), ``blacklist``,
        ``labels`` (fraud reports counted in time order), ``history`` (a time-ordered pass
        over the entity's rows), ``pair`` (first use of a pair, from the account's rows in
        order), ``counts`` (window counts in one time-ordered pass: sides whose features
        all count, and the transactions a fraud rate divides by) and ``window`` (rows
        sorted by entity and time, windows searched or, for the rows themselves, found in
        one ordered pass).
        """
        aggs, windows, label_keys = {}, {}, set()
        for f in catalog:
            if f.source == "labels":  # fraud reports, and transactions of the entity
                for key in (("labels", f.entity, None), ("transactions", f.entity, None)):
                    aggs.setdefault(key, set()).add("count")
                    windows.setdefault(key, set()).add(f.window)
                    label_keys.add(key)
            elif f.source in ("transactions", "events") and f.agg not in ROW_AGGS:
                key = (f.source, f.entity, f.where)
                aggs.setdefault(key, set()).add(f.agg)
                windows.setdefault(key, set()).add(f.window)
        count_windows = {k: sorted(w, key=str) for k, w in windows.items()
                         if aggs[k] == {"count"} or k in label_keys}
        passes, last_use = [], {}
        for i, f in enumerate(catalog):
            key = (f.source, f.entity, f.where)
            if f.source == "accounts":
                kind, uses = "lookup", []
            elif f.agg in ROW_AGGS:
                kind, uses = "row", []
            elif f.source == "blacklist":
                kind, uses = "blacklist", []
            elif f.source == "labels":
                kind = "labels"
                uses = [("counts", ("labels", f.entity, None)),
                        ("counts", ("transactions", f.entity, None))]
            elif f.agg in _HISTORY_MODES and _own_pair(f) and self._owns(f):
                kind = "pair"
                uses = [("pairs", key), ("account_order", ("transactions", "account"))]
            elif f.agg in _HISTORY_MODES:
                kind, uses = "history", [("histories", _history_key(f))]
            elif f.agg == "count" and key in count_windows:
                kind, uses = "counts", [("counts", key)]
            else:
                kind, uses = "window", [("windows", key)]
            passes.append(kind)
            for use in uses:
                last_use[use] = i
        return _Plan(passes, count_windows, last_use)

    def compute(self, catalog: tuple[Feature, ...] = CATALOG) -> pd.DataFrame:
        """All features of ``catalog`` for the queries, as a DataFrame in catalog order."""
        plan = self.plan(catalog)
        self._count_windows = plan.count_windows
        self._register(catalog)
        self._prefetch_codes(catalog)
        columns = {}
        # Every float feature gets a row of one block per dtype (float32 unless declared
        # float64: XGBoost trains on float32, and the block is half the size). The last
        # kernel of a feature writes into its row (see ``_out``; the kernels compute in
        # float64 and store in the row's dtype), anything else is copied in.
        rows = {d: iter(np.empty((sum(f.kind == "float" and f.dtype == d for f in catalog),
                                  len(self.q)), dtype=d)) for d in ("float32", "float64")}
        for i, (f, kind) in enumerate(zip(catalog, plan.passes, strict=True)):
            self._row = row = next(rows[f.dtype]) if f.kind == "float" else None
            value = self._feature(f, kind)
            self._row = None
            if row is not None:
                if value is not row:
                    np.copyto(row, value, casting="same_kind")
                value = row
            elif not isinstance(value, pd.Categorical):
                value = pd.Categorical(value, categories=list(f.categories))
            columns[f.name] = value
            self._values_out[f.name] = value if row is not None else pd.Series(value)
            self._release(plan, i)
        # One pandas block per column, each a view of its row: no copy of the features.
        return pd.DataFrame(columns, copy=False)

    def _release(self, plan: _Plan, i: int) -> None:
        """Free the pass state whose last feature was the ``i``-th, and the (entity, time)
        order of a source once no later pass over that source and entity needs it."""
        for store, key in [u for u, last in plan.last_use.items() if last == i]:
            getattr(self, f"_{store}").pop(key, None)
            if all(last <= i for (_, k), last in plan.last_use.items() if k[:2] == key[:2]):
                self._orders.pop(key[:2], None)

    def _out(self) -> np.ndarray:
        """Where a kernel writes the value of the float feature being computed: its row of
        the output block (handed out once), else a new array."""
        row, self._row = self._row, None
        return np.empty(len(self.q)) if row is None else row

    def _feature(self, f: Feature, kind: str):
        """One feature's values, from the pass the plan chose."""
        if kind == "lookup":
            return self._lookup(f)
        if kind == "row":
            return self._value(f)
        if kind == "blacklist":
            return self._blacklist(f)
        if kind == "labels":
            return self._label_feature(f)
        if kind == "pair":
            return self._own_pair_history(f)
        if kind == "history":
            return self._history(f)
        if kind == "counts":
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
            return self._aggregate(f, side, lo, hi, side.qcode, self._current(f),
                                   self._query_values, own=False, out=self._out())
        # Every row's own window, in the side's order; the queries take theirs.
        lo, hi = self._own_window(side, f.window)
        n_rows = len(side.ecode)
        value = self._aggregate(f, side, lo, hi, side.ecode, np.full(n_rows, f.include_current),
                                partial(self._values, side), own=True, out=self._scratch(n_rows))
        return K.take_or(value, own, np.nan, self._out())

    def _scratch(self, n: int) -> np.ndarray:
        """A float64 array of ``n`` values for a result used once and at once (an own-window
        aggregate before its queries take it): one array for the whole build, so fresh
        memory is not faulted in for every feature."""
        if len(self._scratch_buffer) < n:
            self._scratch_buffer = np.empty(n)
        return self._scratch_buffer[:n]

    def _aggregate(self, f: Feature, side: _Side, lo, hi, qcode, cur, qv, *,
                   own: bool, out: np.ndarray) -> np.ndarray:
        """A window aggregate for each of ``qcode`` (the queries, or with ``own`` the side's
        own rows), whose window is [lo, hi) among the side's rows, written into ``out``;
        ``qv`` gives their own values."""
        if f.agg == "count":
            return K.agg_count(lo, hi, qcode, cur, out)
        if f.agg in _SUM_MODES:
            prefix, vals = self._prefix(side, f.of)
            return K.agg_sum(prefix, vals, lo, hi, qcode, cur, qv(f.of), _SUM_MODES[f.agg], out)
        if f.agg == "max":
            return K.agg_max(self._values(side, f.of), lo, hi, qcode, cur, qv(f.of), out)
        if f.agg == "min":  # the max of the negated values, negated
            K.agg_max(-self._values(side, f.of), lo, hi, qcode, cur, -qv(f.of), out)
            return np.negative(out, out=out)
        if f.agg == "std":
            return K.agg_std(*self._prefix(side, f.of), *self._prefix(side, f.of, squared=True),
                             lo, hi, qcode, cur, qv(f.of), out)
        if f.agg == "zscore":
            return K.agg_zscore(*self._prefix(side, f.of), *self._prefix(side, f.of, squared=True),
                                lo, hi, qcode, qv(f.of), out)
        if f.agg == "nunique":
            data_cats = self._sorted_codes(side, f.source, f.of)
            if own:  # the side's own rows: their own category
                current = np.where(cur, data_cats, -1)
            else:
                current = np.where(cur & (qcode >= 0), self.codes("queries", f.of), -1)
            n_cats = self._vocab[self._domain_of(f.source, f.of)]
            return K.window_nunique(data_cats, lo, hi, current, n_cats, qcode,
                                    numba.get_num_threads(), out)
        raise ValueError(f"feature {f.name}: unknown aggregation {f.agg!r}")

    def _sorted_codes(self, side: _Side, source: str, column: str) -> np.ndarray:
        """Codes of an identifier column in the side's sorted order, once per side."""
        if column not in side.codes:
            side.codes[column] = self.codes(source, column)[side.rows]
        return side.codes[column]

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
        if side.own is None:
            side.own = K.own_positions(side.rows, self.rows, len(self.tables["transactions"]))
        return side.own

    def _own_window(self, side: _Side, window: str | None) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of each side row's own window among the side's rows (shared per length)."""
        if side.own_ends is None:
            side.own_ends = K.own_window_ends(side.ets, side.ecode)
        if window not in side.own_starts:
            side.own_starts[window] = K.own_window_starts(side.ets, side.ecode, side.own_ends,
                                                          _window_us(window))
        return side.own_starts[window], side.own_ends

    def _value(self, f: Feature):
        """A value of the transaction itself: a column, or an expression over its columns,
        the settings and the features computed before it."""
        q = self.q
        if f.agg == "expr":
            values, missing = _expr.evaluate(_expr.parse(f.expr), self._resolver(q, True), len(q))
            return np.where(missing, np.nan, values)
        if f.kind == "category":
            # Factorise (fast on Arrow strings), then map the few distinct values onto the
            # fixed categories; unknown values become missing, as with astype(category).
            codes, uniques = pd.factorize(q[f.of])
            to_cat = np.append(pd.Index(list(f.categories)).get_indexer(uniques.astype(str)), -1)
            return pd.Categorical.from_codes(to_cat[codes], categories=list(f.categories))
        return q[f.of].to_numpy(dtype=float, na_value=np.nan)

    def _lookup(self, f: Feature):
        """An accounts attribute of the payer or the payee (missing if unknown)."""
        q = self.q
        accounts = self.tables.get("accounts")
        if accounts is None:
            if f.kind == "category":
                return pd.Categorical.from_codes(np.full(len(q), -1), categories=list(f.categories))
            return np.full(len(q), np.nan)
        pos = self._account_rows(ENTITY_COLUMNS[f.entity])
        if f.agg == "distance":
            lat, lon = (self._account_column(c, pos) for c in f.of)
            return _haversine_km(lat, lon, self._query_values("lat"), self._query_values("lon"))
        if f.agg == "age":
            created = self._account_column(f.of, pos)
            # An account opened after the payment was not known then: no age, not a negative one.
            with np.errstate(invalid="ignore"):
                return np.where(created <= self.qts, (self.qts - created) / _US_PER[f.unit],
                                np.nan)
        if f.kind == "category":
            values = pd.Series(accounts[f.of].array.take(pos, allow_fill=True)).astype("str")
            codes = pd.Index(list(f.categories)).get_indexer(values)
            return pd.Categorical.from_codes(np.where(values.isna(), -1, codes),
                                             categories=list(f.categories))
        return self._account_column(f.of, pos)

    def _account_rows(self, column: str) -> np.ndarray:
        """Position in accounts of each query's account in ``column`` (-1 if unknown; the
        first row wins for duplicates)."""
        if column not in self._account_positions:
            codes = self.codes("accounts", "account_id")
            lookup = np.full(self._vocab["account"] + 1, -1, np.int64)
            ok = np.flatnonzero(codes >= 0)
            lookup[codes[ok][::-1]] = ok[::-1]
            # code -1 reads the last slot
            self._account_positions[column] = lookup[self.codes("queries", column)]
        return self._account_positions[column]

    def _account_column(self, column: str, pos: np.ndarray) -> np.ndarray:
        """A numeric accounts column (timestamps as microseconds) at ``pos`` (NaN at -1)."""
        col = self.tables["accounts"][column]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            values = np.where(col.isna().to_numpy(), np.nan, _micros(col.fillna(
                pd.Timestamp(0, tz="UTC"))).astype(float))
        else:
            values = col.to_numpy(dtype=float, na_value=np.nan)
        values = np.append(values, np.nan)  # position -1 reads the missing value
        return values[pos]

    def _history(self, f: Feature):
        """Time since the entity's last or first earlier row, whether it has one, or the
        distance and speed from the last one's location (see ``K.sweep_history``)."""
        key = _history_key(f)
        located = key[3] == "located"
        if key not in self._histories:
            self._histories[key] = self._sweep_history(*key[:3], located=located)
        state = self._histories[key]
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
        key = (f.source, f.entity, f.where)
        if key not in self._pairs:
            rows, acode, ats, own = self._own_account_order()
            second = entity_columns(f.entity)[1]
            codes, n_codes = self._dense_codes(second)
            first = K.own_pair_first(acode, ats, codes[rows], n_codes)
            q_first = K.take_or(first, own, K.NEVER, np.empty(len(own), np.int64))
            qcode = np.where((own >= 0) & (codes[self.rows] >= 0), 0, -1)
            self._pairs[key] = _PairFirst(q_first, qcode)
        q_first, qcode = self._pairs[key]
        unit = _US_PER[f.unit] if f.agg.startswith("since_") else 1.0
        return K.history_feature(q_first, q_first, _NONE, _NONE, qcode, self.qts, _NONE, _NONE,
                                 _HISTORY_MODES[f.agg], unit, self._out())

    def _own_account_order(self):
        """The transactions with an account in (account, time) order: their positions,
        account codes and times, and where each query lies among them."""
        key = ("transactions", "account")
        if key not in self._account_order:
            ets = self._times("transactions")
            rows, acode, ats = K.gather_side(self._entity_order(*key), self._key(*key), ets)
            own = K.own_positions(rows, self.rows, len(ets))
            self._account_order[key] = _AccountOrder(rows, acode, ats, own)
        return self._account_order[key]

    def _dense_codes(self, column: str) -> tuple[np.ndarray, int]:
        """Dense codes of a transactions column (regions numbered as they appear)."""
        codes = self.codes("transactions", column)
        if column != "_region":
            return codes, self._vocab[self._domain_of("transactions", column)]
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
        return _History(*K.sweep_history(dcode, dts, keep, lat, lon, self._time_order(), qcode,
                                         self.qts, _n_codes(dcode, qcode), located))

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
        key = (source, entity, where)
        if key not in self._counts:
            self._counts[key] = None
            if self.tables.get(source) is not None:
                windows = self._count_windows[key]
                if source == "labels":
                    dcode, dts = self._fraud_reports(entity)
                    keep = _ALL
                else:
                    dcode, dts, keep, _ = self._time_rows(source, entity, where)
                qcode = self._key("queries", entity)
                lengths = np.array([_COUNT_ALL if w is None else _window_us(w) for w in windows],
                                   dtype=np.int64)
                counts = K.window_counts(dcode, dts, keep, self._time_order(), qcode, self.qts,
                                         lengths, _n_codes(dcode, qcode))
                self._counts[key] = dict(zip(windows, counts, strict=True))
        counts = self._counts[key]
        return None if counts is None else counts[window]

    def _time_order(self) -> np.ndarray:
        """The queries in time order (ties in their given order)."""
        if self._query_order is None:
            q = self.qts
            self._query_order = (np.arange(len(q)) if _time_sorted(q)
                                 else np.argsort(q, kind="stable"))
        return self._query_order

    def _label_feature(self, f: Feature):
        """Fraud reports about the entity's transactions received in a window (at their
        ``reported_at``), and their rate per transaction of the entity in the same window
        (0 without transactions)."""
        n = len(self.q)
        if self.tables.get("labels") is None:
            return np.full(n, np.nan)
        reports = self._window_count("labels", f.entity, None, f.window)
        qcode = self._key("queries", f.entity)
        if f.agg == "fraud_reports":
            return K.count_feature(reports, qcode, np.zeros(n, dtype=bool), self._out())
        return K.rate_feature(reports, self._window_count("transactions", f.entity, None,
                                                          f.window), qcode, self._out())

    def _fraud_reports(self, entity: str) -> tuple[np.ndarray, np.ndarray]:
        """The entity code (of the reported transaction) and report time of every fraud
        report, in time order."""
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
        ecode = self._key("transactions", entity)[pos]
        keep = np.flatnonzero(ecode >= 0)
        _, dcode, dts = _in_time_order(keep, ecode[keep], _micros(fraud["reported_at"])[keep])
        return dcode, dts

    def _blacklist_side(self, entity: str) -> _Listings | None:
        """The blacklist pass of one entity type, once per run."""
        if entity in self._listings:
            return self._listings[entity]
        bl = self.tables.get("blacklist")
        if bl is None:
            self._listings[entity] = None
            return None
        in_types = bl["entity_type"].isin(_BLACKLIST_TYPES[entity]).to_numpy()
        column = ENTITY_COLUMNS.get(entity, entity)
        domain = self._domain_of("transactions", column)
        qcode = self.codes("queries", column)
        ecode = np.where(in_types, self._codes[(f"blacklist:{domain}", "entity_value")], -1)
        side = self._make_side(ecode, _micros(bl["listed_at"]), qcode, bl)
        order = side.rows
        delisted = bl["delisted_at"]
        until = np.where(delisted.isna().to_numpy(), np.iinfo(np.int64).max,
                         _micros(delisted.fillna(pd.Timestamp(0, tz="UTC"))))[order]
        codes, names = pd.factorize(bl["source"])
        self._listing_sources = list(names)
        listings = _Listings(side.ets, side.starts, side.qcode,
                             K.segment_cummax(side.ecode, until.astype(np.int64)),
                             codes.astype(np.int64)[order])
        self._listings[entity] = listings
        return listings

    def _blacklist_hit(self, entity: str) -> np.ndarray:
        """Whether the query's entity is listed (1/0/NaN), once per entity; the newest
        active listing over the entities looked up so far is kept as it goes (see
        ``_newest_listing``)."""
        if entity not in self._hits:
            n = len(self.q)
            if self._newest is None:
                self._newest = (np.full(n, -1, np.int64), np.full(n, -1, np.int64),
                                np.full(n, len(_BLACKLIST_TYPES), np.int64))
            side = self._blacklist_side(entity)
            if side is None or not len(side.ets):
                hit = np.full(n, np.nan) if side is None else np.where(side.qcode >= 0, 0.0, np.nan)
            else:
                hit = K.listing_lookup(side.ets, side.starts, self.qts, side.until, side.source,
                                       side.qcode, list(_BLACKLIST_TYPES).index(entity),
                                       *self._newest)
            self._hits[entity] = hit
        return self._hits[entity]

    def _newest_listing(self) -> tuple[np.ndarray, np.ndarray]:
        """Listing time and source code of the newest active listing of any of the query's
        entities (-1 if none; between equal times, the entity first in ``_BLACKLIST_TYPES``)."""
        for entity in _BLACKLIST_TYPES:
            self._blacklist_hit(entity)
        listed, source, _ = self._newest
        return listed, source

    def _blacklist(self, f: Feature):
        if f.agg == "blacklist_hit":
            return self._blacklist_hit(f.entity)
        listed, source = self._newest_listing()
        if f.agg == "blacklist_days":
            return np.where(listed >= 0, (self.qts - listed) / _US_PER["days"], np.nan)
        names = self._listing_sources
        order = [names.index(c) if c in names else -1 for c in f.categories]
        # Recode from this data's source codes to the feature's fixed categories.
        recode = np.full(len(names) + 1, -1, np.int64)
        for fixed, own in enumerate(order):
            if own >= 0:
                recode[own] = fixed
        return pd.Categorical.from_codes(recode[source], categories=list(f.categories))


def _own_pair(f: Feature) -> bool:
    """Whether a history feature is a first use of a pair of the account and one more
    column of the transactions (computed from the account's rows in order)."""
    parts = entity_columns(f.entity)
    return (f.agg in _FIRST_MODES and f.source == "transactions" and len(parts) == 2
            and parts[0] == "account_id")


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
                     catalog: FeatureSet | Sequence[Feature] = CATALOG) -> pd.DataFrame:
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
    catalog : FeatureSet or sequence of Feature
        Which features to compute, in order (default the built-in set).

    Returns
    -------
    DataFrame
        One row per transaction scored (in the order given), one column per feature.
        The float columns are views of one 2-D array (no copy was made to assemble the
        frame), so its memory is released when the last of them is.
    """
    config = config or FeaturesConfig()
    features = as_feature_set(catalog, tuple(config.params)).features
    return FeatureEngine(queries, tables, config, rows=rows).compute(features)
