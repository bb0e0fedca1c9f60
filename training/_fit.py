"""The final model: refit with the best parameters, calibrate, test on the unseen window."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraudlab.evaluation import (
    EvaluationConfig,
    ScoreCalibrator,
    account_precision_at_k_score,
    average_precision_score,
    brier_score_loss,
    calibration_table,
    choose_thresholds,
    recall_at_fpr_score,
    roc_auc_score,
)

from ._config import TrainingConfig
from ._protocol import Protocol
from ._search import fit_booster


def window_metrics(y: np.ndarray, proba: np.ndarray, meta: pd.DataFrame, *,
                   k: int = 100) -> dict[str, float]:
    """The headline metrics of calibrated probabilities on one window (``meta`` gives the
    accounts and times for account precision@k)."""
    y = np.asarray(y)
    out = {
        "average_precision_score": average_precision_score(y, proba),
        "roc_auc_score": roc_auc_score(y, proba),
        "recall_at_fpr_0.1pct_score": recall_at_fpr_score(y, proba, 0.001),
        "recall_at_fpr_1pct_score": recall_at_fpr_score(y, proba, 0.01),
        "brier_score_loss": brier_score_loss(y, proba),
        "rows": float(len(y)),
        "frauds": float(y.sum()),
    }
    if "account_id" in meta:
        out[f"account_precision_at_{k}_score"] = account_precision_at_k_score(
            y, proba, meta["account_id"], meta["ts"], k)
    return out


def recall_by_type(y: np.ndarray, proba: np.ndarray, meta: pd.DataFrame,
                   threshold: float) -> dict[str, float]:
    """Share of each fraud type's frauds scored at or above ``threshold`` (the review
    threshold: what the analysts get to see)."""
    if "fraud_type" not in meta:
        return {}
    frauds = pd.DataFrame({"type": meta["fraud_type"].to_numpy(), "hit": proba >= threshold})[
        np.asarray(y) == 1]
    return {str(k): float(v) for k, v in frauds.groupby("type")["hit"].mean().items()}


@dataclass
class FittedModel:
    """A refit, calibrated booster with its preprocessing spec and test results."""

    booster: object
    spec: dict
    params: dict
    test_metrics: dict
    calibration_metrics: dict
    reliability: pd.DataFrame
    type_recall: dict
    test_proba: np.ndarray = field(repr=False)

    def scorer(self):
        """The served model object (see ``_served.FraudModel``)."""
        from ._served import FraudModel

        return FraudModel().load(self.spec, self.booster)


def fit_final(protocol: Protocol, params: dict, config: TrainingConfig,
              evaluation: EvaluationConfig | None = None) -> FittedModel:
    """Refit on the refit window with ``params`` (``n_rounds`` included), calibrate on the
    calibration window, choose the decision tiers there, and measure on the test window.

    Nothing here looks at the test window before the model, its calibration and its tiers
    are fixed.
    """
    evaluation = evaluation or EvaluationConfig()
    booster = fit_booster(params, protocol.refit, protocol.spec, seed=config.seed,
                          n_rounds=int(params["n_rounds"]))
    margin = booster.inplace_predict(protocol.calibration.X, predict_type="margin")
    calibrator = ScoreCalibrator(config.calibration).fit(margin, protocol.calibration.y)
    cal_proba = calibrator.predict(margin)
    tiers = choose_thresholds(protocol.calibration.y, cal_proba, protocol.calibration.meta["ts"],
                              block_precision_target=evaluation.block_precision_target,
                              review_capacity_per_day=evaluation.review_capacity_per_day)
    tiers.update(target_precision=evaluation.block_precision_target,
                 review_capacity_per_day=evaluation.review_capacity_per_day)
    spec = {**protocol.spec, "calibration": calibrator.to_dict(), "tiers": tiers}
    cal = protocol.calibration
    cal_metrics = window_metrics(cal.y, cal_proba, cal.meta, k=config.objective_k)
    test_margin = booster.inplace_predict(protocol.test.X, predict_type="margin")
    proba = calibrator.predict(test_margin)
    return FittedModel(booster=booster, spec=spec, params=dict(params),
                       type_recall=recall_by_type(protocol.test.y, proba, protocol.test.meta,
                                                  tiers["review"]),
                       test_metrics=window_metrics(protocol.test.y, proba, protocol.test.meta,
                                                   k=config.objective_k),
                       calibration_metrics=cal_metrics,
                       reliability=calibration_table(protocol.test.y, proba),
                       test_proba=proba)
