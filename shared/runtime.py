"""The composition root shared by every service: builds the clients, runs the stages, serves HTTP.

One `Runtime` runs one service (distributed mode) or all five over one bus and one database
(embedded mode). The FastAPI lifespan starts and stops everything; nothing connects at import.

Only the gateway's routes are public (`Stage.public`). In the embedded mode the other stages'
routes live on `internal`, an app that is never served: the gateway reaches it in process. In the
distributed mode each of the other services answers only requests that carry the service
credential (`DRGDIP_SERVICE_TOKEN` in the `x-drgdip-service-token` header), which the clients
made here send; /livez, /readyz and /metrics stay open everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import db as dbmod
from shared import migrate
from shared.bus import Bus, bus_from_url
from shared.dlq import DeadLetterWatch
from shared.events import ALL_TOPICS
from shared.messaging import EventConsumer, Handler, Inbox, Outbox, OutboxRelay, failure_reason
from shared.observability import ProcessMetrics, ServiceMetrics, configure_logging, get_logger
from shared.settings import DEVELOPMENT, ServiceSettings, SettingError
from shared.web import SERVICE_TOKEN_HEADER, RequireServiceToken, install_error_handlers

log = get_logger("drgdip.runtime")


@dataclass
class Stage:
    """What one service plugs into the runtime."""

    name: str
    metadata: MetaData
    outbox: Outbox
    router: APIRouter | None = None
    subscriptions: list[tuple[Sequence[str], Handler]] = field(default_factory=list)
    on_start: Callable[[], Awaitable[None]] | None = None
    on_stop: Callable[[], Awaitable[None]] | None = None
    service: Any = None  # the stage's own object (ingest's Intake) for commands and benchmarks
    public: bool = False  # its routes are the public API (the gateway); others are internal
    # what the stage adds to /readyz (work it holds, e.g. lists stored but not processed), read
    # on the probe's own connection; it informs, readiness itself stays the process's
    health: Callable[[AsyncConnection], Awaitable[dict[str, Any]]] | None = None


@dataclass
class Context:
    """The clients a stage is built with."""

    settings: ServiceSettings
    engine: AsyncEngine
    bus: Bus
    http: Callable[[str], httpx.AsyncClient]  # base URL -> client (in-process when embedded)


StageFactory = Callable[[Context], Stage]


_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


async def _correlation(request: Request, call_next):  # type: ignore[no-untyped-def]
    """Bind the request's correlation id to every log line it causes (and pass it on to the
    stages): the caller's when it is a plain id of at most 64 characters, else a new one (the
    answer's `x-correlation-id` says which)."""
    given = request.headers.get("x-correlation-id", "")
    cid = given if _CORRELATION_ID.fullmatch(given) else str(uuid.uuid4())
    structlog.contextvars.bind_contextvars(correlation_id=cid)
    try:
        response = await call_next(request)
    finally:
        structlog.contextvars.unbind_contextvars("correlation_id")
    response.headers["x-correlation-id"] = cid
    return response


