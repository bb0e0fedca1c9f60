"""Configuration of the simulated world."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class SimulationConfig(BaseModel):
    """The built-in simulated payments world (``fraudlab simulate``)."""

    model_config = ConfigDict(extra="forbid")

    accounts: int = Field(20_000, ge=10, description="Number of regular customer accounts.")
    days: int = Field(120, ge=1, description="Length of the simulated period in days.")
    seed: int = Field(7, description="Random seed; the same seed gives byte-identical files.")
    start: dt.date = Field(dt.date(2026, 1, 1), description="First day of the period (UTC).")
    history_days: int = Field(
        180, ge=0,
        description="Days of history before `start`, written as rows dated before it: "
        "customers, their devices, habits and the established fraud already exist, so the "
        "first day of the period sees settled histories. Account lifecycle events (device "
        "binds, password resets, profile changes) go back to each account's opening.",
    )
    emerging_from: dt.date | None = Field(
        None,
        description="Day the emerging fraud pattern (a device farm in the mini_program "
        "channel) starts; default: 60% into the period. Set it after the period to switch it off.",
    )
    emerging_share: float = Field(
        0.22, gt=0, lt=1, description="Share of fraud transactions the emerging pattern "
        "accounts for while it is active.")
    tx_per_account_day: float = Field(
        0.45, gt=0, description="Mean legitimate transactions per account and day."
    )
    fraud_rate: float = Field(
        0.004, gt=0, lt=0.2, description="Target share of fraudulent transactions."
    )
    unlabeled_fraud_share: float = Field(
        0.1, ge=0, le=1, description="Share of fraud incidents that are never reported."
    )
    noisy_report_rate: float = Field(
        0.0003, ge=0, le=0.05,
        description="Share of legitimate transactions that get a (wrong) fraud report.",
    )
    review_label_rate: float = Field(
        0.002, ge=0, le=0.5,
        description="Share of legitimate transactions reviewed and labelled not-fraud.",
    )

    def emerging_start(self) -> dt.date:
        """The day the emerging pattern starts (resolving the default)."""
        if self.emerging_from is not None:
            return self.emerging_from
        return self.start + dt.timedelta(days=int(round(self.days * 0.6)))
