"""Generation speed of the simulated world: 1,000,000 transactions with all sources.

Target: at most 60 s on the project's 2-core machine. Prints the time, the throughput,
and the ratio to a fixed numpy workload timed in the same run (see _common.py).

    python benchmarks/bench_simulate.py [--transactions 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, reference_seconds

from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.features import write_tables


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    cfg0 = SimulationConfig()
    # Weekday thinning and accounts opened during the period leave ~87% of the nominal
    # rate; the history before the start is written too.
    span = args.days + cfg0.history_days
    accounts = int(args.transactions / (cfg0.tx_per_account_day * span * 0.87))
    cfg = SimulationConfig(accounts=accounts, days=args.days, seed=1)
    ref = reference_seconds()
    t = time.perf_counter()
    world = simulate_world(cfg)
    t_sim = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        write_tables(world.tables(), out, world.manifest)
        t_write = time.perf_counter() - t
    total = t_sim + t_write
    n = len(world.transactions)
    rows = ", ".join(f"{k} {v:,}" for k, v in world.manifest["rows"].items())
    print(f"simulated {rows}")
    print(f"generate {t_sim:.1f} s + write {t_write:.1f} s = {total:.1f} s "
          f"({n / total:,.0f} transactions/s); peak memory {peak_rss_mb():,.0f} MB")
    print(f"reference workload {ref:.3f} s; ratio total/reference = {total / ref:.0f}")
    print(f"target: 1,000,000 transactions in <= 60 s -> "
          f"{'met' if total * 1_000_000 / n <= 60 else 'NOT met'} "
          f"({total * 1_000_000 / n:.1f} s per million)")


if __name__ == "__main__":
    main()
