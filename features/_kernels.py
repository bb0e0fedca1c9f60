"""Compiled per-entity window kernels.

Data rows ("events": past transactions, behaviour events, labels, listings) are sorted by
(entity code, time). For every query (a transaction: entity code, time), a binary search
finds its entity's segment and the window inside it; aggregates come from per-segment
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


@njit(cache=True, parallel=True)
def segments(ecode, qcode):
    """[start, end) of each query's entity among the sorted data codes (-1 code: empty)."""
    n = len(qcode)
    s0 = np.empty(n, np.int64)
    s1 = np.empty(n, np.int64)
    m = len(ecode)
    for i in prange(n):
        c = qcode[i]
        if c < 0:
            s0[i] = 0
            s1[i] = 0
        else:
            a = _lower(ecode, 0, m, c)
            s0[i] = a
            s1[i] = _upper(ecode, a, m, c)
    return s0, s1


@njit(cache=True, parallel=True)
def window_bounds(ets, s0, s1, qts, window):
    """Data rows of each query's window: [lo, hi) with qts - window < ets < qts.

    ``window`` < 0 means unbounded (all earlier rows of the entity).
    """
    n = len(qts)
    lo = np.empty(n, np.int64)
    hi = np.empty(n, np.int64)
    for i in prange(n):
        h = _lower(ets, s0[i], s1[i], qts[i])
        hi[i] = h
        if window < 0:
            lo[i] = s0[i]
        else:
            lo[i] = _upper(ets, s0[i], h, qts[i] - window)
    return lo, hi


@njit(cache=True, parallel=True)
def listing_bounds(ets, s0, s1, qts):
    """Index of the last data row with time <= qts in each query's segment, or -1."""
    n = len(qts)
    out = np.empty(n, np.int64)
    for i in prange(n):
        h = _upper(ets, s0[i], s1[i], qts[i])
        out[i] = h - 1 if h > s0[i] else -1
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


@njit(cache=True, parallel=True)
def window_sum(prefix, values, lo, hi):
    """Sum of values[lo:hi] from segment prefix sums (0 for an empty window)."""
    n = len(lo)
    out = np.zeros(n, np.float64)
    for i in prange(n):
        if hi[i] > lo[i]:
            out[i] = prefix[hi[i] - 1] + values[hi[i] - 1] - prefix[lo[i]]
    return out


@njit(cache=True, parallel=True)
def window_max(values, lo, hi):
    """Max of values[lo:hi] (NaN for an empty window)."""
    n = len(lo)
    out = np.full(n, np.nan)
    for i in prange(n):
        best = -np.inf
        for j in range(lo[i], hi[i]):
            if values[j] > best:
                best = values[j]
        if hi[i] > lo[i]:
            out[i] = best
    return out


@njit(cache=True)
def window_nunique(cats, lo, hi, current, n_cats):
    """Distinct non-negative categories in cats[lo:hi], plus ``current`` when >= 0."""
    n = len(lo)
    out = np.zeros(n, np.float64)
    mark = np.full(n_cats + 1, -1, np.int64)
    for i in range(n):
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
def gather_side(base, ecode, ets, mask, use_mask):
    """Rows of ``base`` (an entity-time order) that have an entity and pass ``mask``:
    their positions, entity codes and times, in one pass."""
    m = len(base)
    order = np.empty(m, np.int64)
    codes = np.empty(m, np.int64)
    times = np.empty(m, np.int64)
    k = 0
    for i in range(m):
        r = base[i]
        c = ecode[r]
        if c >= 0 and (not use_mask or mask[r]):
            order[k] = r
            codes[k] = c
            times[k] = ets[r]
            k += 1
    return order[:k], codes[:k], times[:k]


@njit(cache=True)
def dense_segments(sorted_codes, qcode, n_codes):
    """Segments [s0, s1) of each query's entity when codes are dense integers < n_codes."""
    starts = np.zeros(n_codes + 1, np.int64)
    for c in sorted_codes:
        starts[c + 1] += 1
    for k in range(n_codes):
        starts[k + 1] += starts[k]
    n = len(qcode)
    s0 = np.zeros(n, np.int64)
    s1 = np.zeros(n, np.int64)
    for i in range(n):
        c = qcode[i]
        if 0 <= c < n_codes:
            s0[i] = starts[c]
            s1[i] = starts[c + 1]
    return s0, s1


@njit(cache=True, parallel=True)
def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km between paired points (NaN where any is missing)."""
    n = len(lat1)
    out = np.empty(n, np.float64)
    r = np.pi / 180.0
    for i in prange(n):
        p1 = lat1[i] * r
        p2 = lat2[i] * r
        a = (np.sin((p2 - p1) / 2) ** 2
             + np.cos(p1) * np.cos(p2) * np.sin((lon2[i] - lon1[i]) * r / 2) ** 2)
        a = min(max(a, 0.0), 1.0)
        out[i] = 6371.0088 * 2 * np.arcsin(np.sqrt(a))
    return out
