"""The incremental executor: the same declarations as the batch build, one event at a time.

Every declaration is executed by per-entity state that follows one algebra per
aggregation (in the manner of Chronon's aggregators): a row is *added* to its entity's
state, a windowed state *removes* what falls out of the window (count, sums and
distinct counts are reversible; minimum and maximum keep a monotonic queue), and a query
*finalises* the state at the transaction's time, adding the transaction's own value where
the declaration includes it. Declarations that share a source, entity, filter and window
share one state.

Time semantics are the batch build's (``features/_kernels.py``): a window of length ``w``
at time ``t`` holds rows with ``t - w < time < t``. Rows tied with a transaction at ``t``
are not before it: a data row enters the state only once time has moved past it (it
waits in a buffer of the current instant), so the order of rows within one instant does
not matter. Listings count from their ``listed_at`` inclusive until ``delisted_at``;
label reports from their ``reported_at``. Account rows are master data: an update takes
effect at once, as the batch build looks every account up whatever its opening time.

A row older than a transaction already scored arrives *late*: it is applied (the batch
build would have seen it for later transactions) and counted in :attr:`OnlineFeatures.late`;
transactions scored before it arrived did not see it.
"""

from __future__ import annotations

import array
import bisect
import json
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fraudlab.data_contracts import parse_duration

from . import _expr
from ._config import FeaturesConfig
from ._declarations import (
    ENTITY_COLUMNS,
    FORMAT_VERSION,
    SETTINGS,
    TIME_UNITS,
    Feature,
    FeatureSet,
    features_from_dict,
)

STATE_FORMAT = 2
"""Version of the snapshot format written by :meth:`OnlineFeatures.snapshot`."""

# Which listing entity types hit each entity of a payment, in the order that breaks ties
# between equally new listings (as the batch build's blacklist pass).
_BLACKLIST_TYPES = {"account": ("account",), "device": ("device",), "ip": ("ip",),
                    "counterparty": ("counterparty", "account"), "merchant": ("merchant",)}
_NAN = math.nan
_UNSET = object()


def _missing(v) -> bool:
    # NaN and NaT are the values unequal to themselves; pandas' NA refuses the comparison.
    return v is None or v is _NA or v != v


try:
    import pandas as _pd

    _NA, _NAT = _pd.NA, _pd.NaT
except ImportError:  # pragma: no cover - pandas is a dependency
    _NA = _NAT = None


def _micros(ts) -> int | None:
    """Microseconds since the epoch (UTC) of a timestamp, an int (already micros) or None."""
    if ts is None:
        return None
    if isinstance(ts, int):
        return ts
    import pandas as pd

    t = pd.Timestamp(ts)
    if t is pd.NaT:
        return None
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return t.value // 1000


def _haversine(lat1, lon1, lat2, lon2) -> float:
    r = math.pi / 180.0
    p1, p2 = lat1 * r, lat2 * r
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((lon2 - lon1) * r / 2) ** 2
    return 6371.0088 * 2 * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


class _Win:
    """One window's aggregates of one entity (or the whole history's). Per-column lists
    exist only for the kinds of aggregation the window serves (None otherwise), as a new
    entity allocates one per window."""

    __slots__ = ("entries", "n", "nan", "s", "ss", "shift", "distinct", "lo", "hi",
                 "first", "last", "loc")

    def __init__(self, entries, columns: int, moments: bool, uniques: bool, extremes: bool):
        # The family's rows, shared by its windows (None for the whole history): this
        # window holds the last ``n`` of them.
        self.entries = entries
        self.n = 0
        if moments:
            self.nan = [0] * columns  # per column: missing values among the rows
            self.s = [0.0] * columns  # sums of (value - shift), for mean and std
            self.ss = [0.0] * columns
            self.shift = [None] * columns
        else:
            self.nan = self.s = self.ss = self.shift = None
        self.distinct = [None] * columns if uniques else None  # value -> count, for nunique
        if extremes:  # windowed: monotonic queues of (time, value); else the extreme
            self.lo, self.hi = [None] * columns, [None] * columns
        else:
            self.lo = self.hi = None
        self.first = None  # time of the first and last row (whole history)
        self.last = None
        self.loc = None  # (time, lat, lon) of the last located row (whole history)


class _Key:
    """One entity's state in a group: the rows of its longest window (kept once for all
    its windows) and each window's aggregates."""

    __slots__ = ("entries", "wins", "expiry")

    def __init__(self, windowed: bool, columns: int, plan):
        self.entries = deque() if windowed else None  # (time, values, lat, lon) in time order
        self.wins = [_Win(self.entries, columns, bool(m), bool(u), bool(x)) for m, u, x in plan]
        # No row leaves a window before this time (at most the true one: a query before
        # it skips the windows' expiry altogether).
        self.expiry = _NEVER


