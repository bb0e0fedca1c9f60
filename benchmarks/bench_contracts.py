"""Validation speed: the transactions contract on 1,000,000 rows.

Target: at most 15 s. The baseline, timed in the same run on the same frame, is plain
pandas masks for the same row rules (what the contract costs over the bare checks); the
machine reference of _common.py is printed too.

    python benchmarks/bench_contracts.py [--transactions 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, reference_seconds

from fraudlab.data_contracts import CHANNELS, TX_TYPES, validate_raw
from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.features import load_raw


def pandas_baseline(tx: pd.DataFrame, as_of: pd.Timestamp) -> int:
    """The same row rules as bare pandas masks; returns the number of bad rows."""
    bad = tx[["tx_id", "ts", "account_id", "amount", "currency", "channel", "tx_type"]].isna().any(axis=1)
    bad |= tx["tx_id"].duplicated(keep=False)
    bad |= ~tx["channel"].isin(CHANNELS) | ~tx["tx_type"].isin(TX_TYPES)
    bad |= (tx["amount"] < 0) | (tx["amount"] > 1e7)
    bad |= (tx["ts"] < pd.Timestamp("2000-01-01", tz="UTC")) | (tx["ts"] > as_of)
    bad |= ~tx["lat"].between(-90, 90) & tx["lat"].notna()
    bad |= ~tx["lon"].between(-180, 180) & tx["lon"].notna()
    bad |= ~tx["currency"].str.fullmatch(r"[A-Z]{3}")
    return int(bad.sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=1_000_000)
    args = parser.parse_args()
    accounts = int(args.transactions / (0.45 * 60 * 0.87))
    world = simulate_world(SimulationConfig(accounts=accounts, days=60, seed=1, history_days=0))
    raw = load_raw({"transactions": world.transactions}, tables=("transactions",))
    as_of = pd.Timestamp("2027-01-01", tz="UTC")
    n = len(world.transactions)
    import great_expectations  # noqa: F401  (import time is not validation time)

    ref = reference_seconds()
    t = time.perf_counter()
    bad = pandas_baseline(world.transactions, as_of)
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    report = validate_raw(raw.tables, as_of=as_of)
    t_gx = time.perf_counter() - t
    assert report.success and bad == 0
    print(f"validated {n:,} transactions against {len(report.results)} rules in {t_gx:.1f} s "
          f"({n / t_gx:,.0f} rows/s); peak memory {peak_rss_mb():,.0f} MB")
    print(f"pandas-mask baseline {t_base:.2f} s; ratio contract/baseline = {t_gx / t_base:.1f}")
    print(f"reference workload {ref:.3f} s; ratio contract/reference = {t_gx / ref:.0f}")
    per_million = t_gx * 1_000_000 / n
    print(f"target: 1,000,000 transactions in <= 15 s -> "
          f"{'met' if per_million <= 15 else 'NOT met'} ({per_million:.1f} s per million)")


if __name__ == "__main__":
    main()
