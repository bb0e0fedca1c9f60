"""Evaluation: temporal splits, metrics, calibration, decision tiers, explanations and reports."""

from ._calibration import ScoreCalibrator
from ._changes import PeriodChanges, compare_periods
from ._compare import MEASURES, OperatingComparison, compare_operating_points, operating_counts
from ._config import EvaluationConfig
from ._drift import attribution_shift, feature_drift, missed_fraud_patterns, psi
from ._explain import (
    contributions,
    global_importance,
    reason_codes,
    row_reasons,
    stratified_sample,
    usual_values,
)
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
from ._report import Evaluation, Scorer, evaluate, render_backtest, render_report
from ._splits import TemporalSplit, known_fraud_accounts, labels_known_at, temporal_holdout
from ._tiers import choose_thresholds, tier_of, tier_table, tier_threshold

__all__ = [
    "MEASURES",
    "Evaluation",
    "OperatingComparison",
    "PeriodChanges",
    "EvaluationConfig",
    "Scorer",
    "ScoreCalibrator",
    "TemporalSplit",
    "account_precision_at_k_score",
    "attribution_shift",
    "average_precision_score",
    "bootstrap_interval",
    "choose_thresholds",
    "compare_operating_points",
    "compare_periods",
    "contributions",
    "evaluate",
    "feature_drift",
    "global_importance",
    "known_fraud_accounts",
    "missed_fraud_patterns",
    "operating_counts",
    "reason_codes",
    "row_reasons",
    "render_backtest",
    "render_report",
    "stratified_sample",
    "tier_of",
    "tier_table",
    "tier_threshold",
    "usual_values",
    "brier_score_loss",
    "calibration_table",
    "expected_cost_loss",
    "labels_known_at",
    "precision_at_k_score",
    "psi",
    "recall_at_fpr_score",
    "roc_auc_score",
    "temporal_holdout",
]
