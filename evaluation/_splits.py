"""Out-of-time validation that respects label delay: a scikit-learn splitter.

Fraud labels arrive days to weeks after the payment. A model deployed at time ``v`` was
trained on what was known at ``v``: transactions old enough for their labels to have
arrived, labelled as they were known then. Each fold therefore has

    [ train window ][ gap = label delay ][ validation window ]
                   cut                   v                   v + validation_window

and folds step back in time from the newest data. The final test window, which tuning
never sees, comes from :func:`temporal_holdout`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration
from fraudlab.features import LABEL


def _times(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        raise ValueError(f"the dataset has no {column!r} column; pass the labeled dataset "
                         "(with its metadata), not the model inputs alone")
    return frame[column].to_numpy()


def labels_known_at(dataset: pd.DataFrame, when) -> np.ndarray:
    """The label of every row as it was known at ``when`` (0/1).

    A fraud whose report arrived after ``when`` still looked legitimate then; a model
    trained at ``when`` saw it as such.
    """
    when = pd.Timestamp(when)
    reported = dataset["label_reported_at"]
    known = reported.notna().to_numpy() & (reported <= when).to_numpy()
    return (dataset[LABEL].to_numpy() == 1) & known


def known_fraud_accounts(dataset: pd.DataFrame, before) -> set:
    """The accounts with a fraud reported strictly before ``before``.

    Operations freeze such an account once a fraud is reported, so the payments a model
    ranks after that time come from the other accounts: windows that choose or measure
    thresholds leave these accounts out.
    """
    rep = dataset["label_reported_at"]
    mask = (dataset[LABEL].to_numpy() == 1) & rep.notna().to_numpy() & (rep < before).to_numpy()
    return set(dataset.loc[mask, "account_id"])


class TemporalSplit:
    """Prequential (walk-back) out-of-time splits with a label-delay gap.

    Parameters
    ----------
    n_splits : int
        Number of folds; fold 0 validates on the newest window, each next fold one
        ``step`` earlier.
    validation_window : str
        Length of each validation window, e.g. ``"14d"``.
    gap : str
        Time between the end of training and the start of validation: the label delay.
        Training rows are at least this old when the model is "deployed", so their labels
        have matured.
    train_window : str, optional
        Length of the training window; None trains on all history before the cut.
    step : str, optional
        How far each fold steps back; default ``validation_window``.
    end : timestamp, optional
        End of the newest validation window; default just after the newest row.
    exclude_known_fraud_accounts : bool
        Leave out of each validation window the accounts with a fraud report before that
        window starts (already known compromised: catching them again is not a detection).
    time_column : str
        The transaction-time column of the dataset.

    Notes
    -----
    ``split`` takes the labeled dataset itself (it needs ``ts``, ``account_id``,
    ``label_reported_at`` and the label), not the model inputs. Use
    :func:`labels_known_at` with :meth:`fold_times` to label a fold's training rows as
    they were known when that fold's model would have been trained.

    Examples
    --------
    >>> splitter = TemporalSplit(n_splits=3, validation_window="7d", gap="14d")
    >>> for train, valid in splitter.split(dataset):  # doctest: +SKIP
    ...     model.fit(X.iloc[train], y.iloc[train])
    """

    def __init__(self, n_splits: int = 3, validation_window: str = "14d", gap: str = "14d",
                 train_window: str | None = None, step: str | None = None, end=None,
                 exclude_known_fraud_accounts: bool = True, time_column: str = "ts"):
        self.n_splits = n_splits
        self.validation_window = validation_window
        self.gap = gap
        self.train_window = train_window
        self.step = step
        self.end = end
        self.exclude_known_fraud_accounts = exclude_known_fraud_accounts
        self.time_column = time_column

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """The number of folds."""
        return self.n_splits

    def fold_times(self, X: pd.DataFrame) -> list[dict[str, pd.Timestamp]]:
        """For each fold: ``train_start``, ``cut`` (end of training), ``valid_start``,
        ``valid_end``. ``train_start`` is None for an expanding window."""
        if self.n_splits < 1:
            raise ValueError(f"n_splits must be at least 1, got {self.n_splits}")
        ts = _times(X, self.time_column)
        end = (pd.Timestamp(self.end) if self.end is not None
               else pd.Timestamp(ts.max()) + pd.Timedelta(1, "us"))
        valid = parse_duration(self.validation_window)
        gap = parse_duration(self.gap)
        step = parse_duration(self.step) if self.step else valid
        train = parse_duration(self.train_window) if self.train_window else None
        folds = []
        for k in range(self.n_splits):
            v_end = end - k * step
            v_start = v_end - valid
            cut = v_start - gap
            folds.append({"train_start": cut - train if train is not None else None,
                          "cut": cut, "valid_start": v_start, "valid_end": v_end})
        return folds

    def split(self, X: pd.DataFrame, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_index, validation_index)`` positions, newest fold first.

        Raises
        ------
        ValueError
            When a fold would have no training or no validation rows.
        """
        ts = pd.Series(_times(X, self.time_column))
        for k, f in enumerate(self.fold_times(X)):
            train = (ts < f["cut"]).to_numpy()
            if f["train_start"] is not None:
                train = train & (ts >= f["train_start"]).to_numpy()
            valid = ((ts >= f["valid_start"]) & (ts < f["valid_end"])).to_numpy()
            if self.exclude_known_fraud_accounts:
                known = known_fraud_accounts(X, f["valid_start"])
                valid = valid & ~X["account_id"].isin(known).to_numpy()
            tr, va = np.flatnonzero(train), np.flatnonzero(valid)
            if not len(tr) or not len(va):
                raise ValueError(
                    f"fold {k} ({f['valid_start']:%Y-%m-%d} .. {f['valid_end']:%Y-%m-%d}) has "
                    f"{len(tr)} training and {len(va)} validation rows: the data are too short "
                    "for this many folds, windows and gap")
            yield tr, va


def temporal_holdout(dataset: pd.DataFrame, test_window: str = "14d", gap: str = "14d", *,
                     end=None, exclude_known_fraud_accounts: bool = True,
                     time_column: str = "ts") -> tuple[np.ndarray, np.ndarray]:
    """Split off the final out-of-time test window, which tuning never sees.

    Returns
    -------
    development, test : arrays of int
        Positions of the rows before ``test_start - gap`` (for tuning and fitting) and of
        the rows in ``[test_start, end)``.
    """
    splitter = TemporalSplit(1, validation_window=test_window, gap=gap, end=end,
                             exclude_known_fraud_accounts=exclude_known_fraud_accounts,
                             time_column=time_column)
    return next(splitter.split(dataset))
