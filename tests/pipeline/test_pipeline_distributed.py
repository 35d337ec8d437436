"""The pipeline distributed: each service its own OS process, real Kafka, real PostgreSQL.

Every service gets its own database (it owns its tables) and the test gets its own topic
namespace, so tests sharing the broker never see each other's events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from helpers import SHARED, STAGE_TABLES, bearer, count, distinct_cases, lists, policy, wait_until
from processes import ServiceProcess
from sqlalchemy import text

from shared.db import create_engine
from shared.settings import DEV_SERVICE_TOKEN
from shared.web import SERVICE_TOKEN_HEADER

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


class Suite:
    """Five services (or more groupers) wired to one broker and one database each."""

    def __init__(self, kafka: str, new_db: Callable[[str], str], tmp: Path) -> None:
        self.kafka, self.tmp = kafka, tmp
        self.namespace = f"t{uuid.uuid4().hex[:8]}."
        self.dbs = {s: new_db(s) for s in ("ingest", "grouper", "pricer", "review", "gateway")}
        (tmp / "policy.json").write_bytes(orjson.dumps(policy()))
        self.procs: list[ServiceProcess] = []

    def env(self, service: str) -> dict[str, str]:
        return {"DRGDIP_BUS": f"kafka://{self.kafka}", "DRGDIP_DB": self.dbs[service],
                "DRGDIP_NAMESPACE": self.namespace, "DRGDIP_SCHEMES_DIR": str(SHARED / "schemes"),
                "DRGDIP_POLICY_FILE": str(self.tmp / "policy.json")}

    def start(self, service: str, **extra: str) -> ServiceProcess:
        env = self.env(service) | extra
        if service == "gateway":
            env |= {"DRGDIP_INGEST_URL": self.by("ingest").url, "DRGDIP_GROUPER_URL": self.by("grouper").url,
                    "DRGDIP_PRICER_URL": self.by("pricer").url, "DRGDIP_REVIEW_URL": self.by("review").url}
        p = ServiceProcess(service, env, self.tmp).start()
        self.procs.append(p)
        return p

    def by(self, service: str) -> ServiceProcess:
        return next(p for p in self.procs if p.service == service)

    def start_all(self, groupers: int = 1) -> None:
        self.start("ingest")
        for _ in range(groupers):
            self.start("grouper")
        for s in ("pricer", "review", "gateway"):
            self.start(s)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    async def auth(self) -> dict[str, str]:
        """A bureau token, created in the gateway's database once it is migrated."""
        if not hasattr(self, "_auth"):
            engine = create_engine(self.dbs["gateway"])
            try:
                self._auth = await bearer(engine)
            finally:
                await engine.dispose()
        return self._auth

    async def post_lists(self, batch: list[dict]) -> None:
        async with httpx.AsyncClient(base_url=self.by("gateway").url, timeout=30,
                                     headers=await self.auth()) as client:
            sem = asyncio.Semaphore(8)

            async def post(sl: dict) -> None:
                async with sem:
                    for attempt in range(3):
                        try:
                            r = await client.post("/api/v1/settlement-lists", json=sl)
                            break
                        except httpx.TransportError:
                            # a kept-alive connection the server closed as it was reused: send
                            # again, as a hospital's client does (a list sent twice is stored once)
                            if attempt == 2:
                                raise
                    # 200 "duplicate": a list sent again after its first sending was stored
                    assert r.status_code == 202 or (attempt and r.json().get("status") == "duplicate"), r.text

            await asyncio.gather(*(post(sl) for sl in batch))

    async def reviewed(self) -> int:
        async with httpx.AsyncClient(base_url=self.by("gateway").url, timeout=10,
                                     headers=await self.auth()) as client:
            return (await client.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0)

    async def assert_exactly_once(self, n: int) -> None:
        """Every stage's table holds exactly one result per case, for all `n` cases."""
        for service, table in STAGE_TABLES.items():
            engine = create_engine(self.dbs[service])
            try:
                assert await count(engine, table) == n, f"{table} rows"
                assert await distinct_cases(engine, table) == n, f"{table} cases"
            finally:
                await engine.dispose()
        engine = create_engine(self.dbs["gateway"])
        try:
            async with engine.connect() as conn:
                # review may re-announce a case (a readmission found later); the others never repeat
                dup = await conn.scalar(text(
                    "SELECT COUNT(*) FROM (SELECT case_id, event_type FROM gateway_timeline "
                    "WHERE event_type <> 'case-flagged' "
                    "GROUP BY case_id, event_type HAVING COUNT(*) > 1) d"))
                same_event = await conn.scalar(text(
                    "SELECT COUNT(*) - COUNT(DISTINCT event_id) FROM gateway_timeline"))
            assert dup == 0, "a case reached the read model twice through the same stage"
            assert same_event == 0, "an event was applied twice"
            assert await count(engine, "gateway_cases", "status = 'reviewed'") == n
        finally:
            await engine.dispose()


