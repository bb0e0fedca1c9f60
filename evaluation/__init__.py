"""Evaluation: temporal splits, metrics, decision tiers, explanations and reports."""

from ._config import EvaluationConfig

__all__ = ["EvaluationConfig"]
