"""Every input bounded and checked, on SQLite and PostgreSQL: a NUL, an oversized value, an
unreadable CSV give a 4xx naming the field, lose no good line of an import, store nothing of a
rejected list but its verbatim bytes, and leave ingest able to restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from helpers import count, lists
from sqlalchemy import insert, select

from drgdip.stages import build_runtime
from services.ingest import repository
from services.ingest.domain.intake import Received
from shared.web import SERVICE_TOKEN_HEADER


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'i.db'}"
    return str(request.getfixturevalue("new_pg_database")("bounds"))


def ingest(db_url: str, **settings: Any) -> Any:
    # the relay flushes when woken only: stopping it in the middle of a flush can hang (aiosqlite)
    return build_runtime("ingest", db=db_url, log_level="WARNING", relay_interval_ms=60_000, **settings)


async def stop(rt: Any) -> None:
    """Stop once the outbox relay has finished the flush the last receive woke it for."""
    for _ in range(500):
        if not rt.stages[0].outbox.wakeup.is_set():
            break
        await asyncio.sleep(0.01)
    await rt.stop()


@pytest.fixture
async def runtime(db_url: str) -> AsyncIterator[Any]:
    rt = ingest(db_url)
    await rt.start()
    try:
        yield rt
    finally:
        await stop(rt)


def client(rt: Any) -> httpx.AsyncClient:
    """Ingest's own routes, in process, as the gateway calls them (with the service token)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://ingest",
                             headers={SERVICE_TOKEN_HEADER: rt.settings.service_token.get_secret_value()})


def with_setlinfo(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return dict(doc, setlinfo=dict(doc["setlinfo"], **fields))


async def receive(rt: Any, docs: list[dict[str, Any]]) -> list[Any]:
    return list(await rt.stages[0].service.receive([Received("native", orjson.dumps(d)) for d in docs]))


async def stored_statuses(rt: Any) -> list[str]:
    async with rt.engine.connect() as conn:
        return list((await conn.scalars(select(repository.raw_table.c.status)
                                         .order_by(repository.raw_table.c.id))).all())


async def test_a_nul_in_the_settlement_id_is_a_422_naming_the_field(runtime: Any) -> None:
    doc = with_setlinfo(lists(1)[0], setl_id="S\u0000X")
    async with client(runtime) as c:
        r = await c.post("/settlement-lists", content=orjson.dumps(doc))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "setlinfo.setl_id" and error["details"][0]["code"] == "NAT-CONTROL-CHAR"
    # the verbatim bytes are kept (bytea / BLOB), nothing derived from them
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(select(repository.raw_table, repository.verbatim.c.raw)
                                  .join(repository.verbatim, repository.verbatim.c.id == repository.raw_table.c.id))).one()
    assert row.raw == orjson.dumps(doc) and row.status == "rejected" and row.case_id is None
    assert await count(runtime.engine, "ingest_lists") == 0


@pytest.mark.parametrize("value", ["S\u202eX", "S\x1bX", "S\x85X", "S\nX"])
async def test_control_and_bidi_characters_in_identifiers_are_rejected(runtime: Any, value: str) -> None:
    doc = with_setlinfo(lists(1)[0], psn_no=value)
    (outcome,) = await receive(runtime, [doc])
    assert outcome.status == "rejected"
    assert [(p.field, p.code) for p in outcome.problems] == [("setlinfo.psn_no", "NAT-CONTROL-CHAR")]


async def test_an_import_keeps_the_nine_good_lines_beside_a_nul(runtime: Any) -> None:
    good = lists(9, seed=3)
    bad = with_setlinfo(lists(1, seed=4)[0], setl_id="S\u0000X")
    body = b"\n".join(orjson.dumps(x) for x in [*good[:4], bad, *good[4:]]) + b"\n"
    async with client(runtime) as c:
        r = await c.post("/settlement-lists:import", content=body)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert (summary["lines"], summary["accepted"], summary["rejected"]) == (10, 9, 1)
    assert summary["rejections"][0]["line"] == 5
    assert summary["rejections"][0]["problems"][0]["field"] == "setlinfo.setl_id"
    assert await count(runtime.engine, "ingest_lists") == 9


