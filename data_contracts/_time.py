"""Durations written the way a risk analyst says them: "10min", "1h", "7d", "30d"."""

from __future__ import annotations

import re

import pandas as pd

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT = {"s": "s", "sec": "s", "min": "min", "m": "min", "h": "h", "d": "D", "w": "W"}


def parse_duration(value: str | pd.Timedelta) -> pd.Timedelta:
    """Parse a duration such as ``"10min"``, ``"1h"``, ``"7d"`` or ``"2w"``.

    Parameters
    ----------
    value : str or Timedelta
        A number followed by one unit: s, min (or m), h, d or w.

    Returns
    -------
    Timedelta

    Raises
    ------
    ValueError
        When the text is not such a duration, or is negative.

    Examples
    --------
    >>> parse_duration("7d")
    Timedelta('7 days 00:00:00')
    """
    if isinstance(value, pd.Timedelta):
        return value
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration such as '10min', '1h', '7d' or '2w'")
    return pd.Timedelta(float(m.group(1)), unit=_UNIT[m.group(2).lower()])


def to_utc(value) -> pd.Timestamp:
    """A timestamp in UTC; one without a time zone is taken to be UTC already."""
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def known_mask(table: str, frame: pd.DataFrame, as_of):
    """Which rows of a raw table were known at ``as_of``: the one definition of the cut.

    Transactions and events happened strictly before it, labels were reported by then,
    blacklist listings were made and accounts opened by then. Rows whose time is missing
    are not known (the contracts report them), except accounts: an account whose opening
    time is unknown is master data known from the start.

    Parameters
    ----------
    table : str
        Canonical table name.
    frame : DataFrame
    as_of : timestamp

    Returns
    -------
    ndarray of bool
    """
    import numpy as np

    as_of = to_utc(as_of)
    column, strict = _CUT.get(table, (None, False))
    if column is None or column not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    t = frame[column]
    if not pd.api.types.is_datetime64_any_dtype(t.dtype):
        return np.ones(len(frame), dtype=bool)  # wrongly typed: the contracts refuse it
    keep = ((t < as_of) if strict else (t <= as_of)).fillna(False)
    if table == "accounts":
        keep |= t.isna()
    return keep.to_numpy(dtype=bool)


# Per table, the column that dates a row and whether it must lie strictly before the cut.
_CUT = {"transactions": ("ts", True), "events": ("ts", True), "labels": ("reported_at", False),
        "blacklist": ("listed_at", False), "accounts": ("created_at", False)}


def later_mask(table: str, frame: pd.DataFrame, as_of):
    """Rows of a raw table that have their time and lie after the cut of :func:`known_mask`."""
    column = _CUT.get(table, (None, False))[0]
    dated = frame[column].notna().to_numpy() if column in frame.columns else False
    return ~known_mask(table, frame, as_of) & dated
