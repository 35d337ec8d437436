"""Distributed mode: a service other than the gateway answers only the service credential
(`DRGDIP_SERVICE_TOKEN` in `x-drgdip-service-token`); probes and metrics stay open. Each service
runs as its own OS process (`drgdip serve <service>`), here on SQLite and the in-process bus."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from helpers import SHARED
from processes import ServiceProcess

from shared.web import SERVICE_TOKEN_HEADER

TOKEN = "a-private-service-token-for-this-test"


@pytest.fixture
def started(tmp_path: Path):
    procs: list[ServiceProcess] = []

    def start(service: str, **env: str) -> ServiceProcess:
        p = ServiceProcess(service, {"DRGDIP_BUS": "memory://", "DRGDIP_SERVICE_TOKEN": TOKEN,
                                     "DRGDIP_DB": f"sqlite+aiosqlite:///{tmp_path / service}.db",
                                     "DRGDIP_SCHEMES_DIR": str(SHARED / "schemes"), **env}, tmp_path)
        procs.append(p.start())
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.mark.parametrize(("service", "path"), [("ingest", "/lists/count"), ("pricer", "/policies"),
                                                ("grouper", "/schemes")])
def test_an_internal_service_answers_only_the_service_token(started, service: str, path: str) -> None:
    p = started(service)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        for headers in ({}, {SERVICE_TOKEN_HEADER: "wrong"}, {SERVICE_TOKEN_HEADER: TOKEN[:-1]},
                        {"authorization": f"Bearer {TOKEN}"}):
            r = c.get(path, headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.json()["error"]["code"] == "SERVICE_TOKEN_INVALID"
        # nothing is told without it: not the routes, not the API document, not a 404
        for method, other in (("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no-such-route"),
                              ("POST", "/settlement-lists"), ("POST", "/policies")):
            assert c.request(method, other, content=b"{}").status_code == 401, other
        assert c.get(path, headers={SERVICE_TOKEN_HEADER: TOKEN}).status_code == 200
        for ops in ("/livez", "/readyz", "/metrics"):
            assert c.get(ops).status_code == 200, ops


def test_the_gateway_sends_the_token_and_its_own_api_needs_none(started) -> None:
    ingest = started("ingest")
    gateway = started("gateway", DRGDIP_INGEST_URL=ingest.url, DRGDIP_GROUPER_URL=ingest.url,
                      DRGDIP_PRICER_URL=ingest.url)
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        # the gateway's public routes: its own bearer tokens, no service token asked
        r = c.get("/api/v1/summary")
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        assert set(c.get("/openapi.json").json()["paths"]) >= {"/api/v1/settlement-lists"}


def test_a_gateway_with_another_token_is_refused_by_the_service(started, tmp_path: Path) -> None:
    import asyncio

    from helpers import bearer, lists

    from shared.db import create_engine

    ingest = started("ingest")
    gateway = started("gateway", DRGDIP_SERVICE_TOKEN="not-the-services-token-at-all",
                      DRGDIP_INGEST_URL=ingest.url)

    async def token() -> dict[str, str]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway'}.db")
        try:
            return await bearer(engine)
        finally:
            await engine.dispose()

    auth = asyncio.run(token())
    with httpx.Client(base_url=gateway.url, timeout=10, headers=auth) as c:
        r = c.post("/api/v1/settlement-lists", json=lists(1)[0])
        # the gateway's misconfiguration, not the caller's token: 503, and nothing reached ingest
        assert r.status_code == 503 and r.json()["error"]["code"] == "UPSTREAM_REFUSED"
    with httpx.Client(base_url=ingest.url, timeout=10) as c:
        assert c.get("/lists/count", headers={SERVICE_TOKEN_HEADER: TOKEN}).json() == {"lists": 0}
