"""The risk service under a bounded load on loopback, next to the in-process scorer.

Targets (issue 18): p50/p99 latency at 200 requests/s, the highest rate sustained with
p99 <= 20 ms and no error, with a state directory and with the state on Redis; what
durability (fsync of every answer) and a shared state cost in latency; and what a
periodic snapshot of the state costs the request that starts it, written inline (the
baseline) or from a forked child (a snapshot every 2,000 payments). The load steps take
a snapshot every ``--snapshot-every`` rows, so their tails include the snapshots' pauses.

A world is simulated, a model trained and registered in a temporary MLflow store, and
``fraudlab serve`` started on it (warmed from the world's history); an async httpx client
then sends new payments at fixed rates, one step per rate. The same steps run again with
``--state redis://...`` when the Redis server answers.

    python benchmarks/bench_serve.py                      # 60 s per step
    python benchmarks/bench_serve.py --seconds 20 --rates 200 400
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import reference_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1_000)
    ap.add_argument("--days", type=int, default=110)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rates", type=int, nargs="+", default=[50, 100, 200, 300, 400])
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                    help="Redis server for the shared-state steps ('' to skip them).")
    ap.add_argument("--snapshot-every", type=int, default=10_000,
                    help="Rows between snapshots of the state in the load steps.")
    ap.add_argument("--no-http", action="store_true", help="In-process figures only.")
    ap.add_argument("--http-only", action="store_true", help="The load steps only.")
    ap.add_argument("--states", nargs="+", default=["directory", "redis"],
                    choices=["directory", "redis"], help="States of the load steps.")
    args = ap.parse_args()


    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import build_dataset, write_tables
    from fraudlab.training import load_config, train_model

    print(f"machine reference (numpy stable argsort of 5M floats): {reference_seconds():.2f} s")
    root = Path(tempfile.mkdtemp(prefix="fraudlab-bench-serve-"))
    world = simulate_world(SimulationConfig(accounts=args.accounts, days=args.days, seed=4,
                                            history_days=30, start=dt.date(2025, 1, 1)))
    write_tables(world.tables(), root / "raw", world.manifest)
    cfg_path = root / "fraudlab.yaml"
    cfg_path.write_text(f"paths: {{root: {root}, raw: raw}}\ntraining: {{n_trials: 2, n_splits: 2, "
                        "validation_window: 14d, gap: 7d, max_rounds: 100, "
                        "early_stopping_rounds: 10, report_every: 10}\n"
                        # Snapshots inside the load steps: their pause is part of the tail.
                        f"serving: {{snapshot_every: {args.snapshot_every}}}\n")
    config = load_config(cfg_path)
    tx = world.transactions
    ds = build_dataset(world.tables(), tx["ts"].max() + pd.Timedelta("31D"), config=config.features)
    train_model(ds, config)

    payments = _payments(tx, int(sum(args.rates) * args.seconds) + 100)
    redis_url = args.redis if args.redis and _redis_up(args.redis) else None
    if not args.http_only:
        _in_process(config, root, payments[:2_000], redis_url)
        _snapshot_pause(config, root, payments[:10_000], every=2_000)
    if args.no_http:
        return
    states = []
    if "directory" in args.states:
        states.append(("state directory", str(root / "state")))
    if "redis" in args.states and redis_url:
        states.append(("state on Redis", redis_url))
    elif "redis" in args.states:
        print(f"Redis at {args.redis or '(none)'} not reachable: shared-state steps skipped")
    for name, state in states:
        print(f"--- over HTTP, {name}")
        _http_steps(cfg_path, root, state, tx, payments, args)


def _redis_up(url: str) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return True
    except Exception:
        return False


def _http_steps(cfg_path: Path, root: Path, state: str, tx, payments: list[dict], args) -> None:
    import uuid

    import httpx  # the readiness poll only

    namespace = None
    if state.startswith("redis://"):  # a namespace of this run's own, deleted afterwards
        namespace = f"fraudlab-bench:{uuid.uuid4().hex[:8]}"
        shared = root / "redis.yaml"
        shared.write_text(cfg_path.read_text().replace(
            "serving: {", f"serving: {{redis_prefix: '{namespace}', "))
        cfg_path = shared
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "fraudlab", "serve", "--model",
                             "fraudlab-fraud@champion", "-c", str(cfg_path), "--port", str(port),
                             "--state", state, "--warm-from", str(root / "raw")],
                            stdout=(root / "serve.log").open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("serve exited before it was ready:\n"
                                 + (root / "serve.log").read_text()[-3000:])
            time.sleep(0.5)
        print(f"service warmed from {len(tx):,} payments of history in "
              f"{time.perf_counter() - t:.0f} s")
        best, offset = None, 0
        for rate in args.rates:
            n = int(rate * args.seconds)
            # The baseline of the same run: the same load on /healthz, which does nothing,
            # is what HTTP and the generator cost on these cores.
            base, _, _ = asyncio.run(_load(url, [None] * min(n, rate * 10), rate, "/healthz"))
            lat, errors, achieved = asyncio.run(_load(url, payments[offset:offset + n], rate))
            offset += n
            lat.sort()
            base.sort()
            p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
            ok = errors == 0 and p99 <= 20.0 and achieved >= 0.95 * rate
            best = rate if ok else best
            print(f"{rate:>5} req/s for {args.seconds:.0f} s: achieved {achieved:,.0f} req/s, "
                  f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, errors {errors}"
                  f"{'' if ok else '  (not sustained)'}; /healthz at this rate: p50 "
                  f"{statistics.median(base):.1f} ms, p99 {base[int(0.99 * (len(base) - 1))]:.1f} ms")
        print(f"highest rate sustained with p99 <= 20 ms and no error: "
              f"{best if best is not None else 'none of'} req/s")
        metrics = {line.split()[0]: float(line.split()[-1])
                   for line in httpx.get(f"{url}/metrics").text.splitlines()
                   if line.startswith("fraudlab_snapshot")}
        taken = metrics.get('fraudlab_snapshots{outcome="taken"}', 1.0) - 1  # not warm-up's
        pause = metrics.get("fraudlab_snapshot_pause_seconds", float("nan"))
        print(f"snapshots taken in the steps: {taken:.0f} (every {args.snapshot_every:,} rows); "
              f"the last one paused its request {pause * 1e3:.1f} ms and took "
              f"{metrics.get('fraudlab_snapshot_seconds', float('nan')):.2f} s to write")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if namespace is not None:
            import redis

            r = redis.Redis.from_url(state)
            keys = r.keys(f"{namespace}:*")
            if keys:
                r.delete(*keys)


def _payments(tx: pd.DataFrame, n: int) -> list[dict]:
    """New payments after the world's end: its last 30 days of payments sent again (new
    ids), shifted by 30 days per repetition, so that each account keeps its own pace and
    the payments stay in the past of the service's clock (the world starts in 2025)."""
    end = tx["ts"].max()
    base = tx[tx["ts"] > end - pd.Timedelta("30D")].sort_values("ts").to_dict("records")
    out = []
    for k in range(n):
        block, r = divmod(k, len(base))
        r = {key: (None if isinstance(v, float) and v != v else v) for key, v in base[r].items()}
        r["ts"] = (r["ts"] + pd.Timedelta(days=30 * (block + 1))).isoformat()
        r["tx_id"] = f"B{block}-{r['tx_id']}"
        out.append(r)
    return out


