"""The indicators through the embedded gateway: lists submitted and priced, the aggregates equal
what the cases give, a hospital sees only its own rows, and the exports carry the same figures."""

from __future__ import annotations

import csv
import io
from collections import Counter
from decimal import Decimal
from pathlib import Path

from helpers import SHARED, api_client, count, policy, receive_and_price, simple_lists, wait_until
from openpyxl import load_workbook
from sqlalchemy import text

from drgdip.stages import build_runtime


async def test_indicators_are_the_cases_aggregated(tmp_path: Path) -> None:
    n = 40
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
            sent = simple_lists(n)
            by_hospital = Counter(sl["hospital_code"] for sl in sent)
            los = Counter()
            for sl in sent:
                los[sl["hospital_code"]] += sl["los"]
            async with rt.engine.connect() as conn:
                paid = {h: Decimal(p) / 100 for h, p in (await conn.execute(text(
                    "SELECT hospital_code, SUM(payment) FROM pricer_results WHERE payment IS NOT NULL "
                    "GROUP BY hospital_code"))).all()}  # SQLite keeps money in fen
                grouped = Counter(cid.split("-")[0] for (cid,) in (await conn.execute(text(
                    "SELECT case_id FROM grouper_results WHERE status IN ('SUCCESS', 'QY')"))).all())

            r = await admin.get("/api/v1/indicators", params={"period": "2024", "region": "350500"})
            assert r.status_code == 200, r.text
            doc = r.json()
            assert (doc["period"], doc["region"], doc["by"]) == ("2024", "350500", "hospital")
            rows = {row["key"]: row for row in doc["rows"]}
            assert {h: row["cases"] for h, row in rows.items()} == dict(by_hospital)
            for h, row in rows.items():
                assert row["grouped"] == grouped.get(h, 0)
                assert Decimal(row["payment_sum"]) == paid.get(h, Decimal(0))
                assert row["average_los"] == str((Decimal(los[h]) / by_hospital[h]).quantize(Decimal("0.01")))
                assert row["cmi"] in ("1.2000", None)
            total = doc["region_total"]
            assert total["cases"] == n and total["grouped"] == sum(grouped.values())
            assert total["scheme_groups"] and total["groups_covered"] >= 1
            # quarters and months add up to the year
            quarters = [(await admin.get("/api/v1/indicators", params={"period": f"2024Q{q}", "by": "region"}))
                        .json()["region_total"]["cases"] for q in range(1, 5)]
            assert sum(quarters) == n
            months = (await admin.get("/api/v1/indicators", params={"period": "2024", "by": "month"})).json()
            assert sum(row["cases"] for row in months["rows"]) == n
            levels = (await admin.get("/api/v1/indicators", params={"period": "2024", "by": "level"})).json()
            assert {row["key"] for row in levels["rows"]} == {3}  # the test policy's hospitals are level 3
            rules = (await admin.get("/api/v1/indicators", params={"period": "2024", "by": "rule"})).json()
            assert all(set(row) == {"key", "flagged", "flagged_share"} for row in rules["rows"])

            bad = await admin.get("/api/v1/indicators", params={"period": "2024", "colour": "red"})
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "UNKNOWN_PARAMETER"
            bad = await admin.get("/api/v1/indicators", params={"period": "2024-13"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "period"

            # exports: the same rows, then the region's total
            exported = list(csv.DictReader(io.StringIO(
                (await admin.get("/api/v1/indicators.csv", params={"period": "2024"})).text)))
            assert [e["key"] for e in exported] == [*sorted(rows), "region_total"]
            assert {e["key"]: int(e["cases"]) for e in exported[:-1]} == dict(by_hospital)
            x = await admin.get("/api/v1/indicators.xlsx", params={"period": "2024"})
            assert x.status_code == 200 and x.headers["content-type"].startswith("application/vnd.openxml")
            sheet = load_workbook(io.BytesIO(x.content)).active
            table = list(sheet.iter_rows(values_only=True))
            assert table[0][:3] == ("key", "cases", "grouped")
            assert {row[0]: row[1] for row in table[1:-1]} == dict(by_hospital)
            assert table[-1][0] == "region_total" and table[-1][1] == n

            # budget execution: what the pre-settlement of a month paid, from the pricer's statements
            r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024-03"})
            assert r.status_code == 201, r.text
            budget = (await admin.get("/api/v1/indicators/budget", params={"region": "350500", "year": "2024"})).json()
            (march,) = budget["months"]
            assert march["period"] == "2024-03" and Decimal(march["presettled"]) > 0
            march_cases = (await admin.get("/api/v1/indicators", params={"period": "2024-03"})).json()
            assert march["cases"] == march_cases["region_total"]["cases"]

        mine = sorted(by_hospital)[0]
        async with await api_client(rt, "hospital", mine) as hospital:
            own = (await hospital.get("/api/v1/indicators", params={"period": "2024"})).json()
            assert [row["key"] for row in own["rows"]] == [mine]
            assert own["region_total"]["cases"] == n  # the region's aggregates, not its hospitals
            by_group = (await hospital.get("/api/v1/indicators", params={"period": "2024", "by": "group"})).json()
            assert sum(row["cases"] for row in by_group["rows"]) == by_hospital[mine]
            other = sorted(by_hospital)[1]
            refused = await hospital.get("/api/v1/indicators", params={"period": "2024", "hospital": other})
            assert refused.status_code == 403
            assert (await hospital.get("/api/v1/indicators.csv",
                                       params={"period": "2024", "hospital": other})).status_code == 403
            assert (await hospital.get("/api/v1/indicators/budget",
                                       params={"region": "350500", "year": "2024"})).status_code == 403
            lines = (await hospital.get("/api/v1/indicators.csv", params={"period": "2024"})).text
            assert other not in lines and mine in lines
    finally:
        await rt.stop()


async def _cells(engine) -> list[tuple]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        cells = (await conn.execute(text("SELECT * FROM gateway_indicator_cells ORDER BY region, month, "
                                         "hospital_code, hospital_level, dept, scheme_id, drg"))).all()
        rules = (await conn.execute(text("SELECT * FROM gateway_indicator_rules ORDER BY region, month, "
                                         "hospital_code, hospital_level, dept, scheme_id, drg, rule"))).all()
    return [tuple(c) for c in cells if any(c[7:])] + [tuple(r) for r in rules if r[-1]]


async def test_timeliness_budget_prepayments_and_the_rebuild(tmp_path: Path) -> None:
    import asyncio

    from typer.testing import CliRunner

    from drgdip.cli import app
    from services.gateway.handlers import rebuild_indicators
    from services.pricer.handlers import record_advance

    n = 40
    db = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    rt = build_runtime("all", db=db, schemes_dir=SHARED / "schemes", log_level="WARNING")
    await rt.start()
    try:
        async with await api_client(rt) as admin:
            assert (await admin.post("/api/v1/policies", json=policy("1.2000"))).status_code == 201
            await receive_and_price(rt, n)
            async with rt.engine.connect() as conn:  # hospitals with a case discharged in March
                mine, other = sorted((await conn.execute(text(
                    "SELECT DISTINCT hospital_code FROM pricer_results WHERE discharge_date >= '2024-03-01' "
                    "AND discharge_date < '2024-04-01'"))).scalars())[:2]

            async def folded() -> bool:
                return await count(rt.engine, "gateway_cases", "status = 'reviewed'") == n

            await wait_until(folded, 120, "the gateway to fold every review")

            # the calendar (the bureau's data): imported, listed; a bad one names its field
            example = (Path(__file__).parents[3] / "examples" / "calendar-2025.json").read_bytes()
            r = await admin.post("/api/v1/calendar", content=example)
            assert r.status_code == 201, r.text
            assert r.json()["year"] == 2025 and r.json()["workdays"] == 5
            assert [y["year"] for y in (await admin.get("/api/v1/calendar")).json()["years"]] == [2025]
            bad = await admin.post("/api/v1/calendar", json={"year": 2025, "workdays": [{"date": "2025-01-27"}]})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "workdays[0]"

            async with await api_client(rt, "hospital", mine) as hospital:
                first = await hospital.post("/api/v1/declarations", json={"period": "2024-03"})
                assert first.status_code == 201, first.text
                again = await hospital.post("/api/v1/declarations", json={"period": "2024-03"})
                assert again.status_code == 200 and again.json()["declared_at"] == first.json()["declared_at"]
                assert (await hospital.post("/api/v1/declarations", json={"period": "2024-03", "hospital_code": other})
                        ).status_code == 422  # its own only: the body names no hospital
                assert (await hospital.post("/api/v1/declarations", json={"period": "2024-13"})).status_code == 422
                assert (await hospital.post("/api/v1/declarations", json={"period": "2024-04"})).status_code == 201
            assert (await admin.post("/api/v1/declarations", json={"period": "2024-03"})).status_code == 403

            q = {"region": "350500", "period": "2024-03"}
            before = (await admin.get("/api/v1/indicators/timeliness", params=q)).json()
            (row,) = before["rows"]
            assert (row["hospital_code"], row["status"], row["presettled_at"]) == (mine, "pending", None)
            assert isinstance(row["working_days"], int) and before["pending"] == [mine] and before["limit"] == 20

            assert (await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024-03"})
                    ).status_code == 201
            after = (await admin.get("/api/v1/indicators/timeliness", params=q)).json()
            rows = {r["hospital_code"]: r for r in after["rows"]}
            assert rows[mine]["status"] == "within" and rows[mine]["within_rule"] is True
            assert rows[mine]["presettled_at"] is not None and after["pending"] == [] and after["late"] == []
            assert {r["status"] for h, r in rows.items() if h != mine} <= {"not_declared"}
            # the first statement's time stays the pre-settlement's when the month is settled again
            assert (await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024-03"})
                    ).status_code == 201
            again_rows = {r["hospital_code"]: r for r in
                          (await admin.get("/api/v1/indicators/timeliness", params=q)).json()["rows"]}
            assert again_rows[mine]["presettled_at"] == rows[mine]["presettled_at"]
            assert (await admin.get("/api/v1/indicators/timeliness", params={**q, "period": "2024-3"})
                    ).status_code == 422

            # the budget: set (audited), compared with what was paid
            r = await admin.post("/api/v1/budgets", json={"region": "350500", "year": "2024",
                                                          "amount": "1000000.00", "point_value": "10.5"})
            assert r.status_code == 201 and r.json()["version"] == 1, r.text
            bad = await admin.post("/api/v1/budgets", json={"region": "350500", "year": "2024", "amount": "-1"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "amount"
            budget = (await admin.get("/api/v1/indicators/budget", params={"region": "350500", "year": "2024"})).json()
            (march,) = budget["months"]
            paid = Decimal(march["presettled"])
            assert Decimal(budget["execution"]["paid"]) == paid == Decimal(march["presettled_cumulative"])
            assert budget["execution"]["budget"] == "1000000.00" and budget["budget"]["point_value"] == "10.500000"
            assert budget["execution"]["execution_rate"] == str((paid / Decimal(1000000)).quantize(Decimal("0.0001")))

            # a prepayment granted, netted by the annual clearing, which uses the stored budget
            async with rt.engine.begin() as conn:
                await record_advance(conn, mine, "2024", Decimal("500.00"), "test")
            pre = (await admin.get("/api/v1/indicators/prepayments", params={"region": "350500", "year": "2024"})).json()
            assert pre["rows"] == [{"hospital_code": mine, "granted": "500.00", "netted": "0", "outstanding": "500.00"}]
            r = await admin.post("/api/v1/settlements", json={"policy_id": "test-2024", "period": "2024"})
            assert r.status_code == 201 and r.json()["budget"] == "1000000.00", r.text
            pre = (await admin.get("/api/v1/indicators/prepayments", params={"region": "350500", "year": "2024"})).json()
            assert pre["rows"] == [{"hospital_code": mine, "granted": "500.00", "netted": "500.00",
                                    "outstanding": "0.00"}]
            lines = list(csv.DictReader(io.StringIO((await admin.get(
                "/api/v1/indicators/prepayments.csv", params={"region": "350500", "year": "2024"})).text)))
            assert [(x["hospital_code"], x["granted"], x["outstanding"]) for x in lines] == [
                (mine, "500.00", "0.00"), ("total", "500.00", "0.00")]

            audited = {a: len((await admin.get("/api/v1/audit", params={"action": a})).json()["entries"])
                       for a in ("declaration.submitted", "calendar.imported", "budget.set")}
            assert audited == {"declaration.submitted": 2, "calendar.imported": 1, "budget.set": 1}

        async with await api_client(rt, "hospital", other) as hospital:
            seen = (await hospital.get("/api/v1/indicators/timeliness", params=q)).json()
            assert [r["hospital_code"] for r in seen["rows"]] == [other]
            pre = (await hospital.get("/api/v1/indicators/prepayments", params={"region": "350500", "year": "2024"}))
            assert pre.json()["rows"] == []
            assert (await hospital.post("/api/v1/budgets", json={"region": "350500", "year": "2024",
                                                                 "amount": "1.00"})).status_code == 403

        # the rebuild gives the cells the live folding gave, also when no contribution was kept
        live = await _cells(rt.engine)
        assert live
        async with rt.engine.begin() as conn:
            counts = await rebuild_indicators(conn, Decimal("0.10"), batch=7)
        assert counts["cases"] == n and counts["changed"] == 0 and counts["without_facts"] == 0
        assert await _cells(rt.engine) == live
        async with rt.engine.begin() as conn:  # as before gateway_0004: no contribution, no cells
            await conn.execute(text("UPDATE gateway_cases SET indicator = NULL"))
            await conn.execute(text("DELETE FROM gateway_indicator_cells"))
            await conn.execute(text("DELETE FROM gateway_indicator_rules"))
            counts = await rebuild_indicators(conn, Decimal("0.10"), batch=7)
        assert counts["changed"] == n - counts["not_counted"]
        assert await _cells(rt.engine) == live
    finally:
        await rt.stop()

    # the command, on the stopped service's database: the same cells again, audited
    result = await asyncio.to_thread(CliRunner().invoke, app, ["indicators", "rebuild", "--db", db])
    assert result.exit_code == 0, result.output
    assert f"{n} cases: {n} recomputed (0 changed)" in result.output
    from shared.db import create_engine

    engine = create_engine(db)
    try:
        assert await _cells(engine) == live
        assert await count(engine, "gateway_audit", "action = 'indicators.rebuilt'") == 1
    finally:
        await engine.dispose()
