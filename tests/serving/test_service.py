"""The risk service over HTTP (FastAPI's test client, in process): scores equal the scorer's,
bad requests are refused field by field and change nothing, a crash loses no answered row,
and the decision log is read back."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest

from fraudlab.features import event_stream
from fraudlab.serving import (
    DuplicateTransaction,
    RedisStore,
    RiskService,
    Scorer,
    StoreBusy,
    create_app,
    purge_decisions,
    read_decisions,
)

TestClient = pytest.importorskip("fastapi.testclient",
                                 reason="the serve extra is not installed").TestClient


@pytest.fixture(scope="module")
def stream(small_world):
    """The small world as a service sees it: the first 80% of rows as history to warm
    with, the rest to send."""
    rows = list(event_stream(small_world.tables()))
    cut = int(len(rows) * 0.8)
    return rows[:cut], rows[cut:]


def _json(row: dict) -> dict:
    """A row as a client sends it: times as ISO 8601 with their offset."""
    out = {}
    for k, v in row.items():
        if isinstance(v, int) and k in ("ts", "reported_at", "listed_at", "delisted_at"):
            v = pd.Timestamp(v * 1000, tz="UTC").isoformat()
        elif hasattr(v, "isoformat"):
            v = v.isoformat()
        out[k] = v
    return out


def _started(fitted, state, warm, **kw):
    """A service on ``state`` started (warmed from ``warm``, or restored from the state
    when it is None): the service and what it did to start."""
    service = RiskService(Scorer(fitted), state, model_version="m/1",
                          features_version=fitted.spec["features_version"], **kw)
    return service, service.start(warm)


def _service(fitted, tmp_path, warm, **kw):
    return _started(fitted, tmp_path, warm, **kw)[0]


def _send(client, rows):
    """Post rows in order; payments one by one, the others in runs. Returns decisions."""
    out, batch, table = [], [], None
    for t, row in rows:
        if t != "transactions" and t == table:
            batch.append(_json(row))
            continue
        if batch:
            r = client.post(f"/v1/{table}", json=batch)
            assert r.status_code == 200, r.text
            batch = []
        table = t
        if t == "transactions":
            r = client.post("/v1/transactions", json=_json(row))
            assert r.status_code == 200, r.text
            out.append(r.json())
        else:
            batch = [_json(row)]
    if batch:
        assert client.post(f"/v1/{table}", json=batch).status_code == 200
    return out


def _reference(fitted, warm, rest):
    scorer = Scorer(fitted)
    got = {}
    for t, row in [*warm, *rest]:
        if t == "transactions":
            s = scorer.score(row)
            got[s.tx_id] = (s.probability, s.tier)
        else:
            scorer.update(t, row)
    return got


def _continues(fitted, stream, service, rows) -> None:
    """``rows`` sent to ``service`` are answered as by a run never interrupted."""
    got = _send(TestClient(create_app(service)), rows)
    want = _reference(fitted, *stream)
    for d in got:
        assert d["score"] == pytest.approx(want[d["tx_id"]][0], rel=1e-9)


def test_scores_over_http_equal_the_scorer_and_the_log_holds_them(fitted, stream, tmp_path):
    warm, rest = stream
    service = _service(fitted, tmp_path, warm)
    client = TestClient(create_app(service))
    assert client.get("/readyz").json()["ready"]
    got = _send(client, rest)
    want = _reference(fitted, warm, rest)
    assert len(got) > 200
    for d in got:
        assert d["score"] == pytest.approx(want[d["tx_id"]][0], rel=1e-9)
        assert d["tier"] == want[d["tx_id"]][1]
        assert d["model_version"] == "m/1"
        assert d["features_version"] == fitted.spec["features_version"]
        if d["tier"] == "pass":
            assert d["reasons"] == []  # only flagged payments are explained
    flagged = [d for d in got if d["tier"] != "pass"]
    assert flagged  # the world's frauds reach the review tier
    for d in flagged:
        assert 1 <= len(d["reasons"]) <= 3
        assert all(r["contribution"] > 0 and r["text"] for r in d["reasons"])
    # Reasons compare with the account's usual value, from its earlier payments.
    assert any("(usual for" in r["text"] for d in flagged for r in d["reasons"])
    log = read_decisions(tmp_path)
    assert [r["tx_id"] for r in log] == [d["tx_id"] for d in got]
    assert read_decisions(tmp_path, tier="pass") == [r for r in log if r["tier"] == "pass"]
    metrics = client.get("/metrics").text
    assert f'fraudlab_decisions_total{{tier="pass"}} {float(sum(d["tier"] == "pass" for d in got))}' in metrics
    assert (f'fraudlab_model_info{{features_version="{fitted.spec["features_version"]}",'
            'model_version="m/1"} 1.0') in metrics
    service.close()


def test_a_crash_loses_no_answered_row(fitted, stream, tmp_path):
    """Half the rows, then the process 'dies' (nothing closed, no snapshot); a new service
    on the same state directory answers the rest exactly as one never killed."""
    warm, rest = stream
    half = len(rest) // 2
    first = _service(fitted, tmp_path, warm)
    _send(TestClient(create_app(first)), rest[:half])
    # No close(): the write-ahead log is all there is of the second half's state.
    again, done = _started(fitted, tmp_path, None)
    assert done["restored"] and done["replayed"] > 0
    _continues(fitted, stream, again, rest[half:])
    # A payment answered just before the crash is still known: refused as a duplicate.
    sent = [r for t, r in rest[:half] if t == "transactions"][-1]
    assert TestClient(create_app(again)).post("/v1/transactions", json=_json(sent)).status_code == 409


def _logged(state) -> list[str]:
    """Every row of a state directory's log, oldest first: segment after segment."""
    return [line for seg in sorted((state / "log").glob("*.jsonl"))
            for line in seg.read_text().splitlines()]


