"""Compiled per-entity window kernels.

Data rows ("events": past transactions, behaviour events, labels, listings) are sorted by
(entity code, time), and ``starts[c]:starts[c + 1]`` is the segment of entity code ``c``
(codes are dense). For every query (a transaction: entity code, time), a binary search
finds the window inside its entity's segment; aggregates come from per-segment
prefix sums (sums within one entity only, so float sums do not drift over a whole column)
or from a short loop over the window (max, distinct count).

Window semantics (stated once, tested in tests/features): a window of length ``w`` for a
query at time ``t`` holds the data rows with ``t - w < time < t``: open at both ends, so
rows at exactly ``t - w`` are out and rows tied with the query at ``t`` are out too (they
are not "before" it). Whether the query transaction itself counts is decided per feature.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

UNBOUNDED = np.int64(-1)


@njit(cache=True)
def _lower(a, lo, hi, x):
    """First index in a[lo:hi] with a[i] >= x."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _upper(a, lo, hi, x):
    """First index in a[lo:hi] with a[i] > x."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def segment_starts(sorted_codes, n_codes):
    """Where each dense code's segment starts among the sorted codes (``n_codes + 1``
    entries): one small table, read for every query instead of two per-query arrays."""
    starts = np.zeros(n_codes + 1, np.int64)
    for c in sorted_codes:
        starts[c + 1] += 1
    for k in range(n_codes):
        starts[k + 1] += starts[k]
    return starts


@njit(cache=True, inline="always")
def _segment(starts, qcode, i):
    """[start, end) of query i's entity (empty without an entity)."""
    c = qcode[i]
    if c < 0:
        return 0, 0
    return starts[c], starts[c + 1]


@njit(cache=True, parallel=True)
def window_ends(ets, starts, qcode, qts):
    """End of each query's windows: the first data row of its segment at or after qts.

    Every window of a query ends there, whatever its length, so this is searched once per
    data side and shared.
    """
    n = len(qts)
    hi = np.empty(n, np.int64)
    for i in prange(n):
        a, e = _segment(starts, qcode, i)
        hi[i] = _lower(ets, a, e, qts[i])
    return hi


@njit(cache=True, parallel=True)
def window_starts(ets, starts, qcode, hi, qts, window):
    """Start of each query's window: the first row in [segment start, hi) with
    ets > qts - window.

    Searched backwards from the window's end by galloping (1, 2, 4, ... rows), then by
    bisection inside the last step: O(log k) for a window holding k rows, so short windows
    cost a step or two whatever the entity's history. ``window`` < 0 means unbounded.
    """
    n = len(qts)
    lo = np.empty(n, np.int64)
    for i in prange(n):
        a = _segment(starts, qcode, i)[0]
        if window < 0:
            lo[i] = a
            continue
        edge = qts[i] - window
        top = hi[i]  # invariant: rows in [top, hi) are inside the window
        step = 1
        while top > a and ets[top - 1] > edge:
            b = top - step
            if b < a:
                b = a
            if ets[b] > edge:
                top = b
                step <<= 1
            else:
                top = _upper(ets, b + 1, top, edge)
                break
        lo[i] = top
    return lo


@njit(cache=True)
def own_window_ends(ets, ecode):
    """For every sorted row, the end of its own windows: the first row of its segment at
    its time (rows tied with it are not before it). One ordered pass."""
    m = len(ets)
    hi = np.empty(m, np.int64)
    for k in range(m):
        if k > 0 and ecode[k] == ecode[k - 1] and ets[k] == ets[k - 1]:
            hi[k] = hi[k - 1]
        else:
            hi[k] = k
    return hi


@njit(cache=True)
def own_window_starts(ets, ecode, hi, window):
    """For every sorted row, the start of its own window: the first row of its segment
    with ets > (its time - window), found by a pointer that only moves forward (``window``
    < 0: the segment start)."""
    m = len(ets)
    lo = np.empty(m, np.int64)
    a = 0  # start of the current segment
    p = 0
    for k in range(m):
        if k == 0 or ecode[k] != ecode[k - 1]:
            a = k
            p = k
        if window >= 0:
            edge = ets[k] - window
            while p < hi[k] and ets[p] <= edge:
                p += 1
            lo[k] = p
        else:
            lo[k] = a
    return lo


@njit(cache=True, parallel=True)
def own_positions(sorted_rows, rows, n_rows):
    """Where each of ``rows`` (positions in the source) lies among the side's sorted rows,
    -1 for a row the side does not hold."""
    pos = np.full(n_rows, -1, np.int64)
    for k in prange(len(sorted_rows)):
        pos[sorted_rows[k]] = k
    out = np.empty(len(rows), np.int64)
    for i in prange(len(rows)):
        out[i] = pos[rows[i]]
    return out


