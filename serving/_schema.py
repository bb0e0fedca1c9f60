"""Request bodies of the risk service, generated from the canonical schema.

Each table's pydantic model has the canonical columns (their kinds, nullability, ranges
and enumerations, from :mod:`fraudlab.data_contracts`) plus the extra columns the model's
declarations name, and refuses anything else: the contracts and the service cannot drift
apart, and a request that would fail the contracts never enters the state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model, field_validator

from fraudlab.data_contracts import SCHEMAS

_KINDS: dict[str, Any] = {"string": str, "timestamp": AwareDatetime, "float": float, "int": int,
                          "bool": bool, "category": str}


def _field(kind: str, nullable: bool, values=(), lo=None, hi=None, description: str = ""):
    typ = Literal[tuple(values)] if values else _KINDS[kind]
    if nullable:
        typ = typ | None
    extra = {}
    if kind == "float":
        extra["allow_inf_nan"] = False
    if lo is not None:
        extra["ge"] = lo
    if hi is not None:
        extra["le"] = hi
    if kind == "string" and not values:
        extra["min_length"] = 1
        extra["max_length"] = 256
    default = None if nullable else ...
    return (typ, Field(default, description=description, **extra))


def row_model(table: str, extra: Mapping | None = None) -> type[BaseModel]:
    """The pydantic model of one row of ``table``.

    Parameters
    ----------
    table : str
        A canonical table name.
    extra : mapping of str to ColumnSpec, optional
        The declared extra columns of that table.
    """
    schema = SCHEMAS[table]
    fields = {c.name: _field(c.kind, c.nullable, c.values or (), c.min_value, c.max_value,
                             c.description) for c in schema.columns}
    for name, spec in (extra or {}).items():
        fields[name] = _field(spec.kind, spec.nullable, spec.categories, None, None,
                              spec.description)
    validators = {}
    times = [c.name for c in schema.columns if c.kind == "timestamp"]
    if times:
        validators["_utc"] = field_validator(*times)(_to_utc)
    return create_model(f"{table.capitalize()}Row", __config__=ConfigDict(extra="forbid"),
                        __validators__=validators, **fields)


def _to_utc(cls, value):
    return None if value is None else value.astimezone(dt.UTC)


class Reason(BaseModel):
    """One reason a payment scored high: a feature's contribution in the catalog's words."""

    feature: str
    contribution: float
    value: float | str | None
    usual: float | str | None
    text: str


class Decision(BaseModel):
    """The service's answer for one payment."""

    tx_id: str
    score: float
    tier: Literal["block", "review", "pass"]
    reasons: list[Reason]
    model_version: str
    features_version: str
    late: bool = Field(description="The payment is older than one already scored.")
    latency_ms: float


class Accepted(BaseModel):
    """The answer to a list of events, labels or listings."""

    accepted: int
    late: int
