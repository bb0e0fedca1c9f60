"""The feature catalog: every feature declared once, the way a risk analyst would say it.

The engine (``_engine.py``) computes each feature from its declaration: the entity it is
keyed on, the source table, the window, the aggregation, and whether the transaction being
scored counts itself. The descriptions are what reason codes quote to reviewers.

Window semantics: a window ``w`` at time ``t`` holds rows with ``t - w < time < t``; other
rows at exactly ``t`` are never "before" the transaction. ``include_current`` adds the
transaction being scored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from fraudlab.data_contracts import BLACKLIST_SOURCES, CHANNELS, TX_TYPES

WINDOWS = ("10min", "1h", "24h", "7d", "30d")

Agg = Literal[
    "count", "sum", "mean", "max", "nunique", "since_last", "since_first", "ratio_to_mean",
    "zscore", "seen_flag", "last_distance", "last_speed", "first_use", "fraud_reports",
    "fraud_rate", "blacklist_hit", "blacklist_days", "blacklist_source", "value", "seen_before",
]


@dataclass(frozen=True)
class Feature:
    """One feature's declaration.

    Parameters
    ----------
    name : str
        Column name in the labeled dataset.
    group : str
        Feature group (velocity, geography, time_channel, device_behaviour,
        counterparty_merchant, blacklist, account).
    description : str
        One line for a reviewer, with units; reason codes quote it.
    entity : str
        What the feature is keyed on: account, device, ip, counterparty, merchant, or a pair
        such as ``account+channel``; ``transaction`` for features of the row itself.
    source : str
        The table the aggregated rows come from.
    agg : str
        The aggregation (see ``Agg``).
    window : str, optional
        Time window such as ``"1h"``; None for all history before the transaction.
    include_current : bool
        Whether the transaction being scored counts in its own aggregate.
    of : str, optional
        The column aggregated (``amount``) or counted distinct (``counterparty_id``).
    where : str, optional
        A row filter: ``small`` (amount below ``features.small_amount``) or
        ``event_type=<type>`` / ``flag=<column>`` for behaviour events.
    unit : str
        Unit of the value, for reports.
    nullable : bool
        Whether the value may be missing (unknown entity, no history, no location).
    min_value, max_value : float, optional
        The range the dataset contract enforces.
    kind : {"float", "category"}
        Numeric, or a category (stored as pandas ``category``).
    categories : tuple of str
        The fixed categories of a category feature, so that its encoding never depends
        on which values a dataset happens to contain.
    """

    name: str
    group: str
    description: str
    entity: str
    source: str
    agg: str
    window: str | None = None
    include_current: bool = False
    of: str | None = None
    where: str | None = None
    unit: str = ""
    nullable: bool = False
    min_value: float | None = 0.0
    max_value: float | None = None
    kind: Literal["float", "category"] = "float"
    categories: tuple[str, ...] = ()


_W_WORDS = {"10min": "10 minutes", "1h": "hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days"}


def _velocity() -> list[Feature]:
    out = [Feature("amount", "velocity", "amount of this transaction", "transaction",
                   "transactions", "value", unit="currency")]
    for w in WINDOWS:
        words = _W_WORDS[w]
        out += [
            Feature(f"tx_count_{w}", "velocity",
                    f"transactions by this account in the last {words}, this one included",
                    "account", "transactions", "count", w, True, unit="transactions"),
            Feature(f"amount_sum_{w}", "velocity",
                    f"total amount paid by this account in the last {words}, this one included",
                    "account", "transactions", "sum", w, True, of="amount", unit="currency"),
            Feature(f"amount_mean_{w}", "velocity",
                    f"average amount of this account's transactions in the last {words}, "
                    "this one included", "account", "transactions", "mean", w, True,
                    of="amount", unit="currency"),
            Feature(f"amount_max_{w}", "velocity",
                    f"largest amount of this account in the last {words}, this one included",
                    "account", "transactions", "max", w, True, of="amount", unit="currency"),
        ]
    for w in ("10min", "1h"):
        out.append(Feature(
            f"small_tx_count_{w}", "velocity",
            f"transactions under the small-amount limit by this account in the last "
            f"{_W_WORDS[w]}, this one included", "account", "transactions", "count", w, True,
            where="small", unit="transactions"))
    out += [
        Feature("distinct_counterparties_24h", "velocity",
                "different payees this account paid in the last 24 hours, this one included",
                "account", "transactions", "nunique", "24h", True, of="counterparty_id",
                unit="payees"),
        Feature("distinct_merchants_24h", "velocity",
                "different merchants this account paid in the last 24 hours, this one included",
                "account", "transactions", "nunique", "24h", True, of="merchant_id",
                unit="merchants"),
        Feature("seconds_since_prev_tx", "velocity",
                "seconds since this account's previous transaction", "account",
                "transactions", "since_last", unit="seconds", nullable=True),
        Feature("amount_to_mean_30d", "velocity",
                "this amount divided by the account's average amount over the previous 30 days",
                "account", "transactions", "ratio_to_mean", "30d", False, of="amount",
                unit="ratio", nullable=True),
        Feature("amount_zscore", "velocity",
                "how many standard deviations this amount lies above the account's usual "
                "amount (all earlier transactions)", "account", "transactions", "zscore",
                None, False, of="amount", unit="std devs", nullable=True, min_value=None),
    ]
    return out


def _geography() -> list[Feature]:
    return [
        Feature("distance_from_home_km", "geography",
                "distance between the transaction and the account's home", "account",
                "accounts", "value", unit="km", nullable=True),
        Feature("distance_from_prev_km", "geography",
                "distance from this account's previous located transaction", "account",
                "transactions", "last_distance", unit="km", nullable=True),
        Feature("speed_from_prev_kmh", "geography",
                "travel speed implied by the previous located transaction", "account",
                "transactions", "last_speed", unit="km/h", nullable=True),
        Feature("first_tx_in_region", "geography",
                "1 if this is the account's first transaction in this region (1-degree cell)",
                "account+region", "transactions", "first_use", unit="0/1", nullable=True,
                max_value=1.0),
        Feature("large_amount_far_from_home", "geography",
                "1 if the amount is several times the 30-day average and far from home",
                "transaction", "accounts", "value", unit="0/1", nullable=True,
                max_value=1.0),
    ]


def _time_channel() -> list[Feature]:
    return [
        Feature("hour_of_day", "time_channel", "hour of the day (UTC)", "transaction",
                "transactions", "value", unit="hour", max_value=23.0),
        Feature("day_of_week", "time_channel", "day of the week (0 = Monday)", "transaction",
                "transactions", "value", unit="day", max_value=6.0),
        Feature("is_night", "time_channel", "1 if made between midnight and 6 am",
                "transaction", "transactions", "value", unit="0/1", max_value=1.0),
        Feature("channel", "time_channel", "payment channel", "transaction", "transactions",
                "value", kind="category", min_value=None, categories=CHANNELS),
        Feature("tx_type", "time_channel", "transaction type", "transaction", "transactions",
                "value", kind="category", min_value=None, categories=TX_TYPES),
        Feature("first_use_of_channel", "time_channel",
                "1 if this is the account's first transaction in this channel",
                "account+channel", "transactions", "first_use", unit="0/1", max_value=1.0),
    ]


def _device_behaviour() -> list[Feature]:
    out = [
        Feature("device_known_for_account", "device_behaviour",
                "1 if this account used this device before", "account+device",
                "transactions", "seen_before", unit="0/1", nullable=True, max_value=1.0),
        Feature("device_age_days_for_account", "device_behaviour",
                "days since this account first used this device", "account+device",
                "transactions", "since_first", unit="days", nullable=True),
    ]
    for entity in ("device", "ip"):
        for w in ("24h", "7d"):
            out.append(Feature(
                f"accounts_per_{entity}_{w}", "device_behaviour",
                f"different accounts that paid from this {entity} in the last {_W_WORDS[w]}, "
                "this one included", entity, "transactions", "nunique", w, True,
                of="account_id", unit="accounts", nullable=True))
    for ev, words in (("login_failed", "failed logins"), ("password_reset", "password resets"),
                      ("otp_failed", "failed one-time passwords")):
        for w in ("1h", "24h"):
            out.append(Feature(
                f"{ev}_count_{w}", "device_behaviour",
                f"{words} on this account in the {_W_WORDS[w]} before the transaction",
                "account", "events", "count", w, where=f"event_type={ev}", unit="events"))
    for ev, words in (("device_bind", "a new device was bound"),
                      ("password_reset", "the password was reset")):
        out.append(Feature(
            f"minutes_since_{ev}", "device_behaviour",
            f"minutes since {words} on this account", "account", "events", "since_last",
            where=f"event_type={ev}", unit="minutes", nullable=True))
    out += [
        Feature("device_emulator_seen", "device_behaviour",
                "1 if this device reported an emulator before", "device", "events",
                "seen_flag", where="flag=is_emulator", unit="0/1", nullable=True, max_value=1.0),
        Feature("device_rooted_seen", "device_behaviour",
                "1 if this device reported root or jailbreak before", "device", "events",
                "seen_flag", where="flag=is_rooted", unit="0/1", nullable=True, max_value=1.0),
        Feature("login_distance_km", "device_behaviour",
                "distance between the account's last login and the transaction", "account",
                "events", "last_distance", where="event_type=login", unit="km", nullable=True),
    ]
    return out


def _counterparty_merchant() -> list[Feature]:
    out = []
    for w in ("24h", "7d"):
        out += [
            Feature(f"counterparty_inbound_count_{w}", "counterparty_merchant",
                    f"transfers into this payee in the last {_W_WORDS[w]}, this one included",
                    "counterparty", "transactions", "count", w, True, unit="transfers",
                    nullable=True),
            Feature(f"counterparty_distinct_payers_{w}", "counterparty_merchant",
                    f"different accounts that paid this payee in the last {_W_WORDS[w]}, "
                    "this one included", "counterparty", "transactions", "nunique", w, True,
                    of="account_id", unit="payers", nullable=True),
        ]
    out.append(Feature("counterparty_age_days", "counterparty_merchant",
                       "days since the payee's account was opened", "counterparty",
                       "accounts", "value", unit="days", nullable=True, min_value=None))
    for w in ("1d", "7d", "30d"):
        words = {"1d": "day", "7d": "7 days", "30d": "30 days"}[w]
        out += [
            Feature(f"merchant_fraud_reports_{w}", "counterparty_merchant",
                    f"fraud reports received in the last {words} about this merchant's "
                    "transactions", "merchant", "labels", "fraud_reports", w, unit="reports",
                    nullable=True),
            Feature(f"merchant_fraud_rate_{w}", "counterparty_merchant",
                    f"fraud reports received in the last {words} per merchant transaction "
                    "in that time", "merchant", "labels", "fraud_rate", w, unit="ratio",
                    nullable=True),
        ]
    return out


def _blacklist() -> list[Feature]:
    out = []
    for entity in ("account", "device", "ip", "counterparty", "merchant"):
        out.append(Feature(f"blacklist_{entity}_hit", "blacklist",
                           f"1 if the {entity} is on the blacklist at the time of payment",
                           entity, "blacklist", "blacklist_hit", unit="0/1", nullable=True,
                           max_value=1.0))
    out += [
        Feature("blacklist_days_since_listing", "blacklist",
                "days since the most recent active listing of any entity of the payment",
                "transaction", "blacklist", "blacklist_days", unit="days", nullable=True),
        Feature("blacklist_source", "blacklist",
                "who listed the most recent active listing", "transaction", "blacklist",
                "blacklist_source", kind="category", nullable=True, min_value=None,
                categories=BLACKLIST_SOURCES),
    ]
    return out


def _account() -> list[Feature]:
    return [
        Feature("account_age_days", "account", "days since the paying account was opened",
                "account", "accounts", "value", unit="days", nullable=True, min_value=None),
        Feature("kyc_level", "account", "KYC level of the paying account (0 none to 3 full)",
                "account", "accounts", "value", unit="level", nullable=True, max_value=3.0),
    ]


CATALOG: tuple[Feature, ...] = tuple(
    _velocity() + _geography() + _time_channel() + _device_behaviour()
    + _counterparty_merchant() + _blacklist() + _account()
)
"""Every feature, in dataset column order."""


def feature_names(catalog: tuple[Feature, ...] = CATALOG) -> list[str]:
    """The model's input columns, in order."""
    return [f.name for f in catalog]


