"""The gateway's routes: the one public API for hospitals and the bureau.

Submissions are passed to ingest, draft checks and DIP catalogues to the grouper, policies and
statements to the pricer, over HTTP (in-process in the embedded mode); queries are answered
from the gateway's own read model.

A route that forwards takes no `Conn`: the embedded SQLite engine has one pooled connection,
which the upstream route needs while the gateway awaits it. The caller is authenticated in its
own short read before (`Caller`); a route that takes both names `Caller` before `Conn`, since
dependencies are resolved in the order of the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import orjson
import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from services.gateway import repository
from services.gateway.config import GatewaySettings
from services.gateway.domain.auth import BUREAU_ROLES, Principal, bearer_token, hash_token
from services.gateway.domain.readmodel import ORDER
from shared.errors import Forbidden, NotFound, Unauthorized, Unavailable
from shared.observability import get_logger
from shared.web import Conn, Engine, stage_service

# Request bodies the gateway passes on unparsed, described for the OpenAPI document (and fuzzers).
LIST_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["setlinfo", "diseinfo"],
    "properties": {
        "setlinfo": {"type": "object", "description": "4101 setlinfo: national field names"},
        **{k: {"type": "array", "items": {"type": "object"}}
           for k in ("diseinfo", "oprninfo", "iteminfo", "payinfo", "icuinfo", "opspdiseinfo", "bldinfo")},
    },
}
HSA_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["infno", "fixmedins_code", "input"],
    "properties": {"infno": {"type": "string"}, "msgid": {"type": "string"},
                   "fixmedins_code": {"type": "string"}, "input": {"type": "object"}},
}
DIP_POLICY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["policy", "catalogue"],
    "properties": {"policy": {"type": "object"}, "catalogue": {"type": "object"}},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_log = get_logger("drgdip.gateway")


class Upstreams:
    """The services the gateway forwards to: one HTTP client each, made when first used."""

    def __init__(self, settings: GatewaySettings, http: Callable[[str], httpx.AsyncClient]) -> None:
        self.settings = settings
        self._http = http
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, name: str) -> httpx.AsyncClient:
        if name not in self._clients:
            s = self.settings
            self._clients[name] = self._http(
                {"ingest": s.ingest_url, "grouper": s.grouper_url, "pricer": s.pricer_url}[name])
        return self._clients[name]

    async def relay(self, name: str, method: str, path: str, content: bytes, headers: dict[str, str],
                    params: dict[str, str] | None = None) -> Response:
        """The upstream's answer, status and body as they are."""
        try:
            r = await self.client(name).request(method, path, content=content, headers=headers, params=params,
                                                timeout=None if path.endswith(":import") else 30)
        except httpx.HTTPError as e:
            raise Unavailable(f"{path} is unavailable: {type(e).__name__}", code="UPSTREAM_UNAVAILABLE") from None
        if r.status_code == 401:  # the upstream refused the gateway itself: not the caller's fault
            _log.error("upstream refused the service token: DRGDIP_SERVICE_TOKEN differs", upstream=name)
            raise Unavailable(f"{path} is unavailable: the service refused the gateway",
                              code="UPSTREAM_REFUSED")
        return Response(r.content, status_code=r.status_code, media_type="application/json")


async def caller(engine: Engine, authorization: str | None = Header(None)) -> Principal:
    """Who sends the request, from its bearer token (read on a connection of its own)."""
    token_hash = hash_token(bearer_token(authorization))
    async with engine.connect() as conn:
        who = await repository.active_principal(conn, token_hash)
    if who is None:
        raise Unauthorized("unknown or revoked token")
    return who


Caller = Annotated[Principal, Depends(caller)]
Upstream = Annotated[Upstreams, Depends(stage_service(repository.NAME))]

router = APIRouter(prefix="/api/v1", tags=["gateway"])


def _headers(who: Principal) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if cid := structlog.contextvars.get_contextvars().get("correlation_id"):
        headers["x-correlation-id"] = cid  # the same id follows the list through every stage
    if who.hospital_code:
        headers["x-drgdip-hospital"] = who.hospital_code  # ingest checks the list is its own
    return headers


def _audited(who: Principal) -> dict[str, str]:
    """Headers for a change the upstream audits with the token that made it."""
    return _headers(who) | {"x-drgdip-actor": f"token:{who.token_id}"}


async def _to_ingest(up: Upstreams, path: str, request: Request, who: Principal) -> Response:
    return await up.relay("ingest", request.method, path, await request.body(), _headers(who),
                          params=dict(request.query_params))


@router.post("/settlement-lists", status_code=202, openapi_extra=_body(LIST_SCHEMA))
async def submit_list(request: Request, up: Upstream, who: Caller) -> Response:
    """Submit one settlement list (the 4101 `input` node): 202 with the case id, or 4xx
    listing every problem with its field path and rule code."""
    who.require("hospital", "bureau-admin")
    return await _to_ingest(up, "/settlement-lists", request, who)


