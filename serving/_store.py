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
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SNAPSHOTS = "snapshots"
CURRENT = "CURRENT"
LOG = "log"
LEGACY_SNAPSHOT, LEGACY_WAL = "snapshot", "accepted.jsonl"  # the layout before segments


class StoreBusy(RuntimeError):
    """The shared state's lock was not obtained in time (another replica holds it)."""


class LogTrimmed(RuntimeError):
    """The log's rows after a position were trimmed: the state must come from a snapshot
    at or after :attr:`position`."""

    def __init__(self, position: str):
        super().__init__(position)
        self.position = position


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
    """The write-ahead log and the snapshots under ``state_dir``.

    The log is a sequence of segments ``log/NNNNNNNNNNNN.jsonl``, each named by the position
    of its first row; positions count rows from the first ever accepted. Every snapshot is
    written to a directory of its own, ``snapshots/NNNNNNNNNNNN-XXXXXXXX/`` (the state and
    how much of the log it holds), and made current by replacing the one-line file ``CURRENT``: a
    process killed while writing a snapshot leaves the previous one current, never a state
    of one position beside the bookkeeping of another. After a snapshot the log goes on in
    a new segment, so a restart reads only the segments after it. Older segments are kept:
    a new model reading other declarations warms its state from the whole log.

    ``fsync`` makes an appended row durable before :meth:`append` returns, unless the
    caller syncs :attr:`log_file` itself (a :class:`GroupCommit`); snapshots are fsynced
    before they are made current.
    """

    shared = False
    origin = 0

    def __init__(self, state_dir: str | Path, fsync: bool = True):
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._wal = None
        self.where = str(self.state)
        legacy = self.state / LEGACY_WAL
        if legacy.exists() and not (self.state / LOG).exists():
            (self.state / LOG).mkdir()
            legacy.replace(self.state / LOG / _segment(0))

    def lock(self):
        """No other writer: the service's own lock is enough."""
        return contextlib.nullcontext()

    def use_features(self, features_version: str) -> None:
        """The snapshot directory holds whichever state the service serves."""

    def _current(self) -> Path | None:
        pointer = self.state / CURRENT
        if pointer.exists():
            return self.state / SNAPSHOTS / pointer.read_text().strip()
        legacy = self.state / LEGACY_SNAPSHOT
        return legacy if (legacy / "service.json").exists() else None

    def load_snapshot(self, online) -> dict | None:
        snap = self._current()
        if snap is None:
            return None
        online.restore(snap)
        meta = json.loads((snap / "service.json").read_text())
        meta["position"] = meta.pop("wal_lines")
        return meta

    def save_snapshot(self, online, meta: dict, *, rotate: bool = True) -> None:
        """Write a snapshot beside the current one, make it current, remove the older ones
        and, with ``rotate``, go on logging in a new segment (a service that stops does not
        leave an empty one behind)."""
        with _exclusive(self.state / ".snapshot.lock"):
            self._save_snapshot(online, meta)
        if rotate and self._wal is not None:
            self._start_segment(meta["position"])

    def _save_snapshot(self, online, meta: dict) -> None:
        root = self.state / SNAPSHOTS
        root.mkdir(exist_ok=True)
        for left in root.glob("*.tmp"):  # a snapshot a killed process did not finish
            shutil.rmtree(left)
        # Named by position and made unique: a snapshot at the same position (a shutdown
        # right after a periodic one, a new model's state) never replaces the current one
        # in place.
        name = f"{meta['position']:012d}-{uuid.uuid4().hex[:8]}"
        tmp = root / f"{name}.tmp"
        online.snapshot(tmp)
        doc = {**{k: v for k, v in meta.items() if k != "position"},
               "wal_lines": meta["position"]}
        (tmp / "service.json").write_text(json.dumps(doc, allow_nan=True))
        if self.fsync:
            for f in tmp.iterdir():
                _fsync_path(f)
            _fsync_path(tmp)
        tmp.rename(root / name)
        pointer = self.state / f".{CURRENT}.tmp"
        pointer.write_text(name + "\n")
        if self.fsync:
            _fsync_path(root)
            _fsync_path(pointer)
        pointer.replace(self.state / CURRENT)
        if self.fsync:
            _fsync_path(self.state)
        for old in root.iterdir():
            if old.name != name:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        legacy = self.state / LEGACY_SNAPSHOT
        if legacy.exists():
            shutil.rmtree(legacy)

    def trim(self, position: int) -> None:
        """Segments are kept (a new model reading other declarations warms from them)."""

    def rotate(self, position: int) -> None:
        """Go on logging in a new segment from ``position`` (a snapshot of the state at
        ``position`` is being written elsewhere). The old segment is flushed, not fsynced:
        the snapshot's writer fsyncs it before making the snapshot current, and a group
        commit fsyncs it before any answer it holds."""
        self._start_segment(position, sync=False)

    def _segments(self) -> list[tuple[int, Path]]:
        folder = self.state / LOG
        if not folder.exists():
            return []
        return sorted((int(p.stem), p) for p in folder.glob("*.jsonl"))

    def records(self, start: int) -> Iterator[tuple[int, dict]]:
        """``(position after it, record)`` of the log's complete lines from ``start``; a
        last line cut by a crash was never acknowledged and ends the log."""
        if self._wal is not None:
            self._wal.flush()
        segments = self._segments()
        for k, (first, path) in enumerate(segments):
            if k + 1 < len(segments) and segments[k + 1][0] <= start:
                continue  # every row of this segment is before start
            with path.open() as f:
                for i, line in enumerate(f):
                    if first + i < start:
                        continue
                    if not line.endswith("\n"):
                        return
                    yield first + i + 1, json.loads(line)

    def open(self, position: int = 0) -> None:
        """Start appending after ``position`` (the state's): to the last segment, once a
        last line cut by a crash is dropped, or to a new one."""
        segments = self._segments()
        if segments:
            first, last = segments[-1]
            data = last.read_bytes()
            if data and not data.endswith(b"\n"):
                with last.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
            if first + data.count(b"\n") == position:
                self._wal = last.open("a")
                return
        # No log yet, or its last segment does not end where the state does (segments
        # removed by hand): positions stay those of the state.
        self._start_segment(position)

    def _start_segment(self, position: int, sync: bool = True) -> None:
        if self._wal is not None:
            if sync:
                self.sync()
            self._wal.close()  # closing flushes
        folder = self.state / LOG
        folder.mkdir(exist_ok=True)
        self._wal = (folder / _segment(position)).open("a")
        if self.fsync:
            _fsync_path(folder)

    @property
    def log_file(self):
        """The open segment of the write-ahead log (for a caller that fsyncs it)."""
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