async def test_ingest_restarts_cleanly_after_rejected_and_undecidable_input(db_url: str) -> None:
    rt = ingest(db_url)
    await rt.start()
    try:
        bad = with_setlinfo(lists(1)[0], setl_id="S\u0000X")
        await receive(rt, [bad])
    finally:
        await stop(rt)
    # left pending by a crash: a list with a NUL, bytes that are not JSON, and a good list
    rt = ingest(db_url)
    async with rt.engine.begin() as conn:
        for f, raw in (("native", orjson.dumps(bad)), ("native", b"\x00\xff"),
                       ("4101", b"[]"), ("native", orjson.dumps(lists(1, seed=9)[0]))):
            raw_id = (await conn.execute(insert(repository.raw_table).values(
                received_at=datetime.now(UTC), status="pending"))).inserted_primary_key[0]
            await conn.execute(insert(repository.verbatim).values(id=raw_id, format=f, raw=raw,
                                                                  correlation_id="crash"))
    await rt.start()
    try:
        assert await stored_statuses(rt) == ["rejected", "rejected", "rejected", "rejected", "accepted"]
    finally:
        await stop(rt)
    rt = ingest(db_url)
    await rt.start()  # and again: nothing left to recover
    await stop(rt)


async def test_a_list_over_the_body_bound_is_refused_and_not_stored(db_url: str) -> None:
    rt = ingest(db_url, max_list_bytes=4096, max_line_bytes=4096)
    await rt.start()
    try:
        doc = with_setlinfo(lists(1)[0], psn_name="x" * 5000)
        async with client(rt) as c:
            r = await c.post("/settlement-lists", content=orjson.dumps(doc))
            assert r.status_code == 413, r.text
            assert r.json()["error"]["code"] == "LIST_TOO_LARGE" and r.json()["error"]["field"] == "body"
            good = lists(2, seed=5)
            body = b"\n".join(orjson.dumps(x) for x in [good[0], doc, good[1]])
            summary = (await c.post("/settlement-lists:import", content=body)).json()
        assert (summary["lines"], summary["accepted"], summary["rejected"]) == (3, 2, 1)
        assert summary["rejections"][0]["line"] == 2
        assert summary["rejections"][0]["problems"][0]["code"] == "LIST_TOO_LARGE"
        assert await stored_statuses(rt) == ["accepted", "accepted"]
    finally:
        await stop(rt)


async def test_long_values_and_long_lists_are_rejected_with_their_field(runtime: Any) -> None:
    base = lists(1)[0]
    long_name = with_setlinfo(base, psn_name="张" * 100_000)
    many = dict(base, diseinfo=[dict(base["diseinfo"][0], maindiag_flag="0", diag_code=f"I{i:02d}.x00")
                                for i in range(5000)])
    outcomes = await receive(runtime, [long_name, many])
    assert [o.status for o in outcomes] == ["rejected", "rejected"]
    assert (outcomes[0].problems[0].field, outcomes[0].problems[0].code) == ("setlinfo.psn_name", "NAT-TOO-LONG")
    assert (outcomes[1].problems[0].field, outcomes[1].problems[0].code) == ("diseinfo", "NAT-TOO-MANY")
    assert await count(runtime.engine, "ingest_lists") == 0


CSV_HEADER = "hospital_code,setl_id,psn_no,sex,age,admission_date,discharge_date,los,diagnoses,psn_name\n"


def csv_rows(n: int, name: str = "张三") -> str:
    return "".join(f"H35050001,CSV{i},P{i:05d},1,40,2024-03-01,2024-03-05,4,I21.000,{name}\n"
                   for i in range(n))


@pytest.mark.parametrize("encoding,declared", [("utf-8", None), ("utf-8-sig", None), ("gbk", None),
                                               ("gb18030", None), ("gbk", "gbk")])
