"""Reports and the performance evaluation through the embedded gateway: the feedback issued
after a pre-settlement and fetched as issued, the bulletin, the comparison, and a yearly
evaluation adopted into the clearing, whose deposit returned follows the score rule."""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from helpers import SHARED, api_client, count, policy, receive_and_price, wait_until
from openpyxl import load_workbook

from drgdip.stages import build_runtime
from services.gateway.domain import performance as perf


async def test_reports_and_the_deposit_returned_by_the_yearly_score(tmp_path: Path) -> None:
    n = 30
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       log_level="WARNING")
    await rt.start()
    try:
        async with await api_client(rt) as admin:
            assert (await admin.post("/api/v1/policies", json=policy("1.2000"))).status_code == 201
            await receive_and_price(rt, n)

            async def folded() -> bool:
                return await count(rt.engine, "gateway_cases", "status = 'reviewed'") == n

            await wait_until(folded, 120, "the gateway to fold every review")
            months = [r["key"] for r in (await admin.get("/api/v1/indicators", params={
                "period": "2024", "by": "month"})).json()["rows"]]
            for m in months:
                r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": m})
                assert r.status_code == 201, r.text
            settled = await count(rt.engine, "pricer_statements", "kind = 'monthly'")

            async def issued() -> bool:
                return await count(rt.engine, "gateway_reports", "kind = 'feedback'") == settled

            await wait_until(issued, 60, "the monthly feedback issued after each pre-settlement")
            month = months[0]
            hospital = (await admin.get("/api/v1/indicators", params={"period": month})).json()["rows"][0]["key"]
            listed = (await admin.get("/api/v1/reports/feedback/issued", params={"hospital": hospital})).json()
            assert [(i["period"], i["version"]) for i in listed["issued"]][0] == (month, 1)
            page = await admin.get("/api/v1/reports/feedback/issued",
                                   params={"hospital": hospital, "month": month, "version": "1"})
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "月度反馈" in page.text and "质量保证金" in page.text

            now = await admin.get("/api/v1/reports/feedback", params={"hospital": hospital, "month": month,
                                                                       "format": "csv"})
            rows = list(csv.DictReader(io.StringIO(now.text)))
            assert {r["section"] for r in rows} >= {"grouping", "payment", "quality"}

            b = await admin.get("/api/v1/reports/bulletin", params={"region": "350500", "quarter": "2024Q1",
                                                                     "format": "xlsx", "budget": "5000000.00"})
            assert b.status_code == 200, b.text
            table = list(load_workbook(io.BytesIO(b.content)).active.iter_rows(values_only=True))
            assert sum(1 for row in table[1:] if row[0] == "fees") == 14
            cmp = (await admin.get("/api/v1/reports/standards", params={
                "drg": "AA19", "left": "test-2024", "right": "test-2024:1", "format": "json"})).json()
            assert all(r["difference"] == "0.00" for r in cmp["sections"][1]["rows"])
            assert (await admin.get("/api/v1/reports/special-cases", params={"half": "2024H1"})).status_code == 200

            # the year evaluated, adopted and cleared: each deposit returned = withheld × share
            ev = await admin.post("/api/v1/evaluations", json={"region": "350500", "period": "2024"})
            assert ev.status_code == 201, ev.text
            scores = {h["hospital_code"]: h for h in ev.json()["hospitals"]}
            for h in scores.values():
                assert Decimal(h["deposit_return_share"]) == perf.deposit_return_share(Decimal(h["score"]), perf.DEFAULT)
            adopted = await admin.post(f"/api/v1/evaluations/{ev.json()['evaluation_id']}/adopt")
            assert adopted.status_code == 200, adopted.text
            r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024",
                                                              "budget": "5000000.00"})
            assert r.status_code == 201, r.text
            for st in r.json()["statements"]:
                lines = st["lines"]
                share = Decimal(scores[st["hospital_code"]]["deposit_return_share"])
                expected = (Decimal(lines["quality_deposit_withheld"]) * share).quantize(
                    Decimal("0.01"), rounding=ROUND_HALF_UP)
                assert Decimal(lines["performance_return_share"]) == share
                assert Decimal(lines["quality_deposit_returned"]) == expected

        other = sorted(scores)[-1] if sorted(scores)[-1] != hospital else sorted(scores)[0]
        async with await api_client(rt, "hospital", hospital) as own:
            assert (await own.get("/api/v1/reports/feedback/issued", params={"hospital": other})).status_code == 403
            mine = (await own.get("/api/v1/evaluations", params={"period": "2024"})).json()["evaluations"][0]
            assert [h["hospital_code"] for h in mine["hospitals"]] == [hospital]
            assert (await own.get("/api/v1/reports/bulletin", params={"region": "350500",
                                                                     "quarter": "2024Q1"})).status_code == 403
    finally:
        await rt.stop()
