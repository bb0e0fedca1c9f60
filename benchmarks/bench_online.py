"""Online features and one-payment scoring against the batch build and MLflow's pyfunc.

Targets (issue 17): one transaction scored in process (features, model, calibration, tier)
p50 <= 100 us and p99 <= 1 ms; replay >= 50,000 transactions/s on the built-in set; bytes
of state per active account reported on the demo world and on 1M transactions.

Printed next to each other, all measured in this run: the batch build's cost per row, the
replay's, the in-process scorer's latency and the MLflow pyfunc one-row ``predict``.

    python benchmarks/bench_online.py                   # a 2,000-account world (~1 min)
    python benchmarks/bench_online.py --accounts 6000 --days 150 --history-days 180
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import peak_rss_mb, reference_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=2_000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--history-days", type=int, default=30)
    ap.add_argument("--latency-sample", type=int, default=5_000,
                    help="Transactions scored one by one for the latency figures.")
    args = ap.parse_args()

    import mlflow

    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import CATALOG, build_dataset, event_stream, replay
    from fraudlab.training import load_config, load_scorer, train_model

    ref = reference_seconds()
    print(f"machine reference (numpy stable argsort of 5M floats): {ref:.2f} s")
    sim = SimulationConfig(accounts=args.accounts, days=args.days, seed=3,
                           history_days=args.history_days)
    tables = simulate_world(sim).tables()
    tx = tables["transactions"]
    as_of = tx["ts"].max() + pd.Timedelta("1us")
    n = len(tx)

    t = time.perf_counter()
    ds = build_dataset(tables, as_of, validate=False, start=tx["ts"].min())
    batch_s = time.perf_counter() - t
    print(f"batch build: {n:,} transactions in {batch_s:.2f} s = {batch_s / n * 1e6:.1f} us "
          f"per transaction ({n / batch_s:,.0f} tx/s)")

    t = time.perf_counter()
    online, ex = replay(tables)
    replay_s = time.perf_counter() - t
    size = ex.state_size()
    last_day = tx["ts"] > tx["ts"].max() - pd.Timedelta("30D")
    active = int(tx.loc[last_day, "account_id"].nunique())
    print(f"replay: {n:,} transactions (and {sum(len(v) for k, v in tables.items() if k != 'transactions'):,} "
          f"other rows) in {replay_s:.1f} s = {n / replay_s:,.0f} tx/s (target 50,000); "
          f"{replay_s / n * 1e6:.0f} us per transaction, {replay_s / batch_s:.0f}x the batch "
          "build's cost per row")
    print(f"state at the end: {size['bytes'] / 1e6:.1f} MB as JSON for {active:,} accounts "
          f"active in the last 30 days = {size['bytes'] / active:,.0f} bytes per active account "
          f"({size['entities']:,} entity states, {size['transactions_remembered']:,} "
          "transactions remembered for fraud reports)")
    equal = _equal(ds, online)
    print(f"online equals batch: {equal} of {len(CATALOG)} features on every transaction")

    # A model to score with: a short study on the same world, registered in a temporary
    # MLflow store.
    root = Path(tempfile.mkdtemp(prefix="fraudlab-bench-online-"))
    config = load_config(None, paths={"root": str(root)}, training={
        "n_trials": 2, "n_splits": 2, "validation_window": "14d", "gap": "7d",
        "max_rounds": 100, "early_stopping_rounds": 10, "report_every": 10})
    matured = build_dataset(tables, as_of + pd.Timedelta("30D"), start=tx["ts"].min(),
                            config=config.features)
    train_model(matured, config)
    mlflow.set_tracking_uri(config.tracking_uri())
    ref_name = f"{config.tracking.registered_model}@champion"
    scorer = load_scorer(config, ref_name)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{ref_name}")

    stream = list(event_stream(tables))
    scored = sum(1 for table, _ in stream if table == "transactions")
    first = scored - args.latency_sample  # warm the state on all but the last sample
    lat, i = [], 0
    for table, row in stream:
        if table != "transactions":
            scorer.update(table, row)
            continue
        if i < first:
            scorer.online.score(row)
        else:
            t = time.perf_counter_ns()
            scorer.score(row)
            lat.append((time.perf_counter_ns() - t) / 1e3)
        i += 1
    lat.sort()
    p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
    last_tx = next(r for table, r in reversed(stream) if table == "transactions")
    row = scorer.encode(scorer.online.features_at(last_tx)).copy()
    booster = scorer.model.booster
    alone = _timed(lambda: booster.inplace_predict(row, predict_type="margin"), 3_000)
    walked = _timed(lambda: scorer.margin(row), 3_000)
    frame = ds.iloc[[len(ds) // 2]].reset_index(drop=True)
    py = _timed(lambda: pyfunc.predict(frame), 200)
    print(f"one transaction scored in process (features + model + calibration + tier), "
          f"{len(lat):,} payments: p50 {p50:.0f} us (target 100), p99 {p99:.0f} us "
          "(target 1,000)")
    print(f"the model's margin on that one row: the scorer's walk of the trees "
          f"({booster.num_boosted_rounds()} trees, "
          f"{'compiled' if scorer.forest is not None else 'XGBoost: the walk refused it'}) "
          f"p50 {statistics.median(walked):.1f} us, p99 "
          f"{walked[int(0.99 * (len(walked) - 1))]:.1f} us; XGBoost's inplace_predict p50 "
          f"{statistics.median(alone):.0f} us, p99 {alone[int(0.99 * (len(alone) - 1))]:.0f} us")
    print(f"MLflow pyfunc predict on a one-row frame of ready features: p50 "
          f"{statistics.median(py):,.0f} us, p99 {py[int(0.99 * (len(py) - 1))]:,.0f} us; "
          f"the in-process scorer is {statistics.median(py) / p50:.0f}x faster at p50 and "
          "computes the features too")
    print(f"peak memory {peak_rss_mb():,.0f} MB; replay / reference = {replay_s / ref:.1f}")


def _timed(call, n: int) -> list[float]:
    """Microseconds of ``n`` calls, sorted."""
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t) / 1e3)
    return sorted(out)


def _equal(ds: pd.DataFrame, online: pd.DataFrame) -> int:
    from fraudlab.features import CATALOG

    b = ds.set_index("tx_id")
    o = online.set_index("tx_id").loc[b.index]
    same = 0
    for f in CATALOG:
        x, y = b[f.name], o[f.name]
        if f.kind == "category":
            ok = x.astype(object).where(x.notna(), None).tolist() == \
                 y.astype(object).where(y.notna(), None).tolist()
        else:
            xv, yv = x.to_numpy(float), y.to_numpy(float).astype(x.dtype).astype(float)
            ok = bool(np.all(np.isclose(xv, yv, rtol=1e-6, atol=1e-6) | (np.isnan(xv) & np.isnan(yv))))
        same += ok
    return same


if __name__ == "__main__":
    main()