class _Group:
    """The state shared by declarations with one source, entity and filter: either the
    whole history, or a family of windows over one copy of the rows (the longest
    window's), each window being a suffix of them with its own aggregates."""

    def __init__(self, source: str, parts: tuple[str, ...], where, windowed: bool):
        self.source, self.parts, self.where, self.windowed = source, parts, where, windowed
        self.spans: list[int | None] = [] if windowed else [None]
        self.columns: list[str] = []  # the values the group keeps per row
        self.moments: list[set[int]] = [] if windowed else [set()]  # per window: columns
        self.extremes: list[set[int]] = [] if windowed else [set()]
        self.uniques: list[set[int]] = [] if windowed else [set()]
        self.located = False
        self.current = False  # some declaration counts the transaction itself
        self.window = None  # the longest window, once planned
        self.missing: dict = {}  # the query's values without an entity, once planned
        self.empty: dict | None = None  # ... for an entity without state (see OnlineFeatures)
        # Windowed: in the order of each key's last row (a row moves its key to the end),
        # so that the keys whose rows have all left the window are the first ones.
        self.keys: dict[tuple, _Key] = OrderedDict() if windowed else {}

    def span(self, window: int | None) -> int:
        """The index of ``window`` among the group's windows (added when new)."""
        if window is None:
            return 0
        if window not in self.spans:
            self.spans.append(window)
            for sets in (self.moments, self.extremes, self.uniques):
                sets.append(set())
        return self.spans.index(window)

    def column(self, name: str) -> int:
        if name not in self.columns:
            self.columns.append(name)
        return self.columns.index(name)

    def plan(self) -> None:
        """Fix the per-window work once every declaration is known."""
        windowed = self.windowed
        self.window = max(self.spans) if windowed else None
        self._plan = tuple((tuple(sorted(m)), tuple(sorted(u)), tuple(sorted(x)))
                           for m, u, x in zip(self.moments, self.uniques, self.extremes,
                                              strict=True))
        self._edges = tuple(zip(self.spans, self._plan, strict=True)) if windowed else ()
        self.unseen = (None,) * len(self.spans)  # the windows of an entity never seen
        if windowed:
            self._short = min(self.spans)
            self._shortest = self.spans.index(self._short)

    def new_key(self) -> _Key:
        return _Key(self.window is not None, len(self.columns), self._plan)

    # -- the algebra ---------------------------------------------------------------
    def add(self, key: tuple, t: int, row: Mapping, lat, lon) -> None:
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = self.new_key()
        vals = tuple(map(row.get, self.columns))
        if self.window is not None:
            e = st.entries
            if e and e[-1][0] > t:  # late: insert in time order, rebuild
                items = list(e)
                bisect.insort_right(items, (t, vals, lat, lon), key=lambda x: x[0])
                self._rebuild(key, items)
                return
            if t >= st.expiry:
                self._drop_old(st, t)
            self.keys.move_to_end(key)
            e.append((t, vals, lat, lon))
            # A shorter window holds the newest of a longer one's rows, so if any window
            # is empty the shortest is, and this row is its oldest.
            if not st.wins[self._shortest].n and t + self._short < st.expiry:
                st.expiry = t + self._short
        self._update(st.wins, t, vals, lat, lon)

    def _update(self, wins: list[_Win], t: int, vals, lat, lon) -> None:
        """Add one row to each window of an entity."""
        history = not self.windowed
        for st, (moments, uniques, extremes) in zip(wins, self._plan, strict=True):
            st.n += 1
            for j in moments:
                v = vals[j]
                if _missing(v):
                    st.nan[j] += 1
                    continue
                v = float(v)
                if st.shift[j] is None:
                    st.shift[j] = v
                d = v - st.shift[j]
                st.s[j] += d
                st.ss[j] += d * d
            for j in uniques:
                v = vals[j]
                if not _missing(v):
                    d = st.distinct[j]
                    if d is None:
                        d = st.distinct[j] = {}
                    d[v] = d.get(v, 0) + 1
            for j in extremes:
                v = vals[j]
                if _missing(v):
                    continue
                v = float(v)
                if history:
                    st.lo[j] = v if st.lo[j] is None else min(st.lo[j], v)
                    st.hi[j] = v if st.hi[j] is None else max(st.hi[j], v)
                    continue
                lo, hi = st.lo[j], st.hi[j]
                if lo is None:
                    lo, hi = st.lo[j], st.hi[j] = deque(), deque()
                while lo and lo[-1][1] >= v:
                    lo.pop()
                lo.append((t, v))
                while hi and hi[-1][1] <= v:
                    hi.pop()
                hi.append((t, v))
            if history:
                st.first = t if st.first is None else min(st.first, t)
                st.last = t if st.last is None else max(st.last, t)
                if self.located and lat is not None and (st.loc is None or t >= st.loc[0]):
                    st.loc = (t, lat, lon)

    def _rebuild(self, key: tuple, items: list) -> None:
        st = self.keys[key] = self.new_key()
        st.expiry = -_NEVER  # the next query expires the windows afresh
        for t, vals, lat, lon in items:
            st.entries.append((t, vals, lat, lon))
            self._update(st.wins, t, vals, lat, lon)

    def _drop_old(self, st: _Key, t: int) -> None:
        """Remove from each window the rows at or before ``t`` minus its length, then the
        rows no window holds."""
        e = st.entries
        size = len(e)
        keep, expiry = 0, _NEVER
        for w, (span, (moments, uniques, extremes)) in zip(st.wins, self._edges, strict=True):
            edge = t - span
            n = w.n
            while n and e[size - n][0] <= edge:  # subtract the window's oldest row
                vals = e[size - n][1]
                for j in moments:
                    v = vals[j]
                    if _missing(v):
                        w.nan[j] -= 1
                        continue
                    d = float(v) - w.shift[j]
                    w.s[j] -= d
                    w.ss[j] -= d * d
                for j in uniques:
                    v = vals[j]
                    if not _missing(v):
                        d = w.distinct[j]
                        d[v] -= 1
                        if not d[v]:
                            del d[v]
                n -= 1
            if n != w.n:
                w.n = n
                if not n:  # empty: start the shifted sums afresh
                    for j in moments:
                        w.s[j] = w.ss[j] = 0.0
                        w.shift[j] = None
            for j in extremes:
                for q in (w.lo[j], w.hi[j]):
                    while q and q[0][0] <= edge:
                        q.popleft()
            if n:
                keep = max(keep, n)
                # Queues hold rows of the window, none older than its oldest row.
                expiry = min(expiry, e[size - n][0] + span)
        for _ in range(size - keep):
            e.popleft()
        st.expiry = expiry

    def expire(self, key: tuple, st: _Key, t: int) -> None:
        """Remove the rows of ``key`` that left its windows by ``t``, and the key once
        empty."""
        self._drop_old(st, t)
        if not st.entries:
            del self.keys[key]

    def expire_idle(self, t: int) -> None:
        """Forget the keys whose last row left the longest window before ``t``: the first
        ones in :attr:`keys`, so each call costs what it removes (expiring only drops rows
        no query can see, so results never depend on when it happens)."""
        keys, edge = self.keys, t - self.window
        while keys:
            key = next(iter(keys))
            e = keys[key].entries
            if e and e[-1][0] > edge:
                return
            del keys[key]

    def at(self, key: tuple, t: int) -> _Key | None:
        st = self.keys.get(key)
        if st is not None and self.window is not None and t >= st.expiry:
            self.expire(key, st, t)
            st = self.keys.get(key)
        return st


