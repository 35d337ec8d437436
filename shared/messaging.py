"""Reliable messaging around the bus: transactional outbox, inbox, consumer loop, dead letters.

A stage's result and the event announcing it are written in ONE database transaction (outbox);
a relay publishes the outbox afterwards. A consumed event's id is written to the inbox in the
same transaction as its effect, so a redelivered event is applied once. Offsets are committed
only after that transaction; a message that fails `max_attempts` times goes to `<topic>.dlq`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pydantic
import structlog
from prometheus_client import Histogram
from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    any_,
    delete,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.bus import Bus, Message, Record, Subscriber
from shared.db import ROW_ID, Backoff, bind_processor, insert_statement, is_transient
from shared.events import Envelope, dead_letter_topic
from shared.observability import ServiceMetrics

log = structlog.get_logger("drgdip.messaging")
_INPUT_VALUE = re.compile(r"input_value=('[^']*'|\"[^\"]*\"|[^,\]\s]*)")

Handler = Callable[[AsyncConnection, Sequence[Envelope]], Awaitable[Sequence[Envelope]]]
"""Applies events, in order, inside the given transaction and returns the events they cause.

A stage gets a whole fetched batch at once so that it can read and write each of its tables
with one statement per batch (that is what makes the embedded pipeline fast); applied to the
events one by one it must give the same result as applied to them together."""



_OUTBOX_COLUMNS = ("event_id", "topic", "key", "value", "created_at")


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
        dialect, table = conn.dialect, self.table
        # each event's bytes as they go on the bus (written once, kept by the envelope); a
        # batch's serializing is CPU work: off the event loop
        sql, params = await asyncio.to_thread(lambda: insert_statement(dialect, table, _OUTBOX_COLUMNS, (
            (e.event_id, e.event_type, e.case_id, e.to_bytes(), now) for e in events)))
        await conn.exec_driver_sql(sql, params)

    async def waiting(self, conn: AsyncConnection) -> tuple[int, datetime | None]:
        """How many events wait to be published and when the oldest of them was written."""
        t = self.table
        n, oldest = (await conn.execute(select(func.count(), func.min(t.c.created_at)))).one()
        return int(n or 0), oldest


class Inbox:
    """The ids of the events a service has applied: a redelivered event is applied once."""

    def __init__(self, service: str, metadata: MetaData) -> None:
        self.table = _table(metadata, f"{service}_inbox", inbox_columns)

    async def claim(self, conn: AsyncConnection, events: Sequence[tuple[str, str]]) -> set[str]:
        """Record `(event_id, topic)` pairs as processed; returns the ids not seen before.

        Race-safe: the ids are inserted with ON CONFLICT DO NOTHING and the ones actually
        inserted come back, so an event another member of the consumer group applied meanwhile
        (a redelivery during a rebalance) is skipped, never an IntegrityError that fails the batch.
        """
        wanted = dict(events)  # a redelivery may repeat an event inside one batch
        if not wanted:
            return set()
        now = datetime.now(UTC)
        if conn.dialect.name == "sqlite":
            # one statement over the batch as one JSON array: no per-row parameters to convert
            result = await conn.exec_driver_sql(
                f"INSERT INTO {self.table.name} (event_id, topic, processed_at) "
                "SELECT value ->> 0, value ->> 1, ? FROM json_each(?) WHERE true "
                "ON CONFLICT DO NOTHING RETURNING event_id",
                (_bound(conn, self.table.c.processed_at, now), orjson.dumps(list(wanted.items()))))
            return {row[0] for row in result}
        # PostgreSQL: the batch as two arrays, one short statement the server prepares once
        # (not a VALUES list of three parameters a row, rendered and parsed for every batch)
        result = await conn.exec_driver_sql(
            f"INSERT INTO {self.table.name} (event_id, topic, processed_at) "
            "SELECT e, t, $3::TIMESTAMPTZ FROM unnest($1::VARCHAR[], $2::VARCHAR[]) AS batch(e, t) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            (list(wanted), list(wanted.values()), _bound(conn, self.table.c.processed_at, now)))
        return {row[0] for row in result}


def _bound(conn: AsyncConnection, column: Column, value: Any) -> Any:
    """`value` as the driver receives it for `column` (converted once, not per row)."""
    process = bind_processor(conn.dialect, column.type)
    return value if process is None or value is None else process(value)


def _ids_in(conn: AsyncConnection, column: Column, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids`, with the ids as one parameter (a JSON array on SQLite, an array on
    PostgreSQL) instead of one parameter each."""
    if conn.dialect.name == "sqlite":
        each = func.json_each(orjson.dumps(list(ids)).decode()).table_valued("value")
        return column.in_(select(each.c.value))
    return column == any_(array(list(ids)))