@njit(cache=True, parallel=True)
def count_feature(count, qcode, cur, out):
    """A window count as a feature: ``count`` (+1 where ``cur``), NaN without an entity;
    written into ``out`` (float64, one per query), which is returned."""
    n = len(qcode)
    for i in prange(n):
        out[i] = np.nan if qcode[i] < 0 else count[i] + (1 if cur[i] else 0)
    return out


@njit(cache=True, parallel=True)
def rate_feature(num, den, qcode, out):
    """num / den (0 where den is 0), NaN without an entity; written into ``out``."""
    n = len(qcode)
    for i in prange(n):
        if qcode[i] < 0:
            out[i] = np.nan
        else:
            out[i] = num[i] / den[i] if den[i] > 0 else 0.0
    return out


@njit(cache=True)
def segment_prefix(ecode, values):
    """Exclusive prefix sums that restart at every entity: out[k] = sum(values[start:k])."""
    m = len(values)
    out = np.empty(m + 1, np.float64)
    acc = 0.0
    for k in range(m):
        if k == 0 or ecode[k] != ecode[k - 1]:
            acc = 0.0
        out[k] = acc
        acc += values[k]
    out[m] = acc
    return out


@njit(cache=True, inline="always")
def _window_sum(prefix, values, lo, hi):
    """Sum of values[lo:hi] within one entity, from its exclusive prefix sums (0 if empty)."""
    if hi <= lo:
        return 0.0
    return prefix[hi - 1] + values[hi - 1] - prefix[lo]


# The aggregate kernels below each finish a feature in one pass over the queries: the
# window aggregate, the query transaction itself when it counts (``cur``), and NaN for a
# query without an entity (``qcode`` < 0), written into ``out`` (the feature's row of the
# output, or a scratch array reused across features) and returned. One pass and no
# temporary per feature.

@njit(cache=True, parallel=True)
def agg_count(lo, hi, qcode, cur, out):
    """Rows in each window (+1 where ``cur``); NaN without an entity."""
    n = len(lo)
    for i in prange(n):
        if qcode[i] < 0:
            out[i] = np.nan
        else:
            out[i] = hi[i] - lo[i] + (1 if cur[i] else 0)
    return out


SUM, MEAN, RATIO_TO_MEAN = 0, 1, 2


@njit(cache=True, parallel=True)
def agg_sum(prefix, values, lo, hi, qcode, cur, qv, mode, out):
    """Sum (``SUM``), mean (``MEAN``, NaN for an empty window) or the query's value over
    the mean (``RATIO_TO_MEAN``, NaN unless the mean is positive) of each window, from
    per-entity prefix sums; the query's own value ``qv`` is added where ``cur``."""
    n = len(lo)
    for i in prange(n):
        if qcode[i] < 0:
            out[i] = np.nan
            continue
        s = _window_sum(prefix, values, lo[i], hi[i])
        c = hi[i] - lo[i]
        if cur[i]:
            s += qv[i]
            c += 1
        if mode == SUM:
            out[i] = s
        else:
            mean = s / c if c > 0 else np.nan
            if mode == MEAN:
                out[i] = mean
            else:
                out[i] = qv[i] / mean if mean > 0 else np.nan
    return out


@njit(cache=True, parallel=True)
def agg_max(values, lo, hi, qcode, cur, qv, out):
    """Max of each window, the query's own value included where ``cur`` (NaN if empty)."""
    n = len(lo)
    for i in prange(n):
        if qcode[i] < 0:
            out[i] = np.nan
            continue
        best = -np.inf
        for j in range(lo[i], hi[i]):
            if values[j] > best:
                best = values[j]
        v = best if hi[i] > lo[i] else np.nan
        if cur[i]:
            v = qv[i] if np.isnan(v) else (v if np.isnan(qv[i]) else max(v, qv[i]))
        out[i] = v
    return out


@njit(cache=True, parallel=True)
def agg_zscore(prefix, values, prefix2, values2, lo, hi, qcode, qv, out):
    """(qv - mean) / std over each window (sample std; NaN below 2 rows or for a
    constant window)."""
    n = len(lo)
    for i in prange(n):
        c = hi[i] - lo[i]
        out[i] = np.nan
        if qcode[i] < 0 or c < 2:
            continue
        s1 = _window_sum(prefix, values, lo[i], hi[i])
        s2 = _window_sum(prefix2, values2, lo[i], hi[i])
        mean = s1 / c
        std = np.sqrt(max(s2 - s1 * mean, 0.0) / (c - 1))
        if std > 1e-9 * abs(mean) + 1e-12:
            out[i] = (qv[i] - mean) / std
    return out


