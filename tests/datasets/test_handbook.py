"""The handbook's public dataset, re-created offline and loaded through the column map."""

import numpy as np
import pandas as pd
import pytest

from fraudlab.datasets import HANDBOOK_SOURCES, handbook_transactions
from fraudlab.features import build_dataset, load_raw

# Customer 0's first five days as printed in the handbook (customer profiles seeded with 0;
# its terminals differ there, so only times and amounts are compared).
PUBLISHED_CUSTOMER_0 = {
    ("2018-04-01 07:19:05", 123.59), ("2018-04-01 19:02:02", 46.51),
    ("2018-04-01 18:00:16", 77.34), ("2018-04-02 15:13:02", 32.35),
    ("2018-04-02 14:05:38", 63.30), ("2018-04-02 15:46:51", 13.59),
    ("2018-04-02 08:51:06", 54.72), ("2018-04-02 20:24:47", 51.89),
    ("2018-04-03 12:15:47", 117.91), ("2018-04-03 08:50:09", 67.72),
    ("2018-04-03 09:25:49", 28.46), ("2018-04-03 15:33:14", 50.25),
    ("2018-04-03 07:41:24", 93.26), ("2018-04-04 01:15:35", 46.40),
    ("2018-04-04 09:33:58", 23.26), ("2018-04-05 16:19:09", 71.96),
    ("2018-04-05 07:41:19", 52.69),
}


def test_customer_zero_matches_the_published_example():
    tx = handbook_transactions(n_customers=5, n_terminals=5, nb_days=5, radius=50)
    c0 = tx[tx["CUSTOMER_ID"] == 0]
    assert {str(t) for t in c0["TX_DATETIME"]} == {t for t, _ in PUBLISHED_CUSTOMER_0}
    published = dict(PUBLISHED_CUSTOMER_0)
    for t, amount, scenario in c0[["TX_DATETIME", "TX_AMOUNT", "TX_FRAUD_SCENARIO"]].itertuples(
            index=False):
        # scenario 3 multiplies a compromised card's amounts by 5 (possibly more than once)
        ratio = amount / published[str(t)]
        if scenario == 3:
            assert np.log(ratio) / np.log(5) == pytest.approx(round(np.log(ratio) / np.log(5)))
            assert ratio >= 5 - 1e-9
        else:
            assert ratio == pytest.approx(1.0)


def test_full_dataset_matches_the_published_counts():
    tx = handbook_transactions()
    assert len(tx) == 1_754_155
    assert int(tx["TX_FRAUD"].sum()) == 14_681
    # rows whose final scenario is 1 (published: 973; 978 were added by scenario 1, some
    # later relabelled by scenarios 2 and 3)
    assert int((tx["TX_FRAUD_SCENARIO"] == 1).sum()) == 973
    first, last = tx.iloc[0], tx.iloc[-1]
    assert (str(first.TX_DATETIME), first.CUSTOMER_ID, first.TERMINAL_ID, first.TX_AMOUNT) == \
        ("2018-04-01 00:00:31", 596, 3156, 57.16)
    assert (str(last.TX_DATETIME), last.CUSTOMER_ID, last.TERMINAL_ID, last.TX_AMOUNT) == \
        ("2018-09-30 23:59:57", 3542, 9849, 23.59)
    assert tx["TRANSACTION_ID"].tolist() == list(range(len(tx)))


def test_the_column_map_builds_a_labeled_dataset_from_it():
    tx = handbook_transactions(n_customers=400, n_terminals=5000, nb_days=40, radius=8)
    raw = load_raw({"transactions": tx}, HANDBOOK_SOURCES)
    ds = build_dataset(raw, "2018-06-01")
    assert len(ds) == len(tx)
    assert ds["tx_id"].tolist() == tx["TRANSACTION_ID"].astype(str).tolist()
    # every label arrived a week after its transaction, long before the as-of time
    assert (ds["is_fraud"].to_numpy() == tx["TX_FRAUD"].to_numpy()).all()
    lag = ds["label_reported_at"] - ds["ts"]
    assert (lag[ds["is_fraud"] == 1] == pd.Timedelta(days=7)).all()
    # 7-day counts against a brute-force count over strictly earlier transactions
    t = tx["TX_DATETIME"].to_numpy()
    c = tx["CUSTOMER_ID"].to_numpy()
    week = np.timedelta64(7, "D")
    for i in np.random.default_rng(0).choice(len(tx), 200, replace=False):
        same = (c == c[i]) & (t > t[i] - week) & (t < t[i])
        assert ds["tx_count_7d"].iloc[i] == same.sum() + 1