@pytest.fixture
def suite(kafka_bootstrap: str, new_pg_database, tmp_path: Path) -> Iterator[Suite]:
    s = Suite(kafka_bootstrap, new_pg_database, tmp_path)
    try:
        yield s
    finally:
        s.stop()


async def test_500_lists_flow_through_five_processes(suite: Suite) -> None:
    suite.start_all()
    await suite.post_lists(lists(500))

    async def done() -> bool:
        return await suite.reviewed() == 500

    await wait_until(done, 300, "500 reviewed cases in the gateway read model")
    await suite.assert_exactly_once(500)


async def test_three_groupers_share_the_partitions_and_process_each_case_once(suite: Suite) -> None:
    suite.start_all(groupers=3)
    await suite.post_lists(lists(2000, seed=11))

    async def done() -> bool:
        return await suite.reviewed() == 2000

    await wait_until(done, 600, "2000 reviewed cases")
    await suite.assert_exactly_once(2000)
    per_process = [p.metric("grouper_events_consumed_total") for p in suite.procs if p.service == "grouper"]
    assert sum(per_process) == 2000
    assert all(n > 0 for n in per_process), f"a grouper got no partition: {per_process}"


@pytest.mark.parametrize("victim", ["grouper", "pricer"])
async def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(suite: Suite, victim: str) -> None:
    suite.start_all()
    target = suite.by(victim)
    posting = asyncio.create_task(suite.post_lists(lists(2000, seed=13)))

    async def busy() -> bool:
        return target.metric(f"{victim}_events_consumed_total") >= 300

    await wait_until(busy, 300, f"the {victim} to be busy")
    target.kill9()
    await asyncio.sleep(1)
    target.start()
    await posting

    async def done() -> bool:
        return await suite.reviewed() == 2000

    await wait_until(done, 600, "2000 reviewed cases after the crash")
    await suite.assert_exactly_once(2000)


async def test_readyz_is_503_while_the_database_is_down(suite: Suite, pg_admin_url: str) -> None:
    ingest = suite.start("ingest")
    assert httpx.get(ingest.url + "/readyz").status_code == 200
    db_name = suite.dbs["ingest"].rsplit("/", 1)[1]
    admin = create_engine(pg_admin_url)
    try:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false'))
            await conn.execute(text(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}'"))
        down = httpx.get(ingest.url + "/readyz", timeout=10)
        assert down.status_code == 503 and down.json()["database"] is False
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true'))

        async def back() -> bool:
            return httpx.get(ingest.url + "/readyz", timeout=10).status_code == 200

        await wait_until(back, 30, "/readyz back to 200")
    finally:
        await admin.dispose()


async def test_poison_message_goes_to_the_dead_letter_topic_and_the_grouper_keeps_going(suite: Suite) -> None:
    from shared.bus import Record
    from shared.bus.kafka import KafkaBus
    from shared.events import CASE_RECEIVED, dead_letter_topic

    ingest, _grouper = suite.start("ingest"), suite.start("grouper")
    bus = KafkaBus(suite.kafka)
    await bus.start()
    try:
        topic = suite.namespace + CASE_RECEIVED
        await bus.publish([Record(topic, "poison", b"\xff\xfe not json")])
        r = httpx.post(ingest.url + "/settlement-lists", json=lists(1)[0], timeout=10,
                       headers={SERVICE_TOKEN_HEADER: DEV_SERVICE_TOKEN})  # as the gateway does
        assert r.status_code == 202, r.text
        engine = create_engine(suite.dbs["grouper"])
        try:
            async def grouped() -> bool:
                return await count(engine, "grouper_results") == 1

            await wait_until(grouped, 60, "the valid case behind the poison message")
        finally:
            await engine.dispose()
        sub = bus.subscriber(suite.namespace + "dlq-reader", [dead_letter_topic(topic)])
        await sub.start()
        try:
            got: list = []

            async def dead_lettered() -> bool:
                got.extend(await sub.fetch(timeout_ms=500))
                return bool(got)

            await wait_until(dead_lettered, 30, "the dead-lettered message")
        finally:
            await sub.stop()
        assert got[0].value == b"\xff\xfe not json"
        headers = dict(got[0].headers)
        assert headers["consumer"] == b"grouper" and headers["error"].startswith(b"undecodable")
    finally:
        await bus.stop()