def _segment(position: int) -> str:
    return f"{position:012d}.jsonl"


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``path`` (created if missing): one snapshot writer at a
    time, whether a service, its background snapshot, or one left by a killed process."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks: one process writes its snapshots in turn
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _fsync_path(path: Path) -> None:
    """Fsync a file or a directory (a directory's entries: a rename or a new file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RedisStore:
    """The accepted rows as the stream ``{namespace}:log`` on a Redis server, snapshots under
    ``{namespace}:snapshot:{features_version}`` and a lock ``{namespace}:lock``.

    Positions are stream ids. An appended row is as durable as the server makes it: with
    ``appendonly yes`` and ``appendfsync always`` it is on disk before the answer, as with
    the file store's fsync; a server that keeps nothing on disk loses the state when it
    stops. Once a snapshot holds the rows up to a position, the stream is trimmed below it
    (``{namespace}:trimmed`` keeps the highest such position), so the server's memory holds
    the rows since the last snapshot, not every row ever accepted; a replica that had not
    applied the trimmed rows reads the snapshot instead (:class:`LogTrimmed`).

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
        self.trimmed_key = f"{namespace}:trimmed"
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

    def save_snapshot(self, online, meta: dict, *, rotate: bool = True) -> None:
        """Replace the snapshot under :attr:`snap_key` (the stream has no segments to
        rotate)."""
        with tempfile.TemporaryDirectory(prefix="fraudlab-snapshot-") as tmp:
            text = online.snapshot(tmp).read_text()
        self.r.set(self.snap_key, json.dumps({"online": text, "meta": meta}, allow_nan=True))

    def rotate(self, position: str) -> None:
        """The stream has no segments."""

    def trim(self, position: str) -> None:
        """Remove the stream's rows before ``position`` (a snapshot holds them); under the
        lock, so that no replica is reading the range meanwhile."""
        old = self.r.get(self.trimmed_key)
        if old is not None and _stream_id(old.decode()) >= _stream_id(position):
            return  # a snapshot of a later position trimmed further already
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.trimmed_key, position)
        pipe.xtrim(self.log_key, minid=position)
        pipe.execute()

    def records(self, start: str, batch: int = 1000) -> Iterator[tuple[str, dict]]:
        """``(stream id, record)`` of every row after ``start``, in the stream's order.

        Raises
        ------
        LogTrimmed
            Rows after ``start`` were trimmed (checked in the same round trip as the first
            read).
        """
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.trimmed_key)
        pipe.xrange(self.log_key, min=f"({start}", count=batch)
        trimmed, got = pipe.execute()
        if trimmed is not None and _stream_id(start) < _stream_id(trimmed.decode()):
            raise LogTrimmed(trimmed.decode())
        while True:
            for rid, fields in got:
                start = rid.decode()
                yield start, json.loads(fields[b"r"])
            if len(got) < batch:
                return
            got = self.r.xrange(self.log_key, min=f"({start}", count=batch)

    log_file = None  # the server keeps the log

    def open(self, position: str | None = None) -> None:
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


def _stream_id(position: str) -> tuple[int, int]:
    """A stream id ``MS-SEQ`` as numbers, for comparing positions."""
    ms, _, seq = position.partition("-")
    return int(ms), int(seq or 0)
