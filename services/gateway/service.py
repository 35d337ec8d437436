"""Gateway: the one public API for hospitals and the bureau, and its read model.

Submissions are passed to ingest and draft checks to the grouper over HTTP (in-process in
the embedded mode); queries are answered from the gateway's own read model, built from the
four stage events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.gateway import readmodel
from services.gateway.auth import BUREAU_ROLES, Principal, authenticate
from services.gateway.config import GatewaySettings
from shared.db import insert_many, update_many
from shared.errors import DomainError
from shared.events import TOPICS, Envelope
from shared.messaging import Outbox
from shared.runtime import Context, Stage

NAME = "gateway"
metadata = MetaData()
cases = Table(
    "gateway_cases", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("hospital_code", String(32), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("received", Text, nullable=True),
    Column("grouped", Text, nullable=True),
    Column("priced", Text, nullable=True),
    Column("reviewed", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
timeline = Table(
    "gateway_timeline", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("producer", String(32), nullable=False),
)
STAGES = readmodel.ORDER


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


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class CaseRef(BaseModel):
    """The case facts the read model files an event by (the rest of the payload is kept as is)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    hospital_code: str
    list_version: int = 1
    withdrawn: bool = False


def _stage_result(env: Envelope, facts: CaseRef) -> str:
    """What the read model keeps of an event (JSON): its payload without the carried facts."""
    result = {k: v for k, v in env.payload.items() if k != "facts"}
    if facts.withdrawn:
        result["withdrawn"] = True
    result["event_id"] = env.event_id
    result["occurred_at"] = env.occurred_at.isoformat()
    return orjson.dumps(result).decode()


def _stored_view(row: Any) -> dict[str, Any]:
    """A stored case row as a read-model view (stage results left as their JSON text)."""
    return {"list_version": row.list_version, "status": row.status,
            "withdrawn": row.status == "withdrawn", **{s: getattr(row, s) for s in STAGES}}


def _row_view(row: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"list_version": row.list_version, "status": row.status}
    for s in STAGES:
        raw = getattr(row, s)
        view[s] = orjson.loads(raw) if raw else None
    return view


async def _relay(client: httpx.AsyncClient, method: str, path: str, content: bytes,
                 headers: dict[str, str], params: dict[str, str] | None = None) -> Response:
    try:
        r = await client.request(method, path, content=content, headers=headers, params=params,
                                 timeout=None if path.endswith(":import") else 30)
    except httpx.HTTPError as e:
        raise DomainError(f"{path} is unavailable: {type(e).__name__}", code="UPSTREAM_UNAVAILABLE", status=503) from None
    return Response(r.content, status_code=r.status_code, media_type="application/json")


