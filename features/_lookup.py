"""Row and identifier lookups shared by the engine and the dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd


def positions(values: pd.Series, keys: pd.Series | pd.Index) -> np.ndarray:
    """Position of each of ``values`` among the unique ``keys`` (-1 where absent or null).

    Arrow-backed strings are matched by Arrow's hash lookup, which probes a million ids
    in about a ninth of the time of ``Index.get_indexer`` on the same strings (0.014 s
    against 0.12 s); other dtypes go through pandas.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pd.Index(keys)
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        v = pa.array(values)  # the Arrow strings under the Series, not converted
        try:
            k = pa.array(keys.to_numpy(dtype=object), type=v.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # keys that are not strings
            return keys.get_indexer(values).astype(np.int64)
        out = pc.index_in(v, value_set=k, skip_nulls=True)
        return out.fill_null(-1).to_numpy().astype(np.int64)
    return keys.get_indexer(values).astype(np.int64)


def take_rows(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[rows]``, as a slice (no copy) when the rows are one ascending run.

    A dataset build scores a time interval of time-sorted transactions, so its rows are
    a run: slicing avoids copying every column, strings included (0.3 s at 5M rows).
    """
    rows = np.asarray(rows)
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and bool(np.all(np.diff(rows) == 1)):
        return frame.iloc[int(rows[0]):int(rows[-1]) + 1]
    return frame.iloc[rows]
