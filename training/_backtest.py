"""Backtest of refresh policies: replay periods over history with labels as they arrived.

Features are computed once: by construction a transaction's features use only data before
it, so they are the same whatever the as-of time. What changes from period to period is
what a model trained then could know: the rows before the period, their labels as
reported by then, and which of them had matured. Hyperparameters are held fixed (the
current champion's, or XGBoost's defaults) so that the comparison isolates retraining.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration
from fraudlab.evaluation import feature_drift, labels_known_at, psi, tier_of
from fraudlab.features import LABEL

from ._config import FraudlabConfig

POLICIES = ("never", "always", "drift")


@dataclass
class BacktestResult:
    """Per period and policy: fraud caught, amount saved, review load, false blocks; and
    the first day each fraud type was caught under each policy."""

    periods: pd.DataFrame
    first_caught: pd.DataFrame
    params: dict


def dataset_known_at(dataset: pd.DataFrame, when: pd.Timestamp, maturity: str) -> pd.DataFrame:
    """The labeled dataset as a model trained at ``when`` would have seen it."""
    view = dataset[dataset["ts"] < when].copy()
    known = labels_known_at(view, when)
    view[LABEL] = known.astype(np.int64)
    view["label_reported_at"] = view["label_reported_at"].where(view["label_reported_at"] <= when)
    view["is_mature"] = (view["ts"] <= when - parse_duration(maturity)).to_numpy()
    view.attrs = dict(dataset.attrs)
    return view


def run_backtest(dataset: pd.DataFrame, config: FraudlabConfig, start, end, every: str = "7d",
                 policies: Sequence[str] = POLICIES, params: dict | None = None,
                 log: Callable[[str], None] = print) -> BacktestResult:
    """Replay refresh periods from ``start`` to ``end`` and compare policies.

    Parameters
    ----------
    dataset : DataFrame
        Labeled dataset built as of a time late enough that the outcomes of the periods are
        known (e.g. ``end`` plus the label maturity).
    policies : sequence of {"never", "always", "drift"}
        ``never`` keeps the first model; ``always`` retrains every period; ``drift``
        retrains when the score PSI or a top-10 feature's PSI since its training data
        exceeds ``refresh.drift_psi``.
    params : dict, optional
        Fixed model parameters (as :func:`fit_final` takes them); default XGBoost's
        defaults.
    """
    from ._fit import fit_final
    from ._protocol import build_protocol
    from ._search import BASELINE_PARAMS

    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; choose from {POLICIES}")
    params = dict(params or BASELINE_PARAMS)
    tcfg = config.training.model_copy(update={"n_splits": 1})
    step = parse_duration(every)
    t = pd.Timestamp(start)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    stop = pd.Timestamp(end)
    stop = stop.tz_localize("UTC") if stop.tzinfo is None else stop
    models: dict[str, tuple] = {}
    rows, caught_rows = [], []
    while t < stop:
        fresh = None

        period = dataset[(dataset["ts"] >= t) & (dataset["ts"] < t + step)]
        for policy in policies:
            retrain = policy not in models or policy == "always"
            if policy == "drift" and policy in models:
                scorer, ref = models[policy]
                ref_s = ref.sample(min(len(ref), 20_000), random_state=0)
                score_psi = psi(scorer.predict(None, ref_s), scorer.predict(None, period))
                top = feature_drift(ref_s, period, scorer.features[:10])["psi"].max()
                retrain = max(score_psi, top) > config.refresh.drift_psi
            if retrain:
                if fresh is None:
                    log(f"{t:%Y-%m-%d}: training on what was known then ...")
                    view = dataset_known_at(dataset, t, config.features.label_maturity)
                    fitted = fit_final(build_protocol(view, tcfg), params, tcfg, config.evaluation)
                    fresh = (fitted.scorer(), view)
                models[policy] = fresh
            scorer, _ = models[policy]
            p = scorer.predict(None, period)
            tiers = tier_of(p, scorer.spec["tiers"])
            y = period[LABEL].to_numpy() == 1
            flagged = tiers != "pass"
            amount = period["amount"].to_numpy(float)
            rows.append({"period_start": t, "policy": policy, "retrained": bool(retrain),
                         "transactions": len(period), "frauds": int(y.sum()),
                         "fraud_caught": int((flagged & y).sum()),
                         "fraud_amount": float(amount[y].sum()),
                         "fraud_amount_saved": float(amount[flagged & y].sum()),
                         "reviews": int((tiers == "review").sum()),
                         "false_blocks": int(((tiers == "block") & ~y).sum())})
            hit = period[flagged & y]
            caught_rows.append(hit[["ts", "fraud_type"]].assign(policy=policy))
        t = t + step
    periods = pd.DataFrame(rows)
    caught = pd.concat(caught_rows) if caught_rows else pd.DataFrame(columns=["ts", "fraud_type", "policy"])
    first = (caught.dropna(subset=["fraud_type"]).groupby(["fraud_type", "policy"])["ts"].min()
             .dt.strftime("%Y-%m-%d").unstack("policy").reindex(columns=list(policies)))
    starts = (dataset[dataset[LABEL] == 1].groupby("fraud_type")["ts"].min().dt.strftime("%Y-%m-%d"))
    first.insert(0, "first_seen", starts.reindex(first.index))
    return BacktestResult(periods=periods, first_caught=first.reset_index(), params=params)


def champion_params(config: FraudlabConfig) -> dict | None:
    """The current champion's refit parameters (from its training run), if any."""
    import mlflow

    from ._registry import CHAMPION, setup_mlflow

    client = setup_mlflow(config)
    try:
        mv = client.get_model_version_by_alias(config.tracking.registered_model, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    raw = {k[5:]: v for k, v in client.get_run(mv.run_id).data.params.items() if k.startswith("best.")}
    out: dict = {}
    for k, v in raw.items():
        if k == "rebalancing":
            out[k] = v
        elif k in ("max_depth", "max_bin", "n_rounds"):
            out[k] = int(float(v))
        else:
            out[k] = float(v)
    return out
