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
