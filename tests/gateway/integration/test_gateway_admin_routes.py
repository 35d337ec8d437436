"""The bureau-admin's commands as routes (embedded runtime, SQLite and PostgreSQL): scheme registration,
settlement runs and re-pricing, each refused to other roles and audited once it took effect."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import SHARED, api_client, count, policy, receive_and_price

from drgdip.stages import build_runtime

N = 12


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("admin_routes"))


def _runtime(db_url: str) -> Any:
    return build_runtime("all", db=db_url, schemes_dir=SHARED / "schemes", log_level="WARNING")


def _error(r: Any) -> tuple[int, str, str]:
    e = r.json()["error"]
    return r.status_code, e["code"], e["field"]


async def _audit(admin: Any, action: str) -> list[dict[str, Any]]:
    r = await admin.get("/api/v1/audit", params={"action": action})
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


async def _csv(admin: Any) -> list[dict[str, str]]:
    r = await admin.get("/api/v1/audit.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(r.text)))


async def test_a_loaded_scheme_is_registered_live_and_audited(db_url: str) -> None:
    rt = _runtime(db_url)
    await rt.start()
    try:
        reg = {"scheme": "quanzhou-2023", "region": "350500", "valid_from": "2024-01-01"}
        draft = {"sex": 1, "age": 60, "diagnoses": ["I21.000"], "procedures": [], "region": "350500",
                 "discharge_date": "2024-06-30"}
        async with await api_client(rt) as admin, await api_client(rt, "bureau-analyst") as analyst:
            assert (await admin.post("/api/v1/group", json=draft)).json()["scheme_id"] == "chs-drg-1.1"
            assert _error(await analyst.post("/api/v1/schemes/registrations", json=reg))[:2] == (403, "FORBIDDEN")

            r = await admin.post("/api/v1/schemes/registrations", json=reg)
            assert r.status_code == 201, r.text
            assert r.json() == reg | {"title": r.json()["title"], "valid_to": None, "replaced": False}
            # in force with the grouper's next look, no restart
            assert (await admin.post("/api/v1/group", json=draft)).json()["scheme_id"] == "quanzhou-2023"

            earlier = {"scheme": "chs-drg-1.1", "region": "350500", "valid_from": "2020-01-01"}
            assert _error(await admin.post("/api/v1/schemes/registrations", json=earlier)) == (
                409, "OVERLAPPING_PERIODS", "valid_from")
            r = await admin.post("/api/v1/schemes/registrations", json=earlier | {"valid_to": "2023-12-31"})
            assert r.status_code == 201, r.text
            # the same scheme, region and start again replaces its registration
            again = await admin.post("/api/v1/schemes/registrations", json=reg | {"valid_to": "2030-12-31"})
            assert again.status_code == 201 and again.json()["replaced"] is True

            assert _error(await admin.post("/api/v1/schemes/registrations", json=reg | {"scheme": "nope"})) == (
                404, "UNKNOWN_SCHEME", "scheme")
            assert _error(await admin.post("/api/v1/schemes/registrations",
                                           json=reg | {"region": "X", "valid_to": "2023-01-01"})) == (
                422, "INVALID_PERIOD", "valid_to")
            assert _error(await admin.post("/api/v1/schemes/registrations",
                                           json=reg | {"valid_from": "June"}))[::2] == (422, "valid_from")
            assert _error(await admin.post("/api/v1/schemes/registrations",
                                           json=reg | {"folder": "/etc"}))[::2] == (422, "folder")
            assert _error(await admin.post("/api/v1/schemes/registrations",
                                           json={k: v for k, v in reg.items() if k != "region"}))[::2] == (
                422, "region")
            assert _error(await admin.post("/api/v1/schemes/registrations",
                                           json=reg | {"region": "3505\u0000"}))[::2] == (422, "region")

            entries = await _audit(admin, "scheme.registered")
            assert [e["subject"] for e in entries] == [
                "quanzhou-2023 350500 2024-01-01..", "chs-drg-1.1 350500 2020-01-01..2023-12-31",
                "quanzhou-2023 350500 2024-01-01..2030-12-31"]
            assert all(e["actor"].startswith("token:") and e["role"] == "bureau-admin" for e in entries)
            assert orjson.loads(entries[0]["detail"])["scheme"] == "quanzhou-2023"
            exported = [row for row in await _csv(admin) if row["action"] == "scheme.registered"]
            assert [row["subject"] for row in exported] == [e["subject"] for e in entries]
        assert await count(rt.engine, "grouper_schemes") == 2
    finally:
        await rt.stop()


async def test_cases_are_repriced_and_settled_through_the_gateway_and_audited(db_url: str) -> None:
    rt = _runtime(db_url)
    await rt.start()
    try:
        sent = await receive_and_price(rt, N)  # no policy yet
        month = sent[0]["setlinfo"]["dscg_time"][:7]
        async with await api_client(rt) as admin, await api_client(rt, "bureau-analyst") as analyst:
            assert (await admin.post("/api/v1/policies", json=policy() | {"valid_from": "2000-01-01"})).status_code == 201

            # re-pricing: analyst refused, bad input named, then every case re-priced once
            assert _error(await analyst.post("/api/v1/reprice", json={"region": "350500"}))[0] == 403
            assert _error(await admin.post("/api/v1/reprice", json={"region": "350500", "from": "soon"}))[::2] == (
                422, "from")
            assert _error(await admin.post("/api/v1/reprice", json={"region": "350500", "from": "2024-02-01",
                                                                    "to": "2024-01-01"})) == (
                422, "INVALID_PERIOD", "to")
            assert _error(await admin.post("/api/v1/reprice", json={}))[::2] == (422, "region")
            assert _error(await admin.post("/api/v1/reprice", json={"region": "3505\u202e00"}))[::2] == (
                422, "region")
            r = await admin.post("/api/v1/reprice", json={"region": "350500"})
            assert r.status_code == 200, r.text
            assert {k: r.json()[k] for k in ("cases", "repriced", "unchanged")} == {
                "cases": N, "repriced": N, "unchanged": 0}
            assert r.json()["by_policy"] == {"test-2024 v1": N}
            again = (await admin.post("/api/v1/reprice", json={"region": "350500"})).json()
            assert (again["repriced"], again["unchanged"]) == (0, N)
            assert await count(rt.engine, "pricer_results", "status = 'PRICED'") == N

            # settlement: analyst refused, bad input named, then a month and a year
            run = {"policy_id": "test-2024", "period": month}
            assert _error(await analyst.post("/api/v1/settlements", json=run))[0] == 403
            assert _error(await admin.post("/api/v1/settlements", json=run | {"period": "2024-13"}))[::2] == (
                422, "period")
            assert _error(await admin.post("/api/v1/settlements", json=run | {"period": "2024"})) == (
                422, "INVALID_SETTLEMENT", "budget")
            assert _error(await admin.post("/api/v1/settlements", json=run | {"budget": "1000.00"})) == (
                422, "INVALID_SETTLEMENT", "budget")
            assert _error(await admin.post("/api/v1/settlements", json=run | {"policy_id": "nope"})) == (
                422, "INVALID_SETTLEMENT", "policy_id")
            assert _error(await admin.post("/api/v1/settlements", json=run | {"period": "1999-01"})) == (
                404, "NO_PRICED_CASES", "period")
            for period, budget in (("2024", 1e6), ("2024", "1e30"), ("2024", "-5"), ("2024", "1.001")):
                assert _error(await admin.post("/api/v1/settlements", json=run | {"period": period, "budget": budget}
                                               ))[::2] == (422, "budget"), budget
            for period in ("0000", "9999-12", "2024-1"):
                assert _error(await admin.post("/api/v1/settlements", json=run | {"period": period}))[::2] == (
                    422, "period"), period
            assert _error(await admin.post("/api/v1/settlements", json=run | {"policy_id": "t\u0000"}))[::2] == (
                422, "policy_id")
            monthly = await admin.post("/api/v1/settlements", json=run)
            assert monthly.status_code == 201, monthly.text
            m = monthly.json()
            assert (m["kind"], m["period"], m["version"], m["figure"]) == ("monthly", month, 1, "presettled")
            assert m["hospitals"] == len(m["statements"]) > 0
            annual = await admin.post("/api/v1/settlements", json=run | {"period": "2024", "budget": "200000.00"})
            assert annual.status_code == 201, annual.text
            a = annual.json()
            assert (a["kind"], a["period"], a["figure"], a["budget"]) == ("annual", "2024", "balance", "200000.00")
            assert a["hospitals"] == len(a["statements"]) > 0
            statements = await analyst.get("/api/v1/statements", params={"hospital": a["statements"][0]["hospital_code"],
                                                                         "period": "2024"})
            assert len(statements.json()["statements"]) == 1

            repriced = await _audit(admin, "cases.repriced")
            assert [(e["subject"], orjson.loads(e["detail"])["repriced"]) for e in repriced] == [
                ("350500 ..", N), ("350500 ..", 0)]
            settled = await _audit(admin, "settlement.run")
            assert [e["subject"] for e in settled] == [f"test-2024 {month} v1", "test-2024 2024 v1"]
            detail = orjson.loads(settled[1]["detail"])
            assert detail["total"] == a["total"] and "statements" not in detail  # the key figures only
            exported = {row["action"] for row in await _csv(admin)}
            assert {"cases.repriced", "settlement.run", "policy.imported"} <= exported
        # refused requests left no trace
        assert await count(rt.engine, "gateway_audit", "action IN ('cases.repriced', 'settlement.run')") == 4
    finally:
        await rt.stop()
