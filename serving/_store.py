"""Where the risk service keeps the rows it accepted, and snapshots of its state.

Two stores with one interface. :class:`FileStore`: a write-ahead log file and a snapshot
directory under the state directory, for one process. :class:`RedisStore`: a stream on a
Redis server and a snapshot key beside it, shared by replicas. Replicas keep the state in
their own memory and apply each other's rows from the stream in its order before each
request, under a lock held on the server, so every replica's state is the one a single
process would hold after the same rows in the same order: a payment scored by one is seen
by the next request to any other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SNAPSHOT = "snapshot"
WAL = "accepted.jsonl"


class StoreBusy(RuntimeError):
    """The shared state's lock was not obtained in time (another replica holds it)."""


def _json_default(v):
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def dumps(record: dict) -> str:
    """One accepted row as a log line (JSON; times as ISO 8601)."""
    return json.dumps(record, default=_json_default)


class FileStore:
    """The write-ahead log ``accepted.jsonl`` and ``snapshot/`` under ``state_dir``.

    Positions are line numbers. ``fsync`` makes an appended row durable before
    :meth:`append` returns, unless the caller syncs :attr:`log_file` itself (a
    :class:`GroupCommit`).
    """

    shared = False
    origin = 0

    def __init__(self, state_dir: str | Path, fsync: bool = True):
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._wal = None
        self.where = str(self.state)

    def lock(self):
        """No other writer: the service's own lock is enough."""
        return contextlib.nullcontext()

    def use_features(self, features_version: str) -> None:
        """The snapshot directory holds whichever state the service serves."""

    def load_snapshot(self, online) -> dict | None:
        snap = self.state / SNAPSHOT
        if not (snap / "online_state.json").exists():
            return None
        online.restore(snap)
        meta = json.loads((snap / "service.json").read_text())
        meta["position"] = meta.pop("wal_lines")
        return meta

    def save_snapshot(self, online, meta: dict) -> None:
        snap = self.state / SNAPSHOT
        online.snapshot(snap)
        doc = {**{k: v for k, v in meta.items() if k != "position"},
               "wal_lines": meta["position"]}
        tmp = snap / ".service.json.tmp"
        tmp.write_text(json.dumps(doc, allow_nan=True))
        tmp.replace(snap / "service.json")

    def records(self, start: int) -> Iterator[tuple[int, dict]]:
        """``(position after it, record)`` of the log's complete lines from ``start``; a
        last line cut by a crash was never acknowledged and ends the log."""
        wal = self.state / WAL
        if self._wal is not None:
            self._wal.flush()
        if not wal.exists():
            return
        with wal.open() as f:
            for i, line in enumerate(f):
                if i < start:
                    continue
                if not line.endswith("\n"):
                    return
                yield i + 1, json.loads(line)

    def open(self) -> None:
        """Start appending: a last line cut by a crash is dropped first."""
        wal = self.state / WAL
        if wal.exists():
            data = wal.read_bytes()
            if data and not data.endswith(b"\n"):
                with wal.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self._wal = wal.open("a")

    @property
    def log_file(self):
        """The open write-ahead log (for a caller that fsyncs it)."""
        return self._wal

    def append(self, records: list[dict], position: int, sync: bool = True) -> int:
        """Append and flush, and with ``sync`` fsync; returns the position after the
        last record."""
        self._wal.write("".join(dumps(r) + "\n" for r in records))
        if sync:
            self.sync()
        else:
            self._wal.flush()
        return position + len(records)

    def sync(self) -> None:
        if self._wal is not None:
            self._wal.flush()
            if self.fsync:
                os.fsync(self._wal.fileno())

    def close(self) -> None:
        if self._wal is not None:
            self.sync()
            self._wal.close()
            self._wal = None