class _Labels:
    """Fraud reports and transactions of one entity in one window, for the label-aware
    aggregations."""

    def __init__(self, parts: tuple[str, ...], window: int | None):
        self.parts, self.window = parts, window
        # Windowed: in the order of each key's last row, as :attr:`_Group.keys`.
        self.reports: dict[tuple, deque | int] = OrderedDict() if window is not None else {}
        self.tx: dict[tuple, deque | int] = OrderedDict() if window is not None else {}

    @staticmethod
    def _add(table: dict, key: tuple, t: int, window) -> None:
        if window is None:
            table[key] = table.get(key, 0) + 1
            return
        q = table.get(key)
        if q is None:
            q = table[key] = deque()
        if q and q[-1] > t:
            bisect.insort_right(q, t)  # deque supports insert: a late row
        else:
            q.append(t)
            table.move_to_end(key)

    def expire_idle(self, t: int) -> None:
        """Forget the keys whose last row left the window before ``t`` (see
        :meth:`_Group.expire_idle`)."""
        edge = t - self.window
        for table in (self.reports, self.tx):
            while table:
                key = next(iter(table))
                if table[key][-1] > edge:
                    break
                del table[key]

    def count(self, table: dict, key: tuple, t: int) -> int:
        q = table.get(key)
        if q is None:
            return 0
        if self.window is None:
            return q
        edge = t - self.window
        while q and q[0] <= edge:
            q.popleft()
        if not q:
            del table[key]
            return 0
        return len(q)


def _window_fn(f: Feature, windowed: bool, j):
    """The finalisation of one declaration over a window (or the whole history),
    specialised once for its aggregation: ``fn(state, cur, tx, t)``, where ``state`` is
    the window's :class:`_Win` (None for an entity never seen) and ``cur`` says whether
    the transaction itself counts (``include_current`` and it passes the filter)."""
    agg = f.agg
    if agg == "count":
        return lambda st, cur, tx, t: float((st.n if st else 0) + cur)
    if agg == "seen_before":
        return lambda st, cur, tx, t: float(st is not None and st.n > 0)
    if agg == "first_use":
        return lambda st, cur, tx, t: float(not (st is not None and st.n > 0))
    if agg in ("since_last", "since_first"):
        unit, last = TIME_UNITS[f.unit], agg == "since_last"
        empty = _NAN if last else 0.0

        def since(st, cur, tx, t):
            if st is None or not st.n:
                return empty
            if not windowed:
                then = st.last if last else st.first
            else:
                e = st.entries
                then = e[-1][0] if last else e[len(e) - st.n][0]
            return (t - then) / unit
        return since
    if agg in ("last_distance", "last_speed"):
        speed = agg == "last_speed"

        def distance(st, cur, tx, t):
            qlat, qlon = tx.get("lat"), tx.get("lon")
            if st is None or _missing(qlat) or _missing(qlon):
                return _NAN
            loc = st.loc if not windowed else _last_located(st)
            if loc is None:
                return _NAN
            d = _haversine(loc[1], loc[2], float(qlat), float(qlon))
            return d / max((t - loc[0]) / 3.6e9, 1 / 60) if speed else d
        return distance
    of = f.of
    if agg == "nunique":
        def nunique(st, cur, tx, t):
            q = tx.get(of)
            d = (st.distinct[j] if st else None) or {}
            return float(len(d) + (cur and not _missing(q) and q not in d))
        return nunique
    if agg in ("min", "max"):
        low = agg == "min"

        def extreme(st, cur, tx, t):
            q = tx.get(of)
            qv = _NAN if _missing(q) else float(q)
            if st is None or st.lo[j] is None:
                best = _NAN
            elif not windowed:
                best = st.lo[j] if low else st.hi[j]
            else:
                side = st.lo[j] if low else st.hi[j]
                best = side[0][1] if side else _NAN
            if cur and not math.isnan(qv):
                best = qv if math.isnan(best) else (min(best, qv) if low else max(best, qv))
            return best
        return extreme

    if agg in ("sum", "mean"):  # the commonest: no variance, no query value unless current
        total = agg == "sum"

        def sum_mean(st, cur, tx, t):
            if st is None:
                c, nan, shift, s = 0, 0, None, 0.0
            else:
                c, nan, shift, s = st.n, st.nan[j], st.shift[j], st.s[j]
            if cur:
                q = tx.get(of)
                if _missing(q):
                    return _NAN
                q = float(q)
                c += 1
                if shift is None:
                    shift = q
                s += q - shift
            if nan:
                return _NAN
            if total:
                return s + (shift or 0.0) * c
            return (shift or 0.0) + s / c if c else _NAN
        return sum_mean

    def moments(st, cur, tx, t):  # std, zscore, ratio_to_mean: shifted sums
        q = tx.get(of)
        qv = _NAN if _missing(q) else float(q)
        if st is None:
            c, nan, shift, s, ss = 0, 0, None, 0.0, 0.0
        else:
            c, nan, shift, s, ss = st.n, st.nan[j], st.shift[j], st.s[j], st.ss[j]
        if cur:
            c += 1
            if math.isnan(qv):
                nan += 1
            else:
                if shift is None:
                    shift = qv
                s += qv - shift
                ss += (qv - shift) ** 2
        if nan:
            return _NAN
        shift = shift or 0.0
        if agg == "sum":
            return s + shift * c
        if c == 0:
            return _NAN
        mean = shift + s / c
        if agg == "mean":
            return mean
        if agg == "ratio_to_mean":
            return qv / mean if mean > 0 else _NAN
        if c < 2:
            return _NAN
        var = max(ss - s * s / c, 0.0) / (c - 1)
        if agg == "std":
            return math.sqrt(var) if var > 1e-12 * (mean * mean + 1e-12) else 0.0
        sd = math.sqrt(var)
        return (qv - mean) / sd if sd > 1e-9 * abs(mean) + 1e-12 else _NAN
    return moments