@pytest.mark.parametrize("background", [True, False], ids=["forked", "inline"])
def test_periodic_snapshots_bound_what_a_restart_replays(fitted, stream, tmp_path, background):
    """A snapshot every 400 rows: a process killed half-way replays at most the rows after
    the last one (plus the list that crossed the count), answers the rest as a run never
    killed, and the log still holds every row, segment after segment."""
    warm, rest = stream
    half = len(rest) // 2
    assert half > 3 * 400
    first = _service(fitted, tmp_path, warm, snapshot_every=400,
                     snapshot_in_background=background)
    _send(TestClient(create_app(first)), rest[:half])
    first.wait_for_snapshot()  # a background one under way when killed would finish alone
    # Inline, one every 400 rows; forked, one at a time (a count reached while the child
    # still writes starts the next one when it has finished).
    assert first.snapshots["taken"] >= (2 if background else 4)
    assert first.snapshots["failed"] == 0
    assert len(list((tmp_path / "snapshots").iterdir())) == 1  # older ones are removed
    # The first segment, then one after each snapshot but the warm-up's (at position 0).
    assert len(list((tmp_path / "log").glob("*.jsonl"))) == first.snapshots["taken"]
    metrics = TestClient(create_app(first)).get("/metrics").text
    assert f'fraudlab_snapshots{{outcome="taken"}} {float(first.snapshots["taken"])}' in metrics
    pause = next(line for line in metrics.splitlines()
                 if line.startswith("fraudlab_snapshot_pause_seconds "))
    assert float(pause.split()[-1]) == first.snapshots["last_pause_seconds"]
    # Killed: no close(), no final snapshot.
    again, done = _started(fitted, tmp_path, None, snapshot_every=400)
    longest_list = max(len(list(g)) for _, g in itertools.groupby(t for t, _ in rest[:half]))
    # The rows logged since the last snapshot, and only those, are replayed.
    assert done["restored"] and 0 < done["replayed"] == first._since_snapshot < half
    if not background:
        assert done["replayed"] < 400 + longest_list
    _continues(fitted, stream, again, rest[half:])
    again.close()
    assert len(_logged(tmp_path)) == len(rest)
    # Clean restarts go on in the last segment: none left empty behind them.
    segments = sorted((tmp_path / "log").glob("*.jsonl"))
    for _ in range(2):
        _started(fitted, tmp_path, None)[0].close()
    assert sorted((tmp_path / "log").glob("*.jsonl")) == segments
    assert all(seg.stat().st_size for seg in segments)


