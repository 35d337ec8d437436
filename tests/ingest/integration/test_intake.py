"""Intake through the gateway: national messages, QC, versions, withdrawal, bulk import, quality."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from helpers import (
    SHARED,
    api_client,
    count,
    lists,
    national_list,
    policy,
    simple_lists,
    wait_until,
)
from sqlalchemy import insert

from drgdip.stages import build_runtime

HSA = SHARED / "testdata" / "hsa"


def message(name: str) -> dict:
    return orjson.loads((HSA / f"{name}.json").read_bytes())


@pytest.fixture
async def runtime(tmp_path: Path):
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       policy_file=policy_file, dictionary_scheme=SHARED / "schemes" / "chs-drg-1.1",
                       log_level="WARNING")
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_national_messages_get_national_replies_and_match_the_native_form(runtime) -> None:
    msg = message("4101-01")
    hospital = msg["fixmedins_code"]
    async with await api_client(runtime, "hospital", hospital) as client:
        r = await client.post("/api/v1/hsa/4101", json=msg)
        assert r.status_code == 200
        reply = r.json()
        assert reply["infcode"] == 0 and reply["err_msg"] == ""
        case_id = reply["output"]["setl_list_id"]
        assert case_id == f"{hospital}-{msg['input']['setlinfo']['setl_id']}"
        # the same list in the native form is the same case: no new version
        same = await client.post("/api/v1/settlement-lists", json=msg["input"])
        assert same.status_code == 200 and same.json() == {"status": "duplicate", "case_id": case_id,
                                                            "list_version": 1}
        bad = orjson.loads(orjson.dumps(msg))
        bad["input"]["setlinfo"]["gend"] = "7"
        bad["input"]["diseinfo"][0]["diag_code"] = "NOT.A.CODE"
        failed = (await client.post("/api/v1/hsa/4101", json=bad)).json()
        assert failed["infcode"] == -1
        assert "setlinfo.gend" in failed["err_msg"] and "diseinfo[0].diag_code" in failed["err_msg"]
    async with await api_client(runtime, "hospital", message("4101A-04")["fixmedins_code"]) as client:
        reduced = (await client.post("/api/v1/hsa/4101A", json=message("4101A-04"))).json()
        assert reduced["infcode"] == 0, reduced


async def test_a_list_with_five_problems_gets_all_five_with_field_paths(runtime) -> None:
    doc = message("4101-03")["input"]
    s = doc["setlinfo"]
    s["gend"] = ""                                   # 1: sex missing
    s["dscg_time"] = "2020-01-01 00:00:00"           # 2: discharged before admission
    doc["diseinfo"][0]["diag_code"] = "XX9.999"      # 3: not in the dictionary
    doc["iteminfo"][0]["med_chrgitm"] = "99"         # 4: no such fee category
    doc["diseinfo"].append(dict(doc["diseinfo"][0], maindiag_flag="1", diag_code="I10.x00"))  # 5: two principals
    async with await api_client(runtime) as client:
        r = await client.post("/api/v1/settlement-lists", json=doc)
    assert r.status_code == 422
    details = r.json()["error"]["details"]
    assert all(d["field"] for d in details)
    fields = {d["field"] for d in details}
    assert {"setlinfo.gend", "iteminfo[0].med_chrgitm"} <= fields
    assert any(f.startswith("diseinfo[0]") for f in fields)
    codes = {d["code"] for d in details}
    assert {"QC-DICT-001", "QC-FEE-001", "QC-DX-001"} <= codes
    assert any(c.startswith("QC-DATE") for c in codes) and any("REQ" in c or "NAT" in c for c in codes)
    assert all(d["message_zh"] and d["message_en"] for d in details)


async def test_withdrawal_creates_a_withdrawn_version_and_keeps_history(runtime) -> None:
    msg = message("4101-01")
    hospital = msg["fixmedins_code"]
    async with await api_client(runtime, "hospital", hospital) as client:
        case_id = (await client.post("/api/v1/hsa/4101", json=msg)).json()["output"]["setl_list_id"]
        reply = (await client.post("/api/v1/hsa/4102", json=message("4102-01"))).json()
        assert reply["infcode"] == 0, reply

        async def withdrawn() -> bool:
            case = (await client.get(f"/api/v1/cases/{case_id}")).json()
            return case.get("status") == "withdrawn"

        await wait_until(withdrawn, 60, "the withdrawn status in the read model")
        versions = (await client.get(f"/api/v1/settlement-lists/{case_id}/versions")).json()["versions"]
        assert [(v["list_version"], v["status"]) for v in versions] == [(1, "active"), (2, "withdrawn")]
        assert orjson.loads(versions[0]["raw"]) == msg  # verbatim
        unknown = orjson.loads(orjson.dumps(message("4102-01")))
        unknown["input"]["data"]["stastinfo"][0]["setl_id"] = "NOPE"
        assert (await client.post("/api/v1/hsa/4102", json=unknown)).json()["infcode"] == -1


async def test_a_list_stored_before_a_crash_is_published_exactly_once_after_restart(tmp_path: Path) -> None:
    from services.ingest.repository import raw_table, verbatim

    db = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))

    def runtime():  # type: ignore[no-untyped-def]
        return build_runtime("all", db=db, schemes_dir=SHARED / "schemes", policy_file=policy_file,
                             log_level="WARNING")

    rt = runtime()
    await rt.start()
    await rt.stop()
    # the state a crash between "stored verbatim" and "decided" leaves behind
    from datetime import UTC, datetime
    async with rt.engine.begin() as conn:
        raw_id = (await conn.execute(insert(raw_table).values(
            received_at=datetime.now(UTC), status="pending"))).inserted_primary_key[0]
        await conn.execute(insert(verbatim).values(
            id=raw_id, format="native", raw=orjson.dumps(lists(1)[0]), correlation_id="crash"))
    await rt.engine.dispose()
    for _ in range(2):  # restarting twice must not publish it twice
        rt = runtime()
        await rt.start()
        try:
            async def received(rt=rt) -> bool:  # type: ignore[no-untyped-def]
                return await count(rt.engine, "grouper_results") == 1

            await wait_until(received, 60, "the recovered list downstream")
        finally:
            await rt.stop()
    assert await count(rt.engine, "ingest_lists") == 1
    assert await count(rt.engine, "ingest_raw", "status = 'accepted'") == 1
    assert await count(rt.engine, "gateway_timeline", "event_type = 'case-received'") == 1


async def test_bulk_import_jsonl_and_csv_report_each_line(runtime) -> None:
    good = lists(20, seed=21)
    bad = dict(good[0], setlinfo=dict(good[0]["setlinfo"], gend="7", setl_id="BAD1"))
    body = b"\n".join(orjson.dumps(x) for x in [*good, bad, good[1]]) + b"\nnot json\n"
    async with await api_client(runtime) as client:
        r = await client.post("/api/v1/settlement-lists:import", content=body)
        assert r.status_code == 200, r.text
        summary = r.json()
        assert (summary["lines"], summary["accepted"], summary["duplicate"], summary["rejected"]) == (23, 20, 1, 2)
        assert [x["line"] for x in summary["rejections"]] == [21, 23]
        simple = simple_lists(3, seed=99)
        header = "hospital_code,setl_id,psn_no,sex,age,admission_date,discharge_date,los,diagnoses,procedures\n"
        rows = "".join(f"{s['hospital_code']},CSV{i},{s['psn_no']},{s['sex']},{s['age'] or 30},{s['admission_date']},"
                       f"{s['discharge_date']},{s['los']},{'|'.join(s['diagnoses'])},{'|'.join(s['procedures'])}\n"
                       for i, s in enumerate(simple))
        r = await client.post("/api/v1/settlement-lists:import", params={"format": "csv"},
                              content=(header + rows).encode())
        assert r.status_code == 200 and r.json()["accepted"] == 3, r.text

        async def all_reviewed() -> bool:
            return (await client.get("/api/v1/summary")).json()["by_status"].get("reviewed", 0) == 23

        await wait_until(all_reviewed, 120, "the imported lists downstream")


async def test_quality_scores_per_hospital_and_month(runtime) -> None:
    good = national_list(simple_lists(1)[0] | {"hospital_code": "H9", "admission_date": "2024-03-01",
                                               "discharge_date": "2024-03-04", "los": 3})
    bad = dict(good, setlinfo=dict(good["setlinfo"], setl_id="X2", gend="7"))
    async with await api_client(runtime) as client:
        await client.post("/api/v1/settlement-lists", json=good)
        await client.post("/api/v1/settlement-lists", json=bad)
        scores = (await client.get("/api/v1/quality", params={"hospital": "H9"})).json()["scores"]
    assert len(scores) == 1
    s = scores[0]
    assert (s["hospital"], s["month"], s["lists"], s["passed"]) == ("H9", "2024-03", 2, 1)
    assert s["pass_rate"] == "0.5000"
