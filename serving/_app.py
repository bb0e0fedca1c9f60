"""The HTTP face of the risk service (FastAPI), with its OpenAPI schema at ``/docs``.

``POST /v1/transactions`` scores one payment; ``POST /v1/events``, ``/v1/labels`` and
``/v1/blacklist`` take lists of rows; ``/healthz``, ``/readyz`` and ``/metrics``
(Prometheus text) are for the platform. Bodies are validated against the canonical schema
(see :mod:`fraudlab.serving._schema`): a bad request gets a 4xx naming its fields and
nothing of it enters the state.
"""


import datetime as dt
import hmac
import os
import time

from ._schema import Accepted, Decision, row_model
from ._service import DuplicateTransaction, RiskService
from ._store import StoreBusy


def create_app(service: RiskService, *, token_env: str | None = None,
               max_body_bytes: int = 1_000_000, max_rows: int = 10_000,
               max_future_seconds: float = 300.0, close_on_shutdown: bool = False):
    """The FastAPI application over ``service``.

    Parameters
    ----------
    service : RiskService
    token_env : str, optional
        Name of an environment variable holding a bearer token the write endpoints then
        require (the token itself is never logged).
    max_body_bytes : int
        Larger bodies get 413.
    max_rows : int
        Most rows in one list request.
    max_future_seconds : float
        A payment or event dated further than this past the service's clock is refused.
    close_on_shutdown : bool
        Close the service (its final snapshot, the logs) when the server shuts down. A
        server stopped by a signal may end the process right after its shutdown (uvicorn
        raises the signal again), so code after the server's run would not run.
    """
    import contextlib
    from typing import Annotated

    from fastapi import Body, Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    columns = service.scorer.online.features.columns
    models = {t: row_model(t, columns.get(t)) for t in ("transactions", "events", "labels",
                                                         "blacklist")}
    registry = CollectorRegistry()
    requests = Counter("fraudlab_requests", "Requests by endpoint and status",
                       ["endpoint", "status"], registry=registry)
    latency = Histogram("fraudlab_score_seconds", "Time to score one payment and make it "
                        "durable",
                        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
                        registry=registry)
    decisions = Counter("fraudlab_decisions", "Payments scored per tier", ["tier"],
                        registry=registry)
    late = Gauge("fraudlab_late_rows", "Rows that arrived after a later payment was scored",
                 registry=registry)
    version = Gauge("fraudlab_model_info", "The model scoring payments",
                    ["model_version", "features_version"], registry=registry)
    snapshots = Gauge("fraudlab_snapshots", "Snapshots of the state taken and failed "
                      "since start", ["outcome"], registry=registry)
    snapshot_seconds = Gauge("fraudlab_snapshot_seconds", "Time the last snapshot took "
                             "to write", registry=registry)
    snapshot_pause = Gauge("fraudlab_snapshot_pause_seconds", "Time the request that "
                           "started the last snapshot waited for it (a fork and a new log "
                           "segment in the background; the whole snapshot otherwise)",
                           registry=registry)
    shown = [None]

    def show_version() -> None:
        now = (service.model_version, service.features_version)
        if shown[0] != now:  # a new model took over: the gauge names only the current one
            version.clear()
            version.labels(*now).set(1)
            shown[0] = now

    show_version()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if close_on_shutdown:
            service.close()

    app = FastAPI(title="fraudlab risk service", version="1",
                  description="Scores payments with the champion model and its own "
                  "features, computed one event at a time.", lifespan=lifespan,
                  **_no_telemetry(FastAPI))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Field-level messages; the offending input is echoed as text where JSON cannot
        # carry it (NaN, infinity).
        errors = [{**e, "input": _json_safe(e.get("input"))} for e in exc.errors()]
        for e in errors:
            e.pop("ctx", None)
        return JSONResponse({"detail": errors}, status_code=422)

    class LimitBody:
        """Refuse a body over the limit (413) before it is read, and count requests; a
        plain ASGI middleware, which costs less per request than an HTTP one."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            path = scope["path"]
            size = dict(scope["headers"]).get(b"content-length")
            if size is not None and int(size) > max_body_bytes:
                requests.labels(path, "413").inc()
                response = JSONResponse({"detail": f"body of {int(size)} bytes is over the "
                                                   f"limit of {max_body_bytes}"}, status_code=413)
                return await response(scope, receive, send)
            status = []

            async def sent(message):
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                await send(message)

            await self.inner(scope, receive, sent)
            if path.startswith("/v1/") and status:
                requests.labels(path, str(status[0])).inc()

    app.add_middleware(LimitBody)

    # Dependencies and endpoints are coroutines: they run on the event loop, without a
    # thread hop each (scoring is serialised by the service's lock anyway, and takes
    # about a millisecond).
    async def authorised(request: Request) -> None:
        if not token_env:
            return
        expected = os.environ.get(token_env, "")
        given = request.headers.get("authorization", "")
        if not expected or not hmac.compare_digest(given, f"Bearer {expected}"):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    def not_future(when: dt.datetime, field: str) -> None:
        limit = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=max_future_seconds)
        if when > limit:
            raise HTTPException(422, [{"loc": ["body", field], "type": "future",
                                       "msg": f"{when.isoformat()} is later than the "
                                              f"service's clock allows ({limit.isoformat()})"}])

    async def ready() -> None:
        if not service.ready:
            raise HTTPException(503, "warming up")

    Tx = models["transactions"]

    @app.post("/v1/transactions", response_model=Decision,
              dependencies=[Depends(authorised), Depends(ready)])
    async def score(tx: Tx) -> dict:  # type: ignore[valid-type]
        """Score one payment: probability, tier, reasons; the payment then enters the state."""
        not_future(tx.ts, "ts")
        t = time.perf_counter()
        try:
            decision, ticket = service.score_pending(tx.model_dump())
            await service.durable_async(ticket)  # the next payments are scored meanwhile
        except DuplicateTransaction as exc:
            raise HTTPException(409, f"tx_id {exc} was already scored") from None
        except StoreBusy as exc:
            raise HTTPException(503, f"not scored: {exc}") from None
        latency.observe(time.perf_counter() - t)
        decisions.labels(decision["tier"]).inc()
        late.set(service.scorer.online.late)
        return decision

    def _rows_endpoint(table: str, time_field: str):
        Row = models[table]

        async def take(rows: Annotated[list[Row], Body(max_length=max_rows)]) -> dict:  # type: ignore[valid-type]
            for i, r in enumerate(rows):
                when = getattr(r, time_field)
                if when is not None:
                    not_future(when, f"{i}.{time_field}")
            try:
                out, ticket = service.ingest_pending(table, [r.model_dump() for r in rows])
                await service.durable_async(ticket)
            except StoreBusy as exc:
                raise HTTPException(503, f"not accepted: {exc}") from None
            late.set(service.scorer.online.late)
            return out

        take.__doc__ = f"Take in a list of {table} rows (each effective at its {time_field})."
        app.post(f"/v1/{table}", response_model=Accepted,
                 dependencies=[Depends(authorised), Depends(ready)])(take)

    _rows_endpoint("events", "ts")
    _rows_endpoint("labels", "reported_at")
    _rows_endpoint("blacklist", "listed_at")

    @app.get("/healthz")
    async def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready once the state is restored or warmed."""
        body = {"ready": service.ready, "model_version": service.model_version,
                "features_version": service.features_version}
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        show_version()
        snapshots.labels("taken").set(service.snapshots["taken"])
        snapshots.labels("failed").set(service.snapshots["failed"])
        for gauge, key in ((snapshot_seconds, "last_seconds"),
                           (snapshot_pause, "last_pause_seconds")):
            if service.snapshots[key] is not None:
                gauge.set(service.snapshots[key])
        return PlainTextResponse(generate_latest(registry).decode(),
                                 media_type="text/plain; version=0.0.4")

    return app


def _no_telemetry(fastapi_class) -> dict:
    """FastAPI's own OpenTelemetry off, where this FastAPI has it (0.16x): the service
    reports through ``/metrics`` only, and ``FASTAPI_OTEL_AUTO_CONFIGURE=true`` in the
    environment must not make it export requests to a collector elsewhere."""
    import inspect

    if "telemetry" not in inspect.signature(fastapi_class.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False,
                          "operation_spans": False, "auto_configure": False}}


def _json_safe(value):
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
