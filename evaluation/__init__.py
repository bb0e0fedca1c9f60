"""Evaluation: temporal splits, metrics, calibration, decision tiers, explanations and reports."""

from ._calibration import ScoreCalibrator
from ._config import EvaluationConfig
from ._metrics import (
    account_precision_at_k_score,
    average_precision_score,
    bootstrap_interval,
    brier_score_loss,
    calibration_table,
    expected_cost_loss,
    precision_at_k_score,
    recall_at_fpr_score,
    roc_auc_score,
)
from ._splits import TemporalSplit, labels_known_at, temporal_holdout

__all__ = [
    "EvaluationConfig",
    "ScoreCalibrator",
    "TemporalSplit",
    "account_precision_at_k_score",
    "average_precision_score",
    "bootstrap_interval",
    "brier_score_loss",
    "calibration_table",
    "expected_cost_loss",
    "labels_known_at",
    "precision_at_k_score",
    "recall_at_fpr_score",
    "roc_auc_score",
    "temporal_holdout",
]
