"""The canonical raw-data schema: one :class:`TableSchema` per source.

Everything that checks, loads or generates raw data reads its column names, kinds,
nullability and enumerations from here, so the simulator, the loaders and the
great-expectations suites cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["string", "timestamp", "float", "int", "bool", "category"]

CHANNELS = ("app", "mini_program", "h5", "web", "pos_qr", "pos_card")
TX_TYPES = ("payment", "transfer", "withdrawal", "top_up", "refund")
EVENT_TYPES = (
    "login",
    "login_failed",
    "password_reset",
    "device_bind",
    "otp_failed",
    "profile_change",
)
ENTITY_TYPES = ("account", "device", "ip", "card", "merchant", "counterparty")
LABEL_SOURCES = ("chargeback", "customer_report", "manual_review", "bank_report", "internal")
BLACKLIST_SOURCES = ("regulator", "card_scheme", "bank", "internal", "third_party")


@dataclass(frozen=True)
class Column:
    """One canonical column.

    Parameters
    ----------
    name : str
        Canonical column name.
    kind : {"string", "timestamp", "float", "int", "bool"}
        Logical type; timestamps are timezone-aware UTC.
    nullable : bool
        Whether missing values are allowed.
    values : tuple of str, optional
        The allowed values of an enumeration.
    min_value, max_value : float, optional
        Inclusive bounds for numeric columns.
    unique : bool
        Whether values must be unique in the table.
    description : str
        What the column means, for reports and docs.
    """

    name: str
    kind: Kind
    nullable: bool = False
    values: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    unique: bool = False
    description: str = ""


@dataclass(frozen=True)
class TableSchema:
    """A canonical raw table: its columns and the column that holds its event time."""

    name: str
    columns: tuple[Column, ...]
    time_columns: tuple[str, ...] = ()
    required: bool = False
    description: str = ""
    key: str | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


TRANSACTIONS = TableSchema(
    name="transactions",
    required=True,
    key="tx_id",
    time_columns=("ts",),
    description="One row per payment attempt.",
    columns=(
        Column("tx_id", "string", unique=True, description="Unique transaction id."),
        Column("ts", "timestamp", description="When the transaction happened (UTC)."),
        Column("account_id", "string", description="The paying account."),
        Column("counterparty_id", "string", nullable=True, description="The payee account of a transfer."),
        Column("merchant_id", "string", nullable=True, description="The merchant or terminal."),
        Column("amount", "float", min_value=0.0, description="Amount; 0 for card verifications."),
        Column("currency", "string", description="ISO 4217 currency code."),
        Column("channel", "string", values=CHANNELS, description="Where the payment was made."),
        Column("tx_type", "string", values=TX_TYPES, description="Kind of transaction."),
        Column("device_id", "string", nullable=True, description="Payer device; null for card-present."),
        Column("ip", "string", nullable=True, description="Payer IP address; null for card-present."),
        Column("lat", "float", nullable=True, min_value=-90.0, max_value=90.0, description="Latitude."),
        Column("lon", "float", nullable=True, min_value=-180.0, max_value=180.0, description="Longitude."),
    ),
)

LABELS = TableSchema(
    name="labels",
    required=False,
    key="tx_id",
    time_columns=("reported_at",),
    description="Fraud labels, arriving late from their sources.",
    columns=(
        Column("tx_id", "string", unique=True, description="The labelled transaction."),
        Column("is_fraud", "bool", description="True for fraud, False for a cleared review."),
        Column("reported_at", "timestamp", description="When the label became known (UTC)."),
        Column("source", "string", values=LABEL_SOURCES, description="Where the label came from."),
        Column("fraud_type", "string", nullable=True, description="The fraud scenario, if known."),
    ),
)

EVENTS = TableSchema(
    name="events",
    key="event_id",
    time_columns=("ts",),
    description="Account behaviour: logins, failures, resets, device binds.",
    columns=(
        Column("event_id", "string", unique=True, description="Unique event id."),
        Column("ts", "timestamp", description="When the event happened (UTC)."),
        Column("account_id", "string", description="The account."),
        Column("event_type", "string", values=EVENT_TYPES, description="What happened."),
        Column("device_id", "string", nullable=True, description="Device used."),
        Column("ip", "string", nullable=True, description="IP address used."),
        Column("lat", "float", nullable=True, min_value=-90.0, max_value=90.0, description="Latitude."),
        Column("lon", "float", nullable=True, min_value=-180.0, max_value=180.0, description="Longitude."),
        Column("is_emulator", "bool", description="The device reported an emulator."),
        Column("is_rooted", "bool", description="The device reported root/jailbreak."),
    ),
)

BLACKLIST = TableSchema(
    name="blacklist",
    time_columns=("listed_at", "delisted_at"),
    description="Listed entities with their listing period.",
    columns=(
        Column("entity_type", "string", values=ENTITY_TYPES, description="What kind of entity."),
        Column("entity_value", "string", description="The listed identifier."),
        Column("listed_at", "timestamp", description="Start of the listing (UTC)."),
        Column("delisted_at", "timestamp", nullable=True, description="End of the listing, if any."),
        Column("source", "string", values=BLACKLIST_SOURCES, description="Who listed it."),
        Column("reason", "string", nullable=True, description="Why it was listed."),
    ),
)

ACCOUNTS = TableSchema(
    name="accounts",
    key="account_id",
    time_columns=("created_at",),
    description="Account master data.",
    columns=(
        Column("account_id", "string", unique=True, description="Account id."),
        Column("created_at", "timestamp", nullable=True,
               description="Account opening time (UTC); missing when unknown (the account "
               "is then known from the start, and its age is missing)."),
        Column("home_lat", "float", nullable=True, min_value=-90.0, max_value=90.0, description="Home latitude."),
        Column("home_lon", "float", nullable=True, min_value=-180.0, max_value=180.0, description="Home longitude."),
        Column("kyc_level", "int", nullable=True, min_value=0, max_value=3,
               description="KYC level 0 (none) to 3 (full); missing when unknown."),
    ),
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s for s in (TRANSACTIONS, LABELS, EVENTS, BLACKLIST, ACCOUNTS)
}
"""Every canonical table by name, in dependency order (transactions first)."""
