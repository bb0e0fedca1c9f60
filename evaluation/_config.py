"""Configuration owned by the evaluation stage: what errors cost and what reviewers can do."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvaluationConfig(BaseModel):
    """Cost figures and decision-tier targets used to evaluate a model."""

    model_config = ConfigDict(extra="forbid")

    false_block_cost: float = Field(
        15.0, ge=0, description="Cost of blocking a legitimate payment (friction, support).")
    review_cost: float = Field(
        4.0, ge=0, description="Cost of one manual review by an analyst.")
    missed_fraud_cost_share: float = Field(
        1.0, ge=0, description="Share of a missed fraud's amount that is lost.")
    block_precision_target: float = Field(
        0.9, gt=0, le=1, description="Precision the automatic-block tier must reach.")
    review_capacity_per_day: int = Field(
        200, ge=0, description="Manual reviews the analyst team can do per day.")
    currency: str | None = Field(
        None, description="Currency written after amounts in reports (e.g. CNY); default: "
        "the most common currency of the evaluated payments.")