@router.post("/hsa/{infno}", openapi_extra=_body(HSA_SCHEMA))
async def national_interface(infno: str, request: Request, up: Upstream, who: Caller) -> Response:
    """The national interfaces 4101, 4101A and 4102, answered with infcode/err_msg/output."""
    who.require("hospital", "bureau-admin")
    return await _to_ingest(up, f"/hsa/{quote(infno, safe='')}", request, who)


@router.post("/settlement-lists:import")
async def import_lists(request: Request, up: Upstream, who: Caller) -> Response:
    """Bulk upload of history: JSON Lines of native lists, or CSV with `?format=csv`."""
    who.require("hospital", "bureau-admin")
    return await _to_ingest(up, "/settlement-lists:import", request, who)


@router.get("/policies")
async def list_policies(up: Upstream, who: Caller) -> Response:
    """Pricing policy versions (bureau roles)."""
    who.require(*BUREAU_ROLES)
    return await up.relay("pricer", "GET", "/policies", b"", _headers(who))


@router.post("/policies", status_code=201, openapi_extra=_body({"type": "object"}))
async def upload_policy(request: Request, up: Upstream, who: Caller) -> Response:
    """Import a pricing policy version (bureau-admin); every change is audited with who made it."""
    who.require("bureau-admin")
    return await up.relay("pricer", "POST", "/policies", await request.body(), _audited(who))


@router.post("/dip/catalogues", status_code=201, openapi_extra=_body({"type": "object"}))
async def register_dip_catalogue(request: Request, up: Upstream, who: Caller,
                                 region: str = Query(min_length=1, max_length=32),
                                 valid_from: str = Query(min_length=10, max_length=10),
                                 valid_to: str | None = Query(None, min_length=10, max_length=10)) -> Response:
    """Register a DIP catalogue (built by `drgdip dip build-catalogue`) for a region and period."""
    who.require("bureau-admin")
    return await up.relay("grouper", "POST", "/dip/catalogues", await request.body(), _headers(who),
                          params=dict(request.query_params))


@router.post("/dip/policies", status_code=201, openapi_extra=_body(DIP_POLICY_SCHEMA))
async def upload_dip_policy(request: Request, up: Upstream, who: Caller) -> Response:
    """Import a DIP policy version with its catalogue (bureau-admin; audited)."""
    who.require("bureau-admin")
    return await up.relay("pricer", "POST", "/dip/policies", await request.body(), _audited(who))


@router.get("/statements")
async def list_statements(request: Request, up: Upstream, who: Caller,
                          hospital: str = Query(min_length=1, max_length=32),
                          period: str | None = Query(None, max_length=16)) -> Response:
    """A hospital's settlement statements (pre-settlement, clearing), every version."""
    if not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own statements", field="hospital")
    return await up.relay("pricer", "GET", "/statements", b"", _headers(who),
                          params=dict(request.query_params))


@router.get("/settlement-lists/{case_id}/versions")
async def list_versions(case_id: str, request: Request, up: Upstream, who: Caller) -> Response:
    """Every version of a list, verbatim as received."""
    return await _to_ingest(up, f"/settlement-lists/{quote(case_id, safe='')}/versions", request, who)


@router.get("/quality")
async def quality(request: Request, up: Upstream, who: Caller) -> Response:
    """List quality per hospital and month: 时效性, 完整度, 合格率, 准确性."""
    return await _to_ingest(up, "/quality", request, who)


@router.post("/group")
async def check_draft(request: Request, up: Upstream, who: Caller) -> Response:
    """Group a draft case synchronously (nothing is stored)."""
    return await up.relay("grouper", "POST", "/group", await request.body(),
                          {"content-type": "application/json"})


@router.get("/cases/{case_id}")
async def get_case(case_id: str, who: Caller, conn: Conn) -> dict:
    row = await repository.find_case(conn, case_id)
    if row is None or not who.may_see(row.hospital_code):
        # another hospital's case is reported as missing: its existence is not shared
        raise NotFound(f"no case {case_id!r}", code="CASE_NOT_FOUND", field="case_id")
    events = await repository.case_timeline(conn, case_id)
    return {
        "case_id": case_id,
        "hospital_code": row.hospital_code,
        "list_version": row.list_version,
        "status": row.status,
        **{s: orjson.loads(raw) if (raw := getattr(row, s)) else None for s in ORDER},
        "timeline": events,
    }


@router.get("/cases")
async def list_cases(who: Caller, conn: Conn, hospital_code: str | None = None, status: str | None = None,
                     limit: int = Query(100, ge=1, le=1000),
                     offset: int = Query(0, ge=0, le=100_000_000)) -> dict:
    if not who.is_bureau:
        hospital_code = who.hospital_code
    return {"cases": await repository.list_cases(conn, hospital_code, status, limit, offset)}


@router.get("/summary")
async def summary(who: Caller, conn: Conn) -> dict:
    by_status = await repository.count_by_status(conn, None if who.is_bureau else who.hospital_code)
    return {"cases": sum(by_status.values()), "by_status": by_status}
