"""The risk service's core: one scorer, its state, and the decision log.

Every accepted row (a payment, an event, a label, a listing) is appended to a store's log
before it is answered (a write-ahead log file, fsynced; or a Redis stream shared by
replicas), and every decision to a day-partitioned decision log, so that a process killed
at any point and started again on the same state answers the next payment exactly as one
never killed. The fsyncs are batched (:class:`GroupCommit`): an answer waits until an fsync
that began after its lines were written has finished. A snapshot of the incremental state
(``OnlineFeatures.snapshot``) records how much of the log it holds; a restart restores it
and replays the log after it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ._durable import GroupCommit
from ._scorer import Scorer
from ._store import FileStore, LogTrimmed, StoreBusy, _json_default, _stream_id

DECISIONS = "decisions"
_logger = logging.getLogger("fraudlab.serving")


class DuplicateTransaction(ValueError):
    """A payment whose ``tx_id`` the service has already scored."""


class RiskService:
    """Scores payments and takes in behaviour, labels and listings, durably.

    Parameters
    ----------
    scorer : Scorer
    state : Path or store
        A directory (the write-ahead log, the snapshot and the decision log), or a store
        such as :class:`RedisStore` that replicas share.
    decisions : Path, optional
        The decision log's directory; default ``decisions/`` in the state directory
        (required with a shared store: records stay on the replica's disk).
    model_version, features_version : str
        Written with every decision.
    currency : str
        Written after amounts in reasons.
    dedup_window : float
        Seconds of payment time over which a repeated ``tx_id`` is refused.
    fsync : bool
        Fsync the logs before answering (what makes an answer durable); the fsyncs of
        answers written meanwhile are one (group commit).
    snapshot_every : int
        Rows logged between two snapshots of the state (0: only after warming and at a
        clean shutdown); a restart replays the rows after the last snapshot completed.
    snapshot_in_background : bool
        Periodic snapshots are written by a forked child while requests go on (where the
        platform forks); otherwise the request that reaches the count waits for it.

    Notes
    -----
    :meth:`score` and :meth:`ingest` return once their rows are durable. A server that
    serves many requests from one thread calls :meth:`score_pending` and
    :meth:`ingest_pending`, which return at once with a ticket, and answers after
    ``await`` :meth:`durable_async` of it: the next payment is scored meanwhile, and one
    fsync covers both.
    """

    def __init__(self, scorer: Scorer, state, *, model_version: str,
                 features_version: str, currency: str = "", dedup_window: float = 7 * 86_400,
                 fsync: bool = True, usual_payments: int = 10,
                 decisions: str | Path | None = None, snapshot_every: int = 100_000,
                 snapshot_in_background: bool = True):
        self.scorer = scorer
        self.store = (FileStore(state, fsync=fsync) if isinstance(state, (str, Path))
                      else state)
        if decisions is None:
            if self.store.shared:
                raise ValueError("a shared store needs a decisions directory")
            decisions = self.store.state / DECISIONS
        self.decisions_dir = Path(decisions)
        self.model_version, self.features_version = model_version, features_version
        self.currency, self.fsync = currency, fsync
        self.snapshot_every = snapshot_every
        self.snapshot_in_background = snapshot_in_background
        self._since_snapshot = 0  # rows this process logged since its last snapshot
        # A background snapshot under way: the thread that waits for the child, what it
        # saw when it ended, the start, and the log position the snapshot holds.
        self._child: tuple[threading.Thread, list, float, object] | None = None
        self.snapshots = {"taken": 0, "failed": 0, "last_seconds": None,
                          "last_pause_seconds": None}
        self._commit: GroupCommit | None = None
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, int] = OrderedDict()  # tx_id -> payment time (micros)
        self._dedup = int(dedup_window * 1e6)
        self._usual: dict[str, deque] = {}
        self._usual_n = usual_payments
        self._position = self.store.origin  # how much of the store's log the state holds
        self.ready = False
        self.counts = {"block": 0, "review": 0, "pass": 0}
        self._decisions_day = None
        self._decisions = None
        feats = scorer.features
        cats = scorer.model.spec.get("categories", {})
        self._numeric = [i for i, n in enumerate(feats) if n not in cats]
        self._catalog = {f.name: f for f in scorer.online.features.features}

    # ------------------------------------------------------------------ start-up
    def start(self, warm: Iterable[tuple[str, dict]] | None = None) -> dict:
        """Restore the snapshot and replay the log after it; with no snapshot, replay
        ``warm`` (history, in time order) first. Returns what was done."""
        done = {"restored": False, "warmed": 0, "replayed": 0}
        # Under the store's lock: replicas starting together warm a shared state once.
        with self._lock, self.store.lock():
            meta = self.store.load_snapshot(self.scorer.online)
            if meta is not None:
                self._restore(meta)
                done["restored"] = True
            elif warm is not None:
                for table, row in warm:
                    self._take(table, row)
                    done["warmed"] += 1
            done["replayed"] = self._catch_up()
            self.store.open(self._position)
            if self.fsync:
                self._commit = GroupCommit()
                if self.store.log_file is not None:
                    self._commit.track("log", self.store.log_file)
            if done["warmed"] and not done["restored"]:
                self._snapshot()
        self.ready = True
        return done

    def _restore(self, meta: dict) -> None:
        """The service's own part of a snapshot: position, seen tx_ids, usual values."""
        self._position = meta["position"]
        self._seen = OrderedDict((k, v) for k, v in meta["seen"])
        self._usual = {k: deque((np.array(v, np.float32) for v in vs), maxlen=self._usual_n)
                       for k, vs in meta["usual"]}

    def _catch_up(self) -> int:
        """Apply the log's rows after the state's position (other replicas' rows, or on a
        restart the rows after the snapshot), in the log's order. A shared log trimmed
        past the state's position (the rows are in a snapshot another replica wrote) is
        caught up from that snapshot."""
        n = 0
        try:
            for pos, rec in self.store.records(self._position):
                self._take(rec["table"], rec["row"])
                self._position = pos
                n += 1
        except LogTrimmed as exc:
            fresh = Scorer(self.scorer.model)
            meta = self.store.load_snapshot(fresh.online)
            if meta is None or _before(meta["position"], exc.position):
                raise self._stop_serving(
                    f"the shared log was trimmed at {exc.position}, after this state's "
                    f"position {self._position}, and no snapshot of these features "
                    f"({self.features_version}) holds the trimmed rows; start the service "
                    "again with --warm-from") from exc
            self.scorer = fresh
            self._restore(meta)
            n += self._catch_up()
        return n

    def _take(self, table: str, row: Mapping) -> None:
        """Take a row of history or of the log into the state (no decision record)."""
        if table == "transactions":
            self._take_payment(row)
        else:
            self.scorer.update(table, row)

    def _take_payment(self, row: Mapping) -> dict:
        """Score a payment into the state (no decision record): warm-up and log replay."""
        feats = self.scorer.online.score(row)
        self._remember(row, self.scorer.encode(feats)[0])
        return feats

    def _remember(self, row: Mapping, inputs: np.ndarray) -> None:
        t = _micros(row["ts"])
        self._seen[row["tx_id"]] = t
        while self._seen:
            first, when = next(iter(self._seen.items()))
            if when >= t - self._dedup:
                break
            self._seen.popitem(last=False)
        usual = self._usual.get(row["account_id"])
        if usual is None:
            usual = self._usual[row["account_id"]] = deque(maxlen=self._usual_n)
        usual.append(inputs)

    # ------------------------------------------------------------------ requests
    def score(self, row: dict) -> dict:
        """Score one validated payment, log it and its decision, and answer once they
        are durable."""
        decision, ticket = self.score_pending(row)
        self.durable(ticket)
        return decision

    def score_pending(self, row: dict) -> tuple[dict, int]:
        """:meth:`score` without waiting for durability: the decision and the ticket to
        pass to :meth:`durable` or :meth:`durable_async` before answering."""
        t0 = time.perf_counter()
        with self._lock, self.store.lock():
            if self.store.shared:
                self._catch_up()
            if row["tx_id"] in self._seen:
                raise DuplicateTransaction(row["tx_id"])
            late = (self.scorer.online._scored_t is not None
                    and _micros(row["ts"]) < self.scorer.online._scored_t)
            s = self.scorer.score(row)
            # The account's usual values are of its payments before this one.
            reasons = (self._reasons(s, self._usual_vector(row["account_id"]))
                       if s.tier != "pass" else [])
            self._remember(row, s.inputs)
            self._log([{"table": "transactions", "row": row}])
            decision = {"tx_id": s.tx_id, "score": s.probability, "tier": s.tier,
                        "reasons": reasons, "model_version": self.model_version,
                        "features_version": self.features_version, "late": late,
                        "latency_ms": 0.0}
            decision["latency_ms"] = (time.perf_counter() - t0) * 1e3
            self._decide(decision, row)
            self.counts[s.tier] += 1
            self._maybe_snapshot()
            return decision, self._written()

    def ingest(self, table: str, rows: list[dict]) -> dict:
        """Take in events, labels or listings (each effective at its own time); returns
        once they are durable."""
        out, ticket = self.ingest_pending(table, rows)
        self.durable(ticket)
        return out

    def ingest_pending(self, table: str, rows: list[dict]) -> tuple[dict, int]:
        """:meth:`ingest` without waiting for durability (see :meth:`score_pending`)."""
        with self._lock, self.store.lock():
            if self.store.shared:
                self._catch_up()
            late = self.scorer.online.late
            for row in rows:
                self.scorer.update(table, row)
            self._log([{"table": table, "row": row} for row in rows])
            self._maybe_snapshot()
            return ({"accepted": len(rows), "late": self.scorer.online.late - late},
                    self._written())

    def _written(self) -> int:
        """A ticket for the lines written so far (under the lock, after they are flushed)."""
        if self._commit is None:
            return 0
        try:
            return self._commit.wrote()
        except OSError as exc:
            raise self._stop_serving(exc) from exc

    def _stop_serving(self, exc: BaseException) -> StoreBusy:
        """The state holds rows whose log lines may be lost: answer nothing more."""
        self.ready = False
        return StoreBusy(f"{exc}; this process stops serving until restarted")

    def durable(self, ticket: int) -> None:
        """Return once the rows and decisions of ``ticket`` are on disk."""
        if self._commit is not None and ticket:
            try:
                self._commit.wait(ticket)
            except OSError as exc:
                raise self._stop_serving(exc) from exc

    async def durable_async(self, ticket: int) -> None:
        """:meth:`durable` for a coroutine, which yields to the event loop meanwhile."""
        if self._commit is not None and ticket:
            try:
                await self._commit.wait_async(ticket)
            except OSError as exc:
                raise self._stop_serving(exc) from exc

    def _usual_vector(self, account: str):
        past = self._usual.get(account)
        if not past:
            return None
        if len(past) == 1:
            return past[0]
        # The median of each feature over the past payments where it has a value (NaN
        # where it never had one); sorting puts NaN last, so it is read from the sorted
        # values' middle (nanmedian's masked path costs 0.5 ms a call).
        stack = np.sort(np.stack(past), axis=0)
        n = (~np.isnan(stack)).sum(axis=0)
        lo = np.take_along_axis(stack, np.maximum((n - 1) // 2, 0)[None, :], axis=0)[0]
        hi = np.take_along_axis(stack, np.maximum(n // 2, 0)[None, :], axis=0)[0]
        usual = (lo.astype(np.float64) + hi) / 2
        usual[n == 0] = np.nan
        return usual

    def _reasons(self, s, usual) -> list[dict]:
        import xgboost as xgb

        from fraudlab.evaluation import row_reasons

        feats = self.scorer.features
        # Without feature names: the row is in the booster's order by construction, and
        # naming a DMatrix costs more than the trees' contributions on one row.
        contrib = self.scorer.booster.predict(xgb.DMatrix(s.inputs[None, :], nthread=1),
                                              pred_contribs=True,
                                              validate_features=False)[0][:-1]  # no bias
        usual_of = None
        if usual is not None:
            usual_of = {feats[i]: float(usual[i]) for i in self._numeric}
        return row_reasons(contrib, feats, s.features, usual_of, catalog=self._catalog,
                           currency=self.currency)

    # ------------------------------------------------------------------ a new model
    def swap_model(self, model, model_version: str,
                   history: Iterable[tuple[str, dict]] | None = None) -> str:
        """Score with ``model`` from the next payment on, without a dropped request.

        A model that reads the same declarations and settings (the same
        ``features_version``) takes over the current state at once. Another one needs its
        own state: it is warmed from ``history`` (the rows the service was warmed with)
        and this service's log, outside the lock, then the log rows accepted meanwhile
        are applied under the lock and it takes over. Without ``history`` it is refused.

        Returns
        -------
        str
            ``"shared state"``, ``"warmed"`` or ``"refused: ..."``.
        """
        version = model.spec.get("features_version", "?")
        if version == self.features_version:
            with self._lock:
                self.scorer = Scorer(model, online=self.scorer.online)
                self.model_version = model_version
            return "shared state"
        if history is None:
            return ("refused: its features differ (version " + version + ") and the service "
                    "has no history to warm them from (start it with --warm-from)")
        fresh = Scorer(model)
        for table, row in history:
            _feed(fresh.online, table, row)
        try:
            done = self._replay_log(fresh.online, self.store.origin)
        except LogTrimmed as exc:
            return (f"refused: its features differ (version {version}) and the shared log "
                    f"was trimmed at {exc.position} (a snapshot of the current features "
                    "holds the rows before it): start the replicas again on the new model "
                    "with --warm-from")
        with self._lock, self.store.lock():
            if self.store.shared:  # the old state, its seen tx_ids and position to the end
                self._catch_up()
            self._position = self._replay_log(fresh.online, done)
            self.store.use_features(version)
            self.scorer = fresh
            self.model_version, self.features_version = model_version, version
            feats = fresh.features
            cats = model.spec.get("categories", {})
            self._numeric = [i for i, n in enumerate(feats) if n not in cats]
            self._catalog = {f.name: f for f in fresh.online.features.features}
            self._usual = {}  # usual values are of the old inputs
            # The current snapshot is of the old declarations, which a restart on this
            # model cannot load: the next request starts one of the new state.
            self._since_snapshot = max(self._since_snapshot, self.snapshot_every)
        return "warmed"

    def _replay_log(self, online, start):
        """Apply the log's rows after position ``start`` to ``online``; returns the
        position after the last one (:class:`LogTrimmed` if they were trimmed)."""
        n = start
        for pos, rec in self.store.records(start):
            _feed(online, rec["table"], rec["row"])
            n = pos
        return n

    # ------------------------------------------------------------------ logs
    def _log(self, records: list[dict]) -> None:
        """Append accepted rows to the store. The state already holds them: if the store
        fails, this process's state is no longer the log's, so it stops answering (not
        ready) until a restart rebuilds it from the snapshot and the log."""
        try:
            # Written and flushed here; the group commit fsyncs it (when fsync is on).
            self._position = self.store.append(records, self._position, sync=False)
            self._since_snapshot += len(records)
        except Exception as exc:
            self.ready = False
            raise StoreBusy(f"the accepted rows could not be logged ({exc}); this process "
                            "stops serving until restarted") from exc

    def _decide(self, decision: dict, row: Mapping) -> None:
        now = dt.datetime.now(dt.UTC)
        day = now.strftime("%Y-%m-%d")
        if day != self._decisions_day:
            if self._decisions is not None:
                self._decisions.close()
            folder = self.decisions_dir
            folder.mkdir(parents=True, exist_ok=True)
            self._decisions = (folder / f"{day}.jsonl").open("a")
            self._decisions_day = day
            if self._commit is not None:
                self._commit.track("decisions", self._decisions)
        rec = {"decided_at": now.isoformat(), "ts": row["ts"], **decision}
        self._decisions.write(json.dumps(rec, default=_json_default) + "\n")
        self._decisions.flush()

    def snapshot(self, *, closing: bool = False) -> None:
        """Write the state and how much of the log it holds (atomic per file or key);
        ``closing``: no new log segment follows it (the service stops)."""
        with self._lock, self.store.lock():
            self._reap(wait=True)  # a background snapshot of an older position goes first
            if self.store.shared:
                self._catch_up()
            self._snapshot(rotate=not closing)

    def _maybe_snapshot(self) -> None:
        """Every ``snapshot_every`` logged rows, a snapshot, so that a restart replays at
        most the rows after the last one that completed.

        In the background where the platform can fork: the request that reaches the count
        forks a child, which holds the state as it was at that instant (the pages are
        shared, copied only when the parent writes them) and writes it, while the parent
        goes on in a new log segment. Requests wait for the fork, not for the snapshot
        (seconds for a large state). A snapshot is the state at one log position whatever
        happens after the fork, which no thread could give without stopping the writer.
        Otherwise, and with ``snapshot_in_background=False``, the request waits for it
        under the lock.

        A failed snapshot is counted and tried again as many rows later: the log still holds
        every row, so nothing is lost, and a full disk does not make every request pay for
        a snapshot that cannot be written."""
        if not self.snapshot_every:
            return
        done = self._reap()
        if done is not None:  # the rows before its position are in a snapshot now
            self.store.trim(done)
        if self._since_snapshot < self.snapshot_every or self._child is not None:
            return  # one background snapshot at a time; the next once it has finished
        if self.snapshot_in_background and hasattr(os, "fork"):
            self._fork_snapshot()
            return
        try:
            self._snapshot()
        except Exception as exc:  # the row is logged and durable: its answer must go out
            self._snapshot_failed(f"snapshot of the state failed ({exc})", exc_info=True)

    def _snapshot_failed(self, what: str, exc_info: bool = False) -> None:
        """Count a snapshot that could not be taken; the next try is as many rows later."""
        self.snapshots["failed"] += 1
        self._since_snapshot = 0
        _logger.warning("%s; the log holds every row; next try in %d rows", what,
                        self.snapshot_every, exc_info=exc_info)

    def _snapshot_meta(self) -> dict:
        return {"position": self._position, "seen": list(self._seen.items()),
                "usual": [[k, [v.tolist() for v in vs]] for k, vs in self._usual.items()]}

    def _snapshot(self, rotate: bool = True) -> None:
        t = time.perf_counter()
        # The snapshot may only hold rows whose log lines are on disk: a row it holds but
        # the log lost would be refused as a duplicate when its client sends it again.
        self.store.sync()
        meta = self._snapshot_meta()
        self.store.save_snapshot(self.scorer.online, meta, rotate=rotate)
        self.store.trim(meta["position"])
        if self._commit is not None and self.store.log_file is not None:
            self._commit.track("log", self.store.log_file)  # the log's new segment
        self._since_snapshot = 0
        self.snapshots["taken"] += 1
        self.snapshots["last_seconds"] = time.perf_counter() - t
        self.snapshots["last_pause_seconds"] = self.snapshots["last_seconds"]

    def _fork_snapshot(self) -> None:
        """Write a snapshot of the state at this instant from a forked child (see
        :meth:`_maybe_snapshot`); the parent returns at once."""
        t = time.perf_counter()
        position = self._position
        try:
            pid = os.fork()
        except OSError as exc:  # no memory or processes left: the answer still goes out
            self._snapshot_failed(f"could not fork a background snapshot ({exc})")
            return
        if pid == 0:  # the child: the state as it was at the fork, then gone
            code = 1
            try:
                # No collection over the parent's objects: it would copy their pages.
                gc.disable()
                # The child yields the cores to the service (its own priority, lowered).
                with contextlib.suppress(OSError, AttributeError):
                    os.nice(19)
                _release_listeners()
                self.store.sync()  # the log up to the snapshot's position, on disk first
                self.store.save_snapshot(self.scorer.online, self._snapshot_meta(),
                                         rotate=False)
                code = 0
            except BaseException as exc:  # reported by the exit code, seen by _reap
                with contextlib.suppress(OSError):
                    os.write(2, f"fraudlab: background snapshot failed: {exc!r}\n".encode())
            finally:
                os._exit(code)
        ended: list = []  # (wait status, when), from a thread that waits for the child
        waiter = threading.Thread(target=lambda: ended.append((os.waitpid(pid, 0)[1],
                                                               time.perf_counter())),
                                  name="fraudlab-snapshot-wait", daemon=True)
        waiter.start()
        self._child = (waiter, ended, t, position)
        self._since_snapshot = 0
        try:
            self.store.rotate(position)
        except Exception as exc:  # the log cannot go on: as a failed append
            raise self._stop_serving(exc) from exc
        if self._commit is not None and self.store.log_file is not None:
            self._commit.track("log", self.store.log_file)
        self.snapshots["last_pause_seconds"] = time.perf_counter() - t

    def _reap(self, wait: bool = False):
        """Count a background snapshot that has ended (with ``wait``, once it has); the
        log position it holds if it was written."""
        if self._child is None:
            return None
        waiter, ended, t, position = self._child
        if wait:
            waiter.join()
        if not ended:
            return None
        self._child = None
        status, when = ended[0]
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            self.snapshots["taken"] += 1
            self.snapshots["last_seconds"] = when - t
            return position
        self.snapshots["failed"] += 1
        _logger.warning("background snapshot of the state failed (exit status %d); the log "
                        "holds every row; next try in %d rows", code, self.snapshot_every)
        return None

    def wait_for_snapshot(self) -> None:
        """Return once a background snapshot under way has ended, and is counted in
        :attr:`snapshots` (a shared log is trimmed below it)."""
        with self._lock:
            done = self._reap(wait=True)
            if done is not None and self.ready:
                # Trimming can wait for the next snapshot if the lock cannot be had now.
                with contextlib.suppress(StoreBusy), self.store.lock():
                    self.store.trim(done)

    def close(self) -> None:
        self.wait_for_snapshot()
        if self.ready:
            self.snapshot(closing=True)
        with self._lock:
            if self._commit is not None:
                self._commit.close()
                self._commit = None
            self.store.close()
            self.ready = False
            if self._decisions is not None:
                self._decisions.close()
                self._decisions = None


def read_decisions(state_dir: str | Path, since=None, tier: str | None = None) -> list[dict]:
    """Decision records under ``state_dir``, oldest first, decided at or after ``since``."""
    import pandas as pd

    from fraudlab.data_contracts import to_utc

    since = None if since is None else to_utc(since)
    out = []
    folder = Path(state_dir) / DECISIONS
    for path in sorted(folder.glob("*.jsonl")):
        if since is not None and path.stem < since.strftime("%Y-%m-%d"):
            continue
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if since is not None and pd.Timestamp(rec["decided_at"]) < since:
                continue
            if tier is None or rec["tier"] == tier:
                out.append(rec)
    return out


def purge_decisions(state_dir: str | Path, before, retention_days: int) -> list[Path]:
    """Delete day files older than ``before`` that are also older than the retention;
    a record younger than the retention is never deleted."""
    import pandas as pd

    from fraudlab.data_contracts import to_utc

    limit = min(to_utc(before), pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=retention_days))
    gone = []
    for path in sorted((Path(state_dir) / DECISIONS).glob("*.jsonl")):
        day_end = pd.Timestamp(path.stem, tz="UTC") + pd.Timedelta(days=1)
        if day_end <= limit:
            path.unlink()
            gone.append(path)
    return gone


def _feed(online, table: str, row: Mapping) -> None:
    """Take one row into an incremental executor: a payment is scored into it."""
    if table == "transactions":
        online.score(row)
    else:
        online.update(table, row)


def _release_listeners() -> None:
    """In a forked child: let go of the parent's listening sockets (each descriptor is
    pointed at /dev/null, so its number is not reused), so that a parent killed while the
    child writes frees its port for the process started in its place. Where the process
    cannot list its descriptors (no /proc), the child keeps them until it exits."""
    import socket

    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            if fd <= 2 or fd == null:
                continue
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                continue  # not a socket (or already closed)
            try:
                listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            except OSError:
                listening = 0
            finally:
                sock.detach()
            if listening:
                os.dup2(null, fd)
    finally:
        os.close(null)


def _before(a, b) -> bool:
    """Position ``a`` is before ``b`` (row counts, or stream ids of a shared log)."""
    if isinstance(a, str):
        return _stream_id(a) < _stream_id(b)
    return a < b


def _micros(ts) -> int:
    """Microseconds since the epoch of a payment time (an int already is)."""
    if isinstance(ts, int):
        return ts
    import pandas as pd

    t = pd.Timestamp(ts)
    return (t if t.tzinfo else t.tz_localize("UTC")).value // 1000
