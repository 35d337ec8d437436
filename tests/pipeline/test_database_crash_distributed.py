"""A database that crashes and comes back: nothing dead-lettered, nothing stuck, nothing twice.

Each service is its own OS process on the real broker; the databases live on a PostgreSQL
cluster of this test's own (tests/throwaway_pg.py), crashed with `pg_ctl stop -m immediate`
and started again, so the suite's shared server is never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from helpers import count, lists, wait_until
from processes import ServiceProcess
from sqlalchemy import text
from test_pipeline_distributed import Suite
from throwaway_pg import ThrowawayPostgres

from shared.db import create_engine
from shared.dlq import DeadLetters
from shared.settings import DEV_SERVICE_TOKEN
from shared.web import SERVICE_TOKEN_HEADER

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

# waits while the database is away are short here, so the pipeline resumes soon after it is back
FAST = {"DRGDIP_TRANSIENT_RETRY_MS": "100", "DRGDIP_TRANSIENT_RETRY_MAX_MS": "1000"}
SERVICES = ("ingest", "grouper", "pricer", "review", "gateway")


@pytest.fixture
def pg() -> Iterator[ThrowawayPostgres]:
    cluster = ThrowawayPostgres()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def suite(kafka_bootstrap: str, pg: ThrowawayPostgres, tmp_path: Path) -> Iterator[Suite]:
    s = Suite(kafka_bootstrap, pg.new_database, tmp_path)
    try:
        yield s
    finally:
        s.stop()


def _ready(p: ServiceProcess) -> bool:
    try:
        return httpx.get(p.url + "/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


async def _restart(pg: ThrowawayPostgres, procs: list[ServiceProcess]) -> None:
    pg.crash()
    await asyncio.sleep(2)
    pg.start()

    async def all_ready() -> bool:
        for p in procs:
            assert p.proc is not None and p.proc.poll() is None, f"{p.service} exited"
        return all(_ready(p) for p in procs)

    await wait_until(all_ready, 120, "every service ready again")


async def _post_to_ingest(ingest: ServiceProcess, batch: list[dict]) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=120,
                                 headers={SERVICE_TOKEN_HEADER: DEV_SERVICE_TOKEN}) as client:
        for sl in batch:
            r = await client.post("/settlement-lists", json=sl)
            assert r.status_code == 202, r.text


async def _dead_letters(suite: Suite) -> list:
    letters = DeadLetters(f"kafka://{suite.kafka}", suite.namespace)
    try:
        return await letters.letters()
    finally:
        await letters.close()


async def test_three_crashes_mid_stream_lose_nothing_duplicate_nothing_and_dead_letter_nothing(
        suite: Suite, pg: ThrowawayPostgres) -> None:
    for s in SERVICES:
        suite.start(s, **FAST)
    batches = [lists(300, seed=17)[i::3] for i in range(3)]
    grouper = suite.by("grouper")
    consumed = 0.0

    async def busy() -> bool:
        return grouper.metric("grouper_events_consumed_total") >= consumed + 20

    for batch in batches:
        # straight to ingest, which waits for its database: the lists keep coming through the crash
        posting = asyncio.create_task(_post_to_ingest(suite.by("ingest"), batch))
        await wait_until(busy, 120, "the grouper busy with the batch")
        await _restart(pg, suite.procs)  # while lists arrive and the stages are at work on them
        await posting
        consumed = grouper.metric("grouper_events_consumed_total")

    async def done() -> bool:
        try:
            return await suite.reviewed() == 300
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    await wait_until(done, 300, "300 reviewed cases after three crashes")
    await suite.assert_exactly_once(300)
    logs = "".join(_logs(suite, s) for s in SERVICES)
    assert "transient failure, retrying" in logs or "ingest.database_away_retrying" in logs
    assert await _dead_letters(suite) == []
    for p in suite.procs:
        assert p.metric(f"{p.service}_events_dead_lettered_total") == 0, p.service


async def _slow_body(body: list[bytes], crash_after: int, crashed: asyncio.Event) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 100):
        if i == crash_after:
            crashed.set()
            await asyncio.sleep(0.5)
        yield b"".join(body[i:i + 100])
        await asyncio.sleep(0.02)


async def test_a_database_restart_during_a_bulk_import_and_the_job_completes_without_a_retry(
        suite: Suite, pg: ThrowawayPostgres) -> None:
    ingest = suite.start("ingest", **FAST)
    sent = lists(1200, seed=23)
    body = [orjson.dumps(sl) + b"\n" for sl in sent]
    crashed = asyncio.Event()

    async def restart_when_told() -> None:
        await crashed.wait()
        pg.crash()
        await asyncio.sleep(3)
        pg.start()

    restarting = asyncio.create_task(restart_when_told())
    async with httpx.AsyncClient(base_url=ingest.url, timeout=300,
                                 headers={SERVICE_TOKEN_HEADER: DEV_SERVICE_TOKEN}) as client:
        r = await client.post("/settlement-lists:import", content=_slow_body(body, 600, crashed))
    await restarting
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["lines"] == 1200 and summary["rejected"] == 0
    # a chunk whose commit was cut off may have been stored twice: the copy is a duplicate
    assert summary["accepted"] + summary["duplicate"] == 1200
    engine = create_engine(suite.dbs["ingest"])
    try:
        async def settled() -> bool:
            return (await count(engine, "ingest_raw", "status = 'pending'") == 0
                    and await count(engine, "ingest_outbox") == 0)

        await wait_until(settled, 120, "every stored list decided and its event published")
        assert await count(engine, "ingest_lists") == 1200
        async with engine.connect() as conn:
            job = (await conn.execute(text("SELECT finished_at, summary FROM ingest_jobs WHERE job_id = :j"),
                                      {"j": summary["job_id"]})).one()
        assert job.finished_at is not None and orjson.loads(job.summary)["lines"] == 1200
    finally:
        await engine.dispose()
    assert "ingest.database_away_retrying" in _logs(suite, "ingest")  # the restart hit the import


def _logs(suite: Suite, service: str) -> str:
    return "".join(f.read_text(errors="replace") for f in suite.tmp.glob(f"{service}-*.log"))
