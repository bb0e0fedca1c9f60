"""The great-expectations suites, built in code from the canonical schema."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._config import ContractsConfig
from ._schema import TableSchema


def kind_of(dtype) -> str | None:
    """The logical kind of a pandas dtype, or None for anything else (e.g. object)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamp"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    return None


# Kinds a column may have for each canonical kind (an int column can hold floats' values).
ACCEPTED = {"float": {"float", "int"}, "int": {"int"}, "string": {"string"},
            "timestamp": {"timestamp"}, "bool": {"bool"}, "category": {"category"}}


# Timestamps that may lie long before ``earliest`` (listings, account openings).
_OLD_OK = {("blacklist", "listed_at"), ("blacklist", "delisted_at"), ("accounts", "created_at")}


@dataclass(frozen=True)
class Rule:
    """One expectation with the words fraudlab uses for it."""

    rule: str
    expectation: object
    column: str | None
    reason: str = ""
    level: str = "row"

    def describe_failure(self, frame: pd.DataFrame) -> str:
        e = self.expectation
        kind = e.expectation_type
        if kind == "expect_table_columns_to_match_set":
            want = set(e.column_set)
            have = set(frame.columns)
            parts = []
            if want - have:
                parts.append(f"missing column(s) {sorted(want - have)}")
            if have - want:
                parts.append(f"unexpected column(s) {sorted(have - want)}")
            return "; ".join(parts) or "column set differs"
        if kind == "expect_table_row_count_to_be_between":
            return "the table has no rows"
        return f"fails '{self.rule}'"


def table_rules(schema: TableSchema, config: ContractsConfig) -> list[Rule]:
    """Rules about the table as a whole: exact column set and at least one row.

    Column types are checked next to these, from the dtypes (see :func:`kind_of`): GX's
    type expectations do not recognise pandas 3's string dtype.
    """
    import great_expectations.expectations as gxe

    rules = [
        Rule("exact column set", gxe.ExpectTableColumnsToMatchSet(
            column_set=schema.column_names, exact_match=True), None),
        Rule("at least one row", gxe.ExpectTableRowCountToBeBetween(min_value=1), None),
    ]
    return rules


def row_rules(schema: TableSchema, config: ContractsConfig, as_of: pd.Timestamp | None, *,
              labels_have_refs: bool = False) -> list[Rule]:
    """Rules that single out rows: keys, uniqueness, enumerations, ranges, time bounds.

    Without ``as_of``, time columns have no upper bound (rows after an as-of time are then
    the caller's to count and leave out).
    """
    import great_expectations.expectations as gxe

    earliest = pd.Timestamp(config.earliest, tz="UTC")
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    rules: list[Rule] = []
    for c in schema.columns:
        if not c.nullable:
            rules.append(Rule(f"{c.name} is not null", gxe.ExpectColumnValuesToNotBeNull(
                column=c.name), c.name, f"{c.name} is missing"))
        if c.unique:
            rules.append(Rule(f"{c.name} is unique", gxe.ExpectColumnValuesToBeUnique(
                column=c.name), c.name, f"{c.name} is duplicated"))
        values = config.enumeration(schema.name, c.name)
        if values is None and c.values:  # an extra column declared with its categories
            values = list(c.values)
        if values is not None:
            rules.append(Rule(f"{c.name} in {{{', '.join(values)}}}",
                              gxe.ExpectColumnValuesToBeInSet(column=c.name, value_set=values),
                              c.name, f"{c.name} is not one of the allowed values"))
        if c.kind in ("float", "int") and (c.min_value is not None or c.max_value is not None):
            hi = c.max_value
            if schema.name == "transactions" and c.name == "amount":
                hi = config.max_amount
            bounds = " and ".join(x for x in (
                f"{c.name} >= {c.min_value:g}" if c.min_value is not None else "",
                f"{c.name} <= {hi:g}" if hi is not None else "") if x)
            rules.append(Rule(bounds, gxe.ExpectColumnValuesToBeBetween(
                column=c.name, min_value=c.min_value, max_value=hi), c.name,
                f"{c.name} out of range ({bounds})"))
        if c.kind == "timestamp":
            lo = epoch if (schema.name, c.name) in _OLD_OK else earliest
            # A delisting may be planned for the future; nothing else may be.
            hi = None if c.name == "delisted_at" else as_of
            text = f"{c.name} between {lo.date()} and " + (
                f"as-of {as_of.isoformat()}" if hi is not None else "any time")
            rules.append(Rule(text, gxe.ExpectColumnValuesToBeBetween(
                column=c.name, min_value=lo, max_value=hi), c.name,
                f"{c.name} outside {lo.date()} .. " + ("as-of time" if hi is not None else "")))
    if schema.name == "transactions":
        rules.append(Rule("currency is a 3-letter code", gxe.ExpectColumnValuesToMatchRegex(
            column="currency", regex=r"^[A-Z]{3}$"), "currency",
            "currency is not a 3-letter ISO code"))
    if schema.name == "blacklist":
        rules.append(Rule("delisted_at >= listed_at", gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="delisted_at", column_B="listed_at", or_equal=True,
            ignore_row_if="either_value_is_missing"), "delisted_at",
            "delisted before it was listed"))
    if schema.name == "labels" and labels_have_refs:
        rules.append(Rule("tx_id refers to a known transaction", gxe.ExpectColumnValuesToBeInSet(
            column="_tx_known", value_set=[True]), "tx_id",
            "label for an unknown transaction"))
        rules.append(Rule("reported_at >= the transaction's ts",
                          gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                              column_A="reported_at", column_B="_tx_ts", or_equal=True,
                              ignore_row_if="either_value_is_missing"), "reported_at",
                          "label reported before its transaction happened"))
    return rules
