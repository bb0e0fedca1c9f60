"""Backtest of refresh policies: replay periods over history with labels as they arrived.

Features are computed once: by construction a transaction's features use only data before
it, so they are the same whatever the as-of time. What changes from period to period is
what a model trained then could know: the rows before the period, their labels as
reported by then, and which of them had matured. Hyperparameters are held fixed (the
current champion's, or XGBoost's defaults) so that the comparison isolates retraining.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration
from fraudlab.evaluation import feature_drift, labels_known_at, psi
from fraudlab.features import LABEL

from ._config import FraudlabConfig

POLICIES = ("never", "always", "drift", "ap_rule", "operating_rule")


@dataclass
class BacktestResult:
    """Per period and policy: fraud caught, amount saved, review load, false blocks; per
    fraud type and policy the recall; and the first day each fraud type was caught (half
    of its frauds that day blocked or reviewed) under each policy."""

    periods: pd.DataFrame
    first_caught: pd.DataFrame
    by_type: pd.DataFrame
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


def _daily_top(scores: np.ndarray, times: pd.Series, exclude: np.ndarray, k: int) -> np.ndarray:
    """Mark the ``k`` highest scores of each day among rows not in ``exclude``."""
    frame = pd.DataFrame({"s": np.where(exclude, -np.inf, scores),
                          "day": times.dt.floor("D").to_numpy()})
    rank = frame.groupby("day")["s"].rank(method="first", ascending=False).to_numpy()
    return (rank <= k) & ~exclude


_RULES = {"ap_rule": "average_precision", "operating_rule": "operating_point"}


def run_backtest(dataset: pd.DataFrame, config: FraudlabConfig, start, end, every: str = "7d",
                 policies: Sequence[str] = POLICIES, params: dict | None = None,
                 log: Callable[[str], None] = print) -> BacktestResult:
    """Replay refresh periods from ``start`` to ``end`` and compare policies.

    Each day of a period, a policy's current model blocks the payments above its block
    threshold and fills ``evaluation.review_capacity_per_day`` reviews with the most
    suspicious of the rest, so policies are compared at the same review load.

    Parameters
    ----------
    dataset : DataFrame
        Labeled dataset built as of a time late enough that the outcomes of the periods are
        known (e.g. ``end`` plus the label maturity).
    policies : sequence of {"never", "always", "drift", "ap_rule", "operating_rule"}
        ``never`` keeps the first model; ``always`` retrains every period; ``drift``
        retrains when the score PSI or a top-10 feature's PSI since its training data
        exceeds ``refresh.drift_psi``. ``ap_rule`` and ``operating_rule`` train a challenger
        every period and promote it by that promotion rule (``refresh.rule``
        ``average_precision`` or ``operating_point``, with the other ``refresh`` settings),
        as the refresh cycle does; ``promoted`` says when. A champion they keep runs on at
        the thresholds re-chosen for the comparison when ``refresh.rethreshold_kept``.
    params : dict, optional
        Fixed model parameters (as :func:`fit_final` takes them); default XGBoost's
        defaults.
    """
    from ._decision import decide, score_pair
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
                gain = scorer.booster.get_score(importance_type="total_gain")
                top10 = sorted(gain, key=gain.get, reverse=True)[:10]
                top = feature_drift(ref_s, period, top10)["psi"].max()
                retrain = max(score_psi, top) > config.refresh.drift_psi
            rule = _RULES.get(policy)
            if fresh is None and (retrain or (rule and policy in models)):
                log(f"{t:%Y-%m-%d}: training on what was known then ...")
                view = dataset_known_at(dataset, t, config.features.label_maturity)
                protocol = build_protocol(view, tcfg)
                fitted = fit_final(protocol, params, tcfg, config.evaluation)
                fresh = (fitted.scorer(), view, protocol)
            promoted = retrain
            if rule and policy in models:
                # The refresh cycle's decision, under this policy's rule.
                cfg = config.model_copy(update={"refresh": config.refresh.model_copy(
                    update={"rule": rule})})
                pair = score_pair(cfg, fresh[2], fresh[1], fresh[0], models[policy][0])
                promoted = decide(cfg.refresh, pair.champion, pair.challenger, pair.comparison,
                                  review_capacity_per_day=cfg.evaluation.review_capacity_per_day
                                  ).promote
                retrain = True
                if not promoted and cfg.refresh.rethreshold_kept:
                    # The kept champion runs at the thresholds it was compared at, as the
                    # refresh cycle stores them; a copy, since policies may share a model.
                    kept = copy.copy(models[policy][0])
                    kept.spec = {**kept.spec, "tiers": dict(pair.thresholds["champion"])}
                    models[policy] = (kept, models[policy][1])
            if promoted:
                models[policy] = fresh[:2]
            scorer, _ = models[policy]
            p = scorer.predict(None, period)
            blocked = p >= scorer.spec["tiers"]["block"]
            # Every policy gets the same analysts: each day, the most suspicious payments not
            # blocked fill the review capacity. Catch rates are then comparable.
            reviewed = _daily_top(p, period["ts"], blocked,
                                  config.evaluation.review_capacity_per_day)
            y = period[LABEL].to_numpy() == 1
            flagged = blocked | reviewed
            amount = period["amount"].to_numpy(float)
            rows.append({"period_start": t, "policy": policy, "retrained": bool(retrain),
                         "promoted": bool(promoted),
                         "transactions": len(period), "frauds": int(y.sum()),
                         "fraud_caught": int((flagged & y).sum()),
                         "fraud_amount": float(amount[y].sum()),
                         "fraud_amount_saved": float(amount[flagged & y].sum()),
                         "reviews": int(reviewed.sum()),
                         "false_blocks": int((blocked & ~y).sum())})
            frauds = period[y]
            caught_rows.append(frauds[["ts", "fraud_type"]].assign(
                policy=policy, caught=flagged[y], day=frauds["ts"].dt.floor("D")))
        t = t + step
    periods = pd.DataFrame(rows)
    frauds = pd.concat(caught_rows) if caught_rows else pd.DataFrame(
        columns=["ts", "fraud_type", "policy", "caught", "day"])
    frauds = frauds.dropna(subset=["fraud_type"])
    by_type = (frauds.groupby(["fraud_type", "policy"], sort=True)["caught"]
               .agg(frauds="size", caught="sum").reset_index())
    by_type["recall"] = by_type["caught"] / by_type["frauds"]
    # A type "is caught" from the first day on which at least half of its frauds that day
    # were blocked or sent to review (one lucky hit does not count).
    daily = frauds.groupby(["fraud_type", "policy", "day"])["caught"].mean().reset_index()
    first = (daily[daily["caught"] >= 0.5].groupby(["fraud_type", "policy"])["day"].min()
             .dt.strftime("%Y-%m-%d").unstack("policy").reindex(columns=list(policies)))
    starts = (dataset[dataset[LABEL] == 1].groupby("fraud_type")["ts"].min().dt.strftime("%Y-%m-%d"))
    first = first.reindex(starts.index)
    first.columns.name = None
    first.insert(0, "first_seen", starts)
    return BacktestResult(periods=periods, first_caught=first.rename_axis("fraud_type").reset_index(),
                          by_type=by_type, params=params)


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
