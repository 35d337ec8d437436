"""Special-case review through the gateway and the embedded pipeline (docs/domain.md §10), on
SQLite and PostgreSQL: a hospital applies for its case, another hospital cannot, a member tied
to the hospital cannot decide, an untied member adjusts the standard, the case is priced again
as a new version and the next settlement pays the decided amount; the hospital appeals once,
another member decides; the half-yearly publication; the audit of who did what."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from helpers import (
    HOSPITALS,
    SHARED,
    api_client,
    count,
    national_list,
    policy,
    simple_lists,
    wait_until,
)
from sqlalchemy import text

from drgdip.stages import build_runtime
from services.ingest.domain.intake import Received
from services.review import handlers as review_handlers

H1, H2 = HOSPITALS[0], HOSPITALS[1]
N = 60


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("special_flow"))


def may_lists() -> list[dict[str, Any]]:
    """N lists discharged in May 2024; the first hospital's patients were ventilated 5 days."""
    out = []
    for i, sl in enumerate(simple_lists(N)):
        los = min(int(sl["los"] or 3), 20)
        discharged = date(2024, 5, 1 + i % 28)
        sl = sl | {"los": los, "discharge_date": discharged.isoformat(),
                   "admission_date": (discharged - timedelta(days=los)).isoformat()}
        nl = national_list(sl)
        if sl["hospital_code"] == H1:
            nl["setlinfo"]["vent_used_dura"] = "5/0/0"
        out.append(nl)
    return out


def _error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


async def _h1_payment(admin: Any) -> str:
    r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024-05"})
    assert r.status_code == 201, r.text
    return str(next(s for s in r.json()["statements"] if s["hospital_code"] == H1)["lines"]["drg_payment"])


async def _repriced(engine: Any, case_id: str, decision: int) -> None:
    async def done() -> bool:
        return await count(engine, "pricer_results", f"case_id = '{case_id}' AND special_case = {decision}") == 1

    await wait_until(done, 60, f"{case_id} priced with decision {decision}")