def _runs(ids: Sequence[int], chosen: set[int]) -> list[tuple[int, int]]:
    """`(first, last)` of each run of consecutive `ids` (sorted) that are all in `chosen`."""
    runs: list[tuple[int, int]] = []
    first = last = None
    for i in ids:
        if i in chosen:
            if first is None:
                first = i
            last = i
        elif first is not None:
            runs.append((first, last))  # type: ignore[arg-type]
            first = None
    if first is not None:
        runs.append((first, last))  # type: ignore[arg-type]
    return runs


class OutboxRelay:
    """Publishes outbox rows in id order, then deletes them. Safe to run in several processes.

    On a bus that does not outlive the process (`Bus.durable` False: the embedded mode) a row is
    deleted only once every group reading its topic has committed the message it became; until
    then the relay remembers it as published so it is not published twice while the process
    runs. After a crash the rows still there are published again and the consumers' inboxes
    drop what they had applied. There the outbox backlog (`OutboxReading`) means "not yet
    consumed by every group", not "not yet published".
    """

    def __init__(self, engine: AsyncEngine, outbox: Outbox, bus: Bus, metrics: ServiceMetrics,
                 interval_ms: int = 200, batch: int = 500, namespace: str = "",
                 backoff: Backoff | None = None) -> None:
        self.engine, self.outbox, self.bus, self.metrics = engine, outbox, bus, metrics
        self.interval, self.batch, self.namespace = interval_ms / 1000, batch, namespace
        self.backoff = backoff or Backoff()
        # bus not durable: row id -> (topic, offset) of the message it became, not yet consumed
        self.in_flight: dict[int, tuple[str, int]] = {}
        # ...and the highest row id published: the next rows are above it (SQLite gives row ids
        # in commit order; where they are not, a row committed late waits until none is in flight)
        self.published_upto = 0

    async def flush(self) -> int:
        t = self.outbox.table
        query = select(t.c.id, t.c.topic, t.c.key, t.c.value).order_by(t.c.id).limit(self.batch)
        consumed: list[int] = []
        async with self.engine.begin() as conn:
            if not self.bus.durable:
                # the rows consumed since the last flush are deleted in the same transaction
                consumed = await self._delete_consumed(conn)
            if len(consumed) < len(self.in_flight):
                query = query.where(t.c.id > self.published_upto)
            rows = (await conn.execute(query.with_for_update(skip_locked=True))).all()
            if rows:
                records = [Record(self.namespace + topic, key, value) for _i, topic, key, value in rows]
                await self.bus.publish(records)
                if self.bus.durable:
                    await conn.execute(delete(t).where(_ids_in(conn, t.c.id, [r[0] for r in rows])))
                else:
                    self._remember(rows, records)
        self._forget(consumed)
        self.metrics.last_flush.set_to_current_time()
        if not rows:
            if not self.in_flight:
                self.metrics.outbox.drained()
            return 0
        for topic, n in Counter(r[1] for r in rows).items():
            self.metrics.published.labels(topic).inc(n)
        return len(rows)

    def _remember(self, rows: Sequence[Row], records: Sequence[Record]) -> None:
        """Where each published row went: the in-process bus appended the records without
        yielding, so each topic's last messages are these, in order."""
        offset = {topic: self.bus.end(topic) - n for topic, n in Counter(r.topic for r in records).items()}
        in_flight = self.in_flight
        for row, record in zip(rows, records, strict=True):
            topic = record.topic
            in_flight[row[0]] = (topic, offset[topic])
            offset[topic] += 1
        self.published_upto = max(self.published_upto, rows[-1][0])

    def _forget(self, consumed: Sequence[int]) -> None:
        """Rows deleted for good: forgotten only once their deletion is committed."""
        if consumed:
            for i in consumed:
                del self.in_flight[i]
            if not self.in_flight:
                self.published_upto = 0  # a row committed late (below it) is published at the next flush

    async def _delete_consumed(self, conn: AsyncConnection) -> list[int]:
        """Delete the rows whose messages every subscribed group has committed; returns their ids
        (still in flight until the transaction commits)."""
        if not self.in_flight:
            return []
        done_below = {topic: self.bus.committed_by_all(topic)
                      for topic in {topic for topic, _o in self.in_flight.values()}}
        done = [i for i, (topic, offset) in self.in_flight.items() if offset < done_below[topic]]
        if not done:
            return done
        t = self.outbox.table
        if conn.dialect.name == "sqlite":
            # SQLite numbers a new row above every row the table holds, and the relay publishes
            # every row above the last one it published: between two rows in flight there is no
            # other row, so a run of rows in flight that are all consumed is deleted as a range
            # (a walk along the table instead of a look-up per row)
            await conn.exec_driver_sql(f"DELETE FROM {t.name} WHERE id BETWEEN ? AND ?",
                                       _runs(sorted(self.in_flight), set(done)))
        else:
            await conn.execute(delete(t).where(_ids_in(conn, t.c.id, done)))
        return done

    async def settle(self) -> int:
        """At a graceful stop, on a bus that dies with the process: delete the rows every group
        has consumed since the last flush, so the next start does not publish them again (the
        inboxes would drop them, but each would be read, sent and checked once more). What is not
        consumed yet stays, to be published at the next start. Returns how many were deleted."""
        if self.bus.durable or not self.in_flight:
            return 0
        async with self.engine.begin() as conn:
            consumed = await self._delete_consumed(conn)
        self._forget(consumed)
        return len(consumed)

    async def read_backlog(self, conn: AsyncConnection | None) -> None:
        """Refresh the outbox reading through `conn` (None: the database did not answer, so the
        last reading stays, marked stale, and the age of its oldest event keeps growing)."""
        if conn is None:
            self.metrics.outbox.unreachable()
            return
        try:
            self.metrics.outbox.observed(*await self.outbox.waiting(conn))
        except Exception:
            self.metrics.outbox.unreachable()
            raise

    async def run(self) -> None:
        while True:
            try:
                published = await self.flush()
                self.backoff.reset()
                if published >= self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # broker or database away: keep the rows, try again
                delay = self.backoff.next_delay()
                log.warning("outbox relay failed, will retry", reason=failure_reason(e),
                            transient=is_transient(e), retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
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
                 instance_id: str | None = None, namespace: str = "",
                 transient_retry_ms: int = 200, transient_retry_max_ms: int = 10_000,
                 lag_interval_ms: int = 5000) -> None:
        self.service, self.bus, self.engine, self.outbox, self.inbox = service, bus, engine, outbox, inbox
        self.topics = tuple(namespace + t for t in topics)
        self.group_id = namespace + service
        self.handler, self.metrics = handler, metrics
        self.max_attempts, self.backoff = max_attempts, retry_backoff_ms / 1000
        self.fetch_max_records, self.instance_id = fetch_max_records, instance_id
        self.linger = fetch_linger_ms / 1000
        self.transient_retry = (transient_retry_ms, transient_retry_max_ms)
        self.lag_interval = lag_interval_ms / 1000
        self.lag: dict[tuple[str, int], int] = {}  # the last reading: (topic, partition) -> events

    @property
    def lag_total(self) -> int:
        return sum(self.lag.values())

    async def run(self) -> None:
        sub = self.bus.subscriber(self.group_id, self.topics, instance_id=self.instance_id)
        await sub.start()
        # lag is read beside the loop, so it stays true while a batch waits for the database
        watch = asyncio.create_task(self._watch_lag(sub), name=f"lag-{self.group_id}")
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
            watch.cancel()
            with contextlib.suppress(BaseException):
                await watch
            self._report_lag({})
            await sub.stop()

    async def _watch_lag(self, sub: Subscriber) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
                # that arrives as the reading completes, and the runtime could never stop
                async with asyncio.timeout(max(self.lag_interval, 5.0)):
                    lag = await sub.lag()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker is away: the last reading stays
                log.debug("consumer lag not read", group=self.group_id, error=repr(e))
            else:
                self._report_lag(lag)
            await asyncio.sleep(self.lag_interval)

    def _report_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """Publish this member's lag; partitions it no longer holds are another member's to report."""
        gauge = self.metrics.consumer_lag
        for topic, partition in self.lag.keys() - lag.keys():
            with contextlib.suppress(KeyError):
                gauge.remove(self.group_id, topic, str(partition))
        for (topic, partition), n in lag.items():
            gauge.labels(self.group_id, topic, str(partition)).set(n)
        self.lag = dict(lag)

    async def process_batch(self, batch: Sequence[Message]) -> None:
        """Apply a fetched batch in one transaction; when it fails by content, message by message.

        One transaction per batch is what makes a stage fast (one commit for hundreds of
        events); falling back to `process` isolates a bad event without losing the others. A
        database that is away is waited for (capped exponential back-off), never a reason to
        fall back: the batch is tried again whole once it answers.
        """
        envs: list[tuple[Message, Envelope]] = []
        # decoding a batch is CPU work: off the event loop, which keeps serving meanwhile
        for msg, decoded in await asyncio.to_thread(lambda: [(m, _decoded(m)) for m in batch]):
            if isinstance(decoded, Envelope):
                envs.append((msg, decoded))
            else:
                await self._dead_letter(msg, f"undecodable: {failure_reason(decoded)}")
        if len(envs) <= 1:
            for msg, _env in envs:
                await self.process(msg)
            return
        started = time.perf_counter()
        backoff = Backoff(*self.transient_retry)
        races = 0
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
            except Exception as e:
                if is_transient(e):
                    # the database is away or busy: retry the whole batch, never dead-letter for that
                    delay = backoff.next_delay()
                    log.warning("transient failure, retrying the batch", topics=self._topics(envs),
                                events=len(envs), reason=failure_reason(e), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                if isinstance(e, sa_exc.IntegrityError) and races < RACE_RETRIES:
                    # another member of the group may have written the same results meanwhile
                    # (a rebalance): the inbox skips what it applied at the next try
                    races += 1
                    log.warning("conflict applying the batch, retrying it", topics=self._topics(envs),
                                events=len(envs), reason=failure_reason(e), attempt=races)
                    continue
                log.warning("batch failed by content: applying its events one at a time",
                            topics=self._topics(envs), events=len(envs), reason=failure_reason(e))
                for topic in self._topics(envs):
                    self.metrics.batch_fallbacks.labels(topic).inc()
                for msg, _env in envs:
                    await self.process(msg)
                return
        self.outbox.wakeup.set()
        per_event = (time.perf_counter() - started) / len(envs)
        for topic, n in Counter(msg.topic for msg, _env in envs).items():
            self.metrics.consumed.labels(topic).inc(n)
            _observe_times(self.metrics.processing.labels(topic), per_event, n)

    @staticmethod
    def _topics(envs: Sequence[tuple[Message, Envelope]]) -> list[str]:
        return sorted({m.topic for m, _e in envs})

    async def process(self, msg: Message) -> None:
        """Apply one message; returns once it is applied, skipped as a duplicate or dead-lettered.
        Only failures by content count towards `max_attempts`; a database that is away is
        waited for."""
        try:
            env = Envelope.from_bytes(msg.value)
        except (ValueError, pydantic.ValidationError) as e:
            await self._dead_letter(msg, f"undecodable: {failure_reason(e)}")
            return
        failures = 0
        backoff = Backoff(*self.transient_retry)
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
                await self._dead_letter(msg, f"invalid: {failure_reason(e)}")
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.metrics.failed.labels(msg.topic).inc()
                if is_transient(e):
                    # infrastructure away (database down): wait, never dead-letter for that
                    delay = backoff.next_delay()
                    log.warning("transient failure, retrying the event", reason=failure_reason(e),
                                event_id=env.event_id, retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                # by content (an IntegrityError too: a member that applied the same event
                # meanwhile is seen by the inbox at the next try, so it is never dead-lettered)
                failures += 1
                log.warning("failed to apply event", reason=failure_reason(e), attempt=failures,
                            event_id=env.event_id)
                if failures >= self.max_attempts:
                    await self._dead_letter(msg, f"failed {failures} times: {failure_reason(e)}")
                    return
                await asyncio.sleep(self.backoff * failures)
            finally:
                structlog.contextvars.unbind_contextvars("correlation_id", "case_id")

    async def _dead_letter(self, msg: Message, reason: str) -> None:
        log.warning("dead-lettering message", topic=msg.topic, partition=msg.partition,
                    offset=msg.offset, consumer=self.service, reason=reason[:500])
        headers = (
            ("error", reason[:1000].encode()),
            ("source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
            ("consumer", self.service.encode()),
        )
        await self.bus.publish([Record(dead_letter_topic(msg.topic), msg.key or "", msg.value, headers)])
        self.metrics.dead_lettered.labels(msg.topic).inc()


def _observe_times(histogram: Histogram, amount: float, n: int) -> None:
    """`histogram.observe(amount)` n times over: the sum grows by n amounts and the amount's
    bucket by n, in one step each (prometheus_client has no call for it; a client without
    these internals gets the n observations one by one)."""
    try:
        histogram._raise_if_not_observable()  # what observe checks first
        bounds, buckets, total = histogram._upper_bounds, histogram._buckets, histogram._sum
    except AttributeError:
        for _ in range(n):
            histogram.observe(amount)
        return
    total.inc(amount * n)
    for i, bound in enumerate(bounds):
        if amount <= bound:
            buckets[i].inc(n)
            break


RACE_RETRIES = 3  # tries of a batch after an IntegrityError before it counts as a content failure


def failure_reason(e: BaseException) -> str:
    """What failed, for a log line or a dead letter's `error` header: the exception's type and
    the first line of its message, without the SQL statement and its parameters (which may
    carry personal data)."""
    if isinstance(e, pydantic.ValidationError):  # the fields at fault, never their values
        text = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'event'}: {err['msg']}"
                         for err in e.errors()[:5])
    else:
        text = redact_reason(str(e))
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def redact_reason(text: str) -> str:
    """A failure's message fit to print: its first line, without SQL parameters or the input
    values a validation error quotes."""
    text = text.strip().split("\n", 1)[0].split("[SQL:", 1)[0].split("[parameters:", 1)[0].strip()
    return _INPUT_VALUE.sub("input_value=…", text)
