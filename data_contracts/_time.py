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