def catalog_version(catalog: tuple[Feature, ...] = CATALOG) -> str:
    """A short hash of the declarations, logged with every dataset and model."""
    doc = json.dumps([asdict(f) for f in catalog], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


def catalog_frame(catalog: tuple[Feature, ...] = CATALOG):
    """The catalog as a DataFrame (one row per feature), for printing and docs."""
    import pandas as pd

    return pd.DataFrame([asdict(f) for f in catalog])


def catalog_markdown(catalog: tuple[Feature, ...] = CATALOG) -> str:
    """docs/features.md: the catalog grouped, for reviewers and data scientists."""
    lines = ["# Feature catalog", "",
             f"Generated from `features/_catalog.py` (catalog version `{catalog_version(catalog)}`)"
             " by `fraudlab features list --markdown`. Do not edit by hand.", "",
             "A window `w` at time `t` holds rows with `t - w < time < t`; rows at exactly `t`"
             " are not before the transaction. *Includes current* says whether the transaction"
             " being scored counts in its own aggregate.", ""]
    group = None
    for f in catalog:
        if f.group != group:
            group = f.group
            lines += ["", f"## {group.replace('_', ' ')}", "",
                      "| feature | description | entity | source | window | aggregation | "
                      "includes current | unit | may be null |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines.append(
            f"| `{f.name}` | {f.description} | {f.entity} | {f.source} | {f.window or 'all'} "
            f"| {f.agg}{' (' + f.where + ')' if f.where else ''} | "
            f"{'yes' if f.include_current else 'no'} | {f.unit} | {'yes' if f.nullable else 'no'} |")
    return "\n".join(lines) + "\n"
