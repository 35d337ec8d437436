"""The whole pipeline in embedded mode: one process, in-process bus, one SQLite file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from helpers import (
    SHARED,
    api_client,
    case_id,
    count,
    lists,
    national_list,
    policy,
    simple_lists,
    stage_counts,
    wait_until,
)

from drgdip.stages import build_runtime
from shared.bus import Record
from shared.events import CASE_RECEIVED, Envelope, dead_letter_topic


@pytest.fixture
async def embedded(tmp_path: Path):
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'drgdip.db'}",
                       schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")
    await rt.start()
    client = await api_client(rt)
    try:
        yield rt, client
    finally:
        await client.aclose()
        await rt.stop()


async def _reviewed(client: httpx.AsyncClient) -> int:
    return (await client.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0)


async def test_500_lists_reach_the_read_model_grouped_priced_and_reviewed(embedded) -> None:
    rt, client = embedded
    batch = lists(500)
    for sl in batch:
        r = await client.post("/api/v1/settlement-lists", json=sl)
        assert r.status_code == 202, r.text

    async def all_reviewed() -> bool:
        return await _reviewed(client) == 500

    await wait_until(all_reviewed, 240, "500 reviewed cases")
    assert await stage_counts(rt.engine) == {"ingest": 500, "grouper": 500, "pricer": 500, "review": 500}

    case = (await client.get(f"/api/v1/cases/{case_id(batch[0])}")).json()
    assert [e["event_type"] for e in case["timeline"]] == [
        "case-received", "case-grouped", "case-priced", "case-flagged"]
    assert case["grouped"]["scheme_id"] == "chs-drg-1.1"
    if case["grouped"]["status"] == "SUCCESS":
        assert case["priced"]["status"] == "PRICED"
        assert Decimal(case["priced"]["payment_standard"]) == Decimal("10000.00")


async def test_grouping_matches_the_reference_result(embedded) -> None:
    _rt, client = embedded
    ref = [orjson.loads(line) for line in (SHARED / "testdata" / "chs-drg-1.1-cases.jsonl").open("rb")]
    batch = lists(40)
    for sl in batch:
        assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

    async def done() -> bool:
        return await _reviewed(client) == 40

    await wait_until(done, 120, "40 reviewed cases")
    compared = 0
    for sl in batch:
        c = ref[int(sl["setlinfo"]["setl_id"][1:])]  # setl_id S0000123 is reference line 123
        if c["sex"] not in (1, 2) or not c["diagnoses"] or c["age"] is None:
            continue  # the demo lists replace invalid values, so the reference no longer applies
        got = (await client.get(f"/api/v1/cases/{case_id(sl)}")).json()["grouped"]
        assert {k: got[k] for k in ("mdc", "adrg", "drg", "status")} == c["expected"], case_id(sl)
        compared += 1
    assert compared >= 30


async def test_bad_list_is_rejected_with_the_field_and_nothing_is_stored(embedded) -> None:
    rt, client = embedded
    bad = national_list(simple_lists(1)[0] | {"sex": 5})
    r = await client.post("/api/v1/settlement-lists", json=bad)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "LIST_REJECTED"
    assert r.json()["error"]["field"] == "setlinfo.gend"
    r = await client.post("/api/v1/settlement-lists", content=b"{not json")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "MALFORMED_JSON"
    missing = {k: v for k, v in lists(1)[0].items() if k != "diseinfo"}
    r = await client.post("/api/v1/settlement-lists", json=missing)
    assert r.status_code == 422 and r.json()["error"]["field"].startswith("diseinfo")
    assert await count(rt.engine, "ingest_lists") == 0
    assert await count(rt.engine, "ingest_raw", "status = 'rejected'") == 3  # kept, verbatim


async def test_resubmission_is_a_new_version_and_a_retry_is_not(embedded) -> None:
    rt, client = embedded
    simple = simple_lists(1)[0]
    sl = national_list(simple)
    first = (await client.post("/api/v1/settlement-lists", json=sl)).json()
    retry = (await client.post("/api/v1/settlement-lists", json=sl)).json()
    changed = national_list(simple | {"dept": "B01"})
    second = (await client.post("/api/v1/settlement-lists", json=changed)).json()
    assert (first["list_version"], retry["list_version"], second["list_version"]) == (1, 1, 2)
    assert (first["status"], retry["status"], second["status"]) == ("accepted", "duplicate", "accepted")

    async def v2_reviewed() -> bool:
        case = (await client.get(f"/api/v1/cases/{first['case_id']}")).json()
        return case.get("list_version") == 2 and case.get("status") == "reviewed"

    await wait_until(v2_reviewed, 60, "version 2 reviewed")
    assert await count(rt.engine, "ingest_lists") == 2


async def test_a_split_admission_within_15_days_is_flagged_in_either_arrival_order(embedded) -> None:
    _rt, client = embedded
    base = simple_lists(1)[0] | {"psn_no": "P-readmit", "hospital_code": "H1"}
    first = base | {"setl_id": "A", "admission_date": "2024-03-01", "discharge_date": "2024-03-05", "los": 4}
    again = base | {"setl_id": "B", "admission_date": "2024-03-15", "discharge_date": "2024-03-18", "los": 3}
    late = base | {"setl_id": "C", "admission_date": "2024-05-01", "discharge_date": "2024-05-02", "los": 1}
    for sl in (again, first, late):  # the later stay arrives first
        r = await client.post("/api/v1/settlement-lists", json=national_list(sl))
        assert r.status_code == 202, r.text

    async def flagged() -> bool:
        case = (await client.get("/api/v1/cases/H1-B")).json()
        return bool(case.get("reviewed") and case["reviewed"]["flags"])

    await wait_until(flagged, 60, "the readmission flag")
    flags = (await client.get("/api/v1/cases/H1-B")).json()["reviewed"]["flags"]
    assert [(f["rule"], f["related_case_id"]) for f in flags] == [("SPLIT_ADMISSION", "H1-A")]
    for other in ("H1-A", "H1-C"):
        assert (await client.get(f"/api/v1/cases/{other}")).json()["reviewed"]["flags"] == []


async def test_poison_message_is_dead_lettered_and_the_stage_keeps_going(embedded) -> None:
    rt, client = embedded
    await rt.bus.publish([Record(CASE_RECEIVED, "x", b"\x00 not an event")])
    env = Envelope(event_id="00000000-0000-0000-0000-000000000001", event_type=CASE_RECEIVED,
                   occurred_at="2024-01-01T00:00:00Z", case_id="x", correlation_id="c",
                   producer="test", payload={"facts": {"nothing": 1}})
    await rt.bus.publish([Record(CASE_RECEIVED, "x", env.to_bytes())])
    sl = lists(1)[0]
    assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

    async def reviewed() -> bool:
        return await _reviewed(client) == 1

    await wait_until(reviewed, 60, "the valid case after two poison messages")
    dlq = rt.bus.log(dead_letter_topic(CASE_RECEIVED))
    # both poison messages, once per consuming service (grouper and gateway)
    assert sorted((m.value, dict(m.headers)["consumer"]) for m in dlq) == sorted(
        (v, c) for v in (b"\x00 not an event", env.to_bytes()) for c in (b"gateway", b"grouper"))


async def test_health_endpoints(embedded) -> None:
    _rt, client = embedded
    assert (await client.get("/livez")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] is True
    metrics = (await client.get("/metrics")).text
    assert "grouper_events_consumed_total" in metrics and "ingest_outbox_backlog" in metrics


async def test_the_same_event_delivered_twice_is_applied_once(embedded) -> None:
    rt, client = embedded
    sl = lists(1)[0]
    assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

    async def reviewed() -> bool:
        return await _reviewed(client) == 1

    await wait_until(reviewed, 60, "one reviewed case")
    received = rt.bus.log(CASE_RECEIVED)[-1]
    grouper = next(c for c in rt.consumers if c.service == "grouper")
    await grouper.process(received)  # a redelivery, e.g. after a crash before the offset commit
    await grouper.process(received)
    assert await count(rt.engine, "grouper_results") == 1
    assert await count(rt.engine, "grouper_outbox") == 0


async def test_a_hospital_submits_and_reads_only_its_own_lists(embedded) -> None:
    rt, bureau = embedded
    mine, theirs = "H1000001", "H2000002"
    own = await api_client(rt, "hospital", mine)
    other = await api_client(rt, "hospital", theirs)
    try:
        simple = simple_lists(1)[0] | {"hospital_code": mine, "setl_id": "S1"}
        r = await own.post("/api/v1/settlement-lists", json=national_list(simple | {"hospital_code": theirs}))
        assert r.status_code == 403 and r.json()["error"]["code"] == "HOSPITAL_MISMATCH"
        assert (await own.post("/api/v1/settlement-lists", json=national_list(simple))).status_code == 202

        async def reviewed() -> bool:
            return await _reviewed(bureau) == 1

        await wait_until(reviewed, 60, "the hospital's case")
        assert (await own.get(f"/api/v1/cases/{mine}-S1")).status_code == 200
        assert (await other.get(f"/api/v1/cases/{mine}-S1")).status_code == 404
        assert (await other.get("/api/v1/cases")).json()["cases"] == []
        assert (await other.get("/api/v1/summary")).json()["cases"] == 0
        assert (await bureau.get(f"/api/v1/cases/{mine}-S1")).status_code == 200
    finally:
        await own.aclose()
        await other.aclose()


async def test_requests_without_a_valid_token_are_refused(embedded) -> None:
    from services.gateway.repository import create_token, revoke_token

    rt, _client = embedded
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://test")
    try:
        r = await anonymous.get("/api/v1/summary")
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        async with rt.engine.begin() as conn:
            token_id, token = await create_token(conn, "bureau-analyst")
        auth = {"authorization": f"Bearer {token}"}
        assert (await anonymous.get("/api/v1/summary", headers=auth)).status_code == 200
        assert (await anonymous.post("/api/v1/settlement-lists", json=lists(1)[0], headers=auth)).status_code == 403
        async with rt.engine.begin() as conn:
            assert await revoke_token(conn, token_id)
        assert (await anonymous.get("/api/v1/summary", headers=auth)).status_code == 401
    finally:
        await anonymous.aclose()


async def test_a_correlation_id_that_is_not_a_plain_id_is_replaced_not_refused(embedded) -> None:
    _rt, client = embedded
    for given in ("x" * 100, "bad id\twith tab", ""):
        r = await client.post("/api/v1/settlement-lists", json=lists(1, seed=len(given) + 11)[0],
                              headers={"x-correlation-id": given})
        assert r.status_code == 202, r.text
        assert r.headers["x-correlation-id"] != given and len(r.headers["x-correlation-id"]) == 36
    r = await client.get("/api/v1/summary", headers={"x-correlation-id": "his-batch:42"})
    assert r.headers["x-correlation-id"] == "his-batch:42"


async def test_a_crash_after_ingest_published_loses_no_case_and_prices_none_twice(tmp_path: Path) -> None:
    """The in-process bus dies with the process: what ingest published but the grouper had not
    committed yet is published again after the restart, and applied once."""
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))

    def runtime():  # type: ignore[no-untyped-def]
        return build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'drgdip.db'}",
                             schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")

    batch = lists(30)
    rt = runtime()
    await rt.start()
    # the grouper joins its group, then stops consuming (as a process that dies before it commits)
    consumer = next(c for c in rt.consumers if c.service == "grouper")

    async def joined() -> bool:
        return bool(consumer.lag)  # its first lag reading: it holds the topic

    await wait_until(joined, 30, "the grouper to join its group")
    next(t for t in rt._tasks if t.get_name() == "consumer-grouper").cancel()
    client = await api_client(rt)
    try:
        for sl in batch:
            assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

        async def published() -> bool:
            return len(rt.bus.log(CASE_RECEIVED)) >= len(batch)  # none committed by the grouper

        await wait_until(published, 60, "ingest's relay to publish every case")
    finally:
        await client.aclose()
        await rt.stop()  # abruptly: the grouper never saw the cases; the bus's log is gone

    rt = runtime()
    await rt.start()
    client = await api_client(rt)
    try:
        async def all_reviewed() -> bool:
            return await _reviewed(client) == len(batch)

        await wait_until(all_reviewed, 120, "every case reviewed after the restart")
        assert await stage_counts(rt.engine) == {stage: len(batch) for stage in
                                                 ("ingest", "grouper", "pricer", "review")}

        async def outbox_empty() -> bool:
            return await count(rt.engine, "ingest_outbox") == 0

        await wait_until(outbox_empty, 30, "ingest's outbox deleted once consumed")
    finally:
        await client.aclose()
        await rt.stop()


async def test_a_graceful_stop_leaves_no_consumed_event_in_the_outboxes(tmp_path: Path) -> None:
    """Stopped once every group has consumed every event, the embedded pipeline deletes what its
    relays had published and not yet deleted: the next start has nothing to publish again. The
    relays flush only when woken (a minute between timed flushes), so without that deletion the
    last events of each stage would still be in its outbox."""
    import sqlite3

    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))
    db = tmp_path / "drgdip.db"
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{db}", schemes_dir=SHARED / "schemes",
                       policy_file=policy_file, log_level="WARNING", relay_interval_ms=60_000)
    await rt.start()
    client = await api_client(rt)
    batch = lists(20)
    try:
        for sl in batch:
            assert (await client.post("/api/v1/settlement-lists", json=sl)).status_code == 202

        async def all_consumed() -> bool:
            return await _reviewed(client) == len(batch) and rt.bus.unconsumed() == 0

        await wait_until(all_consumed, 120, "every case reviewed and every event consumed")
    finally:
        await client.aclose()
        await rt.stop()
    with sqlite3.connect(db) as conn:
        left = {stage: conn.execute(f"SELECT COUNT(*) FROM {stage}_outbox").fetchone()[0]
                for stage in ("ingest", "grouper", "pricer", "review")}
    assert left == {"ingest": 0, "grouper": 0, "pricer": 0, "review": 0}