@njit(cache=True, parallel=True)
def agg_std(prefix, values, prefix2, values2, lo, hi, qcode, cur, qv, out):
    """Sample standard deviation of each window, the query's own value included where
    ``cur`` (NaN below 2 rows). A variance lost in rounding against the mean's square is 0."""
    n = len(lo)
    for i in prange(n):
        out[i] = np.nan
        if qcode[i] < 0:
            continue
        c = hi[i] - lo[i]
        s1 = _window_sum(prefix, values, lo[i], hi[i])
        s2 = _window_sum(prefix2, values2, lo[i], hi[i])
        if cur[i]:
            c += 1
            s1 += qv[i]
            s2 += qv[i] * qv[i]
        if c < 2:
            continue
        mean = s1 / c
        var = (s2 - s1 * mean) / (c - 1)
        out[i] = np.sqrt(var) if var > 1e-12 * (mean * mean + 1e-12) else 0.0
    return out


SINCE_LAST, SINCE_FIRST, FIRST_USE, SEEN, DISTANCE, SPEED = 0, 1, 2, 3, 4, 5


@njit(cache=True, parallel=True)
def listing_lookup(ets, starts, qts, until, source, qcode, rank, listed, src, by):
    """Each query's active listing: the last listing at or before qts whose running
    delisting time is after qts. Returns the hit (1/0, NaN without an entity); the
    listing time and source code go into ``listed`` and ``src`` where this listing is
    newer than the one there (listed by ``by``), or as new but of an earlier ``rank``."""
    n = len(qts)
    hit = np.empty(n, np.float64)
    for i in prange(n):
        a, e = _segment(starts, qcode, i)
        h = _upper(ets, a, e, qts[i])
        active = h > a and qts[i] < until[h - 1]
        if active:
            t = ets[h - 1]
            if t > listed[i] or (t == listed[i] and rank < by[i]):
                listed[i] = t
                src[i] = source[h - 1]
                by[i] = rank
        if qcode[i] < 0:
            hit[i] = np.nan
        else:
            hit[i] = 1.0 if active else 0.0
    return hit


@njit(cache=True, parallel=True)
def window_nunique(cats, lo, hi, current, n_cats, qcode, blocks, out):
    """Distinct non-negative categories in cats[lo:hi], plus ``current`` when >= 0 (NaN
    without an entity). The queries are split into ``blocks`` blocks (one per thread),
    each with its own marks."""
    n = len(lo)
    size = (n + blocks - 1) // blocks
    for b in prange(blocks):
        mark = np.full(n_cats + 1, -1, np.int64)
        for i in range(b * size, min(n, (b + 1) * size)):
            if qcode[i] < 0:
                out[i] = np.nan
                continue
            k = 0
            for j in range(lo[i], hi[i]):
                c = cats[j]
                if c >= 0 and mark[c] != i:
                    mark[c] = i
                    k += 1
            c = current[i]
            if c >= 0 and mark[c] != i:
                mark[c] = i
                k += 1
            out[i] = k
    return out


@njit(cache=True)
def segment_cummax(ecode, values):
    """Running max of values within each entity."""
    m = len(values)
    out = np.empty(m, values.dtype)
    for k in range(m):
        if k == 0 or ecode[k] != ecode[k - 1] or values[k] > out[k - 1]:
            out[k] = values[k]
        else:
            out[k] = out[k - 1]
    return out


@njit(cache=True)
def counting_order(codes, n_codes):
    """Stable order of rows by non-negative integer code (-1 rows last), in O(n + n_codes)."""
    counts = np.zeros(n_codes + 2, np.int64)
    for c in codes:
        if c >= 0:
            counts[c + 1] += 1
    for k in range(1, n_codes + 1):
        counts[k] += counts[k - 1]
    out = np.empty(len(codes), np.int64)
    tail = counts[n_codes]  # rows with code -1 go after every entity
    pos = counts[:n_codes].copy()
    for i in range(len(codes)):
        c = codes[i]
        if c >= 0:
            out[pos[c]] = i
            pos[c] += 1
        else:
            out[tail] = i
            tail += 1
    return out


