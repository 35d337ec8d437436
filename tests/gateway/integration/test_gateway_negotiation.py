"""Negotiation and feedback through the gateway and the embedded pipeline (docs/domain.md §14): the
bureau publishes a weights draft, two hospitals see their own impact and not each other's, one
objects to a group's weight with a counter-proposal, the bureau answers and adopts a changed
version, which prices the next case; the audit shows every step. The feedback channel: a
hospital's opinion on its own cases, triaged, answered and closed by the bureau, counted."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from helpers import SHARED, api_client, case_id, count, policy, receive_and_price, wait_until
from sqlalchemy import select, text

from drgdip.stages import build_runtime
from services.pricer.repository import results

CST = timezone(timedelta(hours=8))


def _error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


async def _tokens(admin: Any, *who: tuple[str, str, str | None]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, role, hospital in who:
        r = await admin.post("/api/v1/tokens", json={"role": role, "hospital": hospital})
        assert r.status_code == 201, r.text
        out[name] = r.json()
    return out


def _client(rt: Any, token: dict[str, Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://test",
                             headers={"authorization": f"Bearer {token['token']}"})


async def test_a_weights_draft_is_negotiated_adopted_and_prices_new_cases(tmp_path: Path) -> None:
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       log_level="WARNING")
    await rt.start()
    try:
        async with await api_client(rt) as admin:
            assert (await admin.post("/api/v1/policies", json=policy())).status_code == 201
            sent = await receive_and_price(rt, 40)
            async with rt.engine.connect() as conn:
                priced = (await conn.execute(text(
                    "SELECT hospital_code, drg, case_id FROM pricer_results WHERE case_type = 'normal' "
                    "ORDER BY hospital_code, case_id"))).all()
            by_hospital: dict[str, list[Any]] = {}
            for row in priced:
                by_hospital.setdefault(row.hospital_code, []).append(row)
            h1_code, h2_code = sorted(by_hospital)[:2]
            target = by_hospital[h1_code][0]
            drg = target.drg
            tokens = await _tokens(admin, ("h1", "hospital", h1_code), ("h2", "hospital", h2_code),
                                   ("reviewer", "bureau-reviewer", None), ("analyst", "bureau-analyst", None))
            today = datetime.now(UTC).astimezone(CST).date()
            draft_doc = policy() | {"version": 2}
            draft_doc["weights"] = {"version": "test-w2",
                                    "table": draft_doc["weights"]["table"] | {drg: "1.2000"}}
            draft = {"kind": "policy", "title": "2024 权重调整 <征求意见稿>", "document": draft_doc,
                     "opens": (today - timedelta(days=1)).isoformat(),
                     "closes": (today + timedelta(days=10)).isoformat()}

            async with _client(rt, tokens["h1"]) as h1, _client(rt, tokens["h2"]) as h2, \
                    _client(rt, tokens["reviewer"]) as reviewer, _client(rt, tokens["analyst"]) as analyst:
                # publication: the bureau-admin only
                assert _error(await reviewer.post("/api/v1/negotiations", json=draft)) == (403, "FORBIDDEN")
                assert _error(await h1.post("/api/v1/negotiations", json=draft)) == (403, "FORBIDDEN")
                bad = await admin.post("/api/v1/negotiations", json=draft | {"closes": "2000-01-01"})
                assert _error(bad) == (422, "INVALID_WINDOW")
                r = await admin.post("/api/v1/negotiations", json=draft)
                assert r.status_code == 201, r.text
                d = r.json()
                draft_id = d["id"]
                assert d["items"][f"weight:{drg}"] == "1.2000" and d["status"] == "open"
                listed = (await h2.get("/api/v1/negotiations")).json()["drafts"]
                assert [x["id"] for x in listed] == [draft_id]

                # each hospital sees its own impact, never another's
                r = await h1.get(f"/api/v1/negotiations/{draft_id}/impact")
                assert r.status_code == 200, r.text
                mine = r.json()
                assert mine["hospital_code"] == h1_code and mine["current_policy"]["version"] == 1
                group = next(g for g in mine["groups"] if g["drg"] == drg)
                assert Decimal(group["payment_change"]) > 0 and Decimal(group["draft_payment"]) > Decimal(
                    group["current_payment"])
                assert all(Decimal(g["payment_change"]) == 0 for g in mine["groups"] if g["drg"] != drg)
                assert Decimal(mine["total"]["payment_change"]) == Decimal(group["payment_change"])
                assert _error(await h1.get(f"/api/v1/negotiations/{draft_id}/impact",
                                           params={"hospital": h2_code})) == (403, "HOSPITAL_MISMATCH")
                theirs = (await h2.get(f"/api/v1/negotiations/{draft_id}/impact")).json()
                assert theirs["hospital_code"] == h2_code and h1_code not in orjson.dumps(theirs).decode()
                assert _error(await admin.get(f"/api/v1/negotiations/{draft_id}/impact")) == (422, "HOSPITAL_REQUIRED")
                assert (await admin.get(f"/api/v1/negotiations/{draft_id}/impact",
                                        params={"hospital": h1_code})).json()["groups"] == mine["groups"]

                # comments and objections per item, while the window is open
                path = f"/api/v1/negotiations/{draft_id}/comments"
                objection = {"item": f"weight:{drg}", "kind": "objection", "reason": "成本测算偏低",
                             "counter_proposal": "1.3500"}
                assert _error(await h1.post(path, json=objection | {"item": "weight:ZZ99"})) == (422, "UNKNOWN_ITEM")
                assert _error(await h1.post(path, json=objection | {"counter_proposal": "high"})) == (
                    422, "INVALID_COUNTER_PROPOSAL")
                assert _error(await admin.post(path, json=objection)) == (403, "FORBIDDEN")
                r = await h1.post(path, json=objection)
                assert r.status_code == 201, r.text
                objection_id = r.json()["id"]
                r = await h2.post(path, json={"item": "coefficient:level:3", "reason": "<script>alert(1)</script>"})
                assert r.status_code == 201, r.text
                comment_id = r.json()["id"]

                # the bureau answers each one, once
                answer = f"{path}/{objection_id}/answer"
                assert _error(await h1.post(answer, json={"outcome": "accepted", "reason": "x"})) == (403, "FORBIDDEN")
                r = await reviewer.post(answer, json={"outcome": "partly", "reason": "部分采纳: 调至1.3000"})
                assert r.status_code == 200 and r.json()["answer"] == "partly", r.text
                assert _error(await reviewer.post(answer, json={"outcome": "rejected", "reason": "x"})) == (
                    409, "COMMENT_ANSWERED")
                assert (await admin.post(f"{path}/{comment_id}/answer",
                                         json={"outcome": "rejected", "reason": "系数不变"})).status_code == 200

                # hospitals: their own items with the answers, everyone's anonymised
                seen = (await h2.get(path)).json()
                assert [c["id"] for c in seen["own"]] == [comment_id]
                assert [c["answer"] for c in seen["all"]] == ["partly", "rejected"]
                assert h1_code not in orjson.dumps(seen).decode()
                assert [c["hospital_code"] for c in (await reviewer.get(path)).json()["comments"]] == [h1_code, h2_code]

                # adoption: a changed version in force from July, through the policy import
                adopt = f"/api/v1/negotiations/{draft_id}/adopt"
                change = {"item": f"weight:{drg}", "value": "1.3000", "reason": "采纳部分意见",
                          "comment_ids": [objection_id]}
                body = {"valid_from": "2024-07-01", "changes": [change]}
                assert _error(await reviewer.post(adopt, json=body)) == (403, "FORBIDDEN")
                assert _error(await admin.post(adopt, json=body | {"changes": [change | {"comment_ids": [999]}]})) == (
                    404, "COMMENT_NOT_FOUND")
                r = await admin.post(adopt, json=body)
                assert r.status_code == 200, r.text
                adopted = r.json()
                assert adopted["changes"] == [{"item": f"weight:{drg}", "draft_value": "1.2000",
                                               "adopted_value": "1.3000", "reason": "采纳部分意见",
                                               "comment_ids": [objection_id]}]
                assert (adopted["policy_id"], adopted["version"], adopted["imported"]["stored"]) == ("test-2024", 2, True)
                assert _error(await admin.post(adopt, json=body)) == (409, "NEGOTIATION_ADOPTED")
                assert _error(await h2.post(path, json={"item": "coefficient:level:3", "reason": "late"})) == (
                    409, "NEGOTIATION_ADOPTED")
                versions = (await analyst.get("/api/v1/policies")).json()["policies"]
                assert [(p["version"], p["valid_from"]) for p in versions] == [(1, "2024-01-01"), (2, "2024-07-01")]

                # the adopted policy prices a new case discharged after its start
                new_list = next(sl for sl in sent if case_id(sl) == target.case_id)
                new_list = orjson.loads(orjson.dumps(new_list))
                s = new_list["setlinfo"]
                s["setl_id"], s["mdtrt_id"], s["medcasno"] = "SNEW0001", "MSNEW0001", "BASNEW0001"
                stay = (date.fromisoformat(s["dscg_time"][:10]) - date.fromisoformat(s["adm_time"][:10])).days
                s["adm_time"] = f"{date(2024, 8, 15) - timedelta(days=stay)} 09:00:00"
                s["dscg_time"] = "2024-08-15 10:00:00"
                s["setl_begn_date"], s["setl_end_date"] = s["adm_time"][:10], "2024-08-15"
                r = await h1.post("/api/v1/settlement-lists", json=new_list)
                assert r.status_code == 202, r.text
                new_id = f"{h1_code}-SNEW0001"

                async def new_priced() -> bool:
                    return await count(rt.engine, "pricer_results", f"case_id = '{new_id}'") == 1

                await wait_until(new_priced, 60, "the new case priced")
                async with rt.engine.connect() as conn:
                    res = results.c  # exact decimals are stored scaled: read through the table
                    row = (await conn.execute(select(res.drg, res.weight, res.payment, res.policy_version,
                                                     res.weights_version).where(res.case_id == new_id))).one()
                assert (row.drg, row.weight, row.policy_version) == (drg, Decimal("1.3000"), 2)
                assert row.payment == Decimal("13000.00") and row.weights_version == f"test-w2-n{draft_id}"

                # a closed window refuses comments
                late = draft | {"title": "late", "opens": (today - timedelta(days=9)).isoformat(),
                                "closes": (today - timedelta(days=1)).isoformat()}
                late_id = (await admin.post("/api/v1/negotiations", json=late)).json()["id"]
                assert _error(await h1.post(f"/api/v1/negotiations/{late_id}/comments", json=objection)) == (
                    409, "NEGOTIATION_WINDOW_CLOSED")

                # the round's report: CSV and escaped HTML (bureau roles)
                assert _error(await h1.get(f"/api/v1/negotiations/{draft_id}/report.csv")) == (403, "FORBIDDEN")
                r = await analyst.get(f"/api/v1/negotiations/{draft_id}/report.csv")
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
                rows = list(csv.DictReader(io.StringIO(r.text)))
                assert [(x["item"], x["kind"], x["answer"], x["adopted_value"]) for x in rows] == [
                    ("coefficient:level:3", "comment", "rejected", ""),
                    (f"weight:{drg}", "objection", "partly", "1.3000")]
                page = (await analyst.get(f"/api/v1/negotiations/{draft_id}/report.html")).text
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
                assert "&lt;征求意见稿&gt;" in page

                # every step audited: the gateway's audit, the round's history, the policy's own
                entries = (await admin.get("/api/v1/audit")).json()["entries"]
                steps = [(e["action"], e["subject"]) for e in entries if e["action"].startswith("negotiation.")]
                assert steps == [
                    ("negotiation.published", f"draft {draft_id}"),
                    ("negotiation.commented", f"draft {draft_id} comment {objection_id}"),
                    ("negotiation.commented", f"draft {draft_id} comment {comment_id}"),
                    ("negotiation.answered", f"draft {draft_id} comment {objection_id}"),
                    ("negotiation.answered", f"draft {draft_id} comment {comment_id}"),
                    ("negotiation.adopted", f"draft {draft_id}: test-2024 v2"),
                    ("negotiation.published", f"draft {late_id}")]
                adoption = next(e for e in entries if e["action"] == "negotiation.adopted")
                assert adoption["actor"].startswith("token:") and orjson.loads(adoption["detail"])["changes"][0][
                    "comment_ids"] == [objection_id]
                history = (await analyst.get(f"/api/v1/negotiations/{draft_id}/history")).json()["entries"]
                assert [h["action"] for h in history] == ["published", "commented", "commented", "answered",
                                                          "answered", "adopted"]
        assert await count(rt.engine, "pricer_policy_audit",
                           "policy_id = 'test-2024' AND version = 2 AND action IN ('import', 'adopt')") == 2
    finally:
        await rt.stop()


async def test_feedback_is_sent_on_own_cases_triaged_answered_closed_and_counted(tmp_path: Path) -> None:
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       log_level="WARNING")
    await rt.start()
    try:
        async with await api_client(rt) as admin:
            assert (await admin.post("/api/v1/policies", json=policy())).status_code == 201
            await receive_and_price(rt, 12)

            async def reviewed() -> bool:
                return await count(rt.engine, "review_stays", "figures IS NOT NULL") == 12

            await wait_until(reviewed, 60, "the cases reviewed")
            async with rt.engine.connect() as conn:
                owners = (await conn.execute(text(
                    "SELECT case_id, hospital_code FROM review_stays WHERE figures IS NOT NULL ORDER BY hospital_code, case_id"))).all()
            h1_code = owners[0].hospital_code
            own = [o.case_id for o in owners if o.hospital_code == h1_code]
            other = next(o for o in owners if o.hospital_code != h1_code)
            tokens = await _tokens(admin, ("h1", "hospital", h1_code), ("h2", "hospital", other.hospital_code),
                                   ("reviewer", "bureau-reviewer", None), ("analyst", "bureau-analyst", None))
            async with _client(rt, tokens["h1"]) as h1, _client(rt, tokens["h2"]) as h2, \
                    _client(rt, tokens["reviewer"]) as reviewer, _client(rt, tokens["analyst"]) as analyst:
                opinion = {"category": "grouping", "text": "该病例主要诊断应入外科组", "author": "普外科",
                           "case_ids": own[:1]}
                assert _error(await h1.post("/api/v1/feedback", json=opinion | {"case_ids": [other.case_id]})) == (
                    404, "CASE_NOT_FOUND")
                assert (await h1.post("/api/v1/feedback", json=opinion | {"category": "gossip"})).status_code == 422
                assert _error(await reviewer.post("/api/v1/feedback", json=opinion)) == (403, "FORBIDDEN")
                r = await h1.post("/api/v1/feedback", json=opinion)
                assert r.status_code == 201, r.text
                fid = r.json()["id"]
                assert (r.json()["status"], r.json()["case_ids"]) == ("new", own[:1])

                assert (await h2.get("/api/v1/feedback")).json()["feedback"] == []
                assert _error(await h2.get(f"/api/v1/feedback/{fid}")) == (404, "FEEDBACK_NOT_FOUND")
                assert [f["id"] for f in (await reviewer.get("/api/v1/feedback", params={"status": "new"})).json()[
                    "feedback"]] == [fid]

                step = f"/api/v1/feedback/{fid}"
                assert _error(await h1.post(f"{step}/triage", json={})) == (403, "FORBIDDEN")
                assert _error(await reviewer.post(f"{step}/answer", json={"answer": "x"})) == (
                    409, "FEEDBACK_STEP_NOT_ALLOWED")
                assert (await reviewer.post(f"{step}/triage", json={"note": "转分组专家组"})).json()["status"] == "triaged"
                assert _error(await reviewer.post(f"{step}/answer", json={})) == (422, "ANSWER_REQUIRED")
                r = await admin.post(f"{step}/answer", json={"answer": "已复核, 下一版本调整入组规则"})
                assert r.json()["status"] == "answered"
                assert (await reviewer.post(f"{step}/close", json={})).json()["status"] == "closed"
                seen = (await h1.get(step)).json()
                assert seen["answer"].startswith("已复核") and [h["action"] for h in seen["history"]] == [
                    "feedback.sent", "feedback.triaged", "feedback.answered", "feedback.closed"]

                stats = (await analyst.get("/api/v1/feedback/stats")).json()
                assert (stats["total"], stats["by_status"]["closed"], stats["by_category"]) == (1, 1, {"grouping": 1})
                assert stats["answered"] == 1 and stats["answer_working_days"]["max"] in (0, 1)
                assert _error(await h1.get("/api/v1/feedback/stats")) == (403, "FORBIDDEN")
        async with await api_client(rt) as admin:
            entries = [e["action"] for e in (await admin.get("/api/v1/audit")).json()["entries"]]
        assert [a for a in entries if a.startswith("feedback.")] == [
            "feedback.sent", "feedback.triaged", "feedback.answered", "feedback.closed"]
    finally:
        await rt.stop()


async def test_a_local_scheme_change_set_is_negotiated_then_built_and_registered(tmp_path: Path) -> None:
    """The bureau publishes an age split of a CHS-DRG 1.1 group (checked by the grouper; an invalid
    one is refused naming the operation and field); a hospital sees its own migration table,
    objects to the split age, the bureau answers and adopts the amended split, which the grouper
    builds, stores and registers: the next list of that group at the amended age groups into the
    new code."""
    local_dir = tmp_path / "local-schemes"
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       local_schemes_dir=local_dir, log_level="WARNING")
    await rt.start()
    try:
        async with await api_client(rt) as admin:
            assert (await admin.post("/api/v1/policies", json=policy())).status_code == 201
            sent = await receive_and_price(rt, 40)
            async with rt.engine.connect() as conn:
                grouped = (await conn.execute(text(
                    "SELECT r.case_id, r.drg, c.region, c.payload FROM grouper_results r JOIN grouper_cases c "
                    "ON c.case_id = r.case_id AND c.list_version = r.list_version ORDER BY r.case_id"))).all()
            drgs = {d["code"] for d in orjson.loads((SHARED / "schemes" / "chs-drg-1.1" / "drg.json").read_bytes())[
                "drgs"]}
            cases = [(g.case_id, g.case_id.split("-")[0], g.drg, g.region, orjson.loads(g.payload)["age"])
                     for g in grouped]
            target = next(c for c in cases if c[2] != "0000" and isinstance(c[4], int) and c[4] >= 2
                          and not {c[2][:3] + "Y", c[2][:3] + "Z"} & drgs)
            target_id, h1_code, drg, region, age = target
            h2_code = next(c[1] for c in cases if c[1] != h1_code)
            young, rest = drg[:3] + "Y", drg[:3] + "Z"

            def split(max_age: int) -> dict[str, Any]:
                return {"op": "split_drg", "drg": drg, "by": "age", "note": "按年龄细分",
                        "into": [{"code": young, "name": f"{drg}，年龄<{max_age}岁", "max": max_age},
                                 {"code": rest, "name": f"{drg}，年龄≥{max_age}岁"}]}

            changeset = {"id": "city-350500-2024", "name": "本地分组 2024", "base": "chs-drg-1.1",
                         "region": region, "author": "市医疗保障局", "operations": [split(age)]}
            tokens = await _tokens(admin, ("h1", "hospital", h1_code), ("h2", "hospital", h2_code),
                                   ("reviewer", "bureau-reviewer", None))
            today = datetime.now(UTC).astimezone(CST).date()
            draft = {"kind": "scheme-changeset", "title": "2024 本地分组 <征求意见稿>", "document": changeset,
                     "opens": (today - timedelta(days=1)).isoformat(),
                     "closes": (today + timedelta(days=10)).isoformat()}

            async with _client(rt, tokens["h1"]) as h1, _client(rt, tokens["h2"]) as h2, \
                    _client(rt, tokens["reviewer"]) as reviewer:
                # an invalid change set is refused before any hospital sees it
                bad_op = split(age)
                bad_op["into"][0]["code"] = drg  # the group being split
                r = await admin.post("/api/v1/negotiations", json=draft | {
                    "document": changeset | {"operations": [bad_op]}})
                assert _error(r) == (422, "INVALID_CHANGESET"), r.text
                error = r.json()["error"]
                assert error["field"] == "operations[0].into[0].code"
                assert f"(split_drg {drg})" in error["details"][0]["message"]
                assert (await admin.get("/api/v1/negotiations")).json()["drafts"] == []

                r = await admin.post("/api/v1/negotiations", json=draft)
                assert r.status_code == 201, r.text
                draft_id = r.json()["id"]
                assert r.json()["items"] == {"document": None, "change:0": None}
                assert r.json()["policy_id"] == "city-350500-2024"

                # each hospital sees its own migration table, never another's
                mine = (await h1.get(f"/api/v1/negotiations/{draft_id}/impact")).json()
                own = [c for c in cases if c[1] == h1_code]
                expected: dict[tuple[str, str], int] = {}
                for c in own:
                    if c[2] == drg:
                        key = (drg, young if isinstance(c[4], int) and c[4] < age else rest)
                        expected[key] = expected.get(key, 0) + 1
                assert mine["hospital_code"] == h1_code and mine["migration"]["cases"] == len(own)
                assert {(m["from"], m["to"]): m["cases"] for m in mine["migration"]["moves"]} == expected
                assert (drg, rest) in expected  # the target itself moves to the remaining part
                assert mine["summary"]["split"] == [{"adrg": drg[:3], "before": [drg], "after": [young, rest]}]
                theirs = (await h2.get(f"/api/v1/negotiations/{draft_id}/impact")).json()
                assert theirs["migration"]["cases"] == len([c for c in cases if c[1] == h2_code])
                assert h1_code not in orjson.dumps(theirs).decode()
                assert _error(await h1.get(f"/api/v1/negotiations/{draft_id}/impact",
                                           params={"hospital": h2_code})) == (403, "HOSPITAL_MISMATCH")

                # the hospital objects to the split age; the bureau answers
                path = f"/api/v1/negotiations/{draft_id}/comments"
                r = await h1.post(path, json={"item": "change:0", "kind": "objection",
                                              "reason": "该年龄段病例资源消耗接近低龄组",
                                              "counter_proposal": f"以{age + 1}岁为界"})
                assert r.status_code == 201, r.text
                objection_id = r.json()["id"]
                assert _error(await h1.post(path, json={"item": "change:7", "reason": "x"})) == (422, "UNKNOWN_ITEM")
                r = await reviewer.post(f"{path}/{objection_id}/answer",
                                        json={"outcome": "accepted", "reason": f"年龄界限调整为{age + 1}岁"})
                assert r.status_code == 200, r.text

                # adoption: an amended operation that does not fit is refused by the grouper
                adopt = f"/api/v1/negotiations/{draft_id}/adopt"
                change = {"item": "change:0", "value": split(age + 1), "reason": "采纳医院意见",
                          "comment_ids": [objection_id]}
                wrong = change | {"value": split(age + 1) | {"drg": "ZZ99"}}
                r = await admin.post(adopt, json={"valid_from": "2024-07-01", "changes": [wrong]})
                assert _error(r) == (422, "INVALID_CHANGESET") and r.json()["error"]["field"] == "operations[0].drg"
                r = await admin.post(adopt, json={"valid_from": "2024-07-01", "changes": [change]})
                assert r.status_code == 200, r.text
                adopted = r.json()
                assert adopted["changes"] == [{"item": "change:0", "draft_value": f"split_drg {drg}",
                                               "adopted_value": f"amended: split_drg {drg}",
                                               "reason": "采纳医院意见", "comment_ids": [objection_id]}]
                built = adopted["imported"]
                assert (built["scheme"], built["base"]) == ("city-350500-2024", "chs-drg-1.1")
                assert built["registration"] == {"region": region, "valid_from": "2024-07-01", "valid_to": None,
                                                 "replaced": False}
                assert _error(await admin.post(adopt, json={"valid_from": "2024-07-01"})) == (
                    409, "NEGOTIATION_ADOPTED")

                # the built folder records its base and the change set as adopted (by hash)
                manifest = orjson.loads((local_dir / "city-350500-2024" / "scheme.json").read_bytes())
                stored = (local_dir / "city-350500-2024" / "changeset.json").read_bytes()
                assert orjson.loads(stored)["operations"] == [split(age + 1)]
                assert manifest["derived_from"]["scheme"] == "chs-drg-1.1"
                assert manifest["derived_from"]["changeset"]["sha256"] == built["changeset"]["sha256"]
                async with rt.engine.connect() as conn:
                    regs = (await conn.execute(text(
                        "SELECT scheme_id, region, valid_from FROM grouper_schemes"))).all()
                assert [(x.scheme_id, x.region, str(x.valid_from)) for x in regs] == [
                    ("city-350500-2024", region, "2024-07-01")]

                # the next list of that group at the amended split age groups into the new code
                new_list = orjson.loads(orjson.dumps(next(sl for sl in sent if case_id(sl) == target_id)))
                s = new_list["setlinfo"]
                s["setl_id"], s["mdtrt_id"], s["medcasno"] = "SNEW0002", "MSNEW0002", "BASNEW0002"
                stay = (date.fromisoformat(s["dscg_time"][:10]) - date.fromisoformat(s["adm_time"][:10])).days
                shift = date(2024, 8, 15) - date.fromisoformat(s["dscg_time"][:10])
                s["brdy"] = (date.fromisoformat(s["brdy"]) + shift).isoformat()  # the same age on the new date
                s["adm_time"] = f"{date(2024, 8, 15) - timedelta(days=stay)} 09:00:00"
                s["dscg_time"] = "2024-08-15 10:00:00"
                s["setl_begn_date"], s["setl_end_date"] = s["adm_time"][:10], "2024-08-15"
                r = await h1.post("/api/v1/settlement-lists", json=new_list)
                assert r.status_code == 202, r.text
                new_id = f"{h1_code}-SNEW0002"

                async def regrouped() -> bool:
                    return await count(rt.engine, "grouper_results", f"case_id = '{new_id}'") == 1

                await wait_until(regrouped, 60, "the new case grouped")
                async with rt.engine.connect() as conn:
                    row = (await conn.execute(text(
                        f"SELECT scheme_id, drg FROM grouper_results WHERE case_id = '{new_id}'"))).one()
                assert (row.scheme_id, row.drg) == ("city-350500-2024", young)

                # audited: the gateway's audit, the round's history, the scheme's adoption record
                entries = (await admin.get("/api/v1/audit")).json()["entries"]
                steps = [(e["action"], e["subject"]) for e in entries
                         if e["action"].startswith(("negotiation.", "scheme."))]
                assert steps == [
                    ("negotiation.published", f"draft {draft_id}"),
                    ("negotiation.commented", f"draft {draft_id} comment {objection_id}"),
                    ("negotiation.answered", f"draft {draft_id} comment {objection_id}"),
                    ("scheme.built", "city-350500-2024 over chs-drg-1.1"),
                    ("negotiation.adopted", f"draft {draft_id}: city-350500-2024 v1")]
                history = (await reviewer.get(f"/api/v1/negotiations/{draft_id}/history")).json()["entries"]
                assert [h["action"] for h in history] == ["published", "commented", "answered", "adopted"]
        assert await count(rt.engine, "pricer_policy_audit",
                           "policy_id = 'city-350500-2024' AND action = 'adopt'") == 1
    finally:
        await rt.stop()
