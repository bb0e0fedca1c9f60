"""Evaluation: temporal splits, metrics, decision tiers, explanations and reports."""

from ._config import EvaluationConfig
from ._splits import TemporalSplit, labels_known_at, temporal_holdout

__all__ = ["EvaluationConfig", "TemporalSplit", "labels_known_at", "temporal_holdout"]