@njit(cache=True)
def pair_codes(a, b, n_a, n_b):
    """Dense codes of the pairs (a[i], b[i]) of dense codes (-1 where either is negative).

    One stable counting sort groups the rows by ``a``; a pass over each group numbers its
    distinct ``b`` values, remembering in ``mark[b]`` which group last saw them. O(n + n_a
    + n_b), no hashing.
    """
    n = len(a)
    by_a = counting_order(a, n_a)  # rows with a < 0 come last
    mark = np.full(n_b, -1, np.int64)
    code_of = np.empty(n_b, np.int64)
    out = np.full(n, -1, np.int64)
    code = 0
    for k in range(n):
        r = by_a[k]
        x = a[r]
        if x < 0:
            break
        y = b[r]
        if y < 0:
            continue
        if mark[y] != x:
            mark[y] = x
            code_of[y] = code
            code += 1
        out[r] = code_of[y]
    return out, code


@njit(cache=True, parallel=True)
def gather_side(base, ecode, ets):
    """Rows of ``base`` (an entity-time order) that have an entity: their positions,
    entity codes and times.

    The random reads run in parallel into full-length buffers; a sequential pass then
    keeps the rows with an entity, in order.
    """
    m = len(base)
    codes = np.empty(m, np.int64)
    times = np.empty(m, np.int64)
    for i in prange(m):
        r = base[i]
        codes[i] = ecode[r]
        times[i] = ets[r]
    order = np.empty(m, np.int64)
    k = 0
    for i in range(m):
        if codes[i] >= 0:
            order[k] = base[i]
            codes[k] = codes[i]
            times[k] = times[i]
            k += 1
    return order[:k], codes[:k], times[:k]


@njit(cache=True)
def _haversine(lat1, lon1, lat2, lon2):
    r = np.pi / 180.0
    p1 = lat1 * r
    p2 = lat2 * r
    a = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin((lon2 - lon1) * r / 2) ** 2)
    a = min(max(a, 0.0), 1.0)
    return 6371.0088 * 2 * np.arcsin(np.sqrt(a))


