"""Feature-build speed and memory against an idiomatic pandas implementation.

Targets (issue 16): the build of the default feature set on 1,000,000 simulated
transactions at 800,000 transactions/s or better with peak memory at most 1.5 GB; at
least 10x faster than idiomatic pandas (groupby-rolling and merge_asof) on the same
features; 5M reported, with time and memory growth from 1M.

Each measurement runs in a fresh worker process reading the world from Parquet, so peak
memory is that of the build alone. The pandas baseline covers the features pandas has an
idiom for (account velocity windows, small-amount counts, time since the previous
transaction, behaviour-event counts, blacklist hits); the engine is timed on exactly that
subset too, and the ratio compares the two. The baseline treats transactions tied at the
same second differently (pandas rolling counts tied rows by position); otherwise the
definitions coincide, which the script checks on the rows without ties.

    python benchmarks/bench_features.py [--transactions 1000000] [--scale 1 5] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import peak_rss_mb, reference_seconds

WINDOWS = ("10min", "1h", "24h", "7d", "30d")
SUBSET = ([f"{k}_{w}" for w in WINDOWS for k in ("tx_count", "amount_sum", "amount_mean", "amount_max")]
          + ["small_tx_count_10min", "small_tx_count_1h", "seconds_since_prev_tx"]
          + [f"{e}_count_{w}" for e in ("login_failed", "password_reset", "otp_failed") for w in ("1h", "24h")]
          + ["blacklist_device_hit", "blacklist_ip_hit"])


def pandas_features(tables: dict, small: float) -> pd.DataFrame:
    """The SUBSET features with groupby-rolling and merge_asof, as a pandas user writes them."""
    tx = tables["transactions"].sort_values(["account_id", "ts"], kind="stable")
    out = pd.DataFrame(index=tx.index)
    g = tx.set_index("ts").groupby("account_id", sort=False)
    for w in WINDOWS:
        roll = g["amount"].rolling(w, closed="right")
        out[f"tx_count_{w}"] = roll.count().to_numpy()
        out[f"amount_sum_{w}"] = roll.sum().to_numpy()
        out[f"amount_mean_{w}"] = roll.mean().to_numpy()
        out[f"amount_max_{w}"] = roll.max().to_numpy()
    small_flag = (tx["amount"] < small).astype(float)
    gs = small_flag.set_axis(tx["ts"]).groupby(tx["account_id"].to_numpy(), sort=False)
    for w in ("10min", "1h"):
        out[f"small_tx_count_{w}"] = gs.rolling(w, closed="right").sum().to_numpy()
    out["seconds_since_prev_tx"] = tx.groupby("account_id", sort=False)["ts"].diff().dt.total_seconds()
    ev = tables["events"]
    for e in ("login_failed", "password_reset", "otp_failed"):
        sub = ev[ev["event_type"] == e].sort_values("ts")
        sub = sub.assign(n=sub.groupby("account_id").cumcount() + 1)
        left = tx[["ts", "account_id"]].reset_index().sort_values("ts")
        for w in ("1h", "24h"):
            now = pd.merge_asof(left, sub[["ts", "account_id", "n"]], on="ts", by="account_id",
                                allow_exact_matches=False)
            then = pd.merge_asof(left.assign(ts=left["ts"] - pd.Timedelta(w)),
                                 sub[["ts", "account_id", "n"]], on="ts", by="account_id",
                                 allow_exact_matches=True)
            count = now["n"].fillna(0).to_numpy() - then["n"].fillna(0).to_numpy()
            out.loc[now["index"].to_numpy(), f"{e}_count_{w}"] = count
    bl = tables["blacklist"]
    for kind, col in (("device", "device_id"), ("ip", "ip")):
        entries = bl[bl["entity_type"] == kind].sort_values("listed_at")
        left = tx[["ts", col]].reset_index().dropna(subset=[col]).sort_values("ts")
        hit = pd.merge_asof(left, entries[["listed_at", "entity_value", "delisted_at"]]
                            .rename(columns={"entity_value": col}),
                            left_on="ts", right_on="listed_at", by=col)
        active = hit["listed_at"].notna() & (hit["delisted_at"].isna() | (hit["ts"] < hit["delisted_at"]))
        out[f"blacklist_{kind}_hit"] = np.nan
        out.loc[hit["index"].to_numpy(), f"blacklist_{kind}_hit"] = active.astype(float).to_numpy()
    return out.sort_index()[SUBSET]


def worker(kind: str, folder: str) -> None:
    from fraudlab.features import CATALOG, FeaturesConfig, compute_features, load_raw

    raw = load_raw(folder)
    tables = {k: t.frame for k, t in raw.tables.items()}
    tables["transactions"] = tables["transactions"].sort_values("ts", kind="stable").reset_index(drop=True)
    base = peak_rss_mb()
    if kind != "pandas":  # compile (or load the cache of) the kernels outside the timing
        compute_features({k: (v.head(2000) if k == "transactions" else v) for k, v in tables.items()})
    contract = 0.0
    if kind in ("pandas", "subset"):
        # Best of three: the machines are shared, and a single run can be twice as slow.
        seconds = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            f = (pandas_features(tables, FeaturesConfig().small_amount) if kind == "pandas"
                 else compute_features(tables, catalog=tuple(x for x in CATALOG if x.name in SUBSET)))
            seconds = min(seconds, time.perf_counter() - t)
    else:
        import great_expectations  # noqa: F401  (a one-time import, not build time)

        from fraudlab.data_contracts import RawTable, validate_dataset
        from fraudlab.features import LABEL, build_dataset, dataset_schema

        as_of = tables["transactions"]["ts"].max() + pd.Timedelta("1s")
        seconds = contract = float("inf")
        first = first_peak = build_peak = None
        for _ in range(3):  # best of three, as for the other measurements
            t = time.perf_counter()
            ds = build_dataset(tables, as_of, validate=False)
            t_contract = time.perf_counter()
            build_peak = build_peak or peak_rss_mb()  # the build's own high-water mark
            validate_dataset(RawTable("dataset", ds, "bench"), dataset_schema(), as_of=as_of,
                             label=LABEL, mature="is_mature", fraud_rate=(0.0, 1.0),
                             features=[x.name for x in CATALOG])
            # The first run of a fresh process (what one CLI build sees) is also kept: it
            # pays for first-touch memory that later runs reuse.
            first = first or (t_contract - t, time.perf_counter() - t_contract)
            first_peak = first_peak or peak_rss_mb()
            seconds = min(seconds, t_contract - t)
            contract = min(contract, time.perf_counter() - t_contract)
            n_rows = len(ds)
            del ds  # keep only one dataset alive at a time, for the peak-memory figure
        f = None
    result = {"seconds": seconds, "contract_seconds": contract,
              "first_run_seconds": sum(first) if kind == "engine" else None,
              "first_run_peak_mb": first_peak if kind == "engine" else None,
              "build_peak_mb": build_peak if kind == "engine" else None,
              "rows": n_rows if f is None else len(f),
              "features": len(CATALOG) if f is None else f.shape[1],
              "peak_mb": peak_rss_mb(), "load_peak_mb": base}
    if kind in ("pandas", "subset"):
        path = Path(folder) / f"_{kind}.parquet"
        f.reset_index(drop=True).to_parquet(path)
    print(json.dumps(result))


def run(kind: str, folder: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, folder], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, nargs="*", default=[1])
    parser.add_argument("--repeat", type=int, default=2,
                        help="fresh processes per size for the growth figure")
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    print(f"machine reference (numpy stable argsort of 5M floats): {reference_seconds():.2f} s")

    with tempfile.TemporaryDirectory() as root:
        _measure(args, root)


def _measure(args, root: str) -> None:
    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import write_tables

    results, folders = {}, {}
    for scale in args.scale:
        n = args.transactions * scale
        folder = folders[scale] = str(Path(root) / f"x{scale}")
        # No history before the start, so that n is the number of rows built.
        w = simulate_world(SimulationConfig(accounts=int(n / (0.45 * 60 * 0.87)), days=60, seed=3,
                                            history_days=0))
        write_tables(w.tables(), folder)
        rows = len(w.transactions)
        del w
        full = run("engine", folder)
        total = full["seconds"] + full["contract_seconds"]
        line = (f"{rows:,} transactions (best of 3): labeled dataset with the full catalog "
                f"({full['features']} features) in {full['seconds']:.1f} s = "
                f"{rows / full['seconds']:,.0f} tx/s; with its contract {total:.1f} s = "
                f"{rows / total:,.0f} tx/s; build target 800,000 tx/s")
        print(line)
        print(f"  first run of the process (build + contract): {full['first_run_seconds']:.1f} s = "
              f"{rows / full['first_run_seconds']:,.0f} tx/s; peak memory of that build "
              f"{full['build_peak_mb']:,.0f} MB (target <= 1,500; {full['load_peak_mb']:,.0f} "
              f"MB after loading), {full['first_run_peak_mb']:,.0f} MB with its contract, "
              f"{full['peak_mb']:,.0f} MB after all three builds")
        if scale == args.scale[0]:
            sub = run("subset", folder)
            pd_res = run("pandas", folder)
            a = pd.read_parquet(Path(folder) / "_subset.parquet")
            b = pd.read_parquet(Path(folder) / "_pandas.parquet")
            tx = pd.read_parquet(Path(folder) / "transactions.parquet").sort_values("ts", kind="stable")
            tied = tx.duplicated(["account_id", "ts"], keep=False).to_numpy()
            same = {c: bool(np.allclose(a.loc[~tied, c], b.loc[~tied, c], equal_nan=True, rtol=1e-6))
                    for c in SUBSET}
            print(f"  same {len(SUBSET)} features (best of 3): engine {sub['seconds']:.2f} s, pandas "
                  f"{pd_res['seconds']:.2f} s -> engine is {pd_res['seconds'] / sub['seconds']:.1f}x "
                  f"faster (target >= 10x); values agree on untied rows: "
                  f"{sum(same.values())}/{len(same)}"
                  + ("" if all(same.values()) else f" (differ: {[c for c, v in same.items() if not v]})"))
        results[scale] = (rows, full)
    if len(results) > 1:
        (n1, r1), (n2, r2) = results[min(results)], results[max(results)]
        k = n2 / n1
        growth = f"x{r2['seconds'] / r1['seconds']:.2f}"
        if args.repeat > 1:
            # The machine's speed drifts over minutes: time both sizes again, alternating,
            # each in a fresh process as above, and compare the best of each size.
            best = {s: [results[s][1]["seconds"]] for s in (min(results), max(results))}
            for _ in range(args.repeat - 1):
                for s in best:
                    best[s].append(run("engine", folders[s])["seconds"])
            growth = (f"x{min(best[max(best)]) / min(best[min(best)]):.2f} between the best of "
                      f"{args.repeat} fresh processes per size, alternating "
                      f"({', '.join(f'{t:.2f}' for t in best[min(best)])} s and "
                      f"{', '.join(f'{t:.2f}' for t in best[max(best)])} s), "
                      f"{growth} in the first pair")
        print(f"growth x{k:.1f} rows: time {growth} "
              f"(n log n would be x{k * np.log(n2) / np.log(n1):.2f}), "
              f"memory x{r2['peak_mb'] / r1['peak_mb']:.2f}")
        # What this machine's memory does to an n log n routine between the same sizes:
        # the growth target is stated without it, so it is context, not a correction.
        sort1, sort2 = (reference_seconds(size=n) for n in (n1, n2))
        print(f"  context: numpy's stable argsort (n log n) of {n1:,} and {n2:,} floats grew "
              f"x{sort2 / sort1:.2f} in this run")


if __name__ == "__main__":
    main()
