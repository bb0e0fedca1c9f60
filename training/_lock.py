"""The refresh lock: one refresh at a time per tracking store, and who holds it.

Two kinds, chosen from the configuration by :func:`refresh_lock`:

- a file lock (``fcntl``) on ``<paths.mlruns>/refresh.lock`` for a store on this machine;
- a PostgreSQL advisory lock when the tracking store is shared through PostgreSQL (the
  tracking URI itself, or ``refresh.lock_url`` naming the database behind an MLflow
  server), so refreshes on different machines exclude each other too.

Both wait up to ``refresh.lock_timeout`` seconds and then raise :class:`RefreshLocked`
naming the holder (process, host, period and since when). Both are released by the
operating system or the database when the holding process dies, so a killed refresh
never leaves the lock taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterator

import pandas as pd

from ._config import FraudlabConfig

# First key of every fraudlab advisory lock (the second is the store's): "frdl".
_PG_NAMESPACE = 0x6672646C


class RefreshLocked(Exception):
    """Another refresh held the lock for longer than ``refresh.lock_timeout``."""


def _holder(as_of) -> dict:
    from fraudlab.data_contracts import to_utc

    when = to_utc(as_of).isoformat() if as_of is not None else "?"
    return {"pid": os.getpid(), "host": socket.gethostname(), "as_of": when,
            "since": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")}


def _describe(holder: dict | None) -> str:
    if not holder:
        return "an unknown process"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (refresh as of "
            f"{holder.get('as_of', '?')}, since {holder.get('since', '?')})")


def lock_url(config: FraudlabConfig) -> str | None:
    """The PostgreSQL database whose advisory lock serialises refreshes, if any."""
    url = config.refresh.lock_url or config.tracking.uri or ""
    if url.startswith(("postgresql", "postgres")):
        return url
    return None


@contextlib.contextmanager
def refresh_lock(config: FraudlabConfig, as_of=None,
                 log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the refresh lock of the configured store for the duration of the block.

    Raises
    ------
    RefreshLocked
        After ``refresh.lock_timeout`` seconds of waiting; the message names the holder.
    """
    url = lock_url(config)
    if url:
        with _pg_lock(url, config, as_of, log):
            yield
    else:
        with _file_lock(config, as_of, log):
            yield


def _wait(try_lock: Callable[[], bool], holder: Callable[[], dict | None], where: str,
          timeout: float, log: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    announced = False
    while not try_lock():
        if not announced:
            log(f"another refresh holds {where}: {_describe(holder())}; waiting (up to "
                f"{timeout:.0f} s)")
            announced = True
        if time.monotonic() >= deadline:
            raise RefreshLocked(f"another refresh still holds {where} after {timeout:.0f} s: "
                                f"{_describe(holder())}")
        time.sleep(0.5)


@contextlib.contextmanager
def _file_lock(config: FraudlabConfig, as_of, log) -> Iterator[None]:
    import fcntl

    path = config.path(config.paths.mlruns).resolve() / "refresh.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        def try_lock() -> bool:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        def holder() -> dict | None:
            try:
                return json.loads(path.read_text() or "null")
            except (OSError, ValueError):
                return None

        _wait(try_lock, holder, str(path), config.refresh.lock_timeout, log)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(_holder(as_of)) + "\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pg_key(config: FraudlabConfig) -> int:
    """The second advisory-lock key: the store's experiment, as a signed 32-bit integer."""
    k = zlib.crc32(f"{config.tracking.uri}|{config.tracking.experiment}".encode())
    return k - (1 << 32) if k >= 1 << 31 else k


def _pg_dsn(url: str) -> str:
    """A libpq URL from an SQLAlchemy one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


@contextlib.contextmanager
def _pg_lock(url: str, config: FraudlabConfig, as_of, log) -> Iterator[None]:
    from fraudlab._optional import require

    psycopg = require("psycopg", "sql", "refresh.lock_url on PostgreSQL")

    from fraudlab.features import expand_env

    from ._registry import _redact

    key = _pg_key(config)
    me = _holder(as_of)
    # The holder is told by the session's application_name, which other sessions see in
    # pg_stat_activity (at most 63 bytes are kept).
    name = f"fraudlab refresh {me['as_of']} pid {me['pid']} {me['host']}"[:63]
    try:
        con = psycopg.connect(_pg_dsn(expand_env(url, "refresh.lock_url")), autocommit=True,
                              application_name=name, connect_timeout=10)
    except psycopg.Error as exc:
        raise RefreshLocked(f"cannot reach the lock database {_redact(url)}: "
                            f"{str(exc).strip().splitlines()[0]}") from exc
    with con:
        def try_lock() -> bool:
            return con.execute("select pg_try_advisory_lock(%s, %s)",
                               (_PG_NAMESPACE, key)).fetchone()[0]

        def holder() -> dict | None:
            row = con.execute(
                "select a.application_name, a.client_addr::text, a.backend_start from pg_locks l "
                "join pg_stat_activity a on a.pid = l.pid where l.locktype = 'advisory' and "
                "l.granted and l.classid = %s::oid and l.objid = %s::oid and l.objsubid = 2",
                (_PG_NAMESPACE, key & 0xFFFFFFFF)).fetchone()
            if row is None:
                return None
            app, addr, started = row
            parts = app.split(" ")
            if len(parts) >= 6 and parts[:2] == ["fraudlab", "refresh"]:
                return {"as_of": parts[2], "pid": parts[4], "host": " ".join(parts[5:]),
                        "since": started.isoformat(timespec="seconds")}
            return {"pid": "?", "host": addr or "?", "as_of": app, "since": str(started)}

        _wait(try_lock, holder, f"the advisory lock on {_redact(url)}",
              config.refresh.lock_timeout, log)
        try:
            yield
        finally:
            con.execute("select pg_advisory_unlock(%s, %s)", (_PG_NAMESPACE, key))