def test_a_background_snapshot_is_the_state_at_its_fork(fitted, stream, tmp_path):
    """Rows taken while the forked child writes are not in its snapshot (its position says
    where the log goes on), and a restart from it answers as a run never stopped."""
    warm, rest = stream
    service = _service(fitted, tmp_path, warm, snapshot_every=300)
    client = TestClient(create_app(service))
    sent = 0
    while service._child is None:  # up to the request that forks
        _send(client, rest[sent:sent + 1])
        sent += 1
    forked_at = service._position
    # Fewer rows than the next count: taken by the parent while the child may still write.
    after = sent + 250
    _send(client, rest[sent:after])
    service.wait_for_snapshot()
    assert service.snapshots["failed"] == 0
    name = (tmp_path / "CURRENT").read_text().strip()
    meta = json.loads((tmp_path / "snapshots" / name / "service.json").read_text())
    assert meta["wal_lines"] == forked_at < service._position
    # The parent went on in a segment that starts where the snapshot ends.
    assert (tmp_path / "log" / f"{forked_at:012d}.jsonl").exists()
    # Nothing closed: the process "dies" here.
    again, done = _started(fitted, tmp_path, None)
    assert done["restored"] and done["replayed"] == service._position - forked_at
    _continues(fitted, stream, again, rest[after:])
    again.close()


@pytest.mark.parametrize("release", [True, False])
def test_a_forked_snapshot_lets_go_of_the_listening_port(release):
    """A service killed while its background snapshot is written: the child must not hold
    the port, or the process started in its place cannot bind it until the child ends."""
    import os
    import socket
    import time

    from fraudlab.serving._service import _release_listeners

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if release:
                _release_listeners()
            os.write(ready_w, b"x")
            time.sleep(60)  # as a snapshot being written, until the parent kills it
        finally:
            os._exit(0)
    try:
        os.read(ready_r, 1)
        listener.close()  # the parent "dies": only the child could still hold the port
        if release:
            socket.create_server(("127.0.0.1", port)).close()
        else:  # the control: a child that keeps its copy keeps the port
            with pytest.raises(OSError):
                socket.create_server(("127.0.0.1", port)).close()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)


def test_a_snapshot_cut_short_leaves_the_previous_one_current(fitted, stream, tmp_path,
                                                              monkeypatch):
    """The disk fails while a periodic snapshot is written: the request is answered, the
    failure counted, and a restart takes the last complete snapshot and the log."""
    from pathlib import Path

    warm, rest = stream
    service = _service(fitted, tmp_path, warm, snapshot_every=500)
    current = (tmp_path / "CURRENT").read_text()
    real = Path.rename

    def full_disk(self, target):
        if self.name.endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", full_disk)  # the forked child inherits the failure
    half = len(rest) // 2
    _send(TestClient(create_app(service)), rest[:half])
    service.wait_for_snapshot()
    # Each failure is tried again later (how often depends on how long the children take).
    assert service.snapshots["failed"] >= 1 and service.snapshots["taken"] == 1  # at warm-up
    assert (tmp_path / "CURRENT").read_text() == current
    monkeypatch.setattr(Path, "rename", real)
    again, done = _started(fitted, tmp_path, None)
    assert done["replayed"] == half
    _continues(fitted, stream, again, rest[half:])
    again.close()


def test_a_state_directory_of_the_older_layout_is_read(fitted, stream, tmp_path):
    """One log file ``accepted.jsonl`` and one ``snapshot/`` directory, as earlier
    versions wrote them: restored, replayed, and continued in segments."""
    import shutil

    warm, rest = stream
    half = len(rest) // 2
    first = _service(fitted, tmp_path, warm, snapshot_every=0)
    _send(TestClient(create_app(first)), rest[:half])
    first.close()
    name = (tmp_path / "CURRENT").read_text().strip()
    (tmp_path / "snapshots" / name).rename(tmp_path / "snapshot")
    (tmp_path / "accepted.jsonl").write_text("".join(line + "\n" for line in _logged(tmp_path)))
    shutil.rmtree(tmp_path / "log")
    shutil.rmtree(tmp_path / "snapshots")
    (tmp_path / "CURRENT").unlink()
    again, done = _started(fitted, tmp_path, None)
    assert done["restored"] and done["replayed"] == 0  # the clean shutdown's snapshot
    _continues(fitted, stream, again, rest[half:])
    again.close()
    assert not (tmp_path / "accepted.jsonl").exists() and not (tmp_path / "snapshot").exists()
    assert len(_logged(tmp_path)) == len(rest)


