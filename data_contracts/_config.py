"""Configuration owned by the data-contracts stage."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._schema import BLACKLIST_SOURCES, CHANNELS, ENTITY_TYPES, EVENT_TYPES, LABEL_SOURCES, TX_TYPES


class ContractsConfig(BaseModel):
    """Bounds and enumerations the raw-data contracts enforce."""

    model_config = ConfigDict(extra="forbid")

    earliest: dt.date = Field(
        dt.date(2000, 1, 1),
        description="No event, transaction or label may be older than this (UTC). "
        "Listings and account openings may be older, down to 1970.",
    )
    max_amount: float = Field(
        10_000_000.0, gt=0, description="Largest plausible single amount, in currency units."
    )
    channels: list[str] = Field(list(CHANNELS), description="Allowed transactions.channel values.")
    tx_types: list[str] = Field(list(TX_TYPES), description="Allowed transactions.tx_type values.")
    event_types: list[str] = Field(list(EVENT_TYPES), description="Allowed events.event_type values.")
    entity_types: list[str] = Field(list(ENTITY_TYPES), description="Allowed blacklist.entity_type values.")
    label_sources: list[str] = Field(list(LABEL_SOURCES), description="Allowed labels.source values.")
    blacklist_sources: list[str] = Field(
        list(BLACKLIST_SOURCES), description="Allowed blacklist.source values."
    )
    after_as_of: Literal["ignore", "quarantine"] = Field(
        "ignore",
        description="Rows dated after the as-of time of a build, training or refresh "
        "(transactions and events at or after it, labels reported, listings made or accounts "
        "opened after it): 'ignore' validates them like every row, then leaves them out of "
        "that period and logs how many (replaying history); 'quarantine' fails the contract "
        "on them, for data that claims to be current. `contracts check` always quarantines.",
    )
    report_dir: str = Field(
        "reports/contracts",
        description="Where contract results (contracts.json) and the quarantine "
        "(quarantine.parquet) are written, relative to paths.root.",
    )

    def enumeration(self, table: str, column: str) -> list[str] | None:
        """The allowed values of ``table.column``, or None if it is not an enumeration."""
        return {
            ("transactions", "channel"): self.channels,
            ("transactions", "tx_type"): self.tx_types,
            ("events", "event_type"): self.event_types,
            ("blacklist", "entity_type"): self.entity_types,
            ("labels", "source"): self.label_sources,
            ("blacklist", "source"): self.blacklist_sources,
        }.get((table, column))
