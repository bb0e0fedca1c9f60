"""Class rebalancing, applied to a training fold only and never to validation or test rows.

The strategies the search chooses from:

- ``none``: the data as they are;
- ``scale_pos_weight``: XGBoost weighs frauds up (no rows change);
- ``undersample``: imbalanced-learn's ``RandomUnderSampler`` to a fraud/legit ratio;
- ``smote``: :class:`MissingAwareSMOTE`, SMOTE that respects missing values and
  categorical codes, to a ratio;
- ``over_under``: ``RandomOverSampler`` to one ratio, then ``RandomUnderSampler`` to a
  higher one.
"""

from __future__ import annotations

import warnings

import numpy as np


class MissingAwareSMOTE:
    """SMOTE for fraud features, where a missing value carries meaning.

    Plain SMOTE refuses NaN, and imputing before interpolating invents values between
    "never happened" and a real measurement (a "seconds since the last transaction" halfway
    to the median for an account that has none). Here numeric values are interpolated on
    median-imputed data, and each synthetic fraud then takes the missingness pattern and the
    categorical codes of its nearest real fraud (the SMOTE-NC idea, without its one-hot
    encoding, which took 10 s per fold at 300k rows): codes are never interpolated and
    "missing" stays missing.

    Parameters
    ----------
    sampling_strategy : float
        Desired ratio of frauds to legitimate rows after resampling.
    categorical : sequence of int
        Column positions of categorical codes.
    k_neighbors : int
        Neighbours among the frauds (reduced when there are fewer frauds).
    random_state : int, optional

    Notes
    -----
    Follows imbalanced-learn's sampler contract: ``fit_resample(X, y)`` returns the
    original rows first, then the synthetic frauds.
    """

    def __init__(self, sampling_strategy: float = 0.1, categorical=(), k_neighbors: int = 5,
                 random_state: int | None = None):
        self.sampling_strategy = sampling_strategy
        self.categorical = categorical
        self.k_neighbors = k_neighbors
        self.random_state = random_state

    def fit_resample(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from imblearn.over_sampling import SMOTE
        from sklearn.neighbors import NearestNeighbors

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(np.int8)
        n_pos = int(y.sum())
        if n_pos < 2 or n_pos / max(len(y) - n_pos, 1) >= self.sampling_strategy:
            return X, y  # nothing to interpolate between, or already balanced enough
        # SMOTE only looks at the frauds (neighbours, interpolation); handing SMOTE-NC the
        # whole fold makes it one-hot encode every legitimate row for nothing. It gets the
        # frauds and a few legitimate rows, with the wanted fraud count as a target.
        n_target = int(self.sampling_strategy * (len(y) - n_pos))
        keep = np.r_[np.flatnonzero(y == 1), np.flatnonzero(y == 0)[:10]]
        Xs, ys = X[keep], y[keep]
        nan = np.isnan(Xs)
        with_nan = np.flatnonzero(nan.any(axis=0))
        with warnings.catch_warnings():  # an all-missing column has no median: use 0
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(Xs[:, with_nan], axis=0) if len(with_nan) else []
        filled = Xs.copy()
        for j, m in zip(with_nan, medians, strict=True):
            filled[nan[:, j], j] = 0.0 if np.isnan(m) else m
        categorical = list(self.categorical)
        for j in categorical:  # codes are copied from a real fraud below, never interpolated
            filled[nan[:, j], j] = -1.0
        smote = SMOTE(sampling_strategy={1: n_target}, k_neighbors=min(self.k_neighbors, n_pos - 1),
                      random_state=self.random_state)
        Xr, _ = smote.fit_resample(filled, ys)
        new = Xr[len(Xs):].astype(np.float32)
        frauds, frauds_filled = Xs[ys == 1], filled[ys == 1]
        nearest = NearestNeighbors(n_neighbors=1).fit(frauds_filled).kneighbors(
            new, return_distance=False)[:, 0]
        base = frauds[nearest]
        new[np.isnan(base)] = np.nan
        new[:, categorical] = base[:, categorical]
        return np.vstack([X, new]), np.concatenate([y, np.ones(len(new), np.int8)])


def rebalance(X: np.ndarray, y: np.ndarray, strategy: str, *, ratio: float | None = None,
              under_ratio: float | None = None, categorical=(), random_state: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample one training fold.

    Parameters
    ----------
    X, y : ndarray
        The fold's training inputs and labels.
    strategy : str
        One of ``none``, ``scale_pos_weight``, ``undersample``, ``smote``, ``over_under``.
    ratio : float
        Target fraud/legit ratio (after over-sampling for ``over_under``).
    under_ratio : float
        ``over_under`` only: the ratio after under-sampling.
    categorical : sequence of int
        Positions of categorical code columns (for SMOTE).

    Returns
    -------
    X, y, scale_pos_weight : ndarray, ndarray, float
        The resampled rows and the weight XGBoost should give frauds (1 unless the strategy
        is ``scale_pos_weight``).

    See Also
    --------
    rebalance_weighted : the same for rows that carry sample weights.
    """
    X, y, _, spw = rebalance_weighted(X, y, None, strategy, ratio=ratio, under_ratio=under_ratio,
                                      categorical=categorical, random_state=random_state)
    return X, y, spw


def rebalance_weighted(X: np.ndarray, y: np.ndarray, w: np.ndarray | None, strategy: str, *,
                       ratio: float | None = None, under_ratio: float | None = None,
                       categorical=(), random_state: int | None = None):
    """:func:`rebalance` for rows with sample weights (``w``; None: all 1).

    Ratios are of summed weights (frauds over legitimate rows), so a training window of
    sampled legitimate rows weighing ``1 / rate`` is rebalanced to the same targets as the
    whole window; a row keeps its weight when kept or repeated, a synthetic fraud weighs 1.
    With ``w`` None the counts, and the rows drawn, are those of the unweighted samplers.

    Returns
    -------
    X, y, w, scale_pos_weight
        ``w`` is None when it was given as None.
    """
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    y = np.asarray(y)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    w_pos = float(w[pos].sum()) if w is not None else float(n_pos)
    w_neg = float(w[~pos].sum()) if w is not None else float(n_neg)
    current = w_pos / max(w_neg, 1)
    if strategy == "none" or n_pos == 0:
        return X, y, w, 1.0
    if strategy == "scale_pos_weight":
        return X, y, w, w_neg / w_pos

    def take(X, y, w, sampler):
        Xr, yr = sampler.fit_resample(X, y)
        return Xr, yr, (w[sampler.sample_indices_] if w is not None else None)

    def under(X, y, w, target):
        # Legitimate rows kept so that their weight is w_pos / target; as a count, the one
        # RandomUnderSampler(sampling_strategy=target) keeps when every weight is 1.
        pos = y == 1
        wp = float(w[pos].sum()) if w is not None else float(pos.sum())
        mean_w = float(w[~pos].mean()) if w is not None else 1.0
        keep = min(int(wp / target / mean_w), int((~pos).sum()))
        return take(X, y, w, RandomUnderSampler(sampling_strategy={0: keep},
                                                random_state=random_state))

    if strategy == "undersample":
        if ratio <= current:
            return X, y, w, 1.0
        return (*under(X, y, w, ratio), 1.0)
    if strategy == "smote":
        # MissingAwareSMOTE targets a count ratio: the one that reaches ``ratio`` in weight.
        count_ratio = ratio if w is None else (ratio * w_neg - w_pos + n_pos) / max(n_neg, 1)
        Xr, yr = MissingAwareSMOTE(count_ratio, categorical, random_state=random_state
                                   ).fit_resample(X, y)
        wr = None if w is None else np.r_[w, np.ones(len(yr) - len(y), dtype=w.dtype)]
        return Xr, yr, wr, 1.0
    if strategy == "over_under":
        if ratio > current:
            target = int(ratio * w_neg) - int(w_pos) + n_pos
            X, y, w = take(X, y, w, RandomOverSampler(sampling_strategy={1: target},
                                                      random_state=random_state))
            current = ratio
        if under_ratio is not None and under_ratio > current:
            X, y, w = under(X, y, w, under_ratio)
        return X, y, w, 1.0
    raise ValueError(f"unknown rebalancing strategy {strategy!r}")
