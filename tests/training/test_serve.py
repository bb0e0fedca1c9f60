"""`fraudlab serve` as a real process: warmed from history, killed with SIGKILL, started
again on the same state, it answers the next payments exactly as a run never killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest

from fraudlab.features import event_stream

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cfg, state, port, *extra):
    cmd = [sys.executable, "-m", "fraudlab", "serve", "--model", "fraudlab-fraud@champion",
           "-c", str(cfg), "--port", str(port), "--state", str(state), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("serve did not become ready")


def _payments(root, n, weeks=1):
    """New payments after the world's end: its last ``n`` payments ``weeks`` later."""
    tx = pd.read_parquet(root / "raw" / "transactions.parquet").sort_values("ts").tail(n)
    out = []
    for r in tx.to_dict("records"):
        r = {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        r["ts"] = (r["ts"] + pd.Timedelta(days=7 * weeks)).isoformat()
        r["tx_id"] = f"NEW{weeks}-" + r["tx_id"]
        out.append(r)
    return out


def _snapshot_position(state) -> int:
    """How many logged rows the current snapshot of a state directory holds."""
    return int((state / "CURRENT").read_text().split("-")[0])


def _move_champion(cfg) -> str:
    """Register the champion's run again as a new version and point the alias at it."""
    import mlflow

    from fraudlab.training import load_config

    config = load_config(cfg)
    mlflow.set_tracking_uri(config.tracking_uri())
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias("fraudlab-fraud", "champion")
    new = mlflow.register_model(mv.source, "fraudlab-fraud")
    client.set_registered_model_alias("fraudlab-fraud", "champion", new.version)
    return new.version


def _replay_into(scorer, raw) -> None:
    for table, row in event_stream({k: t.frame for k, t in raw.tables.items()}):
        if table == "transactions":
            scorer.score(row)
        else:
            scorer.update(table, row)


def test_a_killed_service_restarts_where_it_was(trained, tmp_path):
    from fraudlab.serving import Scorer
    from fraudlab.training import load_config, load_registered

    root, cfg, _, _ = trained
    new = _payments(root, 60)
    port = _port()
    state = tmp_path / "state"
    often = tmp_path / "often.yaml"  # snapshots from forked children between the payments
    often.write_text(cfg.read_text() + "serving: {snapshot_every: 8}\n")
    proc = _start(often, state, port, "--warm-from", str(root / "raw"))
    url = f"http://127.0.0.1:{port}"
    first = [httpx.post(f"{url}/v1/transactions", json=p, timeout=10).json() for p in new[:30]]
    assert all("score" in d for d in first), first[:2]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # A forked child writes its snapshot even when its parent is killed meanwhile: the
    # current one is soon of a position past the warm-up's (0).
    deadline = time.monotonic() + 60
    while _snapshot_position(state) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _snapshot_position(state) >= 8

    port = _port()
    reload_cfg = tmp_path / "reload.yaml"
    reload_cfg.write_text(cfg.read_text() + "serving: {reload_every: 0.5}\n")
    proc = _start(reload_cfg, state, port)  # no --warm-from: its own snapshot and log
    url = f"http://127.0.0.1:{port}"
    try:
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["ready"] and ready["model_version"] == "fraudlab-fraud/1"
        again = httpx.post(f"{url}/v1/transactions", json=new[29], timeout=10)
        assert again.status_code == 409  # answered before the kill: still known
        second = [httpx.post(f"{url}/v1/transactions", json=p, timeout=10).json()
                  for p in new[30:]]
        metrics = httpx.get(f"{url}/metrics").text
        moved = _move_champion(reload_cfg)  # version 2 of the same run: the same features
        later = _payments(root, 200, weeks=2)
        answers = []
        deadline = time.monotonic() + 60
        for p in later:
            answers.append(httpx.post(f"{url}/v1/transactions", json=p, timeout=10))
            if answers[-1].json()["model_version"] == f"fraudlab-fraud/{moved}":
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Stopped by SIGTERM, it snapshots every row it logged on the way out.
    assert _snapshot_position(state) == len(new) + len(answers)
    assert "fraudlab_decisions_total" in metrics
    # The alias moved under requests: none failed, and the new version took over.
    assert all(a.status_code == 200 for a in answers)
    assert answers[-1].json()["model_version"] == f"fraudlab-fraud/{moved}"

    # A run never killed: the same history and payments through the scorer in process.
    config = load_config(cfg)
    model, _, _ = load_registered(config, "fraudlab-fraud@champion")
    scorer = Scorer(model)
    from fraudlab.features import load_raw

    raw = load_raw(root / "raw", config.sources)
    _replay_into(scorer, raw)
    want = [scorer.score(p) for p in new]
    got = first + second
    assert [d["tx_id"] for d in got] == [w.tx_id for w in want]
    for d, w in zip(got, want, strict=True):
        assert d["score"] == pytest.approx(w.probability, rel=1e-9) and d["tier"] == w.tier

    # Every decision is in the log, once, and the CLI reads it back.
    out = subprocess.run([sys.executable, "-m", "fraudlab", "decisions", "--state", str(state),
                          "-c", str(cfg)], capture_output=True, text=True, check=True).stdout
    logged = [line for line in out.splitlines() if line.startswith("{")]
    assert len(logged) == len(new) + len(answers)

    # A snapshot in another format (an earlier fraudlab's) stops the start with a reason.
    snap = state / "snapshots" / (state / "CURRENT").read_text().strip() / "online_state.json"
    doc = json.loads(snap.read_text())
    snap.write_text(json.dumps({**doc, "format_version": 1}))
    refused = subprocess.run(
        [sys.executable, "-m", "fraudlab", "serve", "--model", "fraudlab-fraud@champion",
         "-c", str(cfg), "--port", str(_port()), "--state", str(state)],
        capture_output=True, text=True, timeout=240)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "not an online state of format version" in said and "--warm-from" in said


def test_two_replicas_on_redis_and_thresholds_a_refresh_rechose(trained, tmp_path, redis_url):
    """Two service processes on one Redis state: payments sent to each in turn score as in
    one process that saw them all. When a refresh stores new thresholds on the served
    version, both replicas take them without a restart."""
    import mlflow

    from fraudlab.features import load_raw
    from fraudlab.serving import Scorer
    from fraudlab.training import load_config, load_registered, version_tiers

    root, cfg, _, _ = trained
    url, namespace = redis_url
    conf = tmp_path / "replicas.yaml"
    conf.write_text(cfg.read_text() + f"serving: {{reload_every: 0.5, redis_prefix: '{namespace}', "
                    f"state: {tmp_path / 'local'}}}\n")
    ports = [_port(), _port()]
    procs = [_start(conf, url, ports[0], "--warm-from", str(root / "raw"))]
    config = load_config(conf)
    mlflow.set_tracking_uri(config.tracking_uri())
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias("fraudlab-fraud", "champion")
    tiers = version_tiers(mv)
    try:
        procs.append(_start(conf, url, ports[1]))  # restores the state the first one warmed
        new = _payments(root, 40, weeks=3)
        got = [httpx.post(f"http://127.0.0.1:{ports[i % 2]}/v1/transactions", json=p,
                          timeout=10).json() for i, p in enumerate(new)]
        # The payment one replica answered is a duplicate to the other.
        again = httpx.post(f"http://127.0.0.1:{ports[0]}/v1/transactions", json=new[-1], timeout=10)
        assert again.status_code == 409
        # A refresh that keeps the champion stores its re-chosen thresholds on the version.
        for tag in ("fraudlab.tier.block", "fraudlab.tier.review"):
            client.set_model_version_tag("fraudlab-fraud", mv.version, tag, "0.0")
        later = _payments(root, 120, weeks=4)
        last = {}  # replica -> tier of its newest answer
        deadline = time.monotonic() + 60
        for i, p in enumerate(later):
            last[i % 2] = httpx.post(f"http://127.0.0.1:{ports[i % 2]}/v1/transactions",
                                     json=p, timeout=10).json()["tier"]
            if last == {0: "block", 1: "block"} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        for tier, tag in (("block", "fraudlab.tier.block"), ("review", "fraudlab.tier.review")):
            if tiers is None:  # a version registered without them (another test's)
                client.delete_model_version_tag("fraudlab-fraud", mv.version, tag)
            else:
                client.set_model_version_tag("fraudlab-fraud", mv.version, tag, str(tiers[tier]))
    assert last == {0: "block", 1: "block"}  # each replica blocks at the new thresholds

    model, _, _ = load_registered(config, f"fraudlab-fraud/{mv.version}")
    scorer = Scorer(model)
    _replay_into(scorer, load_raw(root / "raw", config.sources))
    want = [scorer.score(p) for p in new]
    assert [d["tx_id"] for d in got] == [w.tx_id for w in want]
    for d, w in zip(got, want, strict=True):
        assert d["score"] == pytest.approx(w.probability, rel=1e-9) and d["tier"] == w.tier
