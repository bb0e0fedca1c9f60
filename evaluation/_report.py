"""The reviewer report: one evaluation of a model on a labelled window, rendered as a
self-contained HTML page (inline CSS and images; opens offline and prints).

:func:`evaluate` computes everything (pure: data in, an :class:`Evaluation` out);
:func:`render_report` turns it into HTML. Loading models and writing files happen at the
edge (the CLI and the refresh cycle).
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from fraudlab.features import CATALOG, LABEL, dataset_features

from ._config import EvaluationConfig
from ._explain import (
    contributions,
    global_importance,
    reason_codes,
    stratified_sample,
    usual_values,
)
from ._metrics import (
    account_precision_at_k_score,
    average_precision_score,
    bootstrap_interval,
    brier_score_loss,
    recall_at_fpr_score,
    roc_auc_score,
)
from ._tiers import tier_of, tier_table

AMOUNT_BANDS = (0, 50, 200, 1000, 5000, float("inf"))
AMOUNT_BAND_LABELS = ("0-50", "50-200", "200-1,000", "1,000-5,000", "5,000 and more")


class Scorer(Protocol):
    """What evaluation needs of a model (the served ``FraudModel`` satisfies it)."""

    booster: object
    spec: dict

    def encode(self, frame: pd.DataFrame) -> np.ndarray: ...

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray: ...


@dataclass
class Evaluation:
    """Everything the reviewer report shows; every table is a DataFrame."""

    title: str
    summary: dict
    window: dict
    metrics: pd.DataFrame
    thresholds: dict
    tiers: pd.DataFrame
    by_fraud_type: pd.DataFrame
    by_channel: pd.DataFrame
    by_amount: pd.DataFrame
    importance: pd.DataFrame
    cases: pd.DataFrame
    incidents: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    currency: str = ""
    sections: dict = field(default_factory=dict)  # extra titled HTML-safe tables
    timings: dict = field(default_factory=dict)


def _png(fig) -> str:
    """A figure as a PNG data URL; a pyplot figure (shap draws through pyplot) is closed,
    so that a notebook does not show the report's figures as its own."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(**kwargs):
    """A figure and its axes drawn without pyplot: no backend is chosen or changed, so the
    user's (a notebook's inline backend) is left alone."""
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    return fig, fig.subplots()


def _paired_difference(fn, y, p, q, n_resamples: int, seed: int) -> tuple[float, float, float]:
    """``fn(y, p) - fn(y, q)`` and its 95% interval, resampling the same rows for both."""
    y, p, q = np.asarray(y), np.asarray(p), np.asarray(q)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(y), len(y))
        d = fn(y[idx], p[idx]) - fn(y[idx], q[idx])
        if np.isfinite(d):
            diffs.append(d)
    value = fn(y, p) - fn(y, q)
    if not diffs:
        return value, float("nan"), float("nan")
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return value, float(lo), float(hi)


def _metric_rows(y, p, meta, k, champion_p=None, n_resamples=200, seed=0) -> pd.DataFrame:
    specs = [
        ("average_precision_score", "Average precision (PR-AUC)", average_precision_score),
        ("roc_auc_score", "ROC-AUC", roc_auc_score),
        ("recall_at_fpr_0.1pct_score", "Recall at 0.1% false-positive rate",
         lambda a, b: recall_at_fpr_score(a, b, 0.001)),
        ("recall_at_fpr_1pct_score", "Recall at 1% false-positive rate",
         lambda a, b: recall_at_fpr_score(a, b, 0.01)),
        ("brier_score_loss", "Brier score (lower is better)", brier_score_loss),
    ]
    rows = []
    for key, label, fn in specs:
        v, lo, hi = bootstrap_interval(fn, y, p, n_resamples=n_resamples, random_state=seed)
        row = {"metric": key, "label": label, "value": v, "low": lo, "high": hi}
        if champion_p is not None:
            row["champion"] = fn(y, champion_p)
            row["difference"], row["difference_low"], row["difference_high"] = \
                _paired_difference(fn, y, p, champion_p, n_resamples, seed)
        rows.append(row)
    apk = account_precision_at_k_score(y, p, meta["account_id"], meta["ts"], k)
    row = {"metric": f"account_precision_at_{k}_score",
           "label": f"Account precision@{k} per day", "value": apk, "low": np.nan, "high": np.nan}
    if champion_p is not None:
        row["champion"] = account_precision_at_k_score(y, champion_p, meta["account_id"], meta["ts"], k)
        row["difference"] = row["value"] - row["champion"]
        row["difference_low"] = row["difference_high"] = np.nan
    rows.append(row)
    return pd.DataFrame(rows)


