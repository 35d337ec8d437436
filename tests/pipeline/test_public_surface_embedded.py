"""Embedded mode: only the gateway's API and the ops routes are on the served app; the stages'
own routes answer nobody there (with or without a token), and the gateway still reaches them in
process. /readyz tells the truth while bulk imports hold the one pooled SQLite connection."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute
from helpers import SHARED, api_client, case_id, count, internal_client, lists, policy, wait_until
from sqlalchemy import text

from drgdip.stages import build_runtime

OPS = {"/livez", "/readyz", "/metrics"}
# the routes the issue reached without a token (a stage may add more; none may be public)
KNOWN_INTERNAL = {
    ("POST", "/settlement-lists"), ("POST", "/hsa/{infno}"), ("POST", "/settlement-lists:import"),
    ("GET", "/settlement-lists/{case_id}/versions"), ("GET", "/quality"), ("GET", "/lists/count"),
    ("POST", "/group"), ("POST", "/dip/catalogues"), ("GET", "/schemes"),
    ("POST", "/policies"), ("POST", "/dip/policies"), ("GET", "/policies"), ("GET", "/statements"),
}


@pytest.fixture
async def runtime(tmp_path: Path):
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy()))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'drgdip.db'}",
                       schemes_dir=SHARED / "schemes", policy_file=policy_file, log_level="WARNING")
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


def internal_routes(rt) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every route of the stages' own routers (all but the gateway's)."""
    return sorted((m, s.router.prefix + r.path) for s in rt.stages if not s.public and s.router
                  for r in s.router.routes if isinstance(r, APIRoute) for m in r.methods)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "X1", path)


async def test_no_internal_route_answers_on_the_public_app(runtime) -> None:
    routes = internal_routes(runtime)
    assert KNOWN_INTERNAL <= set(routes)
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://test")
    admin = await api_client(runtime)  # not even a bureau-admin token reaches them
    try:
        for method, path in routes:
            for client in (anonymous, admin):
                r = await client.request(method, concrete(path), content=b"{}",
                                         headers={"content-type": "application/json"})
                assert r.status_code == 404, (method, path, r.status_code, r.text)
                assert r.json()["error"]["code"] == "NOT_FOUND"
        assert await count(runtime.engine, "ingest_lists") == 0
        assert await count(runtime.engine, "pricer_policy_versions") == 1  # the start-up file only
    finally:
        await anonymous.aclose()
        await admin.aclose()


async def test_the_api_document_shows_the_public_api_only(runtime) -> None:
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://test")
    try:
        paths = set((await anonymous.get("/openapi.json")).json()["paths"])
        assert paths and all(p.startswith("/api/v1/") or p in OPS for p in paths), sorted(paths)
        assert {"/api/v1/settlement-lists", "/api/v1/policies"} <= paths
        # the internal app has no API document at all
        async with internal_client(runtime) as internal:
            assert (await internal.get("/openapi.json")).status_code == 404
    finally:
        await anonymous.aclose()


async def test_the_gateway_reaches_the_stages_in_process(runtime) -> None:
    [sl] = lists(1)
    async with await api_client(runtime) as admin:
        r = await admin.post("/api/v1/settlement-lists", json=sl)
        assert r.status_code == 202, r.text
        assert (await admin.get(f"/api/v1/settlement-lists/{case_id(sl)}/versions")).status_code == 200
        policies = (await admin.get("/api/v1/policies")).json()["policies"]
        assert [p["version"] for p in policies] == [1]

        async def listed() -> bool:
            return (await admin.get(f"/api/v1/cases/{case_id(sl)}")).status_code == 200

        await wait_until(listed, 60, "the case in the read model")


def jsonl(n: int, tag: str) -> bytes:
    """`n` distinct valid lists as JSON Lines (one valid list, new settlement ids)."""
    [base] = lists(1)
    out = []
    for i in range(n):
        setl = dict(base["setlinfo"], setl_id=f"R{tag}{i:06d}", mdtrt_id=f"M{tag}{i:06d}")
        out.append(orjson.dumps(base | {"setlinfo": setl}))
    return b"\n".join(out) + b"\n"


async def test_readiness_stays_true_during_concurrent_bulk_imports(runtime) -> None:
    imports, per_import = 6, 1500
    bodies = [jsonl(per_import, str(k)) for k in range(imports)]
    async with await api_client(runtime) as admin:
        async def bulk(body: bytes) -> httpx.Response:
            return await admin.post("/api/v1/settlement-lists:import", content=body, timeout=None)

        tasks = [asyncio.create_task(bulk(b)) for b in bodies]
        probes: list[tuple[int, dict, bool]] = []
        while not all(t.done() for t in tasks):
            r = await admin.get("/readyz")
            probes.append((r.status_code, r.json(), any(not t.done() for t in tasks)))
            await asyncio.sleep(0.05)
        for t in tasks:
            assert (await t).status_code == 200, (await t).text
    during = [p for p in probes if p[2]]
    assert during, "no probe ran while the imports did"
    assert all(status == 200 and body["database"] is True for status, body, _ in during), [
        p for p in during if p[0] != 200][:3]
    assert await count(runtime.engine, "ingest_lists") == imports * per_import


async def test_readiness_does_not_queue_behind_the_stages_connection(runtime) -> None:
    """The stages' one pooled SQLite connection, held in a write transaction (as a large import
    chunk or a stage's batch holds it): the probe has its own and still sees the database."""
    async with await api_client(runtime) as admin, runtime.engine.begin() as held:
        await held.execute(text("SELECT 1"))
        r = await admin.get("/readyz")
        assert r.status_code == 200 and r.json()["database"] is True, r.text


async def test_readiness_reports_a_database_that_is_gone(tmp_path: Path) -> None:
    rt = build_runtime("review", db=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", log_level="WARNING")
    await rt.start()
    try:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url="http://test")
        async with client:
            assert (await client.get("/readyz")).json()["database"] is True
            for f in tmp_path.glob("r.db*"):
                f.unlink()
            r = await client.get("/readyz")
            assert r.status_code == 503 and r.json()["database"] is False
    finally:
        await rt.stop()


async def test_a_large_import_lets_a_cheap_request_through_before_it_finishes(runtime) -> None:
    """The event loop is never held for a whole import: /livez answers while it runs."""
    body = jsonl(3000, "L")
    async with await api_client(runtime) as admin:
        task = asyncio.create_task(admin.post("/api/v1/settlement-lists:import", content=body, timeout=None))

        async def storing() -> bool:
            return await count(runtime.engine, "ingest_raw") > 0 or task.done()

        await wait_until(storing, 60, "the import to start storing")
        assert not task.done(), "the import finished before anything else could run"
        assert (await admin.get("/livez")).status_code == 200
        assert not task.done(), "/livez waited for the whole import"
        assert (await task).json()["accepted"] == 3000