def _quick(tree: tuple, settings: Mapping):
    """A direct test for the commonest filters, ``column == 'text'``, ``column < number``
    (any comparison, the number written or a setting) and a bare boolean ``column``, read
    from the row: ``test(row)`` answers True or False, or None when the row holds something
    else (another type of value, or no such column, or a column named like the setting),
    which the general evaluation then answers."""
    if tree[0] == "cmp" and tree[2][0] == "name" and tree[3][0] in ("num", "name"):
        op, column, (kind, bound) = _expr._OPS[tree[1]], tree[2][1], tree[3]
        if kind == "name":
            if not isinstance(settings.get(bound), (int, float)) or \
                    isinstance(settings.get(bound), bool):
                return None
            shadow, bound = bound, float(settings[bound])
        else:
            shadow, bound = None, float(bound)

        def compare(row):
            v = row.get(column, _UNSET)
            if v is None:
                return False
            if type(v) not in (float, int) or (shadow is not None and shadow in row):
                return None
            return False if v != v else op(float(v), bound)
        return compare
    if tree[0] == "cmp" and tree[1] == "==":
        sides = {tree[2][0]: tree[2][1], tree[3][0]: tree[3][1]}
        if set(sides) == {"name", "str"}:
            column, text = sides["name"], sides["str"]

            def equals(row):
                v = row.get(column, _UNSET)
                if isinstance(v, str):
                    return v == text
                return False if v is None else None
            return equals
    if tree[0] == "name":
        column = tree[1]

        def flag(row):
            v = row.get(column, _UNSET)
            if v is True or v is False:
                return v
            return False if v is None else None
        return flag
    return None


def _last_located(st: _Win):
    """(time, lat, lon) of the newest located row in a window, or None."""
    e = st.entries
    for k in range(1, st.n + 1):
        row = e[-k]
        if row[2] is not None:
            return row[0], row[2], row[3]
    return None


def _spec_key(f: Feature) -> tuple:
    return (f.source, f.entity, f.where, f.window is not None)


