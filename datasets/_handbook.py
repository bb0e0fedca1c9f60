"""A public benchmark reproduced offline: the simulated card transactions of the
*Reproducible Machine Learning for Credit Card Fraud Detection* handbook (Le Borgne et al.,
ULB Machine Learning Group).

The handbook publishes its generator's specification and the dataset it produced (5,000
customers, 10,000 terminals, 183 days from 2018-04-01, terminals within a radius of 5:
1,754,155 transactions, 14,681 frauds), a baseline feature set and prequential results for
XGBoost. No download is allowed at run time, so :func:`handbook_transactions` re-creates the
dataset from that specification, drawing from the same seeded generators in the same order;
the published row and fraud counts, the rows left with the first scenario and the first
and last rows are what check it (``benchmarks/bench_public_handbook.py``, ``tests/datasets/test_handbook.py``).

The frame comes in the handbook's own column names, as a user would load the published
files; :data:`HANDBOOK_SOURCES` is the column map that points fraudlab at it.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from fraudlab.features import SourcesConfig

HANDBOOK_SOURCES = SourcesConfig(
    column_map={"transactions": {"tx_id": "TRANSACTION_ID", "ts": "TX_DATETIME",
                                 "account_id": "CUSTOMER_ID", "merchant_id": "TERMINAL_ID",
                                 "amount": "TX_AMOUNT", "is_fraud": "TX_FRAUD"}},
    fill_missing={"transactions": {"currency": "EUR", "channel": "pos_card",
                                   "tx_type": "payment", "counterparty_id": None,
                                   "device_id": None, "ip": None, "lat": None, "lon": None}},
    # The handbook's "delay period": a fraud is known one week after it happened.
    default_label_delay="7d",
)
"""Column map, constants for the canonical columns the handbook lacks (card-present
payments, no devices, no locations) and its one-week label delay."""


def _transactions(n_customers: int, n_terminals: int, nb_days: int, start: str,
                  radius: float) -> pd.DataFrame:
    u = np.random.RandomState(0).random_sample((n_customers, 4))
    home = 100 * u[:, :2]
    mean_amount, tx_per_day = 5 + 95 * u[:, 2], 4 * u[:, 3]
    terminals = 100 * np.random.RandomState(1).random_sample((n_terminals, 2))
    secs, custs, terms, amounts = [], [], [], []
    for c in range(n_customers):
        near = np.flatnonzero(np.sqrt(np.square(home[c] - terminals).sum(axis=1)) < radius)
        near = near.tolist()
        pick, draw = random.Random(c), np.random.RandomState(c)
        mu, sd = mean_amount[c], mean_amount[c] / 2
        for day in range(nb_days):
            for _ in range(draw.poisson(tx_per_day[c])):
                sec = int(draw.normal(43200, 20000))  # around noon
                if not 0 < sec < 86400:
                    continue
                amount = draw.normal(mu, sd)
                if amount < 0:
                    amount = draw.uniform(0, 2 * mu)
                if near:
                    secs.append(sec + day * 86400)
                    custs.append(c)
                    terms.append(pick.choice(near))
                    amounts.append(np.round(amount, 2))
    frame = pd.DataFrame({"TX_TIME_SECONDS": np.asarray(secs, np.int64),
                          "CUSTOMER_ID": np.asarray(custs, np.int64),
                          "TERMINAL_ID": np.asarray(terms, np.int64),
                          "TX_AMOUNT": np.asarray(amounts, float)})
    frame["TX_TIME_DAYS"] = frame["TX_TIME_SECONDS"] // 86400
    frame["TX_DATETIME"] = pd.Timestamp(start) + pd.to_timedelta(frame["TX_TIME_SECONDS"], "s")
    # The published ids number the transactions in time order (numpy's default sort).
    frame = frame.sort_values("TX_DATETIME").reset_index(drop=True)
    frame.insert(0, "TRANSACTION_ID", np.arange(len(frame), dtype=np.int64))
    return frame


def _add_frauds(frame: pd.DataFrame, n_customers: int, n_terminals: int) -> pd.DataFrame:
    amount = frame["TX_AMOUNT"].to_numpy().copy()
    day = frame["TX_TIME_DAYS"].to_numpy()
    customer, terminal = frame["CUSTOMER_ID"].to_numpy(), frame["TERMINAL_ID"].to_numpy()
    scenario = np.where(amount > 220, 1, 0).astype(np.int8)  # 1: large amounts
    customers, terminals = pd.Series(np.arange(n_customers)), pd.Series(np.arange(n_terminals))
    last = int(day.max()) if len(day) else 0
    for d in range(last):  # 2: two terminals a day compromised for 28 days
        hit = terminals.sample(n=2, random_state=d).to_numpy()
        scenario[(day >= d) & (day < d + 28) & np.isin(terminal, hit)] = 2
    for d in range(last):  # 3: three cards a day, a third of 14 days' payments x5
        hit = customers.sample(n=3, random_state=d).to_numpy()
        rows = np.flatnonzero((day >= d) & (day < d + 14) & np.isin(customer, hit)).tolist()
        chosen = random.Random(d).sample(rows, k=len(rows) // 3)
        amount[chosen] *= 5
        scenario[chosen] = 3
    return frame.assign(TX_AMOUNT=amount, TX_FRAUD=(scenario > 0).astype(np.int8),
                        TX_FRAUD_SCENARIO=scenario)


def handbook_transactions(n_customers: int = 5000, n_terminals: int = 10000,
                          nb_days: int = 183, start: str = "2018-04-01",
                          radius: float = 5.0) -> pd.DataFrame:
    """The handbook's simulated transactions with their fraud labels.

    Parameters
    ----------
    n_customers, n_terminals, nb_days, start, radius
        The generator's parameters; the defaults are those of the published dataset.

    Returns
    -------
    DataFrame
        ``TRANSACTION_ID, TX_TIME_SECONDS, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT,
        TX_TIME_DAYS, TX_DATETIME, TX_FRAUD, TX_FRAUD_SCENARIO`` in time order
        (``TX_DATETIME`` naive, as published). Load it with :data:`HANDBOOK_SOURCES`.

    Notes
    -----
    Takes about 25 s for the full dataset (the generator draws one value at a time, as
    the specification does, so that the published dataset comes out).
    """
    frame = _transactions(n_customers, n_terminals, nb_days, start, radius)
    return _add_frauds(frame, n_customers, n_terminals)
