"""Reliable messaging around the bus: transactional outbox, inbox, consumer loop, dead letters.

A stage's result and the event announcing it are written in ONE database transaction (outbox);
a relay publishes the outbox afterwards. A consumed event's id is written to the inbox in the
same transaction as its effect, so a redelivered event is applied once. Offsets are committed
only after that transaction; a message that fails `max_attempts` times goes to `<topic>.dlq`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import pydantic
import structlog
from sqlalchemy import (
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.bus import Bus, Message, Record
from shared.db import ROW_ID, TRANSIENT_ERRORS, insert_many
from shared.events import Envelope, dead_letter_topic
from shared.observability import ServiceMetrics

log = structlog.get_logger("drgdip.messaging")

Handler = Callable[[AsyncConnection, Sequence[Envelope]], Awaitable[Sequence[Envelope]]]
"""Applies events, in order, inside the given transaction and returns the events they cause.

A stage gets a whole fetched batch at once so that it can read and write each of its tables
with one statement per batch (that is what makes the embedded pipeline fast); applied to the
events one by one it must give the same result as applied to them together."""



def outbox_columns() -> list[Column]:
    return [
        Column("id", ROW_ID, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False),
        Column("topic", String(64), nullable=False),
        Column("key", String(128), nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    ]


def inbox_columns() -> list[Column]:
    return [
        Column("event_id", String(36), primary_key=True),
        Column("topic", String(64), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    ]


def create_messaging_tables(op, service: str) -> None:  # type: ignore[no-untyped-def]
    """Used by each service's first migration: its own outbox and inbox."""
    op.create_table(f"{service}_outbox", *outbox_columns())
    op.create_table(f"{service}_inbox", *inbox_columns())


def _table(metadata: MetaData, name: str, columns: Callable[[], list[Column]]) -> Table:
    found = metadata.tables.get(name)
    return found if found is not None else Table(name, metadata, *columns())


class Outbox:
    """The events a service's transactions cause, stored with them and published by the relay."""

    def __init__(self, service: str, metadata: MetaData) -> None:
        # the table belongs to the service's metadata; a second runtime in one process reuses it
        self.table = _table(metadata, f"{service}_outbox", outbox_columns)
        self.wakeup = asyncio.Event()

    async def add(self, conn: AsyncConnection, events: Sequence[Envelope]) -> None:
        if not events:
            return
        now = datetime.now(UTC)
        rows = await asyncio.to_thread(lambda: [  # serializing a batch: off the event loop
            {"event_id": e.event_id, "topic": e.event_type, "key": e.case_id, "value": e.to_bytes(),
             "created_at": now} for e in events])
        await insert_many(conn, self.table, rows)



class Inbox:
    """The ids of the events a service has applied: a redelivered event is applied once."""

    def __init__(self, service: str, metadata: MetaData) -> None:
        self.table = _table(metadata, f"{service}_inbox", inbox_columns)

    async def claim(self, conn: AsyncConnection, events: Sequence[tuple[str, str]]) -> set[str]:
        """Record `(event_id, topic)` pairs as processed; returns the ids not seen before."""
        wanted = dict(events)  # a redelivery may repeat an event inside one batch
        seen = set((await conn.execute(
            select(self.table.c.event_id).where(self.table.c.event_id.in_(list(wanted)))
        )).scalars())
        fresh = {e: t for e, t in wanted.items() if e not in seen}
        if fresh:
            now = datetime.now(UTC)
            await insert_many(conn, self.table, [
                {"event_id": e, "topic": t, "processed_at": now} for e, t in fresh.items()])
        return set(fresh)


