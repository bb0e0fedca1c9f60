"""Data beyond one process: the in-process build against the Dask build, by world size.

Issue 20, part 5. For each size, a world is simulated in shards (bounded memory, written
partitioned by day), then built as of 30 days after its end:

- in process (``features build``), for the sizes up to ``--in-process-max``: wall time and
  peak memory of the build's process;
- on a LocalCluster of ``--workers`` worker processes capped at ``--memory-limit``
  (``features build --engine dask``): wall time and each worker's peak memory.

Each build runs in a fresh process. At the smallest size both datasets are read back and
compared row for row and feature for feature. Printed: the Dask build's time over the
in-process build's at the same size (the baseline of this run), and each engine's growth
in time and memory against the growth in rows.

Then, with ``--refresh-trials``, a refresh of that many trials on the largest world, its
dataset built on Dask and read back with the legitimate rows sampled
(``--negative-rate``): wall time, its process's peak memory and its steps.

    python benchmarks/bench_scale.py --sizes 1000000 5000000 30000000 --in-process-max 5000000 \\
        --refresh-trials 30
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The simulator's rate, of which the active share, and the share it realises: asked for
# 1M, 5M and 30M at the nominal rate, it gave 956,935, 4,815,251 and 28,901,046.
TX_PER_ACCOUNT_DAY = 0.45 * 0.87 * 0.96
HISTORY_DAYS = 30

_IN_PROCESS = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
from _common import peak_rss_mb
from fraudlab.training import FraudlabConfig, build_and_save
cfg = FraudlabConfig()
t = time.perf_counter()
ds = build_and_save(cfg, {as_of!r}, __import__("pathlib").Path({out!r}), raw={raw!r})
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": len(ds), "peak_mb": peak_rss_mb()}}))
"""

_DASK = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
from _common import peak_rss_mb
from distributed import Client, LocalCluster
from fraudlab.training import FraudlabConfig, build_and_save_dask

def worker_peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