def _in_process(config, root: Path, payments: list[dict], redis_url: str | None) -> None:
    """The service core without HTTP: a state directory with and without fsync (what
    durability costs), and the state on Redis with one replica and with two taking the
    payments in turn (each then also applies the other's)."""
    import uuid

    from fraudlab.features import event_stream, load_raw
    from fraudlab.serving import RedisStore, RiskService
    from fraudlab.training import load_scorer

    raw = load_raw(root / "raw", config.sources)
    history = list(event_stream({k: t.frame for k, t in raw.tables.items()}))
    setups = [("state directory, fsync off", False, 1), ("state directory, fsync on ", True, 1)]
    if redis_url:
        setups += [("state on Redis, 1 replica ", None, 1), ("state on Redis, 2 replicas", None, 2)]
    for label, fsync, replicas in setups:
        namespace = f"fraudlab-bench:{uuid.uuid4().hex[:8]}"
        services = []
        for k in range(replicas):
            state = (root / f"inproc-{fsync}" if fsync is not None else
                     RedisStore(redis_url, namespace, "bench"))
            service = RiskService(load_scorer(config, "fraudlab-fraud@champion"), state,
                                  model_version="bench", features_version="bench",
                                  fsync=bool(fsync), decisions=root / f"decisions-{label}-{k}")
            service.start(iter(history) if k == 0 else None)
            services.append(service)
        lat = []
        for i, p in enumerate(payments):
            row = {**p, "ts": pd.Timestamp(p["ts"]).to_pydatetime()}
            t = time.perf_counter()
            services[i % replicas].score(row)
            lat.append((time.perf_counter() - t) * 1e3)
        for service in services:
            service.close()
        if fsync is None:
            services[0].store.r.delete(*services[0].store.r.keys(f"{namespace}:*"))
        lat.sort()
        print(f"in process, {label}: {len(lat):,} payments, p50 "
              f"{statistics.median(lat):.2f} ms, p99 {lat[int(0.99 * (len(lat) - 1))]:.2f} ms "
              "(features, model, reasons for flagged payments, logs)")


