"""Explanations: exact TreeSHAP contributions through XGBoost, reason codes from the catalog.

Contributions come from XGBoost's native ``pred_contribs`` (the same numbers as shap's
``TreeExplainer`` without background data, at the same speed): they are in the model's
log-odds space and add up, with the bias, to the raw margin of each row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fraudlab.features import CATALOG, Feature


def contributions(booster, X: np.ndarray, feature_names: Sequence[str]) -> pd.DataFrame:
    """SHAP contributions per row and feature, plus ``bias`` (the expected margin).

    ``contributions(...).sum(axis=1)`` equals the model's raw margin for each row.
    """
    import xgboost as xgb

    dm = xgb.DMatrix(X, feature_names=list(feature_names))
    values = booster.predict(dm, pred_contribs=True)
    return pd.DataFrame(values, columns=[*feature_names, "bias"])


def stratified_sample(y_true, n_legit: int = 2000, random_state: int | None = 0) -> np.ndarray:
    """Positions of every fraud plus ``n_legit`` legitimate rows drawn at random: the
    sample behind global explanations (legitimate rows are weighted back up to their
    share when rankings are computed, see :func:`global_importance`)."""
    y = np.asarray(y_true).astype(bool)
    rng = np.random.default_rng(random_state)
    legit = np.flatnonzero(~y)
    take = rng.choice(legit, size=min(n_legit, len(legit)), replace=False)
    return np.sort(np.r_[np.flatnonzero(y), take])


def global_importance(contrib: pd.DataFrame, weights=None) -> pd.Series:
    """Mean absolute contribution per feature (weighted), largest first."""
    values = contrib.drop(columns="bias", errors="ignore").abs()
    w = np.ones(len(values)) if weights is None else np.asarray(weights, float)
    return (values.mul(w, axis=0).sum() / w.sum()).sort_values(ascending=False)


def _fmt(value, unit: str, currency: str = "") -> str:
    v = float(value)
    if unit == "currency":
        return f"{v:,.2f} {currency}".strip()
    text = f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.2f}"
    return f"{text} {unit}".strip() if unit and unit not in ("flag", "count", "ratio", "0/1") else text


def _missing(f: Feature | None) -> str:
    """What a missing value of a feature means, in a reviewer's words, from its declaration."""
    if f is None:
        return "not known for this payment"
    if f.group == "geography":
        return "no location was sent with this payment, or the account has no known home"
    if f.agg in ("last_distance", "last_speed", "since_last", "since_first", "first_use"):
        return f"no earlier {f.source} of this {f.entity.replace('+', ' and ')} to compare with"
    if f.source == "accounts":
        return "the account's details are not known"
    return f"no {f.entity.replace('+', ' and ')} was given with this payment"


def _catalog_map(catalog: Sequence[Feature]) -> dict[str, Feature]:
    return {f.name: f for f in catalog}


def reason_codes(contrib: pd.DataFrame, values: pd.DataFrame, usual: pd.DataFrame | None = None,
                 *, top: int = 3, catalog: Sequence[Feature] = CATALOG,
                 currency: str = "") -> list[list[dict]]:
    """The features pushing each case's score up, in words a reviewer reads.

    Parameters
    ----------
    contrib : DataFrame
        From :func:`contributions`, one row per case.
    values : DataFrame
        The cases' feature values (same rows, same order).
    usual : DataFrame, optional
        The account's usual value of each feature for the same rows (see
        :func:`usual_values`); omitted from the text when missing.
    top : int
        Reasons per case (only features with a positive contribution).
    currency : str
        Written after amounts (features whose unit is ``currency``).

    Returns
    -------
    list of list of dict
        Per case, up to ``top`` reasons with ``feature``, ``contribution`` (log-odds),
        ``value``, ``usual`` and ``text``.
    """
    cat = _catalog_map(catalog)
    feats = [c for c in contrib.columns if c != "bias"]
    c = contrib[feats].to_numpy()
    rows = values.to_dict("records")
    usual_rows = usual.to_dict("records") if usual is not None else None
    return [row_reasons(c[i], feats, rows[i], None if usual_rows is None else usual_rows[i],
                        top=top, catalog=cat, currency=currency)
            for i in range(len(contrib))]


def row_reasons(contrib, features: Sequence[str], values: Mapping, usual: Mapping | None = None,
                *, top: int = 3, catalog: Sequence[Feature] | Mapping[str, Feature] = CATALOG,
                currency: str = "") -> list[dict]:
    """The reasons of one case, as :func:`reason_codes` gives them, from plain values: a
    service explains one payment without building frames.

    Parameters
    ----------
    contrib : array of float
        The case's contributions, one per feature (the bias left out).
    features : sequence of str
        Their feature names.
    values, usual : mapping of str
        The case's feature values and the account's usual values (optional).
    """
    cat = catalog if isinstance(catalog, Mapping) else _catalog_map(catalog)
    c = np.asarray(contrib, dtype=float)
    reasons = []
    for j in np.argsort(-c, kind="stable")[:top]:
        if c[j] <= 0:
            break
        name = features[j]
        f = cat.get(name)
        unit = f.unit if f else ""
        value = values.get(name)
        what = f.description if f else name
        u = None
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            # Missing is itself the signal: say what is missing, compare with nothing.
            text, value = f"{what}: {_missing(f)}", None
        else:
            text = f"{what}: " + (value if isinstance(value, str) else _fmt(value, unit, currency))
            if usual is not None:
                u = usual.get(name)
                if u is None or (not isinstance(u, str) and pd.isna(u)):
                    u = None
                else:
                    whose = ("this account" if f is None or f.entity.startswith("account")
                             else "this account's payments")
                    text += (f" (usual for {whose}: "
                             f"{u if isinstance(u, str) else _fmt(u, unit, currency)})")
        reasons.append({"feature": name, "contribution": float(c[j]),
                        "value": value if value is None or isinstance(value, str) else float(value),
                        "usual": u if u is None or isinstance(u, str) else float(u),
                        "text": text})
    return reasons


def usual_values(history: pd.DataFrame, cases: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The account's usual value of each numeric feature for each case: the median over
    the account's transactions in ``history`` before the case (NaN when there are none).

    Parameters
    ----------
    history : DataFrame
        Labeled dataset rows (``account_id``, ``ts`` and the features).
    cases : DataFrame
        The cases' ``account_id`` and ``ts``.
    """
    cols = [f for f in features if f in history.columns
            and pd.api.types.is_numeric_dtype(history[f].dtype)]
    targets = cases[["account_id", "ts"]].reset_index(drop=True)
    out = pd.DataFrame(np.nan, index=range(len(targets)), columns=cols)
    d = history.loc[history["account_id"].isin(set(targets["account_id"])), ["account_id", "ts", *cols]]
    by_acc = dict(tuple(d.groupby("account_id")))
    for i, (acc, ts) in enumerate(targets.itertuples(index=False)):
        g = by_acc.get(acc)
        if g is None:
            continue
        before = g[g["ts"] < ts]
        if len(before):
            out.iloc[i] = before[cols].median().to_numpy()
    return out