class OutboxRelay:
    """Publishes outbox rows in id order, then deletes them. Safe to run in several processes."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox, bus: Bus, metrics: ServiceMetrics,
                 interval_ms: int = 200, batch: int = 500, namespace: str = "") -> None:
        self.engine, self.outbox, self.bus, self.metrics = engine, outbox, bus, metrics
        self.interval, self.batch, self.namespace = interval_ms / 1000, batch, namespace

    async def flush(self) -> int:
        t = self.outbox.table
        async with self.engine.begin() as conn:
            rows = (await conn.execute(
                select(t.c.id, t.c.topic, t.c.key, t.c.value)
                .order_by(t.c.id).limit(self.batch).with_for_update(skip_locked=True)
            )).all()
            if not rows:
                self.metrics.outbox_backlog.set(0)
                return 0
            await self.bus.publish([Record(self.namespace + r.topic, r.key, r.value) for r in rows])
            await conn.execute(delete(t).where(t.c.id.in_([r.id for r in rows])))
        for topic, n in Counter(r.topic for r in rows).items():
            self.metrics.published.labels(topic).inc(n)
        return len(rows)

    async def backlog(self) -> int:
        async with self.engine.connect() as conn:
            n = await conn.scalar(select(func.count()).select_from(self.outbox.table))
        self.metrics.outbox_backlog.set(n or 0)
        return int(n or 0)

    async def run(self) -> None:
        while True:
            try:
                if await self.flush() >= self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # broker or database away: keep the rows, try again
                log.warning("outbox relay failed, will retry", error=str(e))
                await asyncio.sleep(1)
            self.outbox.wakeup.clear()
            try:
                await asyncio.wait_for(self.outbox.wakeup.wait(), self.interval)
            except TimeoutError:
                pass




class PoisonMessage(Exception):
    """An event that can never be applied (undecodable, or invalid for the stage)."""


def _decoded(msg: Message) -> Envelope | Exception:
    """The message's envelope, or why it cannot be read."""
    try:
        return Envelope.from_bytes(msg.value)
    except (ValueError, pydantic.ValidationError) as e:
        return e