async def test_csv_in_utf8_with_or_without_bom_and_in_gbk_is_read(runtime: Any, encoding: str,
                                                                   declared: str | None) -> None:
    body = (CSV_HEADER + csv_rows(3)).encode(encoding)
    params = {"format": "csv"} | ({"encoding": declared} if declared else {})
    async with client(runtime) as c:
        r = await c.post("/settlement-lists:import", params=params, content=body)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3, r.text
    async with runtime.engine.connect() as conn:
        raw = (await conn.scalars(select(repository.verbatim.c.raw))).first()
    assert orjson.loads(raw)["psn_name"] == "张三"


async def test_utf16_or_undecodable_csv_is_a_4xx_naming_the_encoding_and_the_job_ends(runtime: Any) -> None:
    async with client(runtime) as c:
        r = await c.post("/settlement-lists:import", params={"format": "csv"},
                         content=(CSV_HEADER + csv_rows(2)).encode("utf-16"))
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "encoding" and "UTF-16" in r.json()["error"]["message"]
        r = await c.post("/settlement-lists:import", params={"format": "csv", "encoding": "latin-9"},
                         content=(CSV_HEADER + csv_rows(2)).encode())
        assert r.status_code == 422 and r.json()["error"]["field"] == "encoding", r.text
    async with runtime.engine.connect() as conn:
        finished = (await conn.scalars(select(repository.jobs.c.finished_at))).all()
    assert finished and all(f is not None for f in finished)


async def test_csv_line_errors_keep_the_good_lines(db_url: str) -> None:
    rt = ingest(db_url, max_list_bytes=4096, max_line_bytes=4096)
    await rt.start()
    try:
        rows = csv_rows(4).splitlines(keepends=True)
        body = (CSV_HEADER + rows[0]
                + "H35050001,CSVX,PX,1,40,2024-03-01,2024-03-05,4,I21.000,name,EXTRA\n"  # line 3
                + rows[1]
                + 'H35050001,CSVY,PY,1,40,2024-03-01,2024-03-05,4,I21.000,"' + "x" * 200_000 + '"\n'  # line 5
                + rows[2]).encode() + "H35050001,CSVZ,PZ,1,40,2024-03-01,2024-03-05,4,I21.000,\xff\n".encode(
                    "latin-1") + rows[3].encode()  # line 7: not UTF-8
        async with client(rt) as c:
            r = await c.post("/settlement-lists:import", params={"format": "csv"}, content=body)
        assert r.status_code == 200, r.text
        summary = r.json()
        assert (summary["lines"], summary["accepted"], summary["rejected"]) == (7, 4, 3), summary
        codes = {x["line"]: x["problems"][0]["code"] for x in summary["rejections"]}
        assert codes == {3: "CSV_EXTRA_CELLS", 5: "LIST_TOO_LARGE", 7: "CSV_ENCODING"}
        assert await count(rt.engine, "ingest_lists") == 4
    finally:
        await stop(rt)


async def test_timeliness_comes_from_the_lists_own_dates(runtime: Any) -> None:
    base = lists(2, seed=11)
    on_time = with_setlinfo(base[0], fixmedins_code="H9", dscg_time="2024-03-04 10:00:00",
                            adm_time="2024-03-01 09:00:00", act_ipt_days="3", dcla_time="2024-03-10 08:00:00")
    late = with_setlinfo(base[1], fixmedins_code="H9", dscg_time="2024-03-04 10:00:00",
                         adm_time="2024-03-01 09:00:00", act_ipt_days="3", dcla_time="2024-05-20 08:00:00")
    outcomes = await receive(runtime, [on_time, late])
    assert [o.status for o in outcomes] == ["accepted", "accepted"], outcomes
    async with client(runtime) as c:
        scores = (await c.get("/quality", params={"hospital": "H9"})).json()["scores"]
    assert [(s["month"], s["lists"], s["timely"], s["timeliness"]) for s in scores] == [
        ("2024-03", 2, 1, "0.5000")]