async def test_apply_decide_reprice_settle_appeal_publish_and_audit(db_url: str) -> None:
    rt = build_runtime("all", db=db_url, schemes_dir=SHARED / "schemes", log_level="WARNING")
    await rt.start()
    try:
        async with rt.engine.begin() as conn:  # a parameter change: half the discharges may apply
            await review_handlers.import_rules(conn, orjson.dumps({
                "format": "drgdip.review-rules/1", "rules": {"SPECIAL_CASES": {"drg_cap_share": "0.5"}}}),
                "350500", date(2024, 1, 1), who="cli:bureau")
        async with await api_client(rt) as admin:
            assert (await admin.post("/api/v1/policies", json=policy())).status_code == 201
            sent = may_lists()
            intake = next(s for s in rt.stages if s.name == "ingest").service
            assert all(o.status == "accepted" for o in await intake.receive(
                [Received("native", orjson.dumps(sl)) for sl in sent]))

            async def reviewed() -> bool:
                return await count(rt.engine, "review_stays", "figures IS NOT NULL") == N

            await wait_until(reviewed, 120, f"{N} cases priced and reviewed")
            async with rt.engine.connect() as conn:
                ventilated = list((await conn.execute(text(
                    "SELECT case_id FROM pricer_results WHERE hospital_code = :h AND case_type = 'normal' "
                    "ORDER BY case_id"), {"h": H1})).scalars())
            assert len(ventilated) >= 2
            case_a, case_b = ventilated[:2]
            before = await _h1_payment(admin)

            tokens = {}
            for name, role, hospital in (("h1", "hospital", H1), ("h2", "hospital", H2), ("tied", "bureau-reviewer", None),
                                         ("m2", "bureau-reviewer", None), ("m3", "bureau-reviewer", None),
                                         ("outsider", "bureau-reviewer", None), ("analyst", "bureau-analyst", None)):
                r = await admin.post("/api/v1/tokens", json={"role": role, "hospital": hospital})
                tokens[name] = r.json()

            def client(name: str) -> Any:
                return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://test",
                                         headers={"authorization": f"Bearer {tokens[name]['token']}"})

            evidence = [{"name": "vent-chart.pdf", "sha256": "ab" * 32, "size": 1024}]
            application = {"case_id": case_a, "reason": "icu_ventilation", "text": "有创通气5天", "evidence": evidence}
            async with client("h1") as h1, client("h2") as h2, client("tied") as tied, client("m2") as m2, \
                    client("m3") as m3, client("outsider") as outsider, client("analyst") as analyst:
                # applications: the hospital's own eligible case only
                assert _error(await h2.post("/api/v1/special-cases", json=application)) == (404, "CASE_NOT_FOUND")
                assert _error(await analyst.post("/api/v1/special-cases", json=application)) == (403, "FORBIDDEN")
                refused = await h1.post("/api/v1/special-cases", json=application | {"reason": "long_stay"})
                assert _error(refused) == (422, "SC_LONG_STAY")
                assert refused.json()["error"]["details"][0]["numbers"]["long_stay_days"] == "60"
                r = await h1.post("/api/v1/special-cases", json=application)
                assert r.status_code == 201, r.text
                a = r.json()
                assert (a["status"], a["period"], a["figures"]["ventilation_hours"]) == ("pending", "2024Q2", "120")
                assert a["quota"]["cap"] == "30" and a["evidence"] == evidence
                assert _error(await h1.post("/api/v1/special-cases", json=application)) == (409, "SPECIAL_CASE_EXISTS")
                assert (await h1.post("/api/v1/special-cases", json=application | {"case_id": case_b})).status_code == 201

                # the panel, registered by the bureau-admin (reviewer tokens only): each member for a
                # quarter with the hospitals they are tied to in it; the outsider sat on 2024Q1's
                for name, quarter, tied_to in (("tied", "2024Q2", [H1]), ("m2", "2024Q2", [H2]), ("m3", "2024Q2", []),
                                               ("outsider", "2024Q1", [])):
                    r = await admin.post("/api/v1/special-cases/panel", json={
                        "token_id": tokens[name]["token_id"], "period": quarter, "hospitals": tied_to,
                        "reason": "2024 panel"})
                    assert r.status_code == 201, r.text
                    assert r.json()["period"] == quarter
                assert _error(await admin.post("/api/v1/special-cases/panel", json={
                    "token_id": tokens["m3"]["token_id"], "period": "2024Q5"})) == (422, "INVALID_PERIOD")
                panel = (await m2.get("/api/v1/special-cases/panel", params={"period": "2024Q2"})).json()["members"]
                assert sorted(m["token_id"] for m in panel) == sorted(tokens[n]["token_id"] for n in ("tied", "m2", "m3"))
                assert _error(await admin.post("/api/v1/special-cases/panel", json={
                    "token_id": tokens["h1"]["token_id"], "period": "2024Q2"})) == (422, "NOT_A_REVIEWER")
                assert _error(await m2.post("/api/v1/special-cases/panel", json={
                    "token_id": tokens["m2"]["token_id"], "period": "2024Q2"})) == (403, "FORBIDDEN")

                # the quarter's queue: the bureau sees every application, a hospital its own
                queue = (await m2.get("/api/v1/special-cases", params={"period": "2024Q2",
                                                                       "status": "pending"})).json()["applications"]
                assert [x["case_id"] for x in queue] == [case_a, case_b]
                # a member's queue leaves out the hospitals they are tied to in the quarter
                assert (await tied.get("/api/v1/special-cases", params={"period": "2024Q2"})).json()["applications"] == []
                assert "psn_name" not in orjson.dumps(queue).decode()
                assert (await h2.get("/api/v1/special-cases")).json()["applications"] == []
                assert _error(await h2.get("/api/v1/special-cases", params={"hospital": H1})) == (403, "FORBIDDEN")
                assert _error(await h2.get(f"/api/v1/special-cases/{a['id']}")) == (404, "SPECIAL_CASE_NOT_FOUND")

                # decisions: never by a member tied to the hospital, nor by a reviewer off the panel
                decision = {"outcome": "adjust_standard", "amount": "25000.00", "reason": "通气时间长, 标准调整"}
                path = f"/api/v1/special-cases/{a['id']}/decision"
                assert _error(await tied.post(path, json=decision)) == (403, "SPECIAL_CASE_MEMBER_TIED")
                # the outsider is a member of another quarter's panel, not of the application's
                assert _error(await outsider.post(path, json=decision)) == (403, "SPECIAL_CASE_NOT_PANEL_MEMBER")
                assert _error(await admin.post(path, json=decision)) == (403, "FORBIDDEN")
                assert _error(await m2.post(path, json=decision | {"amount": None})) == (422, "INVALID_AMOUNT")
                r = await m2.post(path, json=decision)
                assert r.status_code == 200, r.text
                assert (r.json()["status"], r.json()["amount"]) == ("decided", "25000.00")

                # the case is priced again as a new version; the next settlement pays the amount
                await _repriced(rt.engine, case_a, 1)
                after = await _h1_payment(admin)
                assert Decimal(after) - Decimal(before) == Decimal("25000.00") - Decimal("10000.00")

                # one appeal, decided by another member
                appeal = f"/api/v1/special-cases/{a['id']}/appeal"
                assert _error(await h2.post(appeal, json={"reason": "x"})) == (404, "SPECIAL_CASE_NOT_FOUND")
                assert (await h1.post(appeal, json={"reason": "按项目付费更合理"})).json()["status"] == "appealed"
                assert _error(await h1.post(appeal, json={"reason": "again"})) == (409, "SPECIAL_CASE_NOT_APPEALABLE")
                assert _error(await m2.post(path, json=decision)) == (403, "SPECIAL_CASE_SAME_MEMBER")
                r = await m3.post(path, json={"outcome": "pay_by_item", "reason": "复议: 按项目付费"})
                assert r.status_code == 200 and r.json()["status"] == "final"
                assert [d["round"] for d in r.json()["decisions"]] == [1, 2]
                assert _error(await m3.post(path, json=decision)) == (409, "SPECIAL_CASE_NOT_OPEN")
                await _repriced(rt.engine, case_a, 2)

                # the half-yearly publication: the bureau's, a hospital's own row
                pub = (await m2.get("/api/v1/special-cases/publication", params={"half": "2024H1"})).json()
                assert pub["hospitals"] == [{"half": "2024H1", "hospital_code": H1, "applications": "2",
                                             "pending": "1", "appealed": "0", "pay_by_item": "1",
                                             "adjust_standard": "0", "rejected": "0", "adjusted_amount": "0"}]
                assert (await h2.get("/api/v1/special-cases/publication",
                                     params={"half": "2024H1"})).json()["hospitals"] == []
                r = await analyst.get("/api/v1/special-cases/publication.csv", params={"half": "2024H1"})
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
                assert list(csv.DictReader(io.StringIO(r.text)))[0]["pay_by_item"] == "1"
                assert _error(await m2.get("/api/v1/special-cases/publication", params={"half": "2024Q1"}))[0] == 422

                # the audit: who did what, before and after, why; bureau roles only
                assert _error(await h1.get("/api/v1/special-cases/audit")) == (403, "FORBIDDEN")
                entries = (await analyst.get("/api/v1/special-cases/audit")).json()["entries"]
                assert [e["action"] for e in entries] == [
                    "review-rules.imported", "special-case.refused", "special-case.applied", "special-case.applied",
                    "panel-member.registered", "panel-member.registered",
                    "panel-member.registered", "panel-member.registered", "special-case.decided",
                    "special-case.appealed", "special-case.decided"]
                rules = entries.pop(0)
                assert (rules["actor"], rules["subject"], rules["before"]) == ("cli:bureau", "350500", None)
                assert orjson.loads(rules["after"])["rules"]["SPECIAL_CASES"]["drg_cap_share"] == "0.5"
                refusal = entries.pop(0)  # the refused application: who, when, the case, the rule
                assert (refusal["actor"], refusal["role"], refusal["subject"]) == (
                    f"token:{tokens['h1']['token_id']}", "hospital", case_a)
                assert refusal["at"] and refusal["reason"].startswith("a long stay needs")
                assert orjson.loads(refusal["after"]) | {"numbers": None} == {
                    "reason": "long_stay", "hospital_code": H1, "rule": "SC_LONG_STAY", "numbers": None}
                assert orjson.loads(refusal["after"])["numbers"]["long_stay_days"] == "60"
                first, last = entries[6], entries[-1]
                assert first["actor"] == f"token:{tokens['m2']['token_id']}" and first["role"] == "bureau-reviewer"
                assert orjson.loads(first["before"])["status"] == "pending"
                assert orjson.loads(first["after"])["amount"] == "25000.00" and first["reason"].startswith("通气")
                assert orjson.loads(last["before"])["outcome"] == "adjust_standard"
                assert orjson.loads(last["after"])["outcome"] == "pay_by_item"
                assert entries[0]["actor"] == f"token:{tokens['h1']['token_id']}"
                r = await analyst.get("/api/v1/special-cases/audit.csv", params={"action": "special-case.decided"})
                rows = list(csv.DictReader(io.StringIO(r.text)))
                assert r.status_code == 200 and [row["actor"] for row in rows] == [
                    f"token:{tokens['m2']['token_id']}", f"token:{tokens['m3']['token_id']}"]
    finally:
        await rt.stop()
