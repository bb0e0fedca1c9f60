"""Class rebalancing, applied to a training fold only and never to validation or test rows.

The strategies the search chooses from:

- ``none``: the data as they are;
- ``scale_pos_weight``: XGBoost weighs frauds up (no rows change);
- ``undersample``: imbalanced-learn's ``RandomUnderSampler`` to a fraud/legit ratio;
- ``smote``: :class:`MissingAwareSMOTE`, SMOTE-NC that respects missing values and
  categorical codes, to a ratio;
- ``over_under``: ``RandomOverSampler`` to one ratio, then ``RandomUnderSampler`` to a
  higher one.
"""

from __future__ import annotations

import warnings

import numpy as np


class MissingAwareSMOTE:
    """SMOTE-NC for fraud features, where a missing value carries meaning.

    Plain SMOTE refuses NaN, and imputing before interpolating invents values between
    "never happened" and a real measurement (a "seconds since the last transaction" halfway
    to the median for an account that has none). Here every column with missing values gets
    an indicator that SMOTE-NC treats as categorical (a synthetic row takes the majority
    missingness of its neighbours); numeric values are interpolated on median-imputed data
    and set back to NaN where the synthetic row's indicator says missing. Categorical codes
    are declared categorical, so they are never interpolated either.

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
        from imblearn.over_sampling import SMOTENC

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(np.int8)
        n_pos = int(y.sum())
        if n_pos < 2 or n_pos / max(len(y) - n_pos, 1) >= self.sampling_strategy:
            return X, y  # nothing to interpolate between, or already balanced enough
        nan = np.isnan(X)
        with_nan = np.flatnonzero(nan.any(axis=0))
        with warnings.catch_warnings():  # an all-missing column has no median: use 0
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(X[:, with_nan], axis=0) if len(with_nan) else []
        filled = X.copy()
        for j, m in zip(with_nan, medians, strict=True):
            filled[nan[:, j], j] = 0.0 if np.isnan(m) else m
        categorical = list(self.categorical)
        numeric_left = set(range(X.shape[1])) - set(categorical)
        if not numeric_left:
            raise ValueError("SMOTE-NC needs at least one numeric column")
        for j in categorical:  # codes, with missing as its own category
            filled[nan[:, j], j] = -1.0
        indicators = nan[:, with_nan].astype(np.float32)
        augmented = np.hstack([filled, indicators])
        cat_cols = categorical + list(range(X.shape[1], augmented.shape[1]))
        smote = SMOTENC(categorical_features=cat_cols, sampling_strategy=self.sampling_strategy,
                        k_neighbors=min(self.k_neighbors, n_pos - 1),
                        random_state=self.random_state)
        Xr, yr = smote.fit_resample(augmented, y)
        new = Xr[len(X):, : X.shape[1]].astype(np.float32)
        miss = Xr[len(X):, X.shape[1]:] > 0.5
        for i, j in enumerate(with_nan):
            new[miss[:, i], j] = np.nan
        for j in categorical:
            new[new[:, j] < 0, j] = np.nan
        return np.vstack([X, new]), np.concatenate([y, yr[len(X):].astype(np.int8)])


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
    """
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    n_pos = int(np.sum(y))
    current = n_pos / max(len(y) - n_pos, 1)
    if strategy == "none" or n_pos == 0:
        return X, y, 1.0
    if strategy == "scale_pos_weight":
        return X, y, (len(y) - n_pos) / n_pos
    if strategy == "undersample":
        if ratio <= current:
            return X, y, 1.0
        Xr, yr = RandomUnderSampler(sampling_strategy=ratio, random_state=random_state).fit_resample(X, y)
        return Xr, yr, 1.0
    if strategy == "smote":
        Xr, yr = MissingAwareSMOTE(ratio, categorical, random_state=random_state).fit_resample(X, y)
        return Xr, yr, 1.0
    if strategy == "over_under":
        if ratio > current:
            X, y = RandomOverSampler(sampling_strategy=ratio, random_state=random_state).fit_resample(X, y)
            current = ratio
        if under_ratio is not None and under_ratio > current:
            X, y = RandomUnderSampler(sampling_strategy=under_ratio,
                                      random_state=random_state).fit_resample(X, y)
        return X, y, 1.0
    raise ValueError(f"unknown rebalancing strategy {strategy!r}")
