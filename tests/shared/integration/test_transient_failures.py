"""What counts as a database being away (`is_transient`), on real errors of SQLite and of the
real PostgreSQL server, and what the consumer does with each kind of failure: waits for a
database that is away, skips a duplicate inside its batch, falls back to one event at a time
and dead-letters only for content."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

from shared.bus import Message
from shared.bus.memory import MemoryBus
from shared.db import Backoff, create_engine, is_transient
from shared.events import Envelope, dead_letter_topic
from shared.messaging import EventConsumer, Inbox, Outbox, PoisonMessage, failure_reason
from shared.observability import ServiceMetrics

TOPIC = "case-received"


async def _error_of(engine: AsyncEngine, sql: str) -> BaseException:
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    except Exception as e:
        return e
    raise AssertionError(f"{sql!r} did not fail")


def _raise_state(state: str, message: str = "raised for the test") -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{state}'; END $$"


@pytest.mark.postgres
@pytest.mark.parametrize("state", ["57P01", "57P02", "57P03", "53300", "40001", "40P01", "08006"])
async def test_postgres_states_of_a_server_away_or_busy_are_transient(new_pg_database, state: str) -> None:
    engine = create_engine(new_pg_database("transient"))
    try:
        e = await _error_of(engine, _raise_state(state))
        # asyncpg's error comes wrapped as a plain DBAPIError: no class says it is transient
        assert type(e) is sa_exc.DBAPIError
        assert is_transient(e)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_failures_by_content_are_not_transient(new_pg_database) -> None:
    engine = create_engine(new_pg_database("transient"))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        for sql in ("INSERT INTO t VALUES (1)", "SELECT 1/0", "SELECT * FROM missing",
                    _raise_state("P0001", "a rule of the stage")):
            e = await _error_of(engine, sql)
            assert not is_transient(e), sql
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_terminated_connection_is_transient(new_pg_database) -> None:
    engine = create_engine(new_pg_database("transient"))
    try:
        e = await _error_of(engine, "SELECT pg_terminate_backend(pg_backend_pid())")
        assert is_transient(e)
    finally:
        await engine.dispose()


async def test_sqlite_locked_is_transient_and_a_constraint_is_not(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    holder.execute("INSERT INTO t VALUES (1)")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    engine = create_engine(f"sqlite+aiosqlite:///{path}")

    @event.listens_for(engine.sync_engine, "connect")
    def _impatient(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=0")
        cur.close()

    try:
        locked = await _error_of(engine, "INSERT INTO t VALUES (2)")
        assert "database is locked" in str(locked) and is_transient(locked)
        holder.execute("ROLLBACK")
        assert not is_transient(await _error_of(engine, "INSERT INTO t VALUES (1)"))
    finally:
        holder.close()
        await engine.dispose()


def test_plain_errors() -> None:
    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError("a bad event"))
    assert not is_transient(PoisonMessage("invalid"))


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() -> None:
    b = Backoff(100, 1000)
    assert [b.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == 0.1


def test_a_failure_reason_carries_no_values() -> None:
    e = sa_exc.IntegrityError("INSERT INTO t VALUES ($1)", ("张三",), Exception("duplicate key\nDETAIL: Key (name)=(张三)"))
    assert "张三" not in failure_reason(e)
    assert failure_reason(e).startswith("IntegrityError: ")


# --- the consumer ---------------------------------------------------------------------------------


def _envelope(n: int) -> Envelope:
    return Envelope(event_id=str(uuid.uuid4()), event_type=TOPIC, occurred_at=datetime.now(UTC),
                    case_id=f"H1-{n}", correlation_id=f"c{n}", producer="test", payload={"n": n})


def _messages(envs: Sequence[Envelope]) -> list[Message]:
    return [Message(TOPIC, 0, i, e.case_id, e.to_bytes()) for i, e in enumerate(envs)]


class Stage:
    """A handler that records what it applied; `fail` decides per call what to raise."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.calls = 0
        self.fail: object = None

    async def __call__(self, conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
        self.calls += 1
        if callable(self.fail):
            self.fail(envs)  # type: ignore[operator]
        self.applied += [e.event_id for e in envs]
        return []


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgres":
        url = request.getfixturevalue("new_pg_database")("consumer")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}"
    e = create_engine(url)
    yield e
    await e.dispose()