async def apply_events(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
    """Fold stage events into the read model: one timeline row each, one case row per case."""
    facts = [CaseRef.model_validate(env.payload.get("facts")) for env in envs]  # malformed: dead-lettered
    await insert_many(conn, timeline, [dict(
        case_id=env.case_id, event_id=env.event_id, event_type=env.event_type, list_version=f.list_version,
        occurred_at=env.occurred_at, producer=env.producer) for env, f in zip(envs, facts, strict=True)])
    stored = {row.case_id: row for row in (await conn.execute(
        select(cases).where(cases.c.case_id.in_({env.case_id for env in envs})))).all()}
    views: dict[str, dict[str, Any]] = {cid: _stored_view(row) for cid, row in stored.items()}
    hospitals: dict[str, str] = {}
    for env, f in zip(envs, facts, strict=True):
        view = readmodel.apply(views.get(env.case_id), env.event_type, f.list_version,
                               _stage_result(env, f), f.withdrawn)
        if view is not None:
            views[env.case_id] = view
            hospitals[env.case_id] = f.hospital_code
    now = datetime.now(UTC)
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for cid in hospitals:  # the cases an event changed
        view = views[cid]
        values = {s: view[s] for s in STAGES} | dict(
            case_id=cid, list_version=view["list_version"], status=view["status"], updated_at=now)
        if cid in stored:
            changed.append(values)
        else:
            new.append(values | {"hospital_code": hospitals[cid]})
    await insert_many(conn, cases, new)
    await update_many(conn, cases, "case_id", changed)
    return []


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, GatewaySettings) else GatewaySettings()
    outbox = Outbox(NAME, metadata)
    clients: dict[str, httpx.AsyncClient] = {}

    def client(name: str) -> httpx.AsyncClient:
        if name not in clients:
            clients[name] = ctx.http({"ingest": settings.ingest_url, "grouper": settings.grouper_url,
                                      "pricer": settings.pricer_url}[name])
        return clients[name]

    async def caller(authorization: str | None = Header(None)) -> Principal:
        return await authenticate(ctx.engine, authorization)

    router = APIRouter(prefix="/api/v1", tags=["gateway"])

    def forward_headers(who: Principal) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if cid := structlog.contextvars.get_contextvars().get("correlation_id"):
            headers["x-correlation-id"] = cid  # the same id follows the list through every stage
        if who.hospital_code:
            headers["x-drgdip-hospital"] = who.hospital_code  # ingest checks the list is its own
        return headers

    async def to_ingest(path: str, request: Request, who: Principal) -> Response:
        return await _relay(client("ingest"), request.method, path, await request.body(), forward_headers(who),
                            params=dict(request.query_params))

    @router.post("/settlement-lists", status_code=202, openapi_extra=_body(LIST_SCHEMA))
    async def submit_list(request: Request, who: Principal = Depends(caller)) -> Response:
        """Submit one settlement list (the 4101 `input` node): 202 with the case id, or 4xx
        listing every problem with its field path and rule code."""
        who.require("hospital", "bureau-admin")
        return await to_ingest("/settlement-lists", request, who)

    @router.post("/hsa/{infno}", openapi_extra=_body(HSA_SCHEMA))
    async def national_interface(infno: str, request: Request, who: Principal = Depends(caller)) -> Response:
        """The national interfaces 4101, 4101A and 4102, answered with infcode/err_msg/output."""
        who.require("hospital", "bureau-admin")
        return await to_ingest(f"/hsa/{quote(infno, safe='')}", request, who)

    @router.post("/settlement-lists:import")
    async def import_lists(request: Request, who: Principal = Depends(caller)) -> Response:
        """Bulk upload of history: JSON Lines of native lists, or CSV with `?format=csv`."""
        who.require("hospital", "bureau-admin")
        return await to_ingest("/settlement-lists:import", request, who)

    @router.get("/policies")
    async def list_policies(request: Request, who: Principal = Depends(caller)) -> Response:
        """Pricing policy versions (bureau roles)."""
        who.require(*BUREAU_ROLES)
        return await _relay(client("pricer"), "GET", "/policies", b"", forward_headers(who))

    @router.post("/policies", status_code=201, openapi_extra=_body({"type": "object"}))
    async def upload_policy(request: Request, who: Principal = Depends(caller)) -> Response:
        """Import a pricing policy version (bureau-admin); every change is audited with who made it."""
        who.require("bureau-admin")
        headers = forward_headers(who) | {"x-drgdip-actor": f"token:{who.token_id}"}
        return await _relay(client("pricer"), "POST", "/policies", await request.body(), headers)

    @router.post("/dip/catalogues", status_code=201, openapi_extra=_body({"type": "object"}))
    async def register_dip_catalogue(request: Request, region: str = Query(min_length=1, max_length=32),
                                     valid_from: str = Query(min_length=10, max_length=10),
                                     valid_to: str | None = Query(None, min_length=10, max_length=10),
                                     who: Principal = Depends(caller)) -> Response:
        """Register a DIP catalogue (built by `drgdip dip build-catalogue`) for a region and period."""
        who.require("bureau-admin")
        return await _relay(client("grouper"), "POST", "/dip/catalogues", await request.body(),
                            forward_headers(who), params=dict(request.query_params))

    @router.post("/dip/policies", status_code=201, openapi_extra=_body(
        {"type": "object", "required": ["policy", "catalogue"],
         "properties": {"policy": {"type": "object"}, "catalogue": {"type": "object"}}}))
    async def upload_dip_policy(request: Request, who: Principal = Depends(caller)) -> Response:
        """Import a DIP policy version with its catalogue (bureau-admin; audited)."""
        who.require("bureau-admin")
        headers = forward_headers(who) | {"x-drgdip-actor": f"token:{who.token_id}"}
        return await _relay(client("pricer"), "POST", "/dip/policies", await request.body(), headers)

    @router.get("/statements")
    async def list_statements(request: Request, hospital: str = Query(min_length=1, max_length=32),
                              period: str | None = Query(None, max_length=16),
                              who: Principal = Depends(caller)) -> Response:
        """A hospital's settlement statements (pre-settlement, clearing), every version."""
        if not who.may_see(hospital):
            raise DomainError("a hospital sees only its own statements", code="FORBIDDEN", status=403, field="hospital")
        return await _relay(client("pricer"), "GET", "/statements", b"", forward_headers(who),
                            params=dict(request.query_params))

    @router.get("/settlement-lists/{case_id}/versions")
    async def list_versions(case_id: str, request: Request, who: Principal = Depends(caller)) -> Response:
        """Every version of a list, verbatim as received."""
        return await to_ingest(f"/settlement-lists/{quote(case_id, safe='')}/versions", request, who)

    @router.get("/quality")
    async def quality(request: Request, who: Principal = Depends(caller)) -> Response:
        """List quality per hospital and month: 时效性, 完整度, 合格率, 准确性."""
        return await to_ingest("/quality", request, who)

    @router.post("/group")
    async def check_draft(request: Request, who: Principal = Depends(caller)) -> Response:
        """Group a draft case synchronously (nothing is stored)."""
        return await _relay(client("grouper"), "POST", "/group", await request.body(),
                            {"content-type": "application/json"})

    @router.get("/cases/{case_id}")
    async def get_case(case_id: str, who: Principal = Depends(caller)) -> dict:
        async with ctx.engine.connect() as conn:
            row = (await conn.execute(select(cases).where(cases.c.case_id == case_id))).first()
            if row is None or not who.may_see(row.hospital_code):
                # another hospital's case is reported as missing: its existence is not shared
                raise DomainError(f"no case {case_id!r}", code="CASE_NOT_FOUND", status=404, field="case_id")
            events = (await conn.execute(
                select(timeline).where(timeline.c.case_id == case_id).order_by(timeline.c.occurred_at)
            )).all()
        view = _row_view(row)
        return {
            "case_id": case_id,
            "hospital_code": row.hospital_code,
            **view,
            "timeline": [{"event_type": e.event_type, "event_id": e.event_id,
                          "list_version": e.list_version, "producer": e.producer,
                          "occurred_at": e.occurred_at.isoformat()} for e in events],
        }

    @router.get("/cases")
    async def list_cases(hospital_code: str | None = None, status: str | None = None,
                         limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=100_000_000),
                         who: Principal = Depends(caller)) -> dict:
        if not who.is_bureau:
            hospital_code = who.hospital_code
        q = select(cases.c.case_id, cases.c.hospital_code, cases.c.status, cases.c.list_version)
        if hospital_code:
            q = q.where(cases.c.hospital_code == hospital_code)
        if status:
            q = q.where(cases.c.status == status)
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(q.order_by(cases.c.case_id).limit(limit).offset(offset))).all()
        return {"cases": [dict(r._mapping) for r in rows]}

    @router.get("/summary")
    async def summary(who: Principal = Depends(caller)) -> dict:
        q = select(cases.c.status, func.count()).group_by(cases.c.status)
        if not who.is_bureau:
            q = q.where(cases.c.hospital_code == who.hospital_code)
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        by_status = {r[0]: r[1] for r in rows}
        return {"cases": sum(by_status.values()), "by_status": by_status}

    return Stage(NAME, metadata, outbox, router=router, subscriptions=[(TOPICS, apply_events)])
