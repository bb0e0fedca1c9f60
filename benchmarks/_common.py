"""Helpers shared by the benchmark scripts: a same-run machine reference and peak memory."""

from __future__ import annotations

import resource
import time

import numpy as np


def reference_seconds(repeat: int = 3, size: int = 5_000_000) -> float:
    """Seconds for a fixed numpy workload (stable argsort of ``size`` floats, 5M by
    default), best of ``repeat``.

    Timed in the same run as the benchmark, so ``benchmark / reference`` is comparable
    across shared, noisy machines where absolute times drift.
    """
    x = np.random.default_rng(0).random(size)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.argsort(x, kind="stable")
        best = min(best, time.perf_counter() - t)
    return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    On Linux this is the process's own high-water mark (``VmHWM``). ``ru_maxrss`` is not:
    Linux carries it over from the parent through fork and exec, so a worker started by a
    benchmark that had just simulated a large world reported the parent's memory as its
    own (6.7 GB "after loading" 5M transactions whose tables take 2.4 GB).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matured_dataset(accounts: int = 20_000, days: int = 131, seed: int = 7):
    """The labeled dataset of a simulated world (about 1M transactions by default), built
    30 days after its end so that every label has matured."""
    import pandas as pd

    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import build_dataset

    # No history before the start: the row count stays that of the measurements on record.
    sim = SimulationConfig(accounts=accounts, days=days, seed=seed, history_days=0)
    world = simulate_world(sim)
    as_of = pd.Timestamp(sim.start, tz="UTC") + pd.Timedelta(days=days + 30)
    return build_dataset(world.tables(), as_of)
