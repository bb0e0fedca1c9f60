"""The Optuna search over XGBoost and class rebalancing, and the fits it needs.

The objective is pure: it takes a trial, fits one model per fold and returns the mean fold
score; logging is attached from outside (callbacks, the MLflow step after the study).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fraudlab.evaluation import (
    EvaluationConfig,
    account_precision_at_k_score,
    average_precision_score,
    recall_at_fpr_score,
)

from ._config import TrainingConfig
from ._protocol import Protocol, Window
from ._rebalance import rebalance_weighted

MAX_BINS = (64, 128, 256, 512, 1024)

BASELINE_PARAMS = {"max_depth": 6, "learning_rate": 0.3, "min_child_weight": 1.0,
                   "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0,
                   "reg_alpha": 0.0, "gamma": 0.0, "max_delta_step": 0.0, "max_bin": 256,
                   "rebalancing": "none", "n_rounds": 100}
"""XGBoost's own defaults (100 rounds, no rebalancing): the honest untuned baseline."""


def suggest_params(trial, config: TrainingConfig) -> dict:
    """The search space: XGBoost (hist) parameters and the rebalancing strategy."""
    p = {
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 50, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 100, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10, log=True),
        "gamma": trial.suggest_float("gamma", 1e-4, 5, log=True),
        "max_delta_step": trial.suggest_float("max_delta_step", 0, 10),
        "max_bin": trial.suggest_categorical("max_bin", MAX_BINS),
        "rebalancing": trial.suggest_categorical("rebalancing", list(config.strategies)),
    }
    if p["rebalancing"] in ("undersample", "smote", "over_under"):
        p["ratio"] = trial.suggest_float(f"{p['rebalancing']}_ratio", 0.01, 0.3, log=True)
    if p["rebalancing"] == "over_under":
        p["under_ratio"] = p["ratio"] * trial.suggest_float("under_factor", 1.0, 10.0, log=True)
    return p


def _xgb_params(p: dict, scale_pos_weight: float, seed: int) -> dict:
    """Booster parameters; ``$FRAUDLAB_THREADS`` caps XGBoost's threads (set per worker
    process when several share the machine)."""
    keys = ("max_depth", "learning_rate", "min_child_weight", "subsample", "colsample_bytree",
            "reg_lambda", "reg_alpha", "gamma", "max_delta_step", "max_bin")
    return {**{k: p[k] for k in keys}, "objective": "binary:logistic", "eval_metric": "aucpr",
            "tree_method": "hist", "scale_pos_weight": scale_pos_weight, "seed": seed,
            "nthread": int(os.environ.get("FRAUDLAB_THREADS", 0)) or None}


def _categorical_positions(spec: dict) -> list[int]:
    return [i for i, f in enumerate(spec["features"]) if f in spec.get("categories", {})]


ROW_PRESERVING = ("none", "scale_pos_weight")
"""Strategies that leave the training rows as they are, so their matrices can be reused."""


def build_matrices(params: dict, train: Window, spec: dict, *, seed: int,
                   valid: Window | None = None):
    """Rebalance the training rows (only them) and quantise them for XGBoost.

    Returns
    -------
    dtrain, dvalid, scale_pos_weight
        ``dvalid`` is None without a validation window; it shares ``dtrain``'s bins.
    """
    import xgboost as xgb

    X, y, w, spw = rebalance_weighted(
        train.X, train.y, train.w, params["rebalancing"], ratio=params.get("ratio"),
        under_ratio=params.get("under_ratio"), categorical=_categorical_positions(spec),
        random_state=seed)
    dtrain = xgb.QuantileDMatrix(X, y, weight=w, max_bin=params["max_bin"],
                                 feature_names=spec["features"])
    dvalid = None
    if valid is not None:
        X, y, w = valid.X, valid.y, None
        if valid.sample is not None and not (valid.sample == 1).all():
            # Early stopping predicts the validation rows after every round: on a sampled
            # dataset, on the sample (weighted, so that the average precision it tracks
            # estimates the whole window's). The fold's score still takes every row.
            kept = valid.sample > 0
            X, y, w = X[kept], y[kept], valid.sample[kept]
        dvalid = xgb.QuantileDMatrix(X, y, weight=w, ref=dtrain, max_bin=params["max_bin"],
                                     feature_names=spec["features"])
    return dtrain, dvalid, spw


def fit_booster(params: dict, train: Window, spec: dict, *, seed: int, n_rounds: int,
                valid: Window | None = None, early_stopping_rounds: int | None = None,
                callbacks: list | None = None, matrices=None):
    """Fit one XGBoost booster on a (rebalanced) training window.

    Parameters
    ----------
    matrices : tuple, optional
        ``(dtrain, dvalid, scale_pos_weight)`` from :func:`build_matrices`, reused when the
        training rows and ``max_bin`` are those of an earlier fit.

    Returns
    -------
    booster : xgboost.Booster
        With ``best_iteration`` set when early stopping ran.
    """
    import xgboost as xgb

    dtrain, dvalid, spw = matrices or build_matrices(params, train, spec, seed=seed, valid=valid)
    evals, cbs = [], list(callbacks or [])
    if dvalid is not None:
        evals = [(dvalid, "valid")]
        if early_stopping_rounds:
            cbs.append(xgb.callback.EarlyStopping(rounds=early_stopping_rounds, metric_name="aucpr",
                                                  data_name="valid", maximize=True))
    xp = {k: v for k, v in _xgb_params(params, spw, seed).items() if v is not None}
    return xgb.train(xp, dtrain, num_boost_round=n_rounds, evals=evals, callbacks=cbs,
                     verbose_eval=False)


