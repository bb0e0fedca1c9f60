"""Data contracts: the canonical schema and great-expectations suites for every raw source.

This is the lowest stage: it imports no other fraudlab stage.
"""

from ._config import ContractsConfig
from ._schema import (
    ACCOUNTS,
    BLACKLIST,
    BLACKLIST_SOURCES,
    CHANNELS,
    ENTITY_TYPES,
    EVENT_TYPES,
    EVENTS,
    LABEL_SOURCES,
    LABELS,
    SCHEMAS,
    TRANSACTIONS,
    TX_TYPES,
    Column,
    TableSchema,
)
from ._suites import Rule
from ._time import known_mask, parse_duration, to_utc
from ._validate import (
    ContractReport,
    ParseFailure,
    RawTable,
    RuleResult,
    fraud_rate_result,
    json_safe,
    quarantine_frame,
    validate_dataset,
    validate_raw,
    validate_table,
    write_report,
)

__all__ = [
    "ACCOUNTS",
    "BLACKLIST",
    "BLACKLIST_SOURCES",
    "CHANNELS",
    "ENTITY_TYPES",
    "EVENTS",
    "EVENT_TYPES",
    "LABELS",
    "LABEL_SOURCES",
    "SCHEMAS",
    "TRANSACTIONS",
    "TX_TYPES",
    "Column",
    "ContractReport",
    "ContractsConfig",
    "ParseFailure",
    "RawTable",
    "Rule",
    "RuleResult",
    "TableSchema",
    "fraud_rate_result",
    "json_safe",
    "known_mask",
    "parse_duration",
    "quarantine_frame",
    "to_utc",
    "validate_dataset",
    "validate_raw",
    "validate_table",
    "write_report",
]