def test_one_fsync_makes_a_batch_of_answers_durable(fitted, stream, tmp_path, monkeypatch):
    """Payments scored while an fsync is under way wait for the next one, which covers
    them all: 12 answers with 2 files to sync take at most 3 rounds (6 fsyncs, not 24),
    and none is answered before an fsync that began after its lines were written."""
    import asyncio
    import os
    import threading
    import time

    warm, rest = stream
    service = _service(fitted, tmp_path, warm)
    payments = [r for t, r in rest if t == "transactions"][:12]
    calls, real = [], os.fsync
    lock = threading.Lock()

    def slow_fsync(fd):
        began = time.perf_counter()
        time.sleep(0.2)  # scoring the 12 payments takes far less
        real(fd)
        with lock:
            calls.append(began)

    monkeypatch.setattr(os, "fsync", slow_fsync)

    async def run():
        pending = []
        for row in payments:
            decision, ticket = service.score_pending(row)
            pending.append((time.perf_counter(), ticket))
            await asyncio.sleep(0)
        answered = []
        for written, ticket in pending:
            await service.durable_async(ticket)
            answered.append((written, time.perf_counter()))
        return answered

    answered = asyncio.run(run())
    assert 2 <= len(calls) <= 6
    for written, at in answered:
        assert any(written <= began <= at - 0.2 for began in calls)
    lines = sorted((tmp_path / "log").glob("*.jsonl"))[-1].read_text().splitlines()
    assert [json.loads(x)["row"]["tx_id"] for x in lines[-12:]] == [p["tx_id"] for p in payments]
    monkeypatch.setattr(os, "fsync", real)
    service.close()


def test_a_failed_fsync_answers_nothing_and_stops_serving(fitted, stream, tmp_path, monkeypatch):
    import os

    warm, rest = stream
    service = _service(fitted, tmp_path, warm)
    payments = [r for t, r in rest if t == "transactions"]

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StoreBusy, match="could not be synced"):
        service.score(payments[0])
    assert not service.ready
    with pytest.raises(StoreBusy):  # and takes no new answer
        service.score(payments[1])
    client = TestClient(create_app(service))
    assert client.post("/v1/transactions", json=_json(payments[2])).status_code == 503


def _good(stream):
    return _json(next(r for t, r in stream[1] if t == "transactions"))


BAD = [
    ("missing field", lambda g: {k: v for k, v in g.items() if k != "amount"}, 422, "amount"),
    ("wrong type", lambda g: {**g, "amount": "ten"}, 422, "amount"),
    ("negative amount", lambda g: {**g, "amount": -1.0}, 422, "amount"),
    ("unknown channel", lambda g: {**g, "channel": "fax"}, 422, "channel"),
    ("unparsable time", lambda g: {**g, "ts": "yesterday"}, 422, "ts"),
    ("time without offset", lambda g: {**g, "ts": "2026-02-01T10:00:00"}, 422, "ts"),
    ("far future", lambda g: {**g, "ts": "2031-01-01T00:00:00+00:00"}, 422, "ts"),
    ("latitude out of range", lambda g: {**g, "lat": 123.0}, 422, "lat"),
    ("empty tx_id", lambda g: {**g, "tx_id": ""}, 422, "tx_id"),
    ("unknown field", lambda g: {**g, "card_pin": "1234"}, 422, "card_pin"),
    ("unknown tx_type", lambda g: {**g, "tx_type": "gift"}, 422, "tx_type"),
    ("null account", lambda g: {**g, "account_id": None}, 422, "account_id"),
]


