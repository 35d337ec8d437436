"""Tokens, throttling, the audit and personal data through the gateway (embedded runtime, real
database: SQLite, and PostgreSQL where marked)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from helpers import SHARED, api_client, count, national_list, policy, simple_lists, wait_until
from sqlalchemy import update
from structlog.testing import capture_logs
from typer.testing import CliRunner

from drgdip.stages import build_runtime
from services.gateway import repository
from services.gateway.cli import token_app

HSA = SHARED / "testdata" / "hsa"


def _runtime(db: str, **settings: Any) -> Any:
    return build_runtime("all", db=db, schemes_dir=SHARED / "schemes", log_level="WARNING", **settings)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("gateway_access"))


@pytest.fixture
async def rt(db_url: str) -> AsyncIterator[Any]:
    runtime = _runtime(db_url, auth_max_failures=3)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def _anonymous(rt: Any, token: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://test", headers=headers)


async def _audit(rt: Any, action: str) -> list[dict[str, Any]]:
    async with rt.engine.connect() as conn:
        return await repository.audit_rows(conn, action=action)


async def test_an_expired_token_is_refused_with_its_own_code(rt: Any) -> None:
    async with await api_client(rt) as admin:
        r = await admin.post("/api/v1/tokens", json={"role": "bureau-analyst", "days": 30})
        assert r.status_code == 201, r.text
        token_id, token = r.json()["token_id"], r.json()["token"]
        listed = {t["token_id"]: t for t in (await admin.get("/api/v1/tokens")).json()["tokens"]}
        assert listed[token_id]["expires_at"] is not None and "token" not in listed[token_id]
        default = (await admin.post("/api/v1/tokens", json={"role": "bureau-analyst"})).json()
        assert default["days"] == 90  # DRGDIP_TOKEN_DAYS
    async with _anonymous(rt, token) as holder:
        assert (await holder.get("/api/v1/summary")).status_code == 200
        async with rt.engine.begin() as conn:  # thirty days later
            await conn.execute(update(repository.tokens).where(repository.tokens.c.token_id == token_id)
                               .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        r = await holder.get("/api/v1/summary")
        assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_EXPIRED"


async def test_repeated_failures_get_429_with_retry_after_and_are_logged_without_the_token(rt: Any) -> None:
    async with await api_client(rt, "bureau-analyst") as good:
        valid = good.headers["authorization"].removeprefix("Bearer ")
    wrong = valid[:-4] + "xxxx"  # the right id, a wrong secret
    with capture_logs() as logs:
        async with _anonymous(rt, wrong) as guesser:
            for _ in range(3):
                r = await guesser.get("/api/v1/summary")
                assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
            r = await guesser.get("/api/v1/summary")
            assert r.status_code == 429 and r.json()["error"]["code"] == "TOO_MANY_FAILED_AUTHENTICATIONS"
            assert 0 < int(r.headers["retry-after"]) <= 300
        async with _anonymous(rt, valid) as same_client:  # blocked whatever it sends
            assert (await same_client.get("/api/v1/summary")).status_code == 429
        async with _anonymous(rt) as no_token:
            assert (await no_token.get("/api/v1/summary")).status_code == 429
    refused = [e for e in logs if e["event"] == "authentication refused"]
    assert [e["reason"] for e in refused] == ["unknown"] * 3 + ["throttled"] * 3
    assert all(e["client"] == "127.0.0.1" for e in refused)
    assert refused[0]["token_id"] == valid.split("_")[1]
    text = repr(logs)
    assert valid.split("_", 2)[2][:10] not in text and wrong not in text


async def test_every_admin_action_is_audited_and_listed_for_the_bureau_admin(rt: Any, db_url: str) -> None:
    async with await api_client(rt) as admin, await api_client(rt, "bureau-analyst") as analyst:
        admin_id = admin.headers["authorization"].split("_")[1]
        assert (await analyst.post("/api/v1/tokens", json={"role": "bureau-analyst"})).status_code == 403
        made = (await admin.post("/api/v1/tokens", json={"role": "hospital", "hospital": "H1"})).json()
        assert (await admin.post(f"/api/v1/tokens/{made['token_id']}/revoke")).status_code == 200
        assert (await admin.post(f"/api/v1/tokens/{made['token_id']}/revoke")).status_code == 404
        bad = await admin.post("/api/v1/tokens", json={"role": "god"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "role"
        assert (await admin.post("/api/v1/policies", json=policy())).status_code == 201
        assert (await admin.post("/api/v1/policies", json=policy() | {"method": "guess"})).status_code == 422

        def cli(*args: str) -> Any:  # a command runs its own event loop: in a thread of its own
            return CliRunner().invoke(token_app, [*args, "--db", db_url])

        out = await asyncio.to_thread(cli, "create", "--role", "bureau-auditor", "--days", "7")
        assert out.exit_code == 0, out.output
        cli_id = out.output.split()[1]
        assert (await asyncio.to_thread(cli, "revoke", cli_id)).exit_code == 0

        entries = (await admin.get("/api/v1/audit")).json()["entries"]
        assert [(e["action"], e["subject"]) for e in entries] == [
            ("token.created", made["token_id"]), ("token.revoked", made["token_id"]),
            ("policy.imported", "test-2024 v1"), ("token.created", cli_id), ("token.revoked", cli_id)]
        assert entries[0]["actor"] == f"token:{admin_id}" and entries[0]["client"] == "127.0.0.1"
        assert entries[3]["actor"].startswith("cli:") and '"days":7' in entries[3]["detail"]

        mine = (await admin.get("/api/v1/audit", params={"actor": f"token:{admin_id}",
                                                         "action": "token.created"})).json()["entries"]
        assert [e["subject"] for e in mine] == [made["token_id"]]
        later = (await admin.get("/api/v1/audit", params={"from": entries[2]["at"]})).json()["entries"]
        assert [e["action"] for e in later][:1] == ["policy.imported"] and len(later) == 3
        assert (await admin.get("/api/v1/audit", params={"to": entries[0]["at"]})).json()["entries"] == []
        unknown = await admin.get("/api/v1/audit", params={"action": "nope"})
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "action"

        r = await admin.get("/api/v1/audit.csv", params={"action": "token.revoked"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["subject"] for row in rows] == [made["token_id"], cli_id]
        assert (await analyst.get("/api/v1/audit")).status_code == 403
        assert (await analyst.get("/api/v1/audit.csv")).status_code == 403
    assert len(await _audit(rt, "audit.exported")) == 1
    assert await count(rt.engine, "pricer_policy_audit") == 1


async def test_personal_data_is_masked_except_for_the_sender_and_the_audited_auditor(tmp_path: Path) -> None:
    rt = _runtime(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await rt.start()
    msg = orjson.loads((HSA / "4101-01.json").read_bytes())
    hospital = msg["fixmedins_code"]
    try:
        async with await api_client(rt, "hospital", hospital) as sender, \
                await api_client(rt, "bureau-analyst") as analyst, await api_client(rt) as admin, \
                await api_client(rt, "bureau-auditor") as auditor, \
                await api_client(rt, "hospital", "OTHER") as other:
            case_id = (await sender.post("/api/v1/hsa/4101", json=msg)).json()["output"]["setl_list_id"]
            path = f"/api/v1/settlement-lists/{case_id}/versions"

            own = (await sender.get(path)).json()
            assert own["personal_data"] == "clear" and orjson.loads(own["versions"][0]["raw"]) == msg
            for bureau in (analyst, admin):
                seen = (await bureau.get(path)).json()
                assert seen["personal_data"] == "masked"
                s = orjson.loads(seen["versions"][0]["raw"])["input"]["setlinfo"]
                assert (s["psn_name"], s["certno"]) == ("测***", "1101**********1234")
                assert s["psn_no"] == "P752********0549" and s["setl_id"] == msg["input"]["setlinfo"]["setl_id"]
                assert "测试患者" not in orjson.dumps(seen).decode()
            assert (await other.get(path)).status_code == 404
            assert await _audit(rt, "personal-data.read") == []

            clear = (await auditor.get(path)).json()
            assert clear["personal_data"] == "clear" and orjson.loads(clear["versions"][0]["raw"]) == msg
            [read] = await _audit(rt, "personal-data.read")
            assert (read["role"], read["subject"]) == ("bureau-auditor", case_id)
            assert read["actor"] == "token:" + auditor.headers["authorization"].split("_")[1]
            assert (await auditor.post("/api/v1/policies", json=policy())).status_code == 403
    finally:
        await rt.stop()


async def test_query_parameters_are_one_name_checked_and_flagged_cases_are_listed(tmp_path: Path) -> None:
    rt = _runtime(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await rt.start()
    try:
        async with await api_client(rt) as bureau, await api_client(rt, "hospital", "H1") as h1:
            base = simple_lists(1)[0] | {"psn_no": "P-readmit", "hospital_code": "H1"}
            for sl in (base | {"setl_id": "A", "admission_date": "2024-03-01", "discharge_date": "2024-03-05",
                               "los": 4},
                       base | {"setl_id": "B", "admission_date": "2024-03-15", "discharge_date": "2024-03-18",
                               "los": 3}):
                assert (await h1.post("/api/v1/settlement-lists", json=national_list(sl))).status_code == 202

            async def both_reviewed() -> bool:
                return (await bureau.get("/api/v1/summary")).json()["by_status"].get("reviewed") == 2

            await wait_until(both_reviewed, 60, "both lists reviewed")
            flagged = (await bureau.get("/api/v1/cases", params={"flagged": "true"})).json()["cases"]
            assert [(c["case_id"], c["flagged"]) for c in flagged] == [("H1-B", True)]
            clean = (await h1.get("/api/v1/cases", params={"flagged": "false"})).json()["cases"]
            assert [c["case_id"] for c in clean] == ["H1-A"]
            assert (await bureau.get("/api/v1/cases/H1-B")).json()["flagged"] is True

            by_hospital = (await bureau.get("/api/v1/cases", params={"hospital": "H1"})).json()["cases"]
            assert len(by_hospital) == 2
            assert (await bureau.get("/api/v1/cases", params={"hospital": "H2"})).json()["cases"] == []
            old = await bureau.get("/api/v1/cases", params={"hospital_code": "H2"})
            assert old.status_code == 422 and old.json()["error"] | {"message": ""} == {
                "code": "UNKNOWN_PARAMETER", "field": "hospital_code", "message": "",
                "details": old.json()["error"]["details"]}
            mine = (await h1.get("/api/v1/cases", params={"hospital": "H1"})).json()["cases"]
            assert len(mine) == 2

            for route in ("/api/v1/cases", "/api/v1/quality", "/api/v1/statements"):
                r = await h1.get(route, params={"hospital": "H2"})
                assert r.status_code == 403 and r.json()["error"]["field"] == "hospital", route
            assert (await h1.get("/api/v1/quality", params={"hospital": "H1"})).status_code == 200
            assert (await bureau.get("/api/v1/quality", params={"hospital": "H2"})).status_code == 200
            r = await bureau.get("/api/v1/quality", params={"hopsital": "H2"})
            assert r.status_code == 422 and r.json()["error"]["field"] == "hopsital"
    finally:
        await rt.stop()