if __name__ == "__main__":
    cfg = FraudlabConfig()
    stages = {{}}
    with LocalCluster(n_workers={workers}, threads_per_worker=1, memory_limit={limit!r},
                      processes=True, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t = time.perf_counter()
        def progress(stage, done, total):
            if done == total:
                stages[stage] = time.perf_counter() - t
        ds = build_and_save_dask(cfg, {as_of!r}, __import__("pathlib").Path({out!r}),
                                 raw={raw!r}, client=client, progress=progress)
        seconds = time.perf_counter() - t
        peaks = sorted(client.run(worker_peak).values())
    print(json.dumps({{"seconds": seconds, "rows": ds.rows, "parts": len(ds.parts),
                      "worker_peak_mb": peaks, "client_peak_mb": peak_rss_mb(),
                      "stages": stages}}))
"""


_REFRESH = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
from _common import peak_rss_mb
from fraudlab.training import load_config, refresh

if __name__ == "__main__":
    cfg = load_config({config!r})
    lines = []
    t = time.perf_counter()
    out = refresh(cfg, {as_of!r}, log=lambda line: lines.append((time.perf_counter() - t, line)))
    print(json.dumps({{"seconds": time.perf_counter() - t, "status": out.status,
                      "peak_mb": peak_rss_mb(), "metrics": out.metrics["challenger"],
                      "log": [[round(s), line] for s, line in lines]}}, default=str))
"""

_REFRESH_CONFIG = """\
paths: {{root: {root}, raw: {raw}}}
training: {{n_trials: {trials}, negative_rate: {rate}, train_window: 60d, n_splits: 2,
  validation_window: 7d, calibration_window: 7d, test_window: 7d, gap: 7d,
  max_rounds: 300, early_stopping_rounds: 30, report_every: 25}}
refresh: {{engine: dask}}
dask: {{workers: {workers}, memory_limit: {limit}}}
"""


def _run(code: str, cwd: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    if res.returncode != 0:
        raise SystemExit(f"build failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _simulate(out: Path, transactions: int, days: int, shard_accounts: int) -> dict:
    accounts = int(transactions / (TX_PER_ACCOUNT_DAY * (days + HISTORY_DAYS)))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fraudlab", "simulate", "--out", str(out),
                    "--accounts", str(accounts), "--days", str(days), "--history-days", str(HISTORY_DAYS),
                    "--shard-accounts", str(shard_accounts), "--seed", "3"],
                   check=True, capture_output=True)
    manifest = json.loads((out / "manifest.json").read_text())
    return {"seconds": time.perf_counter() - t, "rows": manifest["rows"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--in-process-max", type=int, default=5_000_000,
                    help="Largest size also built in process.")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="8GB")
    ap.add_argument("--shard-accounts", type=int, default=20_000)
    ap.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temp dir).")
    ap.add_argument("--refresh-trials", type=int, default=0,
                    help="Then run a refresh of this many trials on the largest world (Dask "
                         "build, sampled legitimate rows); 0: none.")
    ap.add_argument("--negative-rate", type=float, default=0.05)
    ap.add_argument("--refresh-only", action="store_true",
                    help="Simulate what is missing and run the refresh, without the builds "
                         "(the refresh builds its own dataset on Dask).")
    args = ap.parse_args()
    bench = str(Path(__file__).resolve().parent)
    sys.path.insert(0, bench)
    import pandas as pd
    from _common import reference_seconds

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    ref = reference_seconds()
    print(f"machine reference (numpy argsort of 5M floats): {ref:.3f} s")
    results = []
    for i, n in enumerate(sorted(args.sizes)):
        raw = work / f"raw_{n}"
        if not (raw / "manifest.json").exists():
            shutil.rmtree(raw, ignore_errors=True)
            sim = _simulate(raw, n, args.days, args.shard_accounts)
            print(f"\n{n:,}: simulated {sim['rows']['transactions']:,} transactions "
                  f"({sum(sim['rows'].values()):,} rows in all) in {sim['seconds']:.0f} s")
        rows = json.loads((raw / "manifest.json").read_text())["rows"]["transactions"]
        as_of = (pd.Timestamp("2026-01-01", tz="UTC")
                 + pd.Timedelta(days=args.days + 30)).isoformat()
        row = {"size": n, "transactions": rows}
        if args.refresh_only:
            continue
        if n <= args.in_process_max:
            out = work / f"ds_{n}.parquet"
            row["pandas"] = _run(_IN_PROCESS.format(bench=bench, as_of=as_of, out=str(out),
                                                    raw=str(raw)), work)
            p = row["pandas"]
            print(f"  in process: {p['seconds']:.1f} s, peak {p['peak_mb'] / 1024:.2f} GB")
        out = work / f"ds_{n}"
        row["dask"] = _run(_DASK.format(bench=bench, as_of=as_of, out=str(out), raw=str(raw),
                                        workers=args.workers, limit=args.memory_limit), work)
        d = row["dask"]
        print(f"  dask, {args.workers} workers capped at {args.memory_limit}: {d['seconds']:.1f} s "
              f"({', '.join(f'{k} done at {v:.0f} s' for k, v in d['stages'].items())}); "
              f"worker peaks {', '.join(f'{m / 1024:.2f}' for m in d['worker_peak_mb'])} GB; "
              f"client {d['client_peak_mb'] / 1024:.2f} GB; {d['parts']} parts")
        if "pandas" in row:
            print(f"  dask / in process at this size: x{d['seconds'] / row['pandas']['seconds']:.2f} "
                  "in time")
        if i == 0 and "pandas" in row:
            from fraudlab.training import read_dataset

            a = read_dataset(work / f"ds_{n}.parquet")
            b = read_dataset(out)
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, atol=1e-9)
            print(f"  the two datasets are equal: {len(a):,} rows x {a.shape[1]} columns")
            del a, b
        results.append(row)
        shutil.rmtree(out, ignore_errors=True)
    for r in results[1:]:
        first = results[0]
        g = r["transactions"] / first["transactions"]
        for engine in ("pandas", "dask"):
            if engine in r and engine in first:
                t = r[engine]["seconds"] / first[engine]["seconds"]
                key = "peak_mb" if engine == "pandas" else "worker_peak_mb"
                m0, m1 = first[engine][key], r[engine][key]
                m = (max(m1) / max(m0)) if engine == "dask" else m1 / m0
                print(f"{engine}: {first['transactions']:,} -> {r['transactions']:,} "
                      f"transactions (x{g:.1f}): time x{t:.1f}, peak memory x{m:.1f}")
    if args.refresh_trials:
        n = max(args.sizes)
        root = work / f"refresh_{n}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        cfg = root / "fraudlab.yaml"
        cfg.write_text(_REFRESH_CONFIG.format(root=root, raw=work / f"raw_{n}",
                                              trials=args.refresh_trials, rate=args.negative_rate,
                                              workers=args.workers, limit=args.memory_limit))
        as_of = (pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=args.days + 30)).isoformat()
        r = _run(_REFRESH.format(bench=bench, config=str(cfg), as_of=as_of), work)
        print(f"\nrefresh on the {n:,} world ({args.refresh_trials} trials, legitimate rows "
              f"sampled at {args.negative_rate:g}, Dask build): {r['status']} in "
              f"{r['seconds'] / 60:.1f} min, peak {r['peak_mb'] / 1024:.2f} GB in the refresh "
              f"process; challenger test average precision "
              f"{r['metrics'].get('average_precision_score', float('nan')):.3f}")
        for sec, line in r["log"]:
            print(f"  {sec:>6} s  {line[:150]}")
        results.append({"refresh": r, "size": n})
    (work / "bench_scale.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults in {work / 'bench_scale.json'}")


if __name__ == "__main__":
    main()