@pytest.mark.parametrize(("case", "change", "status", "field"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_payment_is_refused_by_field_and_changes_nothing(fitted, stream, tmp_path, case,
                                                                change, status, field):
    service = _service(fitted, tmp_path, stream[0])
    client = TestClient(create_app(service))
    before = json.dumps(service.scorer.online._state(), default=str)
    r = client.post("/v1/transactions", json=change(_good(stream)))
    assert r.status_code == status, r.text
    assert field in json.dumps(r.json()["detail"])
    assert json.dumps(service.scorer.online._state(), default=str) == before
    assert read_decisions(tmp_path) == []
    assert client.post("/v1/transactions", json=_good(stream)).status_code == 200  # still serving


@pytest.mark.parametrize("raw", ['{"amount": NaN}', '{"amount": Infinity}'])
def test_nan_and_infinite_amounts_are_refused(fitted, stream, tmp_path, raw):
    client = TestClient(create_app(_service(fitted, tmp_path, stream[0])))
    body = json.dumps({k: v for k, v in _good(stream).items() if k != "amount"})[:-1] + ", " + raw[1:]
    r = client.post("/v1/transactions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "amount" in r.text


def test_duplicates_oversized_bodies_lists_and_tokens(fitted, stream, tmp_path, monkeypatch):
    service = _service(fitted, tmp_path, stream[0])
    client = TestClient(create_app(service, max_body_bytes=2_000, max_rows=3))
    good = _good(stream)
    assert client.post("/v1/transactions", json=good).status_code == 200
    r = client.post("/v1/transactions", json=good)
    assert r.status_code == 409 and good["tx_id"] in r.text
    r = client.post("/v1/events", content=b"[" + b" " * 3_000 + b"]",
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    paid = next(r for t, r in stream[1] if t == "transactions")["ts"]
    # An event after the payment just scored: not late.
    event = _json(next(r for t, r in stream[1] if t == "events" and r["ts"] >= paid))
    assert client.post("/v1/events", json=[event] * 4).status_code == 422  # over max_rows
    assert client.post("/v1/events", json=[{**event, "event_type": "hug"}]).status_code == 422
    assert client.post("/v1/events", json=[event]).json() == {"accepted": 1, "late": 0}

    monkeypatch.setenv("FRAUDLAB_TEST_TOKEN", "s3cret")
    guarded = TestClient(create_app(service, token_env="FRAUDLAB_TEST_TOKEN"))
    other = {**good, "tx_id": good["tx_id"] + "-2"}
    assert guarded.post("/v1/transactions", json=other).status_code == 401
    assert guarded.post("/v1/transactions", json=other,
                        headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.post("/v1/transactions", json=other,
                        headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert guarded.get("/healthz").status_code == 200  # reads need no token


def test_fastapi_telemetry_stays_off_even_when_the_environment_asks(fitted, stream, tmp_path,
                                                                   monkeypatch):
    """The service reports through /metrics only: FastAPI's OpenTelemetry (where this
    FastAPI has it) is off, and FASTAPI_OTEL_AUTO_CONFIGURE cannot add an exporter."""
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    app = create_app(_service(fitted, tmp_path, stream[0]))
    telemetry = getattr(app, "_telemetry", None)
    if telemetry is None:
        pytest.skip("this FastAPI has no telemetry of its own")
    assert not any(telemetry[k] for k in ("tracing", "metrics", "logs", "operation_spans",
                                          "auto_configure"))


def test_decisions_younger_than_the_retention_are_never_purged(tmp_path):
    folder = tmp_path / "decisions"
    folder.mkdir()
    today = pd.Timestamp.now(tz="UTC")
    old = (today - pd.Timedelta(days=2000)).strftime("%Y-%m-%d")
    young = (today - pd.Timedelta(days=1000)).strftime("%Y-%m-%d")
    for day in (old, young):
        (folder / f"{day}.jsonl").write_text(json.dumps({"decided_at": f"{day}T00:00:00+00:00",
                                                          "tier": "pass", "tx_id": day}) + "\n")
    gone = purge_decisions(tmp_path, before=today, retention_days=1826)
    assert [p.stem for p in gone] == [old]
    assert [r["tx_id"] for r in read_decisions(tmp_path)] == [young]


def _fit(dataset, rounds):
    from fraudlab.training import TrainingConfig, build_protocol, fit_final
    from fraudlab.training._search import BASELINE_PARAMS

    cfg = TrainingConfig(n_splits=2, validation_window="14d", gap="7d",
                         calibration_window="14d", test_window="14d")
    model = fit_final(build_protocol(dataset, cfg), {**BASELINE_PARAMS, "n_rounds": rounds},
                      cfg).scorer()
    model.declarations = dataset.attrs["features"]
    return model


@pytest.mark.parametrize("same_features", [True, False])
def test_a_new_model_takes_over_between_two_payments(fitted, labeled_dataset, stream, tmp_path,
                                                     same_features):
    """The next payment after the swap is scored by the new version, with features equal
    to a run that had the new model's state from the start."""
    from fraudlab.features import FeaturesConfig, build_dataset

    warm, rest = stream
    if same_features:
        other = _fit(labeled_dataset, 10)
    else:
        from fraudlab.datasets import SimulationConfig, simulate_world

        world = simulate_world(SimulationConfig(accounts=3000, days=85, seed=11, history_days=30))
        fewer = build_dataset(world.tables(), labeled_dataset.attrs["as_of"],
                              config=FeaturesConfig(exclude=["kyc_level"]))
        other = _fit(fewer, 10)
    service = _service(fitted, tmp_path, warm)
    client = TestClient(create_app(service))
    half = len(rest) // 2
    _send(client, rest[:half])
    how = service.swap_model(other, "m/2", history=iter(warm) if not same_features else None)
    assert how == ("shared state" if same_features else "warmed")
    got = _send(client, rest[half:])
    assert {d["model_version"] for d in got} == {"m/2"}
    want = {}
    scorer = Scorer(other)
    for t, row in [*warm, *rest]:
        if t == "transactions":
            s = scorer.score(row)
            want[s.tx_id] = s.probability
        else:
            scorer.update(t, row)
    for d in got:
        assert d["score"] == pytest.approx(want[d["tx_id"]], rel=1e-9)
    assert (d["features_version"] == fitted.spec["features_version"]) == same_features
    if not same_features:
        # The first request after the swap snapshotted the new state: a restart on the new
        # model loads it (a snapshot of the old declarations would be refused).
        service.wait_for_snapshot()
        again, done = _started(other, tmp_path, None)
        assert done["restored"] and done["replayed"] < len(rest) - half
        again.close()


def test_a_model_with_other_features_and_no_history_is_refused(fitted, labeled_dataset, stream,
                                                               tmp_path):
    service = _service(fitted, tmp_path, stream[0])
    other = _fit(labeled_dataset, 10)
    other.spec = {**other.spec, "features_version": "different"}
    assert service.swap_model(other, "m/3").startswith("refused")
    assert service.model_version == "m/1"


def _replica(fitted, redis_url, tmp_path, name, warm=None, **kw):
    url, namespace = redis_url
    store = RedisStore(url, namespace, fitted.spec["features_version"], lock_timeout=5)
    service = RiskService(Scorer(fitted), store, model_version="m/1",
                          features_version=fitted.spec["features_version"],
                          decisions=tmp_path / name / "decisions", **kw)
    return service, service.start(warm)


def test_two_replicas_on_redis_share_one_state(fitted, stream, tmp_path, redis_url):
    """Payments sent in turn to two replicas score as in one process that saw them all; a
    payment one scored is a duplicate to the other; a replica started late catches up."""
    warm, rest = stream
    a, done_a = _replica(fitted, redis_url, tmp_path, "a", warm)
    b, done_b = _replica(fitted, redis_url, tmp_path, "b", warm)
    assert done_a["warmed"] == len(warm) and not done_a["restored"]
    assert done_b["restored"] and done_b["warmed"] == 0  # the shared state is warmed once
    want = _reference(fitted, warm, rest)
    half = len(rest) // 2
    clients = [TestClient(create_app(a)), TestClient(create_app(b))]
    got = []
    for i, (t, row) in enumerate(rest[:half]):
        got += _send(clients[i % 2], [(t, row)])
    sent = [r for t, r in rest[:half] if t == "transactions"]
    assert len(got) == len(sent) > 100
    # A replica started now restores the warm-up snapshot and applies the stream after it.
    c, done_c = _replica(fitted, redis_url, tmp_path, "c")
    assert done_c["restored"] and done_c["replayed"] == half
    clients.append(TestClient(create_app(c)))
    for i, (t, row) in enumerate(rest[half:]):
        got += _send(clients[i % 3], [(t, row)])
    for d in got:
        assert d["score"] == pytest.approx(want[d["tx_id"]][0], rel=1e-9), d["tx_id"]
        assert d["tier"] == want[d["tx_id"]][1]
    # Each replica's decisions are on its own disk; together they are every payment once.
    logged = [r["tx_id"] for n in "abc" for r in read_decisions(tmp_path / n)]
    assert sorted(logged) == sorted(d["tx_id"] for d in got)
    # The newest payment, scored by one replica, is a duplicate to the next one.
    i, last = max((i, r) for i, (t, r) in enumerate(rest[half:]) if t == "transactions")
    with pytest.raises(DuplicateTransaction):
        (a, b, c)[(i + 1) % 3].score(last)
    for s in (a, b, c):
        s.close()


def test_the_shared_log_is_trimmed_below_each_snapshot(fitted, stream, tmp_path, redis_url):
    """Snapshots every 300 rows on Redis: the stream keeps about the rows since the last
    one; a replica that was idle meanwhile finds its rows trimmed, takes the snapshot, and
    scores as one process that saw every row."""
    warm, rest = stream
    _, namespace = redis_url
    a, _ = _replica(fitted, redis_url, tmp_path, "a", warm, snapshot_every=300)
    b, _ = _replica(fitted, redis_url, tmp_path, "b", snapshot_every=0)
    cut = 2 * len(rest) // 3
    assert cut > 4 * 300
    got = _send(TestClient(create_app(a)), rest[:cut])
    a.wait_for_snapshot()
    r = a.store.r
    def sid(x):  # a stream id as numbers
        return tuple(int(p) for p in (x.decode() if isinstance(x, bytes) else x).split("-"))

    trimmed = sid(r.get(f"{namespace}:trimmed"))
    assert a.snapshots["taken"] >= 2  # the warm-up's and at least one forked
    # What is kept: the rows since the last snapshot, its own last row, and what
    # approximate trimming leaves of the stream's node that holds it (at most 100).
    kept = r.xlen(f"{namespace}:log")
    assert a._since_snapshot < kept <= a._since_snapshot + 101 < cut
    assert sid(r.xrange(f"{namespace}:log", count=1)[0][0]) <= trimmed <= sid(a._position)
    loads, load = [], b.store.load_snapshot  # b applied none of a's rows: it must reload
    b.store.load_snapshot = lambda online: (loads.append(online), load(online))[1]
    got += _send(TestClient(create_app(b)), rest[cut:])
    assert len(loads) == 1 and b.scorer.online is loads[0]
    want = _reference(fitted, warm, rest)
    assert len(got) > 100
    for d in got:
        assert d["score"] == pytest.approx(want[d["tx_id"]][0], rel=1e-9), d["tx_id"]
    for s in (a, b):
        s.close()


def test_a_replica_that_cannot_reach_its_lock_answers_503_and_changes_nothing(
        fitted, stream, tmp_path, redis_url):
    warm, rest = stream
    a, _ = _replica(fitted, redis_url, tmp_path, "a", warm)
    b, _ = _replica(fitted, redis_url, tmp_path, "b")
    row = next(r for t, r in rest if t == "transactions")
    before = json.dumps(b.scorer.online._state(), default=str)
    b.store._lock.blocking_timeout = 0.2
    with a.store.lock():  # a holds the lock: b waits, gives up, and scores nothing
        r = TestClient(create_app(b)).post("/v1/transactions", json=_json(row))
    assert r.status_code == 503 and "lock" in r.json()["detail"]
    assert json.dumps(b.scorer.online._state(), default=str) == before
    assert b.score(row)["tx_id"] == row["tx_id"]  # once the lock is free, it scores
    with pytest.raises(StoreBusy):
        b.store.r.connection_pool.reset()
        b.store.r.connection_pool.connection_kwargs["port"] = 1  # the server is gone
        b.score(next(r for t, r in rest if t == "transactions" and r["tx_id"] != row["tx_id"]))
    a.close()


def test_a_model_with_other_features_takes_over_a_replica_on_redis(fitted, labeled_dataset,
                                                                    stream, tmp_path, redis_url):
    """A swap to other declarations while another replica adds rows: the new state holds
    every row once, and its snapshot is kept under its own features version."""
    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import FeaturesConfig, build_dataset

    warm, rest = stream
    world = simulate_world(SimulationConfig(accounts=3000, days=85, seed=11, history_days=30))
    other = _fit(build_dataset(world.tables(), labeled_dataset.attrs["as_of"],
                               config=FeaturesConfig(exclude=["kyc_level"])), 10)
    a, _ = _replica(fitted, redis_url, tmp_path, "a", warm)
    b, _ = _replica(fitted, redis_url, tmp_path, "b")
    third = len(rest) // 3
    _send(TestClient(create_app(b)), rest[:third])  # a has not applied these yet
    assert a.swap_model(other, "m/2", history=iter(warm)) == "warmed"
    _send(TestClient(create_app(b)), rest[third:2 * third])
    got = _send(TestClient(create_app(a)), rest[2 * third:])
    scorer = Scorer(other)
    want = {}
    for t, row in [*warm, *rest]:
        if t == "transactions":
            want[row["tx_id"]] = scorer.score(row).probability
        else:
            scorer.update(t, row)
    assert got and {d["model_version"] for d in got} == {"m/2"}
    for d in got:
        assert d["score"] == pytest.approx(want[d["tx_id"]], rel=1e-9)
    a.close()
    assert a.store.r.exists(f"{redis_url[1]}:snapshot:{other.spec['features_version']}")