class OnlineFeatures:
    """Features of one payment at a time, equal to the batch build's.

    Parameters
    ----------
    features : FeatureSet, sequence of Feature, or mapping
        The declarations, or a model's ``features.json`` document (declarations and the
        settings they read).
    config : FeaturesConfig, optional
        The feature settings (``small_amount``, ``params``, ...); ignored when ``features``
        is a ``features.json`` document, which carries its own.
    label_horizon : str
        How long a transaction's entities are remembered for fraud reports about it; a
        report about an older transaction is counted in :attr:`dropped_labels`.

    Notes
    -----
    Feed rows with :meth:`update` (events, labels, blacklist, accounts, and transactions
    that need no score) and transactions with :meth:`score`, which returns the feature
    vector the batch build computes for that transaction and then takes it into the
    state. Rows are expected in time order; see the module docstring for rows at the same
    instant and rows that arrive late.
    """

    def __init__(self, features: FeatureSet | Sequence[Feature] | Mapping,
                 config: FeaturesConfig | None = None, *, label_horizon: str = "400d"):
        if isinstance(features, Mapping):
            settings = dict(features.get("settings") or {})
            params = dict(settings.pop("params", {}) or {})
            config = FeaturesConfig(**{k: v for k, v in settings.items() if k in SETTINGS},
                                    params=params)
            fs = features_from_dict({k: v for k, v in features.items() if k != "settings"},
                                    origin="<features.json>", settings=params)
        else:
            config = config or FeaturesConfig()
            fs = features if isinstance(features, FeatureSet) else FeatureSet(tuple(features))
        self.features = fs
        self.config = config
        self.settings = {**{k: getattr(config, k) for k in SETTINGS}, **dict(config.params)}
        self._cell = float(config.region_cell_deg)
        self._horizon = parse_duration(label_horizon).value // _US
        self._groups: dict[tuple, _Group] = {}
        self._by_source: dict[str, list[_Group]] = {}
        self._labels: dict[tuple, _Labels] = {}
        self._wheres: dict[str, tuple] = {}
        self._plan = [self._compile(f) for f in fs.features]
        for g in self._groups.values():
            g.plan()
        self._names = fs.names()
        # The query's order: each windowed group's state is found once and finalised for
        # all its declarations; then the other lookups; expressions last, in declaration
        # order (they read the features before them).
        self._window_plan: list[tuple[_Group, list]] = []
        self._rest_plan: list[tuple] = []
        self._expr_plan: list[tuple] = []
        by_group: dict[int, list] = {}
        for kind, f, arg in self._plan:
            if kind == "window":
                g, i, j = arg
                if id(g) not in by_group:
                    by_group[id(g)] = []
                    self._window_plan.append((g, by_group[id(g)]))
                by_group[id(g)].append((f.name, _window_fn(f, g.windowed, j),
                                        f.include_current, i))
            elif kind == "expr":
                self._expr_plan.append((f.name, arg))
            else:
                self._rest_plan.append((f.name, self._rest_fn(kind, f, arg)))
        for g, feats in self._window_plan:
            g.missing = {name: _NAN for name, *_ in feats}  # the payment has no such entity
            # An entity with no state, for declarations that never count the payment
            # itself: values that depend on neither the payment nor the time.
            g.empty = None if g.current else {name: fn(None, False, {}, 0)
                                              for name, fn, *_ in feats}
        self._listings: dict[tuple, list] = {}  # (type, value) -> [listed, delisted, source]
        self._accounts: dict[str, tuple] = {}  # id -> (created_at micros, row)
        self._tx_keys: dict[str, tuple] = {}  # tx_id -> (time, keys per label group)
        self._tx_order: deque = deque()  # (time, tx_id), to forget old transactions
        self._pending: list[tuple[str, int, Mapping]] = []
        self._queried: dict[int, tuple] = {}  # id(row) -> (row, keys, memo): scored, pending
        self._pending_t: int | None = None
        self._scored_t: int | None = None
        self._swept_t: int | None = None  # listings and remembered payments: once a day
        self._idle_t: int | None = None  # idle windowed keys: at most once a minute
        self._windowed = [x for x in (*self._groups.values(), *self._labels.values())
                          if x.window is not None]
        self._resume_at = 0  # replay: the position in the stream after the last row taken
        self.late = 0
        """Rows that arrived after a later transaction had been scored."""
        self.dropped_labels = 0
        """Fraud reports about transactions unknown to the state (older than the horizon)."""

    # ------------------------------------------------------------------ planning
    def _compile(self, f: Feature) -> tuple:
        where = None
        if f.where:
            where = self._wheres.get(f.where)
            if where is None:  # one per text: a row's answer is kept per filter
                tree = _expr.parse(f.where)
                where = self._wheres[f.where] = (_expr.row_function(tree),
                                                 "ts" in _expr.names(tree),
                                                 _quick(tree, self.settings))
        if f.agg == "expr":
            return ("expr", f, _expr.row_function(_expr.parse(f.expr)))
        if f.source == "transactions" and f.agg == "value":
            return ("value", f, None)
        if f.source == "accounts":
            return ("account", f, ENTITY_COLUMNS[f.entity])
        if f.source == "blacklist":
            return ("blacklist", f, None)
        window = parse_duration(f.window).value // _US if f.window else None
        parts = f.entity_parts()
        if f.source == "labels":
            key = (f.entity, f.window)
            if key not in self._labels:
                self._labels[key] = _Labels(parts, window)
            return ("labels", f, self._labels[key])
        key = _spec_key(f)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _Group(f.source, parts, where, window is not None)
        i, j = g.span(window), None
        if f.of is not None and isinstance(f.of, str):
            j = g.column(f.of)
            if f.agg in ("sum", "mean", "std", "zscore", "ratio_to_mean"):
                g.moments[i].add(j)
            elif f.agg in ("min", "max"):
                g.extremes[i].add(j)
            elif f.agg == "nunique":
                g.uniques[i].add(j)
        if f.agg in ("last_distance", "last_speed"):
            g.located = True
        g.current |= f.include_current
        self._by_source.setdefault(f.source, [])
        if g not in self._by_source[f.source]:
            self._by_source[f.source].append(g)
        return ("window", f, (g, i, j))

    # ------------------------------------------------------------------ input rows
    def _region(self, row: Mapping):
        lat, lon = row.get("lat"), row.get("lon")
        if _missing(lat) or _missing(lon):
            return None
        return (math.floor(lat / self._cell), math.floor(lon / self._cell))

    def _key(self, row: Mapping, parts: tuple[str, ...]):
        if len(parts) == 1 and parts[0] != "_region":  # most entities: one column
            v = row.get(parts[0])
            return None if _missing(v) else (v,)
        vals = []
        for p in parts:
            v = self._region(row) if p == "_region" else row.get(p)
            if _missing(v):
                return None
            vals.append(v)
        return tuple(vals)

    def _passes(self, where, row: Mapping, memo: dict) -> bool:
        """Whether ``row`` passes a group's filter; ``memo`` (one per row) keeps the row's
        values and each filter's answer, as groups share filters."""
        if where is None:
            return True
        fn, reads_ts, quick = where
        if quick is not None:
            got = quick(row)
            if got is not None:
                return got
        got = memo.get(fn)
        if got is None:
            values = memo.get("values")
            if values is None:
                values = memo["values"] = {**self.settings, **row}
            if reads_ts and isinstance(values.get("ts"), int):
                import pandas as pd

                values["ts"] = pd.Timestamp(values["ts"] * 1000, tz="UTC")
            got = memo[fn] = fn(values) is True
        return got

    def update(self, table: str, row: Mapping) -> None:
        """Take one row of ``transactions`` (without scoring it), ``events``, ``labels``,
        ``blacklist`` or ``accounts`` into the state."""
        if table == "accounts":
            self._accounts[row["account_id"]] = (_micros(row.get("created_at")), dict(row))
            return
        if table == "blacklist":
            self._listing(row)
            return
        t = _micros(row["reported_at"] if table == "labels" else row["ts"])
        if table == "transactions":
            self._remember(row, t)
        self._arrive(table, t, row)

    def _arrive(self, table: str, t: int, row: Mapping) -> None:
        if self._scored_t is not None and t < self._scored_t:
            self.late += 1
        if self._pending_t is None or t > self._pending_t:
            self._flush()
            self._pending_t = t
            self._pending.append((table, t, row))
        elif t == self._pending_t:
            self._pending.append((table, t, row))
        else:  # older than the current instant: straight into the state
            self._apply(table, t, row)

    def _flush(self) -> None:
        for table, t, row in self._pending:
            self._apply(table, t, row)
        self._pending.clear()

    def _apply(self, table: str, t: int, row: Mapping) -> None:
        if table == "labels":
            if not row.get("is_fraud"):
                return
            known = self._tx_keys.get(row["tx_id"])
            if known is None:
                self.dropped_labels += 1
                return
            for lab, key in zip(self._labels.values(), known[1], strict=True):
                if key is not None:
                    lab._add(lab.reports, key, t, lab.window)
            return
        lat = lon = None
        cached = self._queried.pop(id(row), None)
        if cached is not None and cached[0] is row:  # scored: its keys and filters are known
            keys, memo = cached[1], cached[2]
        else:
            keys, memo = {}, {}
        for g in self._by_source.get(table, ()):
            key = self._cached_key(row, g.parts, keys)
            if key is None or (g.where is not None and not self._passes(g.where, row, memo)):
                continue
            if g.located:
                la, lo = row.get("lat"), row.get("lon")
                lat, lon = (None, None) if _missing(la) or _missing(lo) else (float(la), float(lo))
            g.add(key, t, row, lat, lon)
        if table == "transactions":
            for lab in self._labels.values():
                key = self._cached_key(row, lab.parts, keys)
                if key is not None:
                    lab._add(lab.tx, key, t, lab.window)

    def _cached_key(self, row: Mapping, parts: tuple[str, ...], keys: dict):
        key = keys.get(parts, _UNSET)
        if key is _UNSET:
            key = keys[parts] = self._key(row, parts)
        return key

    def _remember(self, row: Mapping, t: int, keys: dict | None = None) -> None:
        if not self._labels:
            return
        keys = {} if keys is None else keys
        self._tx_keys[row["tx_id"]] = (t, tuple(self._cached_key(row, lab.parts, keys)
                                                for lab in self._labels.values()))
        self._tx_order.append((t, row["tx_id"]))

    def _listing(self, row: Mapping) -> None:
        ident = (row["entity_type"], row["entity_value"])
        listed, delisted = _micros(row["listed_at"]), _micros(row.get("delisted_at"))
        if listed is None:
            return
        items = self._listings.setdefault(ident, [])
        for item in items:
            if item[0] == listed:  # the same listing, now delisted (or corrected)
                item[1], item[2] = delisted, row.get("source")
                return
        items.append([listed, delisted, row.get("source")])

    def _advance(self, t: int) -> None:
        """Time moves to ``t``: rows before it become visible; bounded state is swept.

        Windowed states forget the entities whose last row has left their window, once a
        minute of event time (what has left since the last time), so that no payment pays
        for a sweep of the whole state; a key's own old rows go when it takes a new row or is
        read. Ended listings and payments older than the label horizon go once a day."""
        if self._pending_t is not None and self._pending_t < t:
            self._flush()
            self._pending_t = None
        if self._idle_t is None or t - self._idle_t >= _IDLE_STEP:
            self._idle_t = t
            for g in self._windowed:
                g.expire_idle(t)
        if self._swept_t is None:
            self._swept_t = t
        elif t - self._swept_t >= _SWEEP:
            self._swept_t = t
            for ident in list(self._listings):
                items = [i for i in self._listings[ident] if i[1] is None or i[1] > t]
                if items:
                    self._listings[ident] = items
                else:
                    del self._listings[ident]
            while self._tx_order and self._tx_order[0][0] < t - self._horizon:
                _, tx_id = self._tx_order.popleft()
                self._tx_keys.pop(tx_id, None)

    # ------------------------------------------------------------------ scoring
    def score(self, tx: Mapping) -> dict:
        """The features of one transaction (as the batch build computes them), after
        which the transaction is taken into the state.

        Parameters
        ----------
        tx : mapping
            A canonical transactions row (``tx_id``, ``ts``, ``account_id``, ``amount``,
            ...), with any declared extra columns.

        Returns
        -------
        dict
            Feature name to value: a float (NaN when missing), or for a category feature
            a string or None.
        """
        t = _micros(tx["ts"])
        if self._scored_t is not None and t < self._scored_t:
            self.late += 1
        self._advance(t)
        keys: dict = {}
        memo: dict = {}
        out = self._query(tx, t, keys, memo)
        self._scored_t = t if self._scored_t is None else max(self._scored_t, t)
        self._remember(tx, t, keys)
        # The row's keys and filter answers serve again when it enters the state.
        self._queried[id(tx)] = (tx, keys, memo)
        self._arrive("transactions", t, tx)
        return out

    def features_at(self, tx: Mapping, t: int | None = None) -> dict:
        """The features of ``tx`` from the current state, without taking it in."""
        return self._query(tx, _micros(tx["ts"]) if t is None else t, {}, {})

    def _query(self, tx: Mapping, t: int, keys: dict, memo: dict) -> dict:
        """:meth:`features_at`, filling ``keys`` (entity columns -> the row's key) and
        ``memo`` (see :meth:`_passes`) as it goes."""
        out = dict.fromkeys(self._names)  # in the declarations' order, filled below
        for g, feats in self._window_plan:
            key = self._cached_key(tx, g.parts, keys)
            if key is None:
                out.update(g.missing)
                continue
            st = g.at(key, t)
            if st is None and g.empty is not None:
                out.update(g.empty)
                continue
            wins = st.wins if st is not None else g.unseen
            passes = g.current and (g.where is None or self._passes(g.where, tx, memo))
            for name, fn, include, i in feats:
                out[name] = fn(wins[i], include and passes, tx, t)
        for name, fn in self._rest_plan:
            out[name] = fn(tx, t, keys)
        if self._expr_plan:
            env = {**self.settings, **tx, "ts": _EPOCH + timedelta(microseconds=t), **out}
            for name, fn in self._expr_plan:
                v = fn(env)
                out[name] = env[name] = _NAN if v is None else float(v)
        return out

    def _rest_fn(self, kind: str, f: Feature, arg):
        """The value of one declaration that reads no window: ``fn(tx, t, keys)``."""
        if kind == "value":
            of = f.of
            if f.kind != "category":
                def value(tx, t, keys):
                    v = tx.get(of)
                    return _NAN if _missing(v) else float(v)
                return value
            allowed = f.categories

            def category(tx, t, keys):
                v = tx.get(of)
                v = None if _missing(v) else str(v)
                return None if allowed and v not in allowed else v
            return category
        if kind == "labels":
            return lambda tx, t, keys: self._label_value(f, arg, self._cached_key(tx, arg.parts, keys), t)
        if kind == "account":
            return lambda tx, t, keys: self._account_value(f, arg, tx, t)
        if f.agg == "blacklist_hit":
            entity = f.entity

            def hit(tx, t, keys):
                found = self._listing_hits(tx, t, keys)[0].get(entity)
                return _NAN if found is None else float(found)
            return hit
        days, allowed = f.agg == "blacklist_days", f.categories

        def newest(tx, t, keys):
            got = self._listing_hits(tx, t, keys)[1]
            if days:
                return _NAN if got is None else (t - got[0]) / _DAY
            v = None if got is None else got[2]
            return None if allowed and v not in allowed else v
        return newest

    def _label_value(self, f: Feature, lab: _Labels, key, t: int):
        if key is None:
            return _NAN
        reports = lab.count(lab.reports, key, t)
        if f.agg == "fraud_reports":
            return float(reports)
        n = lab.count(lab.tx, key, t)
        return reports / n if n else 0.0

    def _account_value(self, f: Feature, column: str, tx: Mapping, t: int):
        ident = tx.get(column)
        acct = None if _missing(ident) else self._accounts.get(ident)
        if acct is None:
            return _NAN
        created, row = acct
        if f.agg == "value":
            v = row.get(f.of)
            return _NAN if _missing(v) else float(v)
        if f.agg == "age":
            then = created if f.of == "created_at" else _micros(row.get(f.of))
            if then is None or then > t:
                return _NAN
            return (t - then) / TIME_UNITS[f.unit]
        lat, lon = row.get(f.of[0]), row.get(f.of[1])
        qlat, qlon = tx.get("lat"), tx.get("lon")
        if _missing(lat) or _missing(lon) or _missing(qlat) or _missing(qlon):
            return _NAN
        return _haversine(float(lat), float(lon), float(qlat), float(qlon))

    def _listing_hits(self, tx: Mapping, t: int, keys: dict) -> tuple:
        """The payment's listings at ``t``, found once per payment (kept in ``keys``): per
        entity whether one of its values is listed (None when the payment has no value),
        and the newest listing of them all as ``(listed, -rank, source)``, ties going to
        the first entity in :data:`_BLACKLIST_TYPES`, as the batch build's blacklist pass."""
        got = keys.get(_LISTINGS)
        if got is not None:
            return got
        hits, newest, listings = {}, None, self._listings
        for rank, entity in enumerate(_BLACKLIST_TYPES):
            value = tx.get(ENTITY_COLUMNS.get(entity, entity))
            if _missing(value):
                hits[entity] = None
                continue
            hits[entity] = False
            for etype in _BLACKLIST_TYPES[entity]:
                for listed, delisted, source in listings.get((etype, value), ()):
                    if listed <= t and (delisted is None or t < delisted):
                        hits[entity] = True
                        if newest is None or (listed, -rank) > newest[:2]:
                            newest = (listed, -rank, source)
        got = keys[_LISTINGS] = (hits, newest)
        return got

    # ------------------------------------------------------------------ state
    def state_size(self) -> dict:
        """Entities held and an estimate of the state's bytes (the snapshot's size)."""
        entities = sum(len(g.keys) for g in self._groups.values())
        entities += sum(len(lab.reports) + len(lab.tx) for lab in self._labels.values())
        return {"entities": entities, "bytes": len(json.dumps(self._state(), default=_default).encode()),
                "transactions_remembered": len(self._tx_keys)}

    def _state(self) -> dict:
        groups = []
        for g in self._groups.values():
            keys = []
            for key, st in g.keys.items():
                keys.append([list(key), {
                    "entries": None if st.entries is None else
                    [[t, list(v), la, lo] for t, v, la, lo in st.entries],
                    "windows": [_win_state(w) for w in st.wins]}])
            groups.append(keys)
        labels = []
        for lab in self._labels.values():
            labels.append({name: [[list(k), list(v) if isinstance(v, deque) else v]
                                  for k, v in getattr(lab, name).items()]
                           for name in ("reports", "tx")})
        return {"groups": groups, "labels": labels,
                "listings": [[list(k), v] for k, v in self._listings.items()],
                "accounts": [[k, c, _jsonable(r)] for k, (c, r) in self._accounts.items()],
                "tx_keys": [[tx_id, t, [None if k is None else list(k) for k in keys]]
                            for tx_id, (t, keys) in self._tx_keys.items()],
                "pending": [[table, t, _jsonable(row)] for table, t, row in self._pending],
                "pending_t": self._pending_t, "scored_t": self._scored_t,
                "swept_t": self._swept_t, "resume_at": self._resume_at, "late": self.late,
                "dropped_labels": self.dropped_labels}

    def _identity(self) -> dict:
        from ._catalog import feature_settings, features_hash

        return {"format": "fraudlab-online-state", "format_version": STATE_FORMAT,
                "features_format": FORMAT_VERSION,
                "features_version": features_hash(self.features, feature_settings(self.config))}

    def snapshot(self, directory: str | Path) -> Path:
        """Write the state to ``directory/online_state.json`` (JSON, never pickle), with
        the format version and the hash of the declarations and settings it was made for.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        out = path / "online_state.json"
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps({**self._identity(), "state": self._state()}, allow_nan=False,
                                  default=_default))
        tmp.replace(out)
        return out

    def restore(self, directory: str | Path) -> OnlineFeatures:
        """Load a snapshot written by :meth:`snapshot` into this (fresh) executor.

        Raises
        ------
        ValueError
            The snapshot was made for other declarations or settings, or in another
            format version.
        """
        path = Path(directory) / "online_state.json"
        doc = json.loads(path.read_text())
        want = self._identity()
        if doc.get("format") != want["format"] or doc.get("format_version") != STATE_FORMAT:
            raise ValueError(f"{path}: not an online state of format version {STATE_FORMAT} "
                             f"(found {doc.get('format')!r} version {doc.get('format_version')!r}); "
                             "replay the history for these declarations instead")
        if doc.get("features_version") != want["features_version"]:
            raise ValueError(f"{path}: made for features {doc.get('features_version')}, not "
                             f"these declarations and settings ({want['features_version']}); "
                             "replay the history for them instead")
        self._load(doc["state"])
        return self

    def _load(self, s: dict) -> None:
        for g, keys in zip(self._groups.values(), s["groups"], strict=True):
            g.keys = OrderedDict() if g.window is not None else {}
            windowed = g.window is not None
            for key, d in keys:
                st = g.new_key()
                if windowed:
                    st.entries.extend((t, tuple(v), la, lo) for t, v, la, lo in d["entries"])
                    st.expiry = -_NEVER  # found again by the first query
                for w, x in zip(st.wins, d["windows"], strict=True):
                    _load_win(w, x, windowed)
                g.keys[_tuple(key)] = st
        for lab, d in zip(self._labels.values(), s["labels"], strict=True):
            for name in ("reports", "tx"):
                table = OrderedDict() if lab.window is not None else {}
                table.update((_tuple(k), deque(v) if isinstance(v, list) else v)
                             for k, v in d[name])
                setattr(lab, name, table)
        self._listings = {tuple(k): v for k, v in s["listings"]}
        self._accounts = {k: (c, r) for k, c, r in s["accounts"]}
        self._tx_keys = {tx_id: (t, tuple(None if k is None else _tuple(k) for k in keys))
                         for tx_id, t, keys in s["tx_keys"]}
        self._tx_order = deque(sorted((t, tx_id) for tx_id, (t, _) in self._tx_keys.items()))
        self._pending = [(table, t, row) for table, t, row in s["pending"]]
        self._pending_t, self._scored_t = s["pending_t"], s["scored_t"]
        self._swept_t, self._resume_at = s["swept_t"], s["resume_at"]
        self.late, self.dropped_labels = s["late"], s["dropped_labels"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = 2**63  # beyond any time in microseconds
_DAY = TIME_UNITS["days"]
_LISTINGS = object()  # where a payment's listings are kept among its keys
_US = 1_000  # nanoseconds per microsecond: the state counts time in microseconds
_SWEEP = 86_400 * 1_000_000  # ended listings and old payments are forgotten once a day
_IDLE_STEP = 60 * 1_000_000  # idle keys are looked for once a minute of event time


def _default(v):
    """JSON for the values rows may hold: timestamps as ISO text, numpy scalars as numbers."""
    import numpy as np
    import pandas as pd

    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return None if _missing(v) else str(v)


def _win_state(w: _Win) -> dict:
    """A window's aggregates as JSON, only the fields its aggregations use."""
    out = {"n": w.n}
    if w.s is not None:
        out.update(nan=w.nan, s=w.s, ss=w.ss, shift=w.shift)
    if w.distinct is not None:
        out["distinct"] = [None if d is None else [[k, c] for k, c in d.items()]
                           for d in w.distinct]
    if w.lo is not None:
        out.update(lo=_queues(w.lo), hi=_queues(w.hi))
    if w.first is not None:
        out.update(first=w.first, last=w.last)
    if w.loc is not None:
        out["loc"] = list(w.loc)
    return out


