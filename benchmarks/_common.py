"""Helpers shared by the benchmark scripts: a same-run machine reference and peak memory."""

from __future__ import annotations

import resource
import time

import numpy as np


def reference_seconds(repeat: int = 3) -> float:
    """Seconds for a fixed numpy workload (argsort of 5M floats), best of ``repeat``.

    Timed in the same run as the benchmark, so ``benchmark / reference`` is comparable
    across shared, noisy machines where absolute times drift.
    """
    x = np.random.default_rng(0).random(5_000_000)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.argsort(x, kind="stable")
        best = min(best, time.perf_counter() - t)
    return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