class Runtime:
    def __init__(self, settings: ServiceSettings, factories: Sequence[StageFactory],
                 *, embedded: bool = False) -> None:
        self.settings = settings
        self.embedded = embedded
        self.started = False
        self.engine = dbmod.create_engine(settings.db)
        self.probe = dbmod.Probe(self.engine)
        self.bus = bus_from_url(settings.bus, client_id="drgdip", kafka={
            "batch_bytes": settings.kafka_batch_bytes, "fetch_min_bytes": settings.kafka_fetch_min_bytes,
            "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms})
        self._clients: list[httpx.AsyncClient] = []
        ctx = Context(settings, self.engine, self.bus, self._http)
        self.stages = [f(ctx) for f in factories]
        internal_only = not any(s.public for s in self.stages)
        # the served app; a service that is internal only shows no API document to anyone
        self.app = self._web_app(lifespan=self._lifespan, documented=not internal_only)
        # embedded: the stages' internal routes, reached in process by the gateway, never served
        self.internal = self._web_app(documented=False) if embedded else None
        if not embedded and internal_only:
            self.app.add_middleware(RequireServiceToken, token=settings.service_token.get_secret_value())
        self.metrics = ProcessMetrics.create()
        self._ready: bool | None = None  # the last readiness answer, to count its changes
        self.app.middleware("http")(self._count_request)
        self.relays: list[OutboxRelay] = []
        self.consumers: list[EventConsumer] = []
        self._tasks: list[asyncio.Task] = []
        self._gc_threshold: tuple[int, ...] | None = None  # the collector's thresholds before `start`
        watched: list[tuple[str, list[str], ServiceMetrics]] = []
        self._stage_metrics: list[ServiceMetrics] = []
        for s in self.stages:
            metrics = ServiceMetrics.create(s.name)
            self._stage_metrics.append(metrics)
            watched.append((s.name, [t for topics, _h in s.subscriptions for t in topics], metrics))
            self.relays.append(OutboxRelay(
                self.engine, s.outbox, self.bus, metrics, settings.relay_interval_ms,
                namespace=settings.namespace,
                backoff=dbmod.Backoff(settings.transient_retry_ms, settings.transient_retry_max_ms)))
            inbox = Inbox(s.name, s.metadata)
            for i, (topics, handler) in enumerate(s.subscriptions):
                # each subscription is a member of the stage's group: a static membership id of
                # its own, or the second would fence the first out of the group
                instance_id = settings.instance_id if not i or not settings.instance_id \
                    else f"{settings.instance_id}.{i}"
                self.consumers.append(EventConsumer(
                    service=s.name, bus=self.bus, engine=self.engine, outbox=s.outbox, inbox=inbox,
                    topics=topics, handler=handler, metrics=metrics,
                    max_attempts=settings.max_attempts, retry_backoff_ms=settings.retry_backoff_ms,
                    fetch_max_records=settings.fetch_max_records,
                    fetch_linger_ms=settings.fetch_linger_ms, instance_id=instance_id,
                    namespace=settings.namespace, transient_retry_ms=settings.transient_retry_ms,
                    transient_retry_max_ms=settings.transient_retry_max_ms,
                    lag_interval_ms=settings.lag_interval_ms,
                ))
            if s.router is not None:
                (self.app if s.public or self.internal is None else self.internal).include_router(s.router)
        # each service's dead letters not replayed yet (/readyz detail, dlq_messages metric)
        self.dead_letters = DeadLetterWatch(self.bus, settings.namespace, watched)
        self._add_health_routes()

    def _web_app(self, *, documented: bool, lifespan: Any = None) -> FastAPI:
        docs: dict[str, Any] = {} if documented else {"openapi_url": None, "docs_url": None, "redoc_url": None}
        app = FastAPI(title="drgdip", lifespan=lifespan, **docs)
        install_error_handlers(app)
        app.middleware("http")(_correlation)
        # what routes reach through `shared.web` dependencies (`Conn`, `stage_service`)
        app.state.engine = self.engine
        app.state.services = {s.name: s.service for s in self.stages}
        return app

    def _http(self, base_url: str) -> httpx.AsyncClient:
        if self.internal is not None:  # the other service is in this process
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.internal),
                                       base_url="http://embedded")
        else:
            client = httpx.AsyncClient(base_url=base_url, timeout=30, headers={
                SERVICE_TOKEN_HEADER: self.settings.service_token.get_secret_value()})
        self._clients.append(client)
        return client

    async def start(self) -> None:
        self.started = True
        configure_logging(self.settings.log_level, self.settings.log_format)
        # Alembic's own INFO lines ("Context impl SQLiteImpl.") are noise at every start
        logging.getLogger("alembic").setLevel(logging.WARNING)
        try:
            async with self.engine.connect():
                pass
        except Exception as e:
            raise SettingError("DRGDIP_DB", f"cannot open the database: {_first_line(e)}") from e
        for s in self.stages:
            await migrate.upgrade(self.engine, s.name)
        try:
            await self.bus.start()
        except Exception as e:
            raise SettingError("DRGDIP_BUS", f"cannot reach the bus: {_first_line(e)}") from e
        await self.bus.ensure_topics([self.settings.namespace + t for t in ALL_TOPICS],
                                     self.settings.partitions, self.settings.topic_replication)
        for s in self.stages:
            if s.on_start:
                await s.on_start()
        # What is loaded by now (schemes, code dictionaries, policies) lives as long as the
        # runtime: the garbage collector need not walk it again at every collection. What is
        # frozen is never collected: garbage is collected first, and `stop` unfreezes.
        gc.collect()
        gc.freeze()
        self._gc_threshold = gc.get_threshold()
        if self.settings.gc_threshold:  # batches make objects by the thousand, nearly all freed at once
            gc.set_threshold(self.settings.gc_threshold, *self._gc_threshold[1:])
        # consumers first: they join their groups before a relay publishes, so an in-process
        # bus knows whom each message waits for before the relay asks it
        for c in self.consumers:
            self._tasks.append(asyncio.create_task(c.run(), name=f"consumer-{c.service}"))
        for r in self.relays:
            self._tasks.append(asyncio.create_task(r.run(), name=f"relay-{r.outbox.table.name}"))
        self._tasks.append(asyncio.create_task(self.dead_letters.run(), name="dead-letters"))
        if (trim := _malloc_trim()) is not None:
            self._tasks.append(asyncio.create_task(_return_memory(trim), name="return-memory"))
        log.info("started", stages=[s.name for s in self.stages], bus=self.settings.bus.split("://")[0])
        if self.settings.environment == DEVELOPMENT:
            for name in self.settings.public_secrets():
                log.warning("public default secret: set a private value outside development "
                            "(refused there)", setting=name)

    async def stop(self) -> None:
        self.started = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks.clear()
        for r in self.relays:  # the consumers have stopped: what they committed leaves the outbox
            try:
                await r.settle()
            except Exception as e:  # the database is away: the rows stay and are published again
                log.warning("consumed outbox rows left for the next start", outbox=r.outbox.table.name,
                            reason=failure_reason(e))
        for s in self.stages:
            if s.on_stop:
                await s.on_stop()
        for c in self._clients:
            await c.aclose()
        await self.bus.stop()
        await self.engine.dispose()
        await self.probe.dispose()
        if self._gc_threshold is not None:  # a process may start another runtime (the tests do)
            gc.unfreeze()
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        if not self.started:  # `drgdip serve` starts the runtime before it serves
            await self.start()
        try:
            yield
        finally:
            await self.stop()

    def _add_health_routes(self) -> None:
        app = self.app

        @app.get("/livez", tags=["ops"])
        async def livez() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/readyz", tags=["ops"])
        async def readyz() -> Response:
            body = await self.health()
            return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

        @app.get("/metrics", tags=["ops"])
        async def metrics(_request: Request) -> Response:
            await self.health()  # database_up, readiness and the outbox readings as of now
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def health(self) -> dict[str, Any]:
        """What /readyz answers. Ready means THIS process can serve: database and bus reachable,
        its relays and consumers running. The rest shows work that waits, so that a ready
        process holding stuck work says so: each outbox's backlog and the age of its oldest
        event, each consumer group's lag, and what the stages add (`Stage.health`)."""
        # the probe has connections of its own: it never queues behind the stages' pool
        db_ok, bus_ok = await asyncio.gather(self.probe.ping(), self.bus.ping())
        dead = [t.get_name() for t in self._tasks if t.done()]
        ok = db_ok and bus_ok and not dead
        self.metrics.database_up.set(db_ok)
        self._record_readiness(ok)
        stages: dict[str, dict[str, Any]] = {}
        fresh = db_ok and await self._read_details(stages)
        if not fresh:
            for r in self.relays:
                await r.read_backlog(None)
        now = datetime.now(UTC)
        lag: dict[str, int] = {}
        for c in self.consumers:
            lag[c.group_id] = lag.get(c.group_id, 0) + c.lag_total
        return {
            "status": "ok" if ok else "unavailable", "database": db_ok, "bus": bus_ok,
            "stopped_tasks": dead,
            # false: the database did not answer, these are the last readings (ages still grow)
            "fresh": fresh,
            "outbox": {s.name: {"backlog": m.outbox.backlog,
                                "oldest_age_seconds": round(m.outbox.age(now), 3)}
                       for s, m in zip(self.stages, self._stage_metrics, strict=True)},
            "consumer_lag": {"total": sum(lag.values()), "groups": lag},
            "stages": stages,
            # dead letters not replayed yet: work for an operator (`drgdip dlq`), not unreadiness
            "dead_letters": self.dead_letters.counts,
        }

    async def _read_details(self, into: dict[str, dict[str, Any]]) -> bool:
        async def _read(conn: AsyncConnection) -> None:
            for r in self.relays:
                await r.read_backlog(conn)
            for s in self.stages:
                if s.health is not None:
                    into[s.name] = await s.health(conn)

        try:
            await self.probe.read(_read)
            return True
        except Exception as e:  # slower than the probe allows, or gone since the ping
            log.warning("health details not read", error=_first_line(e))
            return False

    def _record_readiness(self, ok: bool) -> None:
        if self._ready is not None and ok != self._ready:
            self.metrics.readiness_changes.inc()
        self._ready = ok
        self.metrics.ready.set(ok)

    async def _count_request(self, request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        status = 500  # what the client gets when the route raises
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            # the route's template, never the path itself: ids would make a series each
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.http_requests.labels(request.method, name, str(status)).inc()
            self.metrics.http_duration.labels(request.method, name).observe(time.perf_counter() - started)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


MEMORY_RETURN_SECONDS = 30.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, where the C library has it (Linux/glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


async def _return_memory(trim: Callable[[int], int]) -> None:
    """Hand the heap's free pages back to the system now and then. After a large import the
    allocator keeps what Python freed (many small blocks across many pages, and an arena per
    worker thread), so the process would stay at its peak size while idle; `malloc_trim` runs
    outside the interpreter lock, in a worker thread, and frees only free pages."""
    while True:
        await asyncio.sleep(MEMORY_RETURN_SECONDS)
        await asyncio.to_thread(trim, 0)