def _load_win(w: _Win, x: dict, windowed: bool) -> None:
    """Read back :func:`_win_state` into a window of a new key."""
    w.n = x["n"]
    if "s" in x:
        w.nan, w.s, w.ss, w.shift = x["nan"], x["s"], x["ss"], x["shift"]
    if "distinct" in x:
        w.distinct = [None if y is None else {k: c for k, c in y} for y in x["distinct"]]
    if "lo" in x:
        w.lo, w.hi = ([deque(map(tuple, y)) if windowed and y is not None else y for y in x[side]]
                      for side in ("lo", "hi"))
    w.first, w.last = x.get("first"), x.get("last")
    w.loc = tuple(x["loc"]) if "loc" in x else None


def _queues(sides):
    """Minimum or maximum per column as JSON: monotonic queues become lists of pairs."""
    if sides is None:
        return None
    return [list(map(list, x)) if isinstance(x, deque) else x for x in sides]


def _tuple(x):
    """A key read back from JSON: lists (a region cell inside a key) become tuples."""
    return tuple(_tuple(v) for v in x) if isinstance(x, list) else x


def _jsonable(row: Mapping) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def replay(tables: Mapping, features: FeatureSet | Sequence[Feature] | Mapping | None = None,
           config: FeaturesConfig | None = None, *, as_of=None,
           online: OnlineFeatures | None = None, stop_after: int | None = None,
           progress=None) -> tuple:
    """Replay canonical tables in time order through an :class:`OnlineFeatures`.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Canonical raw tables (``transactions`` required).
    features, config
        As for :class:`OnlineFeatures` (default: the built-in set and settings).
    as_of : timestamp, optional
        Only what was known then is replayed (as :func:`fraudlab.features.known_at`).
    online : OnlineFeatures, optional
        Continue an executor (for example one restored from a snapshot); rows up to its
        last scored transaction are skipped.
    stop_after : int, optional
        Stop after this many transactions (to snapshot mid-way).
    progress : callable, optional
        Called with the number of transactions scored so far, every 10,000.

    Returns
    -------
    (DataFrame, OnlineFeatures)
        One row per transaction replayed (``tx_id`` and every feature, in time order,
        ties in table order) and the executor, for its state.
    """
    import numpy as np
    import pandas as pd

    from ._catalog import CATALOG
    from ._sources import known_at

    if as_of is not None:
        tables = known_at(tables, as_of)
    online = online or OnlineFeatures(CATALOG if features is None else features, config)
    stream = list(event_stream(tables))
    start = online._resume_at  # a restored state: skip what it has already taken
    names = online.features.names()
    numeric = [f.name for f in online.features.features if f.kind != "category"]
    category = [f.name for f in online.features.features if f.kind == "category"]
    # Numbers go straight into one buffer of doubles, row after row: a row of float
    # objects per payment would keep millions of objects alive for the collector to walk.
    values = array.array("d")
    ids: list = []
    labels: dict[str, list] = {name: [] for name in category}
    scored = 0
    for i in range(start, len(stream)):
        table, row = stream[i]
        if table == "transactions":
            if stop_after is not None and scored >= stop_after:
                online._resume_at = i
                break
            feats = online.score(row)
            ids.append(row["tx_id"])
            values.extend(map(feats.__getitem__, numeric))
            for name in category:
                labels[name].append(feats[name])
            scored += 1
            if progress is not None and scored % 10_000 == 0:
                progress(scored)
        else:
            online.update(table, row)
    else:
        online._resume_at = len(stream)
    matrix = np.frombuffer(values, dtype=np.float64).reshape(len(ids), len(numeric))
    columns = {"tx_id": pd.Series(ids, dtype=object)}
    columns.update(zip(numeric, matrix.T.copy(), strict=True))
    for f in online.features.features:
        if f.kind == "category":
            columns[f.name] = pd.Categorical(labels[f.name], categories=list(f.categories) or None)
    out = pd.DataFrame({c: columns[c] for c in ["tx_id", *names]})
    return out, online


