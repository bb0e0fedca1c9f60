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

import datetime as dt
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ._durable import GroupCommit
from ._scorer import Scorer
from ._store import FileStore, StoreBusy, _json_default

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
        clean shutdown); a restart replays at most this many rows after its snapshot.

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
                 decisions: str | Path | None = None, snapshot_every: int = 100_000):
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
        self._since_snapshot = 0  # rows this process logged since its last snapshot
        self.snapshots = {"taken": 0, "failed": 0, "last_seconds": None}
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
                self._position = meta["position"]
                self._seen = OrderedDict((k, v) for k, v in meta["seen"])
                self._usual = {k: deque((np.array(v, np.float32) for v in vs),
                                        maxlen=self._usual_n) for k, vs in meta["usual"]}
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

    def _catch_up(self) -> int:
        """Apply the log's rows after the state's position (other replicas' rows, or on a
        restart the rows after the snapshot), in the log's order."""
        n = 0
        for pos, rec in self.store.records(self._position):
            self._take(rec["table"], rec["row"])
            self._position = pos
            n += 1
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
        done = self._replay_log(fresh.online, self.store.origin)
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
        return "warmed"

    def _replay_log(self, online, start):
        """Apply the log's rows after position ``start`` to ``online``; returns the
        position after the last one."""
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
            if self.store.shared:
                self._catch_up()
            self._snapshot(rotate=not closing)

    def _maybe_snapshot(self) -> None:
        """Every ``snapshot_every`` logged rows, a snapshot, so that a restart replays at
        most that many rows. It is taken by the request that reaches the count, under the
        lock; a failed one is counted and tried again as many rows later (the log still
        holds every row, so nothing is lost, and a full disk does not make every request
        pay for a snapshot that cannot be written)."""
        if not self.snapshot_every or self._since_snapshot < self.snapshot_every:
            return
        try:
            self._snapshot()
        except Exception as exc:  # the row is logged and durable: its answer must go out
            self.snapshots["failed"] += 1
            self._since_snapshot = 0
            _logger.warning("snapshot of the state failed (%s); the log holds every row; "
                            "next try in %d rows", exc, self.snapshot_every, exc_info=True)

    def _snapshot(self, rotate: bool = True) -> None:
        t = time.perf_counter()
        # The snapshot may only hold rows whose log lines are on disk: a row it holds but
        # the log lost would be refused as a duplicate when its client sends it again.
        self.store.sync()
        meta = {"position": self._position, "seen": list(self._seen.items()),
                "usual": [[k, [v.tolist() for v in vs]] for k, vs in self._usual.items()]}
        self.store.save_snapshot(self.scorer.online, meta, rotate=rotate)
        if self._commit is not None and self.store.log_file is not None:
            self._commit.track("log", self.store.log_file)  # the log's new segment
        self._since_snapshot = 0
        self.snapshots["taken"] += 1
        self.snapshots["last_seconds"] = time.perf_counter() - t

    def close(self) -> None:
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


def _micros(ts) -> int:
    """Microseconds since the epoch of a payment time (an int already is)."""
    if isinstance(ts, int):
        return ts
    import pandas as pd

    t = pd.Timestamp(ts)
    return (t if t.tzinfo else t.tz_localize("UTC")).value // 1000