def _breakdown(frame: pd.DataFrame, by: str, legit: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per group: volume, frauds, their amount, average precision, what each tier caught.

    With ``legit`` (the window's legitimate payments), ``frame`` holds frauds only and each
    group's average precision ranks its frauds against every legitimate payment, which is
    how well the model finds that kind of fraud.
    """
    rows = []
    for key, g in frame.groupby(by, observed=True, sort=True):
        y = g["y"].to_numpy()
        ranked = g if legit is None else pd.concat([g, legit])
        rows.append({by: str(key), "transactions": len(g), "frauds": int(y.sum()),
                     "fraud_amount": float(g.loc[g["y"] == 1, "amount"].sum()),
                     "average_precision": average_precision_score(ranked["y"], ranked["p"])
                     if y.any() else np.nan,
                     "caught_block": int(((g["tier"] == "block") & (g["y"] == 1)).sum()),
                     "caught_review": int(((g["tier"] == "review") & (g["y"] == 1)).sum()),
                     "recall_flagged": float(g.loc[g["y"] == 1, "tier"].isin(["block", "review"]).mean())
                     if y.any() else np.nan})
    return pd.DataFrame(rows)


def log_calibration_table(y_true, y_prob, n_bins: int = 12) -> pd.DataFrame:
    """Reliability of rare-event scores: bins evenly spaced on a log scale of the score,
    each with its mean prediction, observed fraud rate, frauds and rows (empty bins left
    out). Quantile bins put almost every fraud in the top bin when frauds are rare."""
    y = np.asarray(y_true).astype(np.int64)
    p = np.clip(np.asarray(y_prob, dtype=np.float64), 1e-9, 1.0)
    edges = np.geomspace(max(p.min(), 1e-6), 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    frame = pd.DataFrame({"bin": which, "y": y, "p": p})
    out = frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"),
                                   frauds=("y", "sum"), rows=("y", "size"))
    return out.reset_index(drop=True)


def _figures(y, p, thresholds, champion_p, contrib_sample, values_sample, weights, top_case):
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    figs = {}
    fig, ax = _figure(figsize=(6, 4))
    for scores, label in ((p, "this model"), (champion_p, "champion")):
        if scores is None:
            continue
        prec, rec, _ = precision_recall_curve(y, scores)
        ax.plot(rec, prec, label=f"{label} (AP {average_precision_score(y, scores):.3f})")
    ax.set(xlabel="recall (share of frauds caught)", ylabel="precision", title="Precision-recall")
    ax.legend()
    figs["pr_curve"] = _png(fig)

    fig, ax = _figure(figsize=(6, 4))
    prec, rec, thr = precision_recall_curve(y, p)
    ax.plot(thr, prec[:-1], label="precision")
    ax.plot(thr, rec[:-1], label="recall")
    for name, colour in (("block", "red"), ("review", "orange")):
        t = thresholds.get(name, np.inf)
        if np.isfinite(t):
            ax.axvline(t, color=colour, linestyle="--", label=f"{name} threshold {t:.3f}")
    ax.set(xscale="log", xlabel="score threshold (calibrated probability)", title="Thresholds")
    ax.legend(fontsize=8)
    figs["thresholds"] = _png(fig)

    cal = log_calibration_table(y, p)
    fig, ax = _figure(figsize=(5.5, 4))
    lo = max(min(cal["predicted"].min(), 1e-5), 1e-6)
    ax.plot([lo, 1], [lo, 1], color="grey", linestyle=":", label="perfect")
    seen = cal[cal["observed"] > 0]
    ax.plot(seen["predicted"], seen["observed"], marker="o", label="this model")
    zero = cal[cal["observed"] == 0]
    ax.plot(zero["predicted"], np.full(len(zero), lo), marker="v", linestyle="none",
            color="grey", label="no fraud in the bin")
    for r in cal.itertuples():
        ax.annotate(f"{r.frauds}/{r.rows:,}", (r.predicted, max(r.observed, lo)), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    ax.set(xscale="log", yscale="log", xlabel="mean predicted probability (log)",
           ylabel="observed fraud rate (log)", title="Calibration (log-spaced score bins)")
    ax.legend(fontsize=8)
    figs["calibration"] = _png(fig)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap

        feats = [c for c in contrib_sample.columns if c != "bias"]
        expl = shap.Explanation(values=contrib_sample[feats].to_numpy(),
                                base_values=contrib_sample["bias"].to_numpy(),
                                data=values_sample.to_numpy(dtype=float), feature_names=feats)
        plt.figure()
        shap.plots.bar(expl, max_display=15, show=False)
        figs["shap_bar"] = _png(plt.gcf())
        plt.figure()
        shap.plots.beeswarm(expl, max_display=15, show=False)
        figs["shap_beeswarm"] = _png(plt.gcf())
        order = global_importance(contrib_sample, weights).index[:3]
        for name in order:
            plt.figure()
            shap.plots.scatter(expl[:, name], show=False)
            figs[f"shap_dependence_{name}"] = _png(plt.gcf())
        if top_case is not None:
            plt.figure()
            shap.plots.waterfall(top_case, max_display=12, show=False)
            figs["shap_waterfall_top_case"] = _png(plt.gcf())
    return figs


def evaluate(dataset: pd.DataFrame, model: Scorer, thresholds: dict, *,
             config: EvaluationConfig | None = None, champion: Scorer | None = None,
             summary: dict | None = None, start=None, end=None, max_cases: int = 10,
             n_legit_sample: int = 2000, n_resamples: int = 200, k: int = 100,
             title: str = "Fraud model report", random_state: int = 0,
             history: pd.DataFrame | None = None, max_incidents: int = 20,
             exclude_known_fraud_accounts: bool = True) -> Evaluation:
    """Evaluate a model on the mature rows of a labelled dataset for the reviewer report.

    Parameters
    ----------
    dataset : DataFrame
        A labelled dataset (metadata, label, features).
    model, champion : Scorer
        The model under review and, optionally, the current champion to compare with.
    thresholds : dict
        ``block`` and ``review`` thresholds stored with the model.
    start, end : timestamp, optional
        Only rows with ``start <= ts < end``.
    max_cases : int
        Most flagged payments explained and listed per incident (highest scores first);
        the incident's count, amount and time span cover all its flagged payments.
    max_incidents : int
        Incidents listed: the accounts with the highest-scored flagged payments, each with
        its flagged payments of the window.
    exclude_known_fraud_accounts : bool
        Leave out the payments of accounts with a fraud reported before the window starts,
        as the training protocol's test window does (they are blocked already); the report
        states how many.
    n_legit_sample : int
        Legitimate rows in the stratified sample behind the global explanations (all
        frauds are in it).
    history : DataFrame, optional
        Where the accounts' usual values come from (default: ``dataset``).

    Returns
    -------
    Evaluation
    """
    clock = {"start": time.perf_counter()}
    config = config or EvaluationConfig()
    d = dataset[dataset["is_mature"].to_numpy()] if "is_mature" in dataset else dataset
    if start is not None:
        d = d[(d["ts"] >= pd.Timestamp(start)).to_numpy()]
    if end is not None:
        d = d[(d["ts"] < pd.Timestamp(end)).to_numpy()]
    d = d.reset_index(drop=True)
    population = []
    if exclude_known_fraud_accounts and len(d) and "label_reported_at" in d:
        from ._splits import known_fraud_accounts

        known = known_fraud_accounts(dataset if history is None else history, d["ts"].min())
        out = d["account_id"].isin(known).to_numpy()
        if out.any():
            population.append(
                f"{int(out.sum()):,} payments of {d.loc[out, 'account_id'].nunique():,} accounts "
                "with a fraud reported before the window starts are left out, as in the "
                "model's test window (those accounts are blocked already).")
        d = d[~out].reset_index(drop=True)
    if d.empty or not d[LABEL].any():
        raise ValueError("the evaluation window has no labelled fraud: choose a longer or "
                         "later window, or a dataset built at a later as-of time")
    y = d[LABEL].to_numpy().astype(np.int8)
    X = model.encode(d)
    p = model.predict(None, d)
    champion_p = champion.predict(None, d) if champion is not None else None
    clock["scored"] = time.perf_counter()
    meta = d[["tx_id", "ts", "account_id"]]
    metrics = _metric_rows(y, p, meta, k, champion_p, n_resamples, random_state)
    clock["metrics"] = time.perf_counter()

    tiers = tier_of(p, thresholds)
    amount = d["amount"].to_numpy(float) if "amount" in d else np.zeros(len(d))
    table = tier_table(y, p, thresholds, times=d["ts"], amounts=amount, accounts=d["account_id"])
    frame = pd.DataFrame({"y": y, "p": p, "tier": tiers, "amount": amount,
                          "fraud_type": d["fraud_type"].fillna("unknown").astype(str),
                          "channel": d["channel"].astype(str) if "channel" in d else "unknown",
                          "amount_band": pd.cut(amount, AMOUNT_BANDS, right=False,
                                                labels=AMOUNT_BAND_LABELS)})
    by_type = _breakdown(frame[frame["y"] == 1], "fraud_type", legit=frame[frame["y"] == 0])
    by_type = by_type.rename(columns={"average_precision": "average_precision_vs_legitimate"})
    by_channel = _breakdown(frame, "channel")
    by_amount = _breakdown(frame, "amount_band")

    currency = config.currency or (str(d["currency"].mode().iloc[0]) if "currency" in d
                                   and d["currency"].notna().any() else "")
    warnings = []
    capacity = config.review_capacity_per_day
    review_per_day = float(table.loc[table["tier"] == "review", "per_day"].iloc[0])
    if review_per_day > capacity:
        warnings.append(f"The review tier sends {review_per_day:,.1f} payments a day to review, "
                        f"more than the configured capacity of {capacity:,} a day.")

    # Explanations: exact contributions for the flagged payments of the incidents we list
    # (an incident is an account's flagged payments: a burst is one case to a reviewer), and
    # a stratified sample (all frauds + n legit rows, reweighted) for global views.
    feats = model.spec["features"]
    flagged = np.flatnonzero(tiers != "pass")
    by_score = flagged[np.argsort(-p[flagged], kind="stable")]
    accounts = d["account_id"].to_numpy()
    top_accounts = list(dict.fromkeys(accounts[by_score]))[:max_incidents]
    keep = pd.Series(accounts[by_score]).isin(top_accounts).to_numpy()
    chosen = pd.Series(by_score[keep]).groupby(accounts[by_score[keep]], sort=False).head(max_cases)
    listed = chosen.to_numpy()
    sample = stratified_sample(y, n_legit_sample, random_state)
    n_legit = int((y == 0).sum())
    weights = np.where(y[sample] == 1, 1.0, n_legit / max(int((y[sample] == 0).sum()), 1))
    contrib_sample = contributions(model.booster, X[sample], feats)
    contrib_cases = contributions(model.booster, X[listed], feats) if len(listed) else None
    clock["contributions"] = time.perf_counter()
    importance = global_importance(contrib_sample, weights)
    unweighted = global_importance(contrib_sample)
    declared = (*CATALOG, *dataset_features(dataset).features)
    cat = {f.name: f for f in declared}
    imp = pd.DataFrame({"feature": importance.index, "mean_abs_contribution": importance.to_numpy(),
                        "rank_unweighted_sample": [int(unweighted.index.get_loc(f)) + 1
                                                   for f in importance.index],
                        "description": [cat[f].description if f in cat else f
                                        for f in importance.index]})
    cases = pd.DataFrame(columns=["tx_id", "ts", "account_id", "amount", "score", "tier",
                                  "is_fraud", "fraud_type", "reasons"])
    top_case = None
    if contrib_cases is not None:
        values = d.iloc[listed][feats].reset_index(drop=True)
        usual = usual_values(dataset if history is None else history, d.iloc[listed], feats)
        reasons = reason_codes(contrib_cases, values, usual, top=3, currency=currency,
                               catalog=tuple(cat.values()))
        cases = d.iloc[listed][["tx_id", "ts", "account_id"]].reset_index(drop=True)
        cases["amount"] = amount[listed]
        cases["score"] = p[listed]
        cases["tier"] = tiers[listed]
        cases["is_fraud"] = y[listed]
        cases["fraud_type"] = d["fraud_type"].iloc[listed].fillna("").to_numpy()
        cases["reasons"] = reasons
        import shap

        top_case = shap.Explanation(values=contrib_cases[feats].to_numpy()[0],
                                    base_values=float(contrib_cases["bias"].iloc[0]),
                                    data=X[listed[0]], feature_names=feats)
    incidents = _incidents(cases, d.iloc[flagged].assign(amount=amount[flagged]))
    values_sample = pd.DataFrame(X[sample], columns=feats)
    figures = _figures(y, p, thresholds, champion_p, contrib_sample, values_sample, weights, top_case)
    clock["figures"] = time.perf_counter()
    overlap = set(importance.index[:10]) & set(unweighted.index[:10])
    notes = [
        f"Global explanations use a stratified sample of {len(sample):,} rows: all "
        f"{int(y.sum()):,} frauds and {int((y[sample] == 0).sum()):,} of {n_legit:,} legitimate "
        "rows, the legitimate rows weighted back to their share. Without the weights, "
        f"{len(overlap)} of the top 10 features are the same.",
        f"Reason codes are exact TreeSHAP contributions for the {len(listed):,} flagged "
        f"payments of the {len(incidents):,} incidents listed (of {len(flagged):,} flagged "
        f"payments from {len(np.unique(accounts[flagged])):,} accounts).",
        *population,
    ]
    window = {"start": str(d["ts"].min()), "end": str(d["ts"].max()), "rows": len(d),
              "frauds": int(y.sum()), "fraud_amount": float(amount[y == 1].sum()),
              "days": float((d["ts"].max() - d["ts"].min()) / pd.Timedelta("1D")),
              "review_capacity_per_day": capacity}
    timings = {k2: round(clock[k2] - clock["start"], 3) for k2 in clock if k2 != "start"}
    return Evaluation(title=title, summary=summary or {}, window=window, metrics=metrics,
                      thresholds=dict(thresholds), tiers=table, by_fraud_type=by_type,
                      by_channel=by_channel, by_amount=by_amount, importance=imp, cases=cases,
                      incidents=incidents, figures=figures, notes=notes, warnings=warnings,
                      currency=currency, timings=timings)


_TIER_RANK = {"block": 2, "review": 1, "pass": 0}


def _incidents(cases: pd.DataFrame, flagged: pd.DataFrame) -> pd.DataFrame:
    """The listed payments grouped by account: one incident per account, highest score
    first, with the time span, count, amount and frauds of all the account's ``flagged``
    payments, its highest tier and the strongest reasons over its listed payments (each
    feature at its largest contribution)."""
    every = flagged.groupby("account_id")
    span = pd.DataFrame({"first": every["ts"].min(), "last": every["ts"].max(),
                         "payments": every.size(), "amount": every["amount"].sum(),
                         "frauds": every[LABEL].sum()})
    rows = []
    for account, g in cases.groupby("account_id", sort=False):
        strongest: dict[str, dict] = {}
        for reasons in g["reasons"]:
            for r in reasons:
                if r["feature"] not in strongest or r["contribution"] > strongest[r["feature"]]["contribution"]:
                    strongest[r["feature"]] = r
        top = sorted(strongest.values(), key=lambda r: -r["contribution"])[:3]
        types = sorted({t for t in g["fraud_type"] if t})
        a = span.loc[account]
        frauds = int(a["frauds"])
        rows.append({"account_id": account, "first": a["first"], "last": a["last"],
                     "payments": int(a["payments"]), "amount": float(a["amount"]),
                     "max_score": float(g["score"].max()),
                     "tier": max(g["tier"], key=_TIER_RANK.get), "frauds": frauds,
                     "fraud_types": ", ".join(types), "reasons": top,
                     "cases": g.sort_values("ts").to_dict("records")})
    return pd.DataFrame(rows, columns=["account_id", "first", "last", "payments", "amount",
                                       "max_score", "tier", "frauds", "fraud_types", "reasons",
                                       "cases"])


def render_report(ev: Evaluation) -> str:
    """The evaluation as one self-contained HTML page."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["when"] = _when
    template = env.from_string((Path(__file__).parent / "report.html.j2").read_text())
    return template.render(ev=ev, generated=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC"))


_ISO_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"


def _when(value) -> str:
    """A timestamp to the minute, in UTC ("2026-03-22 23:59 UTC"); other values as they are."""
    import re

    if isinstance(value, str) and not re.match(_ISO_TIME, value):
        return value
    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if pd.isna(t):
        return ""
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _num(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(v):
        return "n/a"
    if np.isinf(v):
        return "none" if v > 0 else "-inf"
    if v == int(v) and (abs(v) >= 1 or v == 0):
        return f"{int(v):,}"
    return f"{v:,.{digits}f}"


_BACKTEST_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1100px;
margin:0 auto;padding:24px;color:#1d2733}table{border-collapse:collapse;font-size:.9em;margin:12px 0}
th,td{border:1px solid #dde3ea;padding:4px 8px;text-align:right}th{background:#f3f6f9}
img{max-width:100%}</style></head><body>
<h1>{{ title }}</h1>
<p>Each period is scored by the model each policy would have had at its start, trained only
on what was known then (rows, labels as reported, matured rows). Outcomes use the labels
known when the backtest ran.</p>
<img src="{{ figure }}" alt="cumulative fraud amount saved by policy">
<h2>Totals by policy</h2>{{ totals | safe }}
<h2>First day each fraud type was caught</h2>
<p>The first day on which at least half of that day's frauds of the type were blocked or
sent to review ("never": not within the backtest).</p>{{ first | safe }}
{% if by_type %}<h2>Recall by fraud type</h2>{{ by_type | safe }}{% endif %}
<h2>Per period</h2>{{ periods | safe }}
</body></html>"""


def render_backtest(periods: pd.DataFrame, first_caught: pd.DataFrame,
                    title: str = "Backtest of refresh policies",
                    by_type: pd.DataFrame | None = None) -> str:
    """A self-contained HTML page: cumulative fraud amount saved per policy, totals, the
    first day each fraud type was caught, and the per-period table."""
    import jinja2

    fig, ax = _figure(figsize=(8, 4))
    for policy, g in periods.groupby("policy", sort=False):
        ax.plot(g["period_start"], g["fraud_amount_saved"].cumsum(), marker="o", label=policy)
    ax.set(ylabel="cumulative fraud amount saved", title="Fraud amount saved by policy")
    ax.legend()
    fig.autofmt_xdate()
    counted = [c for c in ("retrained", "promoted", "frauds", "fraud_caught", "fraud_amount",
                           "fraud_amount_saved", "reviews", "false_blocks") if c in periods]
    totals = periods.groupby("policy", sort=False)[counted].sum().reset_index()
    fmt = {"float_format": lambda v: f"{v:,.0f}", "index": False, "border": 0}
    env = jinja2.Environment(autoescape=True)
    return env.from_string(_BACKTEST_TEMPLATE).render(
        title=title, figure=_png(fig), totals=totals.to_html(**fmt),
        first=first_caught.to_html(na_rep="never", **fmt), periods=periods.to_html(**fmt),
        by_type=None if by_type is None else by_type.to_html(
            index=False, border=0, float_format=lambda v: f"{v:.3f}"))