class RedisStore:
    """The accepted rows as the stream ``{namespace}:log`` on a Redis server, snapshots under
    ``{namespace}:snapshot:{features_version}`` and a lock ``{namespace}:lock``.

    Positions are stream ids. An appended row is as durable as the server makes it: with
    ``appendonly yes`` and ``appendfsync always`` it is on disk before the answer, as with
    the file store's fsync; a server that keeps nothing on disk loses the state when it
    stops.

    Parameters
    ----------
    url : str
        ``redis://HOST:PORT/DB`` (a password from the URL or ``REDIS_PASSWORD`` is never
        printed: :attr:`where` leaves it out).
    namespace : str
        Key prefix; the replicas of one served model share it.
    features_version : str
        Snapshots are of one set of declarations; another model's are kept apart.
    lock_timeout : float
        Seconds a replica waits for the lock before the request fails (503), and how long a
        lock left by a killed replica lasts.
    """

    shared = True
    origin = "0-0"

    def __init__(self, url: str, namespace: str, features_version: str,
                 lock_timeout: float = 10.0):
        from fraudlab._optional import require

        redis = require("redis", "serve", "--state redis://...")
        self.r = redis.Redis.from_url(url, password=os.environ.get("REDIS_PASSWORD") or None)
        self.namespace = namespace
        self.log_key = f"{namespace}:log"
        self.use_features(features_version)
        self._lock = self.r.lock(f"{namespace}:lock", timeout=lock_timeout,
                                 blocking_timeout=lock_timeout)
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.where = f"redis://{u.hostname}:{u.port or 6379}{u.path} ({namespace})"

    def use_features(self, features_version: str) -> None:
        """Snapshots from now on are of the state of these declarations (a new model that
        reads other features took over)."""
        self.snap_key = f"{self.namespace}:snapshot:{features_version}"

    @contextlib.contextmanager
    def lock(self):
        import redis

        try:
            got = self._lock.acquire()
        except redis.exceptions.RedisError as exc:
            raise StoreBusy(f"the shared state at {self.where} is unavailable: {exc}") from exc
        if not got:
            raise StoreBusy(f"the shared state's lock was not obtained in "
                            f"{self._lock.blocking_timeout:g} s")
        try:
            yield
        finally:
            with contextlib.suppress(redis.exceptions.LockNotOwnedError):
                self._lock.release()

    def load_snapshot(self, online) -> dict | None:
        blob = self.r.get(self.snap_key)
        if blob is None:
            return None
        doc = json.loads(blob)
        with tempfile.TemporaryDirectory(prefix="fraudlab-snapshot-") as tmp:
            Path(tmp, "online_state.json").write_text(doc["online"])
            online.restore(tmp)
        return doc["meta"]

    def save_snapshot(self, online, meta: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="fraudlab-snapshot-") as tmp:
            text = online.snapshot(tmp).read_text()
        self.r.set(self.snap_key, json.dumps({"online": text, "meta": meta}, allow_nan=True))

    def records(self, start: str, batch: int = 1000) -> Iterator[tuple[str, dict]]:
        """``(stream id, record)`` of every row after ``start``, in the stream's order."""
        while True:
            got = self.r.xrange(self.log_key, min=f"({start}", count=batch)
            for rid, fields in got:
                start = rid.decode()
                yield start, json.loads(fields[b"r"])
            if len(got) < batch:
                return

    log_file = None  # the server keeps the log

    def open(self) -> None:
        self.r.ping()

    def append(self, records: list[dict], position: str, sync: bool = True) -> str:
        """Add the records to the stream (one round trip); returns the last one's id (as
        durable as the server's persistence makes it, whatever ``sync``)."""
        pipe = self.r.pipeline(transaction=True)
        for rec in records:
            pipe.xadd(self.log_key, {"r": dumps(rec)})
        ids = pipe.execute()
        return ids[-1].decode() if ids else position

    def sync(self) -> None:
        """The server's persistence decides; nothing to flush here."""

    def close(self) -> None:
        self.r.close()
