"""The flag workflow through the gateway on the embedded pipeline: hospitals see and answer only
their own flags, by the deadline; only a bureau reviewer decides; a confirmed flag's deduction
lowers the hospital's next settlement by exactly its amount; every answer and decision is in the
audit; a monthly pre-settlement runs the hospital-level rules for the month (and the quarter)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import SHARED, api_client, count, national_list, policy, simple_lists, wait_until
from sqlalchemy import select, update

from drgdip.stages import build_runtime
from services.grouper.domain import cc_lift, engine_input, load_scheme
from services.ingest.domain.intake import Received
from services.review import repository
from shared.events import CaseReceived

A, B = "H35050001", "H35050002"


def _plain(pool: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """A list grouped into a DRG without CC/MCC that no secondary diagnosis lifts."""
    scheme = load_scheme(SHARED / "schemes" / "chs-drg-1.1")
    for sl in pool:
        case = engine_input(CaseReceived.model_validate({
            "facts": {"hospital_code": "H", "setl_id": "S", "psn_key": "P"}, "sex": sl["sex"], "age": sl["age"],
            "age_days": sl["age_days"], "birth_weight": sl["birth_weight"], "diagnoses": sl["diagnoses"],
            "procedures": sl["procedures"]}))
        g = scheme.group(case, trace=True)
        if g.grouped and g.drg[-1] in "59" and cc_lift(scheme, case, g, code_mode="raw") is None:
            return sl, g.drg
    raise AssertionError("no plain case in the pool")


def _list(sl: dict[str, Any], hospital: str, setl_id: str, person: str, adm: date, los: int,
          cost: str) -> dict[str, Any]:
    simple = sl | {"setl_id": setl_id, "psn_no": person, "hospital_code": hospital, "los": los,
                   "admission_date": adm.isoformat(), "discharge_date": (adm + timedelta(days=los)).isoformat()}
    n = national_list(simple)
    n["setlinfo"] |= {"medfee_sumamt": cost, "psn_selfpay": "0.00", "psn_ownpay": "0.00", "days_rinp_flag_31": "1"}
    return n


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("flags"))


@pytest.fixture
async def region(tmp_path: Path, db_url: str):
    plain, drg = _plain(simple_lists(200))
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy() | {"group_mean_costs": {drg: "10000.00"}}))
    rt = build_runtime("all", db=db_url,
                       schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")
    await rt.start()
    try:
        d = date(2024, 3, 4)
        lists = [_list(plain, h, f"{h[-1]}N{i}", f"{h}P{i}", d + timedelta(days=i), 6, "9000.00")
                 for h in (A, B) for i in range(3)]
        # one day costing 0.15 of the group mean: a low-standard admission at each hospital
        lists += [_list(plain, h, f"{h[-1]}LS", f"{h}PLS", d, 1, "1500.00") for h in (A, B)]
        intake = next(s for s in rt.stages if s.name == "ingest").service
        outcomes = await intake.receive([Received("native", orjson.dumps(n)) for n in lists])
        assert all(o.status == "accepted" for o in outcomes)

        async def reviewed() -> bool:
            return await count(rt.engine, "review_results") == len(lists)

        await wait_until(reviewed, 120, "every list reviewed")
        yield rt
    finally:
        await rt.stop()


async def _presettled(admin: Any, hospital: str, version: int) -> dict[str, str]:
    r = await admin.get("/api/v1/statements", params={"hospital": hospital, "period": "2024-03"})
    assert r.status_code == 200, r.text
    doc = next(s for s in r.json()["statements"] if s["version"] == version)
    return doc["document"]["lines"] if "document" in doc else doc["lines"]


async def test_the_flag_workflow_and_the_deduction_reaching_settlement(region: Any) -> None:
    rt = region
    async with await api_client(rt) as admin, await api_client(rt, "bureau-analyst") as analyst, \
            await api_client(rt, "bureau-reviewer") as reviewer, \
            await api_client(rt, "hospital", A) as hospital_a, await api_client(rt, "hospital", B) as hospital_b:
        # the month is pre-settled once before any decision
        r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024-03"})
        assert r.status_code == 201, r.text
        before_a, before_b = await _presettled(admin, A, 1), await _presettled(admin, B, 1)
        assert before_a["review_deductions"] == "0"

        # each hospital sees its own flags only
        mine = (await hospital_a.get("/api/v1/flags")).json()["flags"]
        assert [(f["hospital_code"], f["rule"], f["status"]) for f in mine] == [(A, "LOW_STANDARD_ADMISSION", "open")]
        flag = mine[0]
        assert flag["evidence"]["ratio"] == "0.1500" and flag["period"] == "2024-03" and flag["deadline"]
        assert (await hospital_b.get("/api/v1/flags", params={"hospital": A})).status_code == 403
        assert (await hospital_b.get(f"/api/v1/flags/{flag['id']}")).status_code == 404
        r = await hospital_b.post(f"/api/v1/flags/{flag['id']}/answer", json={"answer": "not ours"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "FLAG_NOT_FOUND"
        everyone = (await analyst.get("/api/v1/flags", params={"rule": "LOW_STANDARD_ADMISSION"})).json()["flags"]
        assert {f["hospital_code"] for f in everyone} == {A, B}
        assert (await analyst.get("/api/v1/flags", params={"colour": "red"})).status_code == 422

        # only a bureau reviewer decides; an open flag waits for the hospital's answer
        decision = {"outcome": "confirmed", "reason": "admitted for a check-up", "deduction": "1234.56"}
        assert (await analyst.post(f"/api/v1/flags/{flag['id']}/decision", json=decision)).status_code == 403
        assert (await hospital_a.post(f"/api/v1/flags/{flag['id']}/decision", json=decision)).status_code == 403
        r = await reviewer.post(f"/api/v1/flags/{flag['id']}/decision", json=decision)
        assert r.status_code == 409 and r.json()["error"]["code"] == "ANSWER_PENDING"
        assert (await reviewer.post(f"/api/v1/flags/{flag['id']}/answer", json={"answer": "x"})).status_code == 403

        r = await hospital_a.post(f"/api/v1/flags/{flag['id']}/answer", json={"answer": "the patient left early"})
        assert r.status_code == 200 and r.json()["status"] == "answered", r.text
        r = await hospital_a.post(f"/api/v1/flags/{flag['id']}/answer", json={"answer": "again"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "FLAG_ANSWERED"
        bad = await reviewer.post(f"/api/v1/flags/{flag['id']}/decision", json=decision | {"deduction": "1.234"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "deduction"
        r = await reviewer.post(f"/api/v1/flags/{flag['id']}/decision", json=decision)
        assert r.status_code == 200 and r.json()["status"] == "confirmed" and r.json()["deduction"] == "1234.56"
        r = await reviewer.post(f"/api/v1/flags/{flag['id']}/decision", json=decision | {"outcome": "dismissed",
                                                                                          "deduction": None})
        assert r.status_code == 409 and r.json()["error"]["code"] == "FLAG_DECIDED"

        # the deduction reaches the pricer and lowers the hospital's next settlement by exactly it
        async def received() -> bool:
            return await count(rt.engine, "pricer_deductions") == 1

        await wait_until(received, 60, "the deduction at the pricer")
        r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024-03"})
        assert r.status_code == 201, r.text
        after_a, after_b = await _presettled(admin, A, 2), await _presettled(admin, B, 2)
        assert Decimal(before_a["presettled"]) - Decimal(after_a["presettled"]) == Decimal("1234.56")
        assert after_a["review_deductions"] == "1234.56" and after_b == before_b
        assert after_a["fund_due"] == before_a["fund_due"]

        # B's flag, its time to answer over: too late to answer, and the bureau may confirm it
        other = next(f for f in everyone if f["hospital_code"] == B)
        async with rt.engine.begin() as conn:
            await conn.execute(update(repository.flags).where(repository.flags.c.id == other["id"])
                               .values(raised_at=datetime(2024, 4, 1, 2, tzinfo=UTC)))
        r = await hospital_b.post(f"/api/v1/flags/{other['id']}/answer", json={"answer": "late"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "ANSWER_DEADLINE_PASSED"
        r = await reviewer.post(f"/api/v1/flags/{other['id']}/decision",
                                json={"outcome": "dismissed", "reason": "a short stay, well documented"})
        assert r.status_code == 200 and r.json()["status"] == "dismissed"
        assert (await hospital_b.get("/api/v1/flags", params={"status": "dismissed"})).json()["flags"][0]["id"] == \
            other["id"]

        # the audit: who did what, before and after, why (bureau roles only)
        history = (await analyst.get("/api/v1/flag-history")).json()["entries"]
        assert [(h["flag_id"], h["action"], h["before"]["status"], h["after"]["status"]) for h in history] == [
            (flag["id"], "answered", "open", "answered"), (flag["id"], "decided", "answered", "confirmed"),
            (other["id"], "decided", "open", "dismissed")]
        assert history[1]["reason"] == "admitted for a check-up" and history[1]["actor"].startswith("token:")
        assert history[1]["role"] == "bureau-reviewer" and history[0]["role"] == "hospital"
        assert (await hospital_a.get("/api/v1/flag-history")).status_code == 403
        csv = await analyst.get("/api/v1/flag-history.csv", params={"flag_id": flag["id"]})
        assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("id,flag_id,at,action")
        assert len(csv.text.splitlines()) == 3
        detail = (await hospital_a.get(f"/api/v1/flags/{flag['id']}")).json()
        assert [h["action"] for h in detail["history"]] == ["answered", "decided"]
        assert await count(rt.engine, "gateway_audit", "action = 'flag.decided'") == 2
        assert await count(rt.engine, "gateway_audit", "action = 'flag.answered'") == 1

        # each pre-settlement ran the month's hospital-level rules, and the quarter's (March closes Q1)
        async def ran() -> bool:
            return await count(rt.engine, "review_hospital_runs", "trigger = 'settlement test-2024 v2'") == 2

        await wait_until(ran, 60, "the hospital-level rules after the pre-settlement")
        async with rt.engine.connect() as conn:
            runs = (await conn.execute(select(repository.hospital_runs.c.period, repository.hospital_runs.c.cases)
                                       .where(repository.hospital_runs.c.trigger == "settlement test-2024 v2")
                                       .order_by(repository.hospital_runs.c.period))).all()
        assert [tuple(r) for r in runs] == [("2024-03", 8), ("2024Q1", 8)]

        # and on request (bureau-admin or reviewer; audited)
        assert (await analyst.post("/api/v1/review/runs", json={"period": "2024-03"})).status_code == 403
        bad = await reviewer.post("/api/v1/review/runs", json={"period": "2024-13"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "period"
        r = await reviewer.post("/api/v1/review/runs", json={"period": "2024Q1", "region": "350500"})
        assert r.status_code == 200 and r.json()["runs"][0]["cases"] == 8, r.text
        assert await count(rt.engine, "gateway_audit", "action = 'review.run'") == 1
