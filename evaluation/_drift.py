"""Drift since a model's training data, and the patterns among the frauds it misses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fraudlab.features import CATALOG, dataset_features

PSI_MODERATE, PSI_MAJOR = 0.1, 0.25
"""The usual reading of the population stability index: below 0.1 stable, 0.1-0.25 a
moderate shift, above 0.25 a major shift."""


def psi(reference, current, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``current`` against ``reference``.

    A feature with at most ``bins`` distinct reference values (a flag, a small count) gets
    one bin per value and one for any value the reference never had, so a flag that
    starts to be set, which no model trained on the reference could have used, shows up
    as drift (quantile bins would put 0 and 1 of an all-0 reference in one bin). Other
    features are binned at the reference's quantiles (ties merged). Missing values form
    their own bin, so a feature that starts or stops being missing shows up as drift.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    finite = ref[~np.isnan(ref)]
    values = np.unique(finite)

    if len(values) <= bins:
        def codes(x: np.ndarray) -> np.ndarray:
            i = np.minimum(np.searchsorted(values, x), max(len(values) - 1, 0))
            exact = (values[i] == x) if len(values) else np.zeros(len(x), bool)
            return np.where(exact, i, len(values)), len(values) + 1
    else:
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))

        def codes(x: np.ndarray) -> np.ndarray:
            return np.searchsorted(edges, x, side="right"), len(edges) + 1

    def shares(x: np.ndarray) -> np.ndarray:
        nan = np.isnan(x)
        code, n = codes(x[~nan])
        return np.r_[np.bincount(code, minlength=n), nan.sum()] / len(x)

    return _psi_of_shares(shares(ref), shares(cur), eps)


def _psi_of_shares(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    """PSI of two share vectors; ``eps`` keeps a bin empty on one side finite, and bins
    empty on both sides contribute nothing."""
    used = (p > 0) | (q > 0)
    p, q = p[used] + eps, q[used] + eps
    return float(np.sum((q - p) * np.log(q / p)))


def category_psi(reference, current, eps: float = 1e-4) -> float:
    """PSI over the shares of each category (missing values are a category of their own)."""
    r = pd.Series(reference, dtype=object).fillna("<missing>").astype(str)
    c = pd.Series(current, dtype=object).fillna("<missing>").astype(str)
    if r.empty or c.empty:
        return float("nan")
    levels = sorted(set(r) | set(c))
    p = r.value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
    q = c.value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
    return _psi_of_shares(p, q, eps)


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str],
                  *, bins: int = 10) -> pd.DataFrame:
    """PSI per feature (categorical features compared by category shares), largest first,
    with the feature's description and a verdict."""
    cat = {f.name: f for f in (*CATALOG, *dataset_features(reference).features)}
    rows = []
    for name in features:
        r, c = reference[name], current[name]
        if isinstance(r.dtype, pd.CategoricalDtype) or r.dtype == object or pd.api.types.is_string_dtype(r.dtype):
            value = category_psi(r, c)
        else:
            value = psi(r.to_numpy(dtype=float, na_value=np.nan), c.to_numpy(dtype=float, na_value=np.nan), bins)
        rows.append({"feature": name, "psi": value,
                     "verdict": "major" if value > PSI_MAJOR else "moderate" if value > PSI_MODERATE else "stable",
                     "description": cat[name].description if name in cat else name})
    return pd.DataFrame(rows).sort_values("psi", ascending=False, ignore_index=True)


def attribution_shift(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute SHAP contribution per feature in two periods, and the change; tells
    which features the model leans on more (or less) now."""
    r = reference.drop(columns="bias", errors="ignore").abs().mean()
    c = current.drop(columns="bias", errors="ignore").abs().mean()
    out = pd.DataFrame({"feature": r.index, "reference": r.to_numpy(), "current": c[r.index].to_numpy()})
    out["change"] = out["current"] - out["reference"]
    return out.reindex(out["change"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def missed_fraud_patterns(contrib: pd.DataFrame, meta: pd.DataFrame, *, max_clusters: int = 4,
                          min_cluster: int = 3, top: int = 3, min_silhouette: float = 0.5,
                          random_state: int = 0, catalog=None) -> list[dict]:
    """Cluster the SHAP vectors of missed frauds and describe each cluster in words.

    Parameters
    ----------
    contrib : DataFrame
        Contributions (under the model that should explain them, e.g. the challenger) of
        the frauds the champion missed, one row per fraud.
    meta : DataFrame
        The same rows' ``amount``, ``channel`` and (when known) ``fraud_type``.
    max_clusters, min_cluster : int
        At most this many clusters, of at least about this many frauds each.
    min_silhouette : float
        Split into clusters only when they are this well separated (silhouette score).
    catalog : sequence of Feature, optional
        Declarations of the features (their descriptions); default the built-in set.

    Returns
    -------
    list of dict
        Per cluster, largest first: ``size``, ``fraud_amount``, ``channels`` (shares),
        ``fraud_types`` (shares, when labelled), ``reasons`` (the features pushing these
        frauds' scores up most, with their catalog descriptions) and ``summary`` (one
        sentence for the report).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(contrib)
    if n == 0:
        return []
    feats = [c for c in contrib.columns if c != "bias"]
    values = contrib[feats].to_numpy()
    labels = np.zeros(n, int)
    k, best = 1, min_silhouette
    for kk in range(2, max(1, min(max_clusters, n // max(min_cluster, 1))) + 1):
        # One pattern split in near-identical clusters helps nobody: keep k clusters only
        # when they are well separated (silhouette), else describe all missed frauds at once.
        cand = KMeans(n_clusters=kk, n_init=10, random_state=random_state).fit_predict(values)
        if len(np.unique(cand)) < 2:
            continue
        score = silhouette_score(values, cand)
        if score > best:
            k, best, labels = kk, score, cand
    cat = {f.name: f for f in (*CATALOG, *(catalog or ()))}
    out = []
    for c in range(k):
        m = labels == c
        if not m.any():
            continue
        mean = pd.Series(values[m].mean(axis=0), index=feats).sort_values(ascending=False)
        reasons = [{"feature": f, "mean_contribution": float(mean[f]),
                    "description": cat[f].description if f in cat else f}
                   for f in mean.index[:top] if mean[f] > 0]
        g = meta[m]
        channels = g["channel"].astype(str).value_counts(normalize=True).round(3).to_dict() if "channel" in g else {}
        types = (g["fraud_type"].dropna().astype(str).value_counts(normalize=True).round(3).to_dict()
                 if "fraud_type" in g else {})
        amount = float(g["amount"].sum()) if "amount" in g else float("nan")
        main_channel = next(iter(channels), "?")
        labelled = ", ".join(f"{t} {v:.0%}" for t, v in list(types.items())[:3])
        summary = (f"{int(m.sum())} missed frauds (amount {amount:,.0f}), mostly {main_channel}"
                   + (f" (labelled {labelled})" if labelled else "") + "; driven by "
                   + "; ".join(r["description"] for r in reasons))
        out.append({"size": int(m.sum()), "fraud_amount": amount, "channels": channels,
                    "fraud_types": types, "reasons": reasons, "summary": summary})
    return sorted(out, key=lambda d: -d["size"])