def _snapshot_pause(config, root: Path, payments: list[dict], every: int) -> None:
    """What a periodic snapshot costs the requests: the same payments scored with a
    snapshot every ``every`` rows, taken inline by the request that reaches the count (the
    baseline) and from a forked child while requests go on."""
    from fraudlab.features import event_stream, load_raw
    from fraudlab.serving import RiskService
    from fraudlab.training import load_scorer

    raw = load_raw(root / "raw", config.sources)
    history = list(event_stream({k: t.frame for k, t in raw.tables.items()}))
    worst, paused = {}, {}
    for background in (False, True):
        service = RiskService(load_scorer(config, "fraudlab-fraud@champion"),
                              root / f"snap-{background}", model_version="bench",
                              features_version="bench", snapshot_every=every,
                              snapshot_in_background=background)
        service.start(iter(history))
        gc.collect()  # as `fraudlab serve` does after warming: no full collections over
        gc.freeze()  # the warmed state while requests are timed
        size = sum(f.stat().st_size for f in (root / f"snap-{background}" / "snapshots").rglob("*"))
        lat, pauses = [], []
        for p in payments:
            row = {**p, "ts": pd.Timestamp(p["ts"]).to_pydatetime()}
            t = time.perf_counter()
            service.score(row)
            lat.append((time.perf_counter() - t) * 1e3)
            if service._since_snapshot == 0:  # this request started (or took) one
                pauses.append(service.snapshots["last_pause_seconds"] * 1e3)
        service.wait_for_snapshot()
        taken, written = service.snapshots["taken"] - 1, service.snapshots["last_seconds"]
        service.close()
        gc.unfreeze()
        lat.sort()
        worst[background], paused[background] = max(lat), statistics.median(pauses)
        print(f"snapshots {'forked' if background else 'inline'}: {len(lat):,} payments, "
              f"{taken} snapshots of {size / 1e6:.1f} MB (last written in {written:.2f} s); "
              f"request paused {statistics.median(pauses):.1f} ms median; p50 "
              f"{statistics.median(lat):.2f} ms, p99 {lat[int(0.99 * (len(lat) - 1))]:.2f} ms, "
              f"max {lat[-1]:.1f} ms")
    print(f"request that starts a snapshot: forked / inline = {paused[True] / paused[False]:.4f}"
          f"; slowest request: forked / inline = {worst[True] / worst[False]:.3f}")


async def _load(url: str, payments: list[dict], rate: int, path: str = "/v1/transactions"):
    """Send ``payments`` at ``rate`` per second (open loop); latencies in ms.

    aiohttp rather than httpx: against a FastAPI endpoint that does nothing, httpx's async
    client measured p50 3.8 ms, p99 18 ms at 200 req/s and fell to 83 req/s when asked
    for 400, on these 2 cores; aiohttp's p50 1.6 ms, p99 7 ms, and it kept 800 req/s. The
    generator was measuring itself."""
    import aiohttp

    lat, errors = [], 0
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:
        async def one(p):
            nonlocal errors
            t = time.perf_counter()
            try:
                if path == "/healthz":
                    async with client.get(path) as r:
                        await r.read()
                else:
                    async with client.post(path, json=p) as r:
                        await r.read()
                if r.status != 200:
                    errors += 1
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
            lat.append((time.perf_counter() - t) * 1e3)

        start = time.perf_counter()
        tasks = []
        for i, p in enumerate(payments):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(p)))
        await asyncio.gather(*tasks)
        achieved = len(payments) / (time.perf_counter() - start)
    return lat, errors, achieved


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
