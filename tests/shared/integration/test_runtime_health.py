"""/readyz and /metrics tell the worst state: readiness stays about whether this process can
serve, and the body shows the work that waits (outbox backlog and age, consumer lag, ingest's
lists stored but not decided), with the outbox's age still growing while the database is away."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from helpers import wait_until
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from drgdip.stages import build_runtime
from shared.bus import Record
from shared.events import CASE_PRICED, Envelope
from shared.runtime import Runtime

AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
async def review(tmp_path: Path) -> AsyncIterator[Runtime]:
    # the relay's one pass at start finds nothing; it does not look again during the test
    rt = build_runtime("review", db=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", log_level="WARNING",
                       relay_interval_ms=60_000, lag_interval_ms=50, retry_backoff_ms=0)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


def _client(rt: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://test")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_the_outbox_age_keeps_growing_and_says_stale_while_the_database_is_gone(review, tmp_path) -> None:
    outbox = review.stages[0].outbox.table
    async with review.engine.begin() as conn:  # an event the relay has not published yet
        await conn.execute(insert(outbox).values(event_id=str(uuid.uuid4()), topic="t", key="k",
                                                 value=b"{}", created_at=AN_HOUR_AGO))
    async with _client(review) as client:
        r = await client.get("/readyz")
        up = r.json()
        assert r.status_code == 200 and up["fresh"] is True, up
        assert up["outbox"]["review"]["backlog"] == 1
        assert up["outbox"]["review"]["oldest_age_seconds"] >= 3600
        assert up["consumer_lag"]["groups"] == {"review": 0} and up["consumer_lag"]["total"] == 0
        metrics = _samples((await client.get("/metrics")).text)
        assert metrics[("drgdip_database_up", ())] == 1 and metrics[("drgdip_ready", ())] == 1

        for f in tmp_path.glob("r.db*"):
            f.unlink()
        r = await client.get("/readyz")
        down = r.json()
        assert r.status_code == 503 and down["database"] is False and down["fresh"] is False
        assert down["outbox"]["review"]["backlog"] == 1  # the last count read
        assert down["outbox"]["review"]["oldest_age_seconds"] >= up["outbox"]["review"]["oldest_age_seconds"]
        metrics = _samples((await client.get("/metrics")).text)
        assert metrics[("drgdip_database_up", ())] == 0 and metrics[("drgdip_ready", ())] == 0
        assert metrics[("review_outbox_backlog", ())] == 1
        assert metrics[("review_outbox_oldest_age_seconds", ())] >= down["outbox"]["review"]["oldest_age_seconds"]
        assert metrics[("drgdip_readiness_changes_total", ())] >= 1


async def test_readyz_shows_the_lag_of_events_waiting_for_the_database(review) -> None:
    events = [Envelope(event_id=str(uuid.uuid4()), event_type=CASE_PRICED, occurred_at=AN_HOUR_AGO,
                       case_id=f"c{i}", correlation_id="lag", producer="test", payload={})
              for i in range(5)]
    async with _client(review) as client:
        # the stages' one SQLite connection is busy: the fetched events wait, uncommitted
        async with review.engine.connect():
            await review.bus.publish([Record(CASE_PRICED, e.case_id, e.to_bytes()) for e in events])

            async def lagging() -> bool:
                return (await client.get("/readyz")).json()["consumer_lag"]["total"] == 5
            await wait_until(lagging, 30, "a lag of 5")
            r = await client.get("/readyz")
            assert r.status_code == 200 and r.json()["consumer_lag"]["groups"] == {"review": 5}
            metrics = _samples((await client.get("/metrics")).text)
            assert metrics[("drgdip_consumer_lag",
                            (("group", "review"), ("partition", "0"), ("topic", CASE_PRICED)))] == 5

        async def caught_up() -> bool:  # (dead-lettered: their payloads are empty)
            return (await client.get("/readyz")).json()["consumer_lag"]["total"] == 0
        await wait_until(caught_up, 30, "no lag")


async def test_readyz_shows_ingests_lists_stored_but_not_decided(tmp_path: Path) -> None:
    from services.ingest.repository import raw_table, verbatim

    rt = build_runtime("ingest", db=f"sqlite+aiosqlite:///{tmp_path / 'i.db'}", log_level="WARNING")
    await rt.start()
    try:
        async with rt.engine.begin() as conn:  # as a crash between storing and deciding leaves it
            await conn.execute(insert(raw_table).values(id=1, received_at=AN_HOUR_AGO, status="pending"))
            await conn.execute(insert(verbatim).values(id=1, format="native", raw=b"{}", correlation_id="c"))
        async with _client(rt) as client:
            r = await client.get("/readyz")
        body = r.json()
        assert r.status_code == 200, body  # the process can serve: the stuck list is shown, not fatal
        assert body["stages"]["ingest"]["pending_lists"] == 1
        assert body["stages"]["ingest"]["oldest_pending_age_seconds"] >= 3600
    finally:
        await rt.stop()


async def test_http_requests_are_counted_by_route_template_and_status(review) -> None:
    async with _client(review) as client:
        await client.get("/livez")
        await client.get("/no/such/path/123")  # refused before any route: no service token
        metrics = _samples((await client.get("/metrics")).text)
    assert metrics[("drgdip_http_requests_total", (("method", "GET"), ("route", "/livez"), ("status", "200")))] >= 1
    assert metrics[("drgdip_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "401")))] >= 1
    assert not any("123" in dict(labels).get("route", "") for _name, labels in metrics)