class EventConsumer:
    """The consume loop of one stage: fetch, apply each event once, commit, dead-letter poison."""

    def __init__(self, *, service: str, bus: Bus, engine: AsyncEngine, outbox: Outbox, inbox: Inbox,
                 topics: Sequence[str], handler: Handler, metrics: ServiceMetrics,
                 max_attempts: int = 5, retry_backoff_ms: int = 200,
                 fetch_max_records: int = 1000, fetch_linger_ms: int = 0,
                 instance_id: str | None = None, namespace: str = "") -> None:
        self.service, self.bus, self.engine, self.outbox, self.inbox = service, bus, engine, outbox, inbox
        self.topics = tuple(namespace + t for t in topics)
        self.group_id = namespace + service
        self.handler, self.metrics = handler, metrics
        self.max_attempts, self.backoff = max_attempts, retry_backoff_ms / 1000
        self.fetch_max_records, self.instance_id = fetch_max_records, instance_id
        self.linger = fetch_linger_ms / 1000

    async def run(self) -> None:
        sub = self.bus.subscriber(self.group_id, self.topics, instance_id=self.instance_id)
        await sub.start()
        try:
            while True:
                batch = await sub.fetch(timeout_ms=500, max_records=self.fetch_max_records)
                if batch and len(batch) < self.fetch_max_records and self.linger:
                    # under load more events are on their way, and a batch costs the same few
                    # statements whatever its size: wait a moment and take them along
                    await asyncio.sleep(self.linger)
                    batch += await sub.fetch(timeout_ms=0, max_records=self.fetch_max_records - len(batch))
                if batch:
                    await self.process_batch(batch)
                    await sub.commit(batch)
        finally:
            await sub.stop()

    async def process_batch(self, batch: Sequence[Message]) -> None:
        """Apply a fetched batch in one transaction; on any failure, message by message.

        One transaction per batch is what makes a stage fast (one commit for hundreds of
        events); falling back to `process` isolates a bad event without losing the others.
        """
        envs: list[tuple[Message, Envelope]] = []
        # decoding a batch is CPU work: off the event loop, which keeps serving meanwhile
        for msg, decoded in await asyncio.to_thread(lambda: [(m, _decoded(m)) for m in batch]):
            if isinstance(decoded, Envelope):
                envs.append((msg, decoded))
            else:
                await self._dead_letter(msg, f"undecodable: {decoded}")
        if len(envs) <= 1:
            for msg, _env in envs:
                await self.process(msg)
            return
        started = time.perf_counter()
        while True:
            try:
                async with self.engine.begin() as conn:
                    fresh = await self.inbox.claim(conn, [(e.event_id, m.topic) for m, e in envs])
                    todo: list[Envelope] = []
                    for _msg, env in envs:
                        if env.event_id in fresh:
                            fresh.discard(env.event_id)  # a redelivery may repeat it in the batch
                            todo.append(env)
                    await self.outbox.add(conn, await self.handler(conn, todo) if todo else [])
                break
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as e:
                # the database is away: retry the whole batch, never dead-letter for that
                log.warning("transient failure, retrying the batch", error=str(e))
                await asyncio.sleep(max(self.backoff, 0.5))
            except Exception:
                for msg, _env in envs:
                    await self.process(msg)
                return
        self.outbox.wakeup.set()
        per_event = (time.perf_counter() - started) / len(envs)
        for topic, n in Counter(msg.topic for msg, _env in envs).items():
            self.metrics.consumed.labels(topic).inc(n)
            processing = self.metrics.processing.labels(topic)
            for _ in range(n):
                processing.observe(per_event)

    async def process(self, msg: Message) -> None:
        """Apply one message; returns once it is applied, skipped as a duplicate or dead-lettered."""
        try:
            env = Envelope.from_bytes(msg.value)
        except (ValueError, pydantic.ValidationError) as e:
            await self._dead_letter(msg, f"undecodable: {e}")
            return
        failures = 0
        while True:
            structlog.contextvars.bind_contextvars(correlation_id=env.correlation_id, case_id=env.case_id)
            started = time.perf_counter()
            try:
                async with self.engine.begin() as conn:
                    if await self.inbox.claim(conn, [(env.event_id, msg.topic)]):
                        await self.outbox.add(conn, await self.handler(conn, [env]))
                self.outbox.wakeup.set()
                self.metrics.consumed.labels(msg.topic).inc()
                self.metrics.processing.labels(msg.topic).observe(time.perf_counter() - started)
                return
            except (PoisonMessage, pydantic.ValidationError) as e:
                await self._dead_letter(msg, f"invalid: {e}")
                return
            except asyncio.CancelledError:
                raise
            except sa_exc.IntegrityError:
                # a concurrent member applied the same event first: the inbox says so next time
                continue
            except TRANSIENT_ERRORS as e:
                # infrastructure away (database down): wait, never dead-letter for that
                self.metrics.failed.labels(msg.topic).inc()
                log.warning("transient failure, retrying", error=str(e), event_id=env.event_id)
                await asyncio.sleep(max(self.backoff, 0.5))
            except Exception as e:
                failures += 1
                self.metrics.failed.labels(msg.topic).inc()
                log.error("failed to apply event", error=repr(e), attempt=failures, event_id=env.event_id)
                if failures >= self.max_attempts:
                    await self._dead_letter(msg, f"failed {failures} times: {e!r}")
                    return
                await asyncio.sleep(self.backoff * failures)
            finally:
                structlog.contextvars.unbind_contextvars("correlation_id", "case_id")

    async def _dead_letter(self, msg: Message, reason: str) -> None:
        log.error("dead-lettering message", topic=msg.topic, partition=msg.partition,
                  offset=msg.offset, reason=reason[:500])
        headers = (
            ("error", reason[:1000].encode()),
            ("source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
            ("consumer", self.service.encode()),
        )
        await self.bus.publish([Record(dead_letter_topic(msg.topic), msg.key or "", msg.value, headers)])
        self.metrics.dead_lettered.labels(msg.topic).inc()
