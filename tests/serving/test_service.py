"""The risk service over HTTP (FastAPI's test client, in process): scores equal the scorer's,
bad requests are refused field by field and change nothing, a crash loses no answered row,
and the decision log is read back."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fraudlab.features import event_stream
from fraudlab.serving import RiskService, Scorer, create_app, purge_decisions, read_decisions

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


def _service(fitted, tmp_path, warm, **kw):
    service = RiskService(Scorer(fitted), tmp_path, model_version="m/1", features_version="f1",
                          **kw)
    service.start(warm)
    return service


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
        assert d["model_version"] == "m/1" and d["features_version"] == "f1"
        assert (len(d["reasons"]) > 0) == (d["tier"] != "pass") or d["tier"] == "pass"
    flagged = [d for d in got if d["tier"] != "pass"]
    for d in flagged:
        assert 1 <= len(d["reasons"]) <= 3
        assert all(r["contribution"] > 0 and r["text"] for r in d["reasons"])
    log = read_decisions(tmp_path)
    assert [r["tx_id"] for r in log] == [d["tx_id"] for d in got]
    assert read_decisions(tmp_path, tier="pass") == [r for r in log if r["tier"] == "pass"]
    metrics = client.get("/metrics").text
    assert f'fraudlab_decisions_total{{tier="pass"}} {float(sum(d["tier"] == "pass" for d in got))}' in metrics
    assert 'fraudlab_model_info{features_version="f1",model_version="m/1"} 1.0' in metrics
    service.close()


def test_a_crash_loses_no_answered_row(fitted, stream, tmp_path):
    """Half the rows, then the process 'dies' (nothing closed, no snapshot); a new service
    on the same state directory answers the rest exactly as one never killed."""
    warm, rest = stream
    half = len(rest) // 2
    first = _service(fitted, tmp_path, warm)
    _send(TestClient(create_app(first)), rest[:half])
    # No close(): the write-ahead log is all there is of the second half's state.
    again = RiskService(Scorer(fitted), tmp_path, model_version="m/1", features_version="f1")
    done = again.start(warm=None)
    assert done["restored"] and done["replayed"] > 0
    got = _send(TestClient(create_app(again)), rest[half:])
    want = _reference(fitted, warm, rest)
    for d in got:
        assert d["score"] == pytest.approx(want[d["tx_id"]][0], rel=1e-9)
    # A payment answered just before the crash is still known: refused as a duplicate.
    sent = [r for t, r in rest[:half] if t == "transactions"][-1]
    assert TestClient(create_app(again)).post("/v1/transactions", json=_json(sent)).status_code == 409


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
    event = _json(next(r for t, r in stream[1] if t == "events"))
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