def event_stream(tables: Mapping) -> Iterable[tuple[str, dict]]:
    """Every row of canonical tables as ``(table, row)`` in the order a scoring service
    would see them: accounts first (master data), then by time, at each instant the
    listings and delistings first, then transactions, events and labels in table order.

    Transactions are the rows to score (:meth:`OnlineFeatures.score`); the others go to
    :meth:`OnlineFeatures.update`. Times are integers, microseconds since the epoch (UTC).
    """
    import numpy as np
    import pandas as pd

    items = []  # (time micros, priority, order, table, row)
    order = 0

    def records(frame: pd.DataFrame) -> list[dict]:
        cols = {c: frame[c].astype(object).where(frame[c].notna(), None).tolist()
                for c in frame.columns}
        return [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]

    def micros(s: pd.Series) -> np.ndarray:
        return s.astype("datetime64[us, UTC]").array.asi8

    accounts = tables.get("accounts")
    if accounts is not None:
        for r in records(accounts):
            yield "accounts", r
    bl = tables.get("blacklist")
    if bl is not None and len(bl):
        listed = micros(bl["listed_at"])
        delisted = micros(bl["delisted_at"]) if "delisted_at" in bl else None
        for i, r in enumerate(records(bl)):
            items.append((int(listed[i]), 0, order, "blacklist", {**r, "delisted_at": None}))
            order += 1
            if delisted is not None and r.get("delisted_at") is not None:
                items.append((int(delisted[i]), 0, order, "blacklist", r))
                order += 1
    tx = tables["transactions"]
    tx = tx.sort_values("ts", kind="stable") if not tx["ts"].is_monotonic_increasing else tx
    for t, r in zip(micros(tx["ts"]), records(tx), strict=True):
        r["ts"] = int(t)
        items.append((int(t), 1, order, "transactions", r))
        order += 1
    for name, col in (("events", "ts"), ("labels", "reported_at")):
        frame = tables.get(name)
        if frame is None or not len(frame):
            continue
        for t, r in zip(micros(frame[col]), records(frame), strict=True):
            if t == np.iinfo(np.int64).min:  # NaT: never known
                continue
            r[col] = int(t)
            items.append((int(t), 1, order, name, r))
            order += 1
    items.sort(key=lambda x: x[:3])
    for _, _, _, table, row in items:
        yield table, row