@njit(cache=True, parallel=True)
def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km between paired points (NaN where any is missing)."""
    n = len(lat1)
    out = np.empty(n, np.float64)
    for i in prange(n):
        out[i] = _haversine(lat1[i], lon1[i], lat2[i], lon2[i])
    return out


NEVER = np.iinfo(np.int64).min


@njit(cache=True, inline="always")
def _used(dcode, keep, j):
    """Whether data row ``j`` of a time-ordered pass counts: it has an entity and, unless
    ``keep`` is empty (no row filter), ``keep`` says so."""
    return dcode[j] >= 0 and (len(keep) == 0 or keep[j])


@njit(cache=True)
def sweep_history(dcode, dts, keep, dlat, dlon, order, qcode, qts, n_codes, located):
    """Each query's entity history before it, from one pass in time order.

    Data rows (``dcode``, ``dts``, in time order; only those with a code >= 0 and, unless
    ``keep`` is empty, ``keep`` true count) are merged with the queries
    visited in ``order`` (time order). Before each query, the rows strictly earlier than
    it update a per-entity state: first and last time seen, and, when ``located``, the
    location of the last row (``dlat``/``dlon``; a later row tied in time wins, as in
    the sorted sides). The state is one small table per entity, so the pass reads the data
    and queries in order and touches nothing else at random: its cost grows with the rows,
    not with how far apart an entity's rows are.

    Returns, by query: first and last earlier time (``NEVER`` if none, or without an
    entity) and the last location (NaN unless ``located``).
    """
    n = len(order)
    # Per entity, its first and last time side by side, and its last location: an update
    # or a lookup touches one cache line of each table, not one per array.
    seen = np.full((n_codes, 2), NEVER, np.int64)
    where = np.full((n_codes if located else 0, 2), np.nan)
    q_first = np.full(len(qcode), NEVER, np.int64)
    q_last = np.full(len(qcode), NEVER, np.int64)
    q_lat = np.full(len(qcode) if located else 0, np.nan)
    q_lon = np.full(len(qcode) if located else 0, np.nan)
    j = 0
    m = len(dts)
    for k in range(n):
        i = order[k]
        t = qts[i]
        while j < m and dts[j] < t:
            c = dcode[j]
            if _used(dcode, keep, j):
                if seen[c, 0] == NEVER:
                    seen[c, 0] = dts[j]
                seen[c, 1] = dts[j]
                if located:
                    where[c, 0] = dlat[j]
                    where[c, 1] = dlon[j]
            j += 1
        c = qcode[i]
        if 0 <= c < n_codes:
            q_first[i] = seen[c, 0]
            q_last[i] = seen[c, 1]
            if located:
                q_lat[i] = where[c, 0]
                q_lon[i] = where[c, 1]
    return q_first, q_last, q_lat, q_lon


@njit(cache=True)
def own_pair_first(ecode, ets, second, n_second):
    """For every row sorted by (entity, time): the first time its entity had a row with
    the same ``second`` code strictly before it (``NEVER`` if none, or if ``second`` < 0).

    Per second code, the table keeps in which entity's rows it was last seen (that
    segment's start) and its first time there, so it is never cleared between entities.
    """
    m = len(ets)
    out = np.empty(m, np.int64)
    seen_in = np.full(n_second, -1, np.int64)
    first = np.empty(n_second, np.int64)
    start = 0
    for k in range(m):
        if k > 0 and ecode[k] != ecode[k - 1]:
            start = k
        c = second[k]
        if c < 0:
            out[k] = NEVER
        elif seen_in[c] != start:
            seen_in[c] = start
            first[c] = ets[k]
            out[k] = NEVER
        else:  # seen earlier in this segment: before this row unless tied with it
            out[k] = first[c] if first[c] < ets[k] else NEVER
    return out


@njit(cache=True, parallel=True)
def take_or(values, where, default, out):
    """values[where], ``default`` where ``where`` < 0; written into ``out`` (as long as
    ``where``), which is returned."""
    for i in prange(len(where)):
        out[i] = values[where[i]] if where[i] >= 0 else default
    return out


@njit(cache=True, parallel=True)
def history_feature(q_first, q_last, q_lat, q_lon, qcode, qts, qlat, qlon, mode, unit, out):
    """A feature of where each query falls in its entity's history, from
    :func:`sweep_history` (NaN without an entity): time since the last (``SINCE_LAST``,
    NaN without one) or first (``SINCE_FIRST``, 0 without one) earlier row, in ``unit``
    microseconds; 1/0 for no earlier row (``FIRST_USE``) or some (``SEEN``); the distance
    in km from the last earlier row's location (``DISTANCE``) or the implied speed in km/h
    (``SPEED``, at least a minute apart), NaN without an earlier row. Written into
    ``out`` (float64, one per query), which is returned."""
    n = len(qcode)
    for i in prange(n):
        if qcode[i] < 0:
            out[i] = np.nan
            continue
        earlier = q_first[i] != NEVER
        if mode == SINCE_LAST:
            out[i] = (qts[i] - q_last[i]) / unit if earlier else np.nan
        elif mode == SINCE_FIRST:
            out[i] = (qts[i] - q_first[i]) / unit if earlier else 0.0
        elif mode == FIRST_USE:
            out[i] = 0.0 if earlier else 1.0
        elif mode == SEEN:
            out[i] = 1.0 if earlier else 0.0
        elif not earlier:
            out[i] = np.nan
        else:
            d = _haversine(q_lat[i], q_lon[i], qlat[i], qlon[i])
            if mode == SPEED:
                d = d / max((qts[i] - q_last[i]) / 3.6e9, 1 / 60)
            out[i] = d
    return out



@njit(cache=True)
def window_counts(dcode, dts, keep, order, qcode, qts, windows, n_codes):
    """Rows of the query's entity in each window (``t - w < time < t``), from one pass in
    time order: data rows (in time order; only those with a code >= 0 and, unless ``keep``
    is empty, ``keep`` true count) enter a per-entity counter once
    they are earlier than the query, and leave each window's counter once they are at or
    before its start. ``windows`` are lengths in microseconds (> 0); queries are visited in
    ``order`` (time order). The counters (entities x windows) are the only state, so the
    pass reads its inputs in order and stays in the cache whatever the number of rows.

    Returns the counts, one row per window (0 without an entity).
    """
    n_w = len(windows)
    count = np.zeros((n_codes, n_w), np.int64)
    out = np.zeros((n_w, len(qcode)), np.int64)
    leave = np.zeros(n_w, np.int64)
    j = 0
    m = len(dts)
    for k in range(len(order)):
        i = order[k]
        t = qts[i]
        while j < m and dts[j] < t:
            if _used(dcode, keep, j):
                c = dcode[j]
                for w in range(n_w):
                    count[c, w] += 1
            j += 1
        for w in range(n_w):
            edge = t - windows[w]
            x = leave[w]
            while x < j and dts[x] <= edge:
                if _used(dcode, keep, x):
                    count[dcode[x], w] -= 1
                x += 1
            leave[w] = x
        c = qcode[i]
        if 0 <= c < n_codes:
            for w in range(n_w):
                out[w, i] = count[c, w]
    return out