async def _consumer(engine: AsyncEngine, stage: Stage) -> tuple[EventConsumer, MemoryBus, ServiceMetrics]:
    metadata = MetaData()
    outbox, inbox = Outbox("t", metadata), Inbox("t", metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    bus = MemoryBus()
    metrics = ServiceMetrics.create(f"t{uuid.uuid4().hex[:6]}", CollectorRegistry())
    consumer = EventConsumer(service="t", bus=bus, engine=engine, outbox=outbox, inbox=inbox, topics=[TOPIC],
                             handler=stage, metrics=metrics, max_attempts=3, retry_backoff_ms=1,
                             transient_retry_ms=1, transient_retry_max_ms=5)
    return consumer, bus, metrics


def _value(metric, topic: str = TOPIC) -> float:  # type: ignore[no-untyped-def]
    return metric.labels(topic)._value.get()


async def test_a_duplicate_inside_a_batch_is_skipped_without_falling_back(engine: AsyncEngine) -> None:
    stage = Stage()
    consumer, bus, metrics = await _consumer(engine, stage)
    envs = [_envelope(i) for i in range(5)]
    # another member of the group applied the third event during a rebalance
    async with engine.begin() as conn:
        assert await consumer.inbox.claim(conn, [(envs[2].event_id, TOPIC)]) == {envs[2].event_id}
    batch = _messages(envs) + _messages(envs[:1])  # and a redelivery inside the batch itself
    with capture_logs() as logs:
        await consumer.process_batch(batch)
    assert logs == []
    assert stage.calls == 1  # one transaction for the batch
    assert stage.applied == [e.event_id for i, e in enumerate(envs) if i != 2]
    assert _value(metrics.batch_fallbacks) == 0
    assert bus.log(dead_letter_topic(TOPIC)) == []


async def test_the_claim_is_race_safe_between_two_members(engine: AsyncEngine) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer: no two claims run at once")
    inbox = Inbox("r", MetaData())
    async with engine.begin() as conn:
        await conn.run_sync(inbox.table.metadata.create_all)
    ids = [str(uuid.uuid4()) for _ in range(50)]
    async with engine.connect() as a, engine.connect() as b:
        await a.begin()
        await b.begin()
        first = await inbox.claim(a, [(i, TOPIC) for i in ids[:30]])
        second = asyncio.create_task(inbox.claim(b, [(i, TOPIC) for i in ids[20:]]))
        await asyncio.sleep(0.2)  # b waits for a's rows 20..29
        await a.commit()
        assert first | await second == set(ids)
        await b.commit()
    assert first & await second == set()


async def test_a_database_away_is_waited_for_never_a_fallback_or_a_dead_letter(engine: AsyncEngine) -> None:
    stage = Stage()
    consumer, bus, metrics = await _consumer(engine, stage)
    away = 6  # more than max_attempts: counted, these would dead-letter

    def database_away(_envs: Sequence[Envelope]) -> None:
        nonlocal away
        if away:
            away -= 1
            raise sa_exc.DBAPIError("SELECT 1", {}, ConnectionResetError("the database system is shutting down"))

    stage.fail = database_away
    envs = [_envelope(i) for i in range(4)]
    with capture_logs() as logs:
        await consumer.process_batch(_messages(envs))  # the batch path
        assert stage.applied == [e.event_id for e in envs]
        assert stage.calls == 7  # six failed tries of the whole batch, then one that succeeded
        one = _envelope(9)
        away = 6
        await consumer.process(_messages([one])[0])  # the single-event path
    assert {(r["log_level"], r["event"]) for r in logs} == {
        ("warning", "transient failure, retrying the batch"), ("warning", "transient failure, retrying the event")}
    assert stage.applied[-1] == one.event_id
    assert _value(metrics.batch_fallbacks) == 0
    assert bus.log(dead_letter_topic(TOPIC)) == []


async def test_a_content_failure_falls_back_and_dead_letters_only_the_bad_event(engine: AsyncEngine) -> None:
    stage = Stage()
    consumer, bus, metrics = await _consumer(engine, stage)
    envs = [_envelope(i) for i in range(4)]
    bad = envs[1].event_id

    def by_content(batch: Sequence[Envelope]) -> None:
        if any(e.event_id == bad for e in batch):
            raise ValueError("a rule of the stage")

    stage.fail = by_content
    with capture_logs() as logs:
        await consumer.process_batch(_messages(envs))
    warnings = [r for r in logs if r["log_level"] == "warning"]
    assert warnings[0]["event"] == "batch failed by content: applying its events one at a time"
    assert warnings[0]["reason"] == "ValueError: a rule of the stage"
    assert warnings[-1]["event"] == "dead-lettering message" and warnings[-1]["reason"].startswith("failed 3 times")
    assert stage.applied == [e.event_id for e in envs if e.event_id != bad]
    assert _value(metrics.batch_fallbacks) == 1
    dead = bus.log(dead_letter_topic(TOPIC))
    assert [Envelope.from_bytes(m.value).event_id for m in dead] == [bad]
    headers = dict(dead[0].headers)
    assert headers["error"].startswith(b"failed 3 times: ValueError") and headers["consumer"] == b"t"