def fold_scorer(config: TrainingConfig, evaluation: EvaluationConfig | None = None
                ) -> Callable[[Window, np.ndarray], float]:
    """The configured objective as ``score(window, predictions) -> float`` (higher is
    better; the expected cost is returned negated, per fraud)."""
    evaluation = evaluation or EvaluationConfig()
    if config.objective == "average_precision":
        return lambda w, p: average_precision_score(w.y, p)
    if config.objective == "recall_at_fpr":
        return lambda w, p: recall_at_fpr_score(w.y, p, config.objective_fpr)
    if config.objective == "account_precision_at_k":
        return lambda w, p: account_precision_at_k_score(
            w.y, p, w.meta["account_id"], w.meta["ts"], config.objective_k)

    def negative_cost(w: Window, p: np.ndarray) -> float:
        # The cost at the best blocking threshold of this fold, per fraud: blocking the
        # top-i rows costs the false blocks among them plus the fraud amount left below.
        if "amount" not in w.meta:
            raise ValueError("the expected_cost objective needs the 'amount' feature")
        order = np.argsort(-p, kind="stable")
        y, amt = w.y[order].astype(bool), w.meta["amount"].to_numpy(float)[order]
        lost = evaluation.missed_fraud_cost_share * (amt[y].sum() - np.concatenate([[0], np.cumsum(amt * y)]))
        false = evaluation.false_block_cost * np.concatenate([[0], np.cumsum(~y)])
        return -float((lost + false).min() / max(w.frauds, 1))

    return negative_cost


def _sparse_report(trial, every: int):
    """An XGBoost callback reporting the validation average precision to the pruner every
    ``every`` rounds (not every round: each report is a storage write)."""
    import optuna
    import xgboost as xgb

    class SparseReport(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if (epoch + 1) % every:
                return False
            trial.report(float(evals_log["valid"]["aucpr"][-1]), epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at round {epoch + 1}")
            return False

    return SparseReport()


@dataclass
class Objective:
    """The study's objective: mean fold score of a trial's parameters.

    Only the first fold reports intermediate values (every ``report_every`` rounds), so
    that the pruner compares like with like. Quantised fold matrices are kept across trials
    for the strategies that do not change the rows (``reuse_matrices``).
    """

    protocol: Protocol
    config: TrainingConfig
    evaluation: EvaluationConfig | None = None
    reuse_matrices: bool = True
    _matrices: dict = field(default_factory=dict, repr=False)

    def matrices(self, k: int, params: dict, seed: int):
        """Fold ``k``'s quantised matrices: built once per fold and ``max_bin`` for the
        strategies that keep the rows, else built for this trial."""
        fold = self.protocol.folds[k]
        if not (self.reuse_matrices and params["rebalancing"] in ROW_PRESERVING):
            return build_matrices(params, fold.train, self.protocol.spec, seed=seed, valid=fold.valid)
        key = (k, params["max_bin"])
        if key not in self._matrices:
            base = {**params, "rebalancing": "none"}
            self._matrices[key] = build_matrices(base, fold.train, self.protocol.spec, seed=seed,
                                                 valid=fold.valid)[:2]
        dtrain, dvalid = self._matrices[key]
        t = fold.train  # a row-preserving strategy returns the rows as they are
        spw = rebalance_weighted(t.X, t.y, t.w, params["rebalancing"])[3]
        return dtrain, dvalid, spw

    def __call__(self, trial) -> float:
        params = suggest_params(trial, self.config)
        score = fold_scorer(self.config, self.evaluation)
        seed = self.config.seed + trial.number
        scores, rounds = [], []
        for k, fold in enumerate(self.protocol.folds):
            cbs = [_sparse_report(trial, self.config.report_every)] if k == 0 else []
            booster = fit_booster(params, fold.train, self.protocol.spec, seed=seed,
                                  n_rounds=self.config.max_rounds, valid=fold.valid,
                                  early_stopping_rounds=self.config.early_stopping_rounds,
                                  callbacks=cbs, matrices=self.matrices(k, params, seed))
            best = getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1)
            pred = booster.inplace_predict(fold.valid.X, iteration_range=(0, best + 1))
            scores.append(score(fold.valid, pred))
            rounds.append(best + 1)
        trial.set_user_attr("fold_scores", [float(s) for s in scores])
        trial.set_user_attr("fold_rounds", rounds)
        trial.set_user_attr("worker_pid", os.getpid())
        return float(np.mean(scores))


def params_of(trial) -> dict:
    """A finished trial's parameters in the form :func:`fit_booster` takes, with the
    number of rounds for a refit (the mean early-stopped rounds of its folds)."""
    p = dict(trial.params)
    strategy = p["rebalancing"]
    if f"{strategy}_ratio" in p:
        p["ratio"] = p.pop(f"{strategy}_ratio")
    if "under_factor" in p:
        p["under_ratio"] = p["ratio"] * p.pop("under_factor")
    p["n_rounds"] = int(round(np.mean(trial.user_attrs["fold_rounds"])))
    return p
