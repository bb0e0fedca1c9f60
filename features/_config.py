"""Configuration owned by the features stage: the raw-data sources and the features."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fraudlab.data_contracts import parse_duration


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


TableName = Literal["transactions", "labels", "events", "blacklist", "accounts"]


class SourcesConfig(BaseModel):
    """Where the raw tables come from and how their columns map onto the canonical ones."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "parquet", "csv", "duckdb", "sql"] = Field(
        "auto",
        description="File format; 'auto' picks <table>.parquet, then <table>.csv in the raw "
        "directory. 'duckdb' reads tables from a DuckDB file, 'sql' from a SQLAlchemy URL.",
    )
    sql_url: str | None = Field(
        None,
        description="SQLAlchemy URL or DuckDB file path for the 'sql'/'duckdb' formats. "
        "Credentials belong in an environment variable: write ${VAR} and it is expanded.",
    )
    tables: dict[str, str] = Field(
        default_factory=dict,
        description="File or SQL table name per canonical table, when not the canonical name.",
    )
    column_map: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Per table, canonical column name -> your column name, e.g. "
        "{transactions: {tx_id: TransactionID, ts: TransactionDT}}.",
    )
    fill_missing: dict[str, dict[str, str | float | int | bool | None]] = Field(
        default_factory=dict,
        description="Per table, a constant for canonical columns your data does not have "
        "(null allowed where the column is nullable), e.g. {transactions: {currency: EUR, "
        "channel: web, tx_type: payment, device_id: null, ip: null}}. Only columns named here "
        "are filled; any other missing column fails the contract.",
    )
    default_label_delay: str = Field(
        "14d",
        description="Label delay assumed when labels have no reported_at (for example a "
        "single is_fraud column on the transactions).",
    )
    naive_timezone: str = Field(
        "UTC", description="Time zone of timestamps that carry none; all are converted to UTC."
    )
    date_format: str | None = Field(
        None,
        description="strftime format of text timestamps (CSV), e.g. '%d/%m/%Y %H:%M'. "
        "Without it, text timestamps must be ISO 8601 (or spelled out, like 'Mar 5 2026'); "
        "numeric day/month dates such as 05/03/2026 are refused as ambiguous.",
    )
    csv_separator: str | None = Field(
        None,
        description="Field separator of CSV files; default: read from the header line "
        "(',', ';', tab or '|').",
    )

    _check = field_validator("default_label_delay")(_check_duration)

    @field_validator("naive_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"sources.naive_timezone: unknown time zone {value!r} "
                             "(an IANA name such as 'UTC' or 'Asia/Shanghai')") from None
        return value

    @field_validator("tables", "column_map", "fill_missing")
    @classmethod
    def _known_tables(cls, value: dict, info) -> dict:
        import difflib

        names = list(TableName.__args__)
        for key in value:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"sources.{info.field_name}: unknown table {key!r}{hint}; "
                                 f"the tables are {names}")
        return value


class FeaturesConfig(BaseModel):
    """Parameters of the feature definitions and of the labeled dataset."""

    model_config = ConfigDict(extra="forbid")

    small_amount: float = Field(
        50.0, gt=0, description="Amounts below this count as 'small' (card testing, bursts).")
    region_cell_deg: float = Field(
        1.0, gt=0, description="Size in degrees of the grid cells that define a 'region'.")
    far_from_home_km: float = Field(
        300.0, gt=0, description="Distance from home beyond which a payment is 'far'.")
    large_amount_ratio: float = Field(
        5.0, gt=1, description="An amount this many times the 30-day average is 'large'.")
    night_end_hour: int = Field(
        6, ge=1, le=12, description="Night runs from midnight to this hour (UTC).")
    label_maturity: str = Field(
        "30d", description="Transactions younger than this at the as-of time are flagged "
        "is_mature = False: their fraud labels may not have arrived yet. In a full "
        "configuration, at least a configured sources.default_label_delay (a longer delay "
        "raises the default; a shorter explicit value is refused).")
    fraud_rate_min: float = Field(
        0.0001, ge=0, le=1, description="Lowest plausible fraud rate among mature rows; "
        "below it the dataset contract fails (labels probably missing).")
    fraud_rate_max: float = Field(
        0.2, ge=0, le=1, description="Highest plausible fraud rate among mature rows.")
    builtin: bool = Field(
        True, description="Start from the built-in feature set (features/builtin.yaml); "
        "false to use only your own definitions.")
    definitions: list[str] = Field(
        default_factory=list, description="Features files (YAML) whose declarations are "
        "added to the set, in order; see docs/declaring-features.md.")
    include: list[str] = Field(
        default_factory=list, description="Keep only these features or groups (empty: all).")
    exclude: list[str] = Field(
        default_factory=list, description="Leave out these features or groups, e.g. for an "
        "ablation.")
    params: dict[str, float] = Field(
        default_factory=dict, description="Named numbers your declarations' expressions may "
        "read, e.g. {high_amount: 2000} for where: \"amount > high_amount\".")

    _check = field_validator("label_maturity")(_check_duration)
