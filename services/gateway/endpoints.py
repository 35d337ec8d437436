"""The gateway's routes: the one public API for hospitals and the bureau.

Submissions are passed to ingest, draft checks and DIP catalogues to the grouper, policies,
statements and negotiation rounds to the pricer, monitoring flags with their workflow,
special-case review and the feedback channel to review,
over HTTP (in-process in the embedded mode); queries are answered from the gateway's own read
model. Tokens and the audit of administrative actions are the
gateway's own (bureau-admin).

A route that forwards takes no `Conn`: the embedded SQLite engine has one pooled connection,
which the upstream route needs while the gateway awaits it. The caller is authenticated in its
own short read before (`Caller`), and an audited change is recorded in a short transaction of its
own once the upstream accepted it; a route that takes both names `Caller` before `Conn`, since
dependencies are resolved in the order of the parameters.

Query parameters: a hospital is always `hospital`; a parameter a route does not know is refused
(422 `UNKNOWN_PARAMETER`) rather than silently ignored.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import orjson
import structlog
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import repository
from services.gateway.config import GatewaySettings
from services.gateway.domain import audit
from services.gateway.domain import indicators as ind
from services.gateway.domain.auth import (
    BUREAU_ROLES,
    HOSPITAL,
    SAFE_METHODS,
    SESSION_COOKIE,
    Principal,
    TokenExpired,
    TooManyFailures,
    bearer_token,
    hash_token,
    same_origin,
    token_id_of,
)
from services.gateway.domain.masking import mask_document
from services.gateway.domain.readmodel import ORDER
from services.gateway.domain.throttle import FailureThrottle
from shared.csvexport import to_csv
from shared.errors import DomainError, Forbidden, Invalid, NotFound, Unauthorized, Unavailable
from shared.observability import get_logger
from shared.web import Conn, Engine, read_body, stage_service
from shared.xlsxexport import to_xlsx

log = get_logger("drgdip.gateway")

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
SCHEME_REGISTRATION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["scheme", "region", "valid_from"], "additionalProperties": False,
    "properties": {"scheme": {"type": "string", "description": "id of a scheme the grouper has loaded"},
                   "region": {"type": "string"}, "valid_from": {"type": "string", "format": "date"},
                   "valid_to": {"type": ["string", "null"], "format": "date"}},
}
SETTLEMENT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["policy_id", "period"], "additionalProperties": False,
    "properties": {"policy_id": {"type": "string"},
                   "period": {"type": "string", "description": "YYYY-MM: pre-settlement; YYYY: annual clearing"},
                   "budget": {"type": ["string", "null"], "description": "the year's budget, yuan; a year only"}},
}
REPRICE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["region"], "additionalProperties": False,
    "properties": {"region": {"type": "string"}, "from": {"type": ["string", "null"], "format": "date"},
                   "to": {"type": ["string", "null"], "format": "date"}},
}
DIP_POLICY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["policy", "catalogue"],
    "properties": {"policy": {"type": "object"}, "catalogue": {"type": "object"}},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# upstream routes that take as long as the data they go through: no timeout
LONG_RUNNING = (":import", ":reprice", "/settlements", ":check", ":build")


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
                {"ingest": s.ingest_url, "grouper": s.grouper_url, "pricer": s.pricer_url,
                 "review": s.review_url}[name])
        return self._clients[name]

    async def relay(self, name: str, method: str, path: str, content: bytes | AsyncIterator[bytes],
                    headers: dict[str, str],
                    params: dict[str, str] | None = None) -> Response:
        """The upstream's answer, status and body as they are."""
        try:
            r = await self.client(name).request(method, path, content=content, headers=headers, params=params,
                                                timeout=None if path.endswith(LONG_RUNNING) else 30)
        except httpx.HTTPError as e:
            raise Unavailable(f"{path} is unavailable: {type(e).__name__}", code="UPSTREAM_UNAVAILABLE") from None
        if r.status_code == 401:  # the upstream refused the gateway itself: not the caller's fault
            log.error("upstream refused the service token: DRGDIP_SERVICE_TOKEN differs", upstream=name)
            raise Unavailable(f"{path} is unavailable: the service refused the gateway",
                              code="UPSTREAM_REFUSED")
        return Response(r.content, status_code=r.status_code,
                        media_type=r.headers.get("content-type", "application/json"))


@dataclass(frozen=True)
class Gateway:
    """The gateway's stage object: its settings, the upstream services and the per-process
    count of refused authentications per client."""

    settings: GatewaySettings
    upstreams: Upstreams
    throttle: FailureThrottle
    scheme_groups: dict[str, int] = field(default_factory=dict)  # 病组覆盖率's denominators, once known

    @classmethod
    def of(cls, settings: GatewaySettings, http: Callable[[str], httpx.AsyncClient]) -> Gateway:
        return cls(settings, Upstreams(settings, http),
                   FailureThrottle(settings.auth_max_failures, settings.auth_failure_window_seconds))


The = Annotated[Gateway, Depends(stage_service(repository.NAME))]


def _upstreams(gw: The) -> Upstreams:
    return gw.upstreams


Upstream = Annotated[Upstreams, Depends(_upstreams)]


def client_of(request: Request) -> str:
    """The caller's address (the peer of the connection; a proxy in front must pass it on)."""
    return request.client.host if request.client else "unknown"


async def caller(request: Request, engine: Engine, gw: The, authorization: str | None = Header(None)) -> Principal:
    """Who sends the request, from its bearer token or, without one, the dashboard's session
    cookie (read on a connection of its own).

    A client refused `auth_max_failures` times within the window gets 429 with `Retry-After`
    before its token is even looked at. Every refusal is logged with the client and the reason,
    never with the token (its id at most). A change the session cookie authenticates must come
    from the dashboard's own origin (403 `CROSS_ORIGIN`)."""
    client, now = not_throttled(gw, request)
    session = request.cookies.get(SESSION_COOKIE) if authorization is None else None
    if session:
        if request.method not in SAFE_METHODS:
            require_same_origin(request)
        async with engine.connect() as conn:
            who, why = await repository.session_holder(conn, hash_token(session))
        if who is None:
            gw.throttle.failed(client, now)
            log.warning("authentication refused", client=client, reason=f"session {why}", path=request.url.path)
            raise Unauthorized("the dashboard sign-in has ended: sign in again", code="SESSION_ENDED")
        return who
    token = ""
    try:
        token = bearer_token(authorization)
        async with engine.connect() as conn:
            who, why = await repository.token_holder(conn, hash_token(token))
    except Unauthorized:
        who, why = None, "missing"
    if who is None:
        gw.throttle.failed(client, now)
        log.warning("authentication refused", client=client, reason=why, token_id=token_id_of(token),
                    path=request.url.path)
        if why == "expired":
            raise TokenExpired("this token has expired; ask the bureau for a new one")
        raise Unauthorized("send an Authorization: Bearer <token> header" if why == "missing"
                           else "unknown or revoked token")
    return who


def not_throttled(gw: Gateway, request: Request) -> tuple[str, float]:
    """The client and the time, once the client is known not to be refused for too many failures."""
    client, now = client_of(request), time.monotonic()
    if (wait := gw.throttle.retry_after(client, now)) is not None:
        log.warning("authentication refused", client=client, reason="throttled", path=request.url.path)
        raise TooManyFailures(wait)
    return client, now


def require_same_origin(request: Request) -> None:
    """Refuse a browser request that changes something from another site's page (the session
    cookie would be sent with it)."""
    if not same_origin(request.headers.get("origin"), request.url.scheme, request.headers.get("host")):
        raise Forbidden("a change signed in with the dashboard must come from the dashboard's own page",
                        code="CROSS_ORIGIN", field="origin")


Caller = Annotated[Principal, Depends(caller)]

router = APIRouter(prefix="/api/v1", tags=["gateway"])


def _only(request: Request, *known: str) -> None:
    """Refuse a query parameter the route does not know (it would otherwise be ignored)."""
    for name in request.query_params:
        if name not in known:
            raise Invalid(f"unknown query parameter {name!r}; this route takes: {', '.join(known) or 'none'}",
                          code="UNKNOWN_PARAMETER", field=name)


def _headers(who: Principal) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if cid := structlog.contextvars.get_contextvars().get("correlation_id"):
        headers["x-correlation-id"] = cid  # the same id follows the list through every stage
    if who.hospital_code:
        headers["x-drgdip-hospital"] = who.hospital_code  # ingest checks the list is its own
    return headers


def _audited(who: Principal) -> dict[str, str]:
    """Headers for a change the upstream audits with the token that made it."""
    return _headers(who) | {"x-drgdip-actor": who.actor}


async def _record(engine: Any, request: Request, who: Principal, action: str, subject: str | None,
                  detail: Any = None) -> None:
    """Append an audit row in a transaction of its own (a forwarding route holds no connection)."""
    async with engine.begin() as conn:
        await _record_on(conn, request, who, action, subject, detail)


async def _record_on(conn: Any, request: Request, who: Principal, action: str, subject: str | None,
                     detail: Any = None) -> None:
    text = detail if detail is None or isinstance(detail, str) else orjson.dumps(detail).decode()
    await repository.record(conn, action, actor=who.actor, role=who.role, token_id=who.token_id,
                            subject=subject, detail=text, client=client_of(request))


async def _admin_change(request: Request, up: Upstreams, who: Principal, engine: Any, upstream: str,
                        path: str, action: str, *, headers: dict[str, str] | None = None,
                        params: dict[str, str] | None = None) -> Response:
    """Forward a bureau-admin change upstream and, once it succeeded, append its audit row (its
    subject and detail from the upstream's answer, as `drgdip`'s commands record theirs)."""
    who.require("bureau-admin")
    r = await up.relay(upstream, "POST", path, await _read(request, up), headers or _headers(who),
                       params=params)
    if r.status_code < 300:
        a = _answer(r)
        await _record(engine, request, who, action, audit.change_subject(action, a), audit.change_detail(action, a))
    return r


def _answer(response: Response) -> dict[str, Any]:
    """An upstream's JSON answer (an object; anything else as empty)."""
    try:
        doc = orjson.loads(bytes(response.body))
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _json_object(raw: bytes) -> dict[str, Any]:
    """A request body read as a JSON object (anything else as empty: the upstream refuses it)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


async def _to_ingest(up: Upstreams, path: str, request: Request, who: Principal) -> Response:
    return await up.relay("ingest", request.method, path, await _read(request, up), _headers(who),
                          params=dict(request.query_params))


async def _read(request: Request, up: Upstreams) -> bytes:
    return await read_body(request, up.settings.max_body_bytes)


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
    # streamed through, never held whole: ingest bounds and checks each line as it arrives
    return await up.relay("ingest", "POST", "/settlement-lists:import", request.stream(), _headers(who),
                          params=dict(request.query_params))


@router.get("/imports/{job_id}")
async def import_job(job_id: str, request: Request, up: Upstream, who: Caller) -> Response:
    """An import job and the lines it kept (the hospital that sent it, or bureau-admin): what to
    send again after an interrupted upload."""
    who.require("hospital", "bureau-admin")
    _only(request, "offset", "limit")
    return await up.relay("ingest", "GET", f"/imports/{quote(job_id, safe='')}", b"", _headers(who),
                          params=dict(request.query_params))


@router.get("/policies")
async def list_policies(request: Request, up: Upstream, who: Caller) -> Response:
    """Pricing policy versions (bureau roles)."""
    who.require(*BUREAU_ROLES)
    _only(request)
    return await up.relay("pricer", "GET", "/policies", b"", _headers(who))


@router.post("/policies", status_code=201, openapi_extra=_body({"type": "object"}))
async def upload_policy(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Import a pricing policy version (bureau-admin); every change is audited with who made it."""
    return await _admin_change(request, up, who, engine, "pricer", "/policies", audit.POLICY_IMPORTED,
                               headers=_audited(who))


@router.post("/dip/catalogues", status_code=201, openapi_extra=_body({"type": "object"}))
async def register_dip_catalogue(request: Request, up: Upstream, who: Caller, engine: Engine,
                                 region: str = Query(min_length=1, max_length=32),
                                 valid_from: str = Query(min_length=10, max_length=10),
                                 valid_to: str | None = Query(None, min_length=10, max_length=10)) -> Response:
    """Register a DIP catalogue (built by `drgdip dip build-catalogue`) for a region and period (audited)."""
    return await _admin_change(request, up, who, engine, "grouper", "/dip/catalogues",
                               audit.DIP_CATALOGUE_REGISTERED, params=dict(request.query_params))


@router.post("/dip/policies", status_code=201, openapi_extra=_body(DIP_POLICY_SCHEMA))
async def upload_dip_policy(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Import a DIP policy version with its catalogue (bureau-admin; audited)."""
    return await _admin_change(request, up, who, engine, "pricer", "/dip/policies", audit.DIP_POLICY_IMPORTED,
                               headers=_audited(who))


@router.post("/schemes/registrations", status_code=201, openapi_extra=_body(SCHEME_REGISTRATION_SCHEMA))
async def register_scheme(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Register a scheme the grouper has loaded for a region and period (bureau-admin; audited);
    in force with the grouper's next batch."""
    _only(request)
    return await _admin_change(request, up, who, engine, "grouper", "/schemes/registrations",
                               audit.SCHEME_REGISTERED)


CHANGESET_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["id", "name", "base", "region", "author", "operations"],
    "description": "a local scheme's change set over a national scheme (docs/scheme-changesets.md)",
    "properties": {"id": {"type": "string"}, "base": {"type": "string"}, "region": {"type": "string"},
                   "operations": {"type": "array", "items": {"type": "object"}}},
}


@router.post("/changesets:check", openapi_extra=_body(CHANGESET_SCHEMA))
async def check_change_set(request: Request, up: Upstream, who: Caller,
                           hospital: str | None = Query(None, min_length=1, max_length=32)) -> Response:
    """Check a change set against its base scheme (bureau roles): 422 `INVALID_CHANGESET` naming
    each operation and field, or the groups added, split, merged and renamed; with `hospital`, how
    that hospital's own cases move (old group → new group, cases)."""
    who.require(*BUREAU_ROLES)
    _only(request, "hospital")
    return await up.relay("grouper", "POST", "/changesets:check", await _read(request, up), _headers(who),
                          params={"hospital": hospital} if hospital else None)


@router.post("/changesets:build", status_code=201, openapi_extra=_body(CHANGESET_SCHEMA))
async def build_change_set(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Build the local scheme of a change set over its base in the grouper, load it and, with
    `valid_from` (and `region`, default the change set's; `valid_to`), register it (bureau-admin;
    audited). A change set negotiated with the hospitals is built by its adoption instead."""
    _only(request, "region", "valid_from", "valid_to")
    return await _admin_change(request, up, who, engine, "grouper", "/changesets:build", audit.SCHEME_BUILT,
                               params=dict(request.query_params))


@router.post("/settlements", status_code=201, openapi_extra=_body(SETTLEMENT_SCHEMA))
async def run_settlement(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Pre-settle a month or clear a year (bureau-admin; audited): a new statement version per
    hospital, answered with the run's figures and its statements."""
    _only(request)
    return await _admin_change(request, up, who, engine, "pricer", "/settlements", audit.SETTLEMENT_RUN)


@router.post("/reprice", openapi_extra=_body(REPRICE_SCHEMA))
async def reprice(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Re-price a region's stored cases under the policies in force now (bureau-admin; audited):
    the counts of cases re-priced, unchanged and not re-priceable."""
    _only(request)
    return await _admin_change(request, up, who, engine, "pricer", "/cases:reprice", audit.REPRICED)


@router.get("/statements")
async def list_statements(request: Request, up: Upstream, who: Caller,
                          hospital: str = Query(min_length=1, max_length=32),
                          period: str | None = Query(None, max_length=16)) -> Response:
    """A hospital's settlement statements (pre-settlement, clearing), every version."""
    _only(request, "hospital", "period")
    if not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own statements", field="hospital")
    return await up.relay("pricer", "GET", "/statements", b"", _headers(who),
                          params=dict(request.query_params))


@router.get("/settlement-lists/{case_id}/versions")
async def list_versions(case_id: str, request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Every version of a list as received. Names and ID numbers are masked inside `raw`
    except for the hospital that sent it and the bureau auditor (whose reads are audited)."""
    _only(request)
    r = await _to_ingest(up, f"/settlement-lists/{quote(case_id, safe='')}/versions", request, who)
    if r.status_code != 200:
        return r
    answer = _answer(r)
    if who.reads_personal_data:
        if who.role != HOSPITAL:
            await _record(engine, request, who, audit.PERSONAL_DATA_READ, case_id,
                          {"route": "settlement-list versions", "versions": len(answer.get("versions") or [])})
        return Response(orjson.dumps(answer | {"personal_data": "clear"}), media_type="application/json")
    for v in answer.get("versions") or []:
        v["raw"] = _masked_raw(v.get("raw"))
    return Response(orjson.dumps(answer | {"personal_data": "masked"}), media_type="application/json")


def _masked_raw(raw: Any) -> str | None:
    """A verbatim list with its personal fields masked; None when it is not JSON (then nothing of
    it can be shown safely)."""
    if not isinstance(raw, str):
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return orjson.dumps(mask_document(doc)).decode()


@router.get("/quality")
async def quality(request: Request, up: Upstream, who: Caller,
                  month: str | None = Query(None, max_length=7),
                  hospital: str | None = Query(None, min_length=1, max_length=32)) -> Response:
    """List quality per hospital and month: 时效性, 完整度, 合格率, 准确性."""
    _only(request, "month", "hospital")
    if hospital is not None and not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own quality scores", field="hospital")
    return await _to_ingest(up, "/quality", request, who)


@router.post("/group")
async def check_draft(request: Request, up: Upstream, who: Caller) -> Response:
    """Group a draft case synchronously (nothing is stored)."""
    return await up.relay("grouper", "POST", "/group", await _read(request, up),
                          {"content-type": "application/json"})


@router.get("/cases/{case_id}")
async def get_case(case_id: str, request: Request, who: Caller, conn: Conn) -> dict:
    _only(request)
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
        "flagged": row.flagged,
        **{s: orjson.loads(raw) if (raw := getattr(row, s)) else None for s in ORDER},
        "timeline": events,
    }


@router.get("/cases/{case_id}/grouping")
async def get_case_grouping(case_id: str, request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """A case's grouping with its full trace and the scheme's explanation, recomputed by the
    grouper from the stored list under the scheme it was grouped with (the pipeline does not keep
    traces: grouping is deterministic for a scheme). Another hospital's case: 404."""
    _only(request)
    async with engine.connect() as conn:  # a short read of its own: the relay needs the connection
        row = await repository.find_case(conn, case_id)
    if row is None or not who.may_see(row.hospital_code):
        raise NotFound(f"no case {case_id!r}", code="CASE_NOT_FOUND", field="case_id")
    return await up.relay("grouper", "GET", f"/cases/{quote(case_id, safe='')}/grouping", b"", _headers(who))


@router.get("/cases")
async def list_cases(request: Request, who: Caller, conn: Conn,
                     hospital: str | None = Query(None, min_length=1, max_length=32),
                     status: str | None = Query(None, max_length=16),
                     flagged: bool | None = Query(None, description="true: only cases review flagged"),
                     group: str | None = Query(None, min_length=1, max_length=32,
                                               description="the DRG (or DIP group) the case was grouped into"),
                     limit: int = Query(100, ge=1, le=1000),
                     offset: int = Query(0, ge=0, le=100_000_000),
                     after: str | None = Query(None, min_length=1, max_length=100,
                                               description="the last case id of the previous page: the next page")) -> dict:
    """Cases of the read model by id: a hospital's own, or (bureau) any hospital's. Page with
    `after` (the last id of the previous page; `offset` counts past the rows it skips)."""
    _only(request, "hospital", "status", "flagged", "group", "limit", "offset", "after")
    if hospital is not None and not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own cases", field="hospital")
    if not who.is_bureau:
        hospital = who.hospital_code
    return {"cases": await repository.list_cases(conn, hospital, status, limit, offset, flagged, group, after)}


@router.get("/summary")
async def summary(request: Request, who: Caller, conn: Conn) -> dict:
    _only(request)
    by_status = await repository.count_by_status(conn, None if who.is_bureau else who.hospital_code)
    return {"cases": sum(by_status.values()), "by_status": by_status}


# ---------------------------------------------------------------- indicators (§12)

INDICATOR_PARAMS = ("period", "region", "by", "hospital", "level")


@dataclass(frozen=True)
class IndicatorQuery:
    period: str
    months: list[str]
    region: str | None
    by: str
    hospital: str | None
    level: int | None


def _indicator_query(request: Request, who: Principal) -> IndicatorQuery:
    _only(request, *INDICATOR_PARAMS)
    q = request.query_params
    period = q.get("period") or ""
    try:
        months = ind.months_of(period)
    except ValueError as e:
        raise Invalid(str(e), code="INVALID_FIELD", field="period") from None
    by = q.get("by") or "hospital"
    if by not in ind.BY:
        raise Invalid(f"by must be one of {', '.join(ind.BY)}", code="INVALID_FIELD", field="by")
    level_text = q.get("level")
    if level_text is not None and level_text not in ("0", "1", "2", "3"):
        raise Invalid("level must be 1, 2 or 3 (0: not known)", code="INVALID_FIELD", field="level")
    hospital = q.get("hospital") or None
    if hospital is not None and not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own indicators", code="HOSPITAL_MISMATCH", field="hospital")
    if not who.is_bureau:
        hospital = who.hospital_code  # its own rows; the region's figures only as region_total
    return IndicatorQuery(period, months, q.get("region") or None, by, hospital,
                          None if level_text is None else int(level_text))


async def _scheme_groups(gw: Gateway, who: Principal) -> dict[str, int] | None:
    """Each grouping scheme's number of groups (the grouper's), for 病组覆盖率; kept for the
    process once known (a loaded scheme's groups do not change)."""
    if gw.scheme_groups:
        return gw.scheme_groups
    try:
        r = await gw.upstreams.relay("grouper", "GET", "/schemes", b"", _headers(who))
        schemes = orjson.loads(bytes(r.body)) if r.status_code == 200 else None
    except (Unavailable, orjson.JSONDecodeError):
        return None
    if not isinstance(schemes, list):
        return None
    gw.scheme_groups.update({str(s["id"]): int(s["groups"]) for s in schemes
                             if isinstance(s, dict) and isinstance(s.get("groups"), int)})
    return gw.scheme_groups or None


async def _indicators(request: Request, gw: Gateway, who: Principal, engine: Any) -> dict[str, Any]:
    q = _indicator_query(request, who)
    scheme_groups = await _scheme_groups(gw, who)  # before the connection: the grouper may need it
    # summed in the database: what leaves it is a row per key, however many cells the period has
    async with engine.connect() as conn:
        region = await repository.indicator_aggregates(conn, q.months, q.region, None)
        if q.by == "rule":
            counts = await repository.indicator_rule_counts(conn, q.months, q.region, hospital=q.hospital,
                                                            level=q.level)
            whole = await repository.indicator_aggregates(conn, q.months, q.region, None, hospital=q.hospital,
                                                          level=q.level)
        else:
            found = await repository.indicator_aggregates(conn, q.months, q.region, ind.BY_COLUMN[q.by],
                                                          hospital=q.hospital, level=q.level)
    total = ind.from_aggregate(region[0] if region else ind.EMPTY_AGGREGATE, scheme_groups)
    if q.by == "rule":
        cases = int(whole[0].sums["cases"]) if whole else 0
        rows = [{"key": rule, "flagged": n, "flagged_share": ind.ratio(n, cases)} for rule, n in sorted(counts.items())]
    else:
        rows = [{"key": a.key} | ind.from_aggregate(a, scheme_groups) for a in sorted(found, key=lambda a: str(a.key))]
    return {"period": q.period, "region": q.region, "by": q.by, "rows": rows, "region_total": total}


@router.get("/indicators")
async def indicators(request: Request, gw: The, who: Caller, engine: Engine) -> dict:
    """The bureau's indicators (§12) for a period, per region, hospital, level, department, group,
    month or monitoring rule, from the aggregates kept as events arrive. A hospital gets its own
    rows and the region's totals (`region_total`), never another hospital's rows.

    Query: `period` (YYYY-MM, YYYYQn or YYYY; required), `region`, `by` (region | hospital |
    level | department | group | month | rule; default hospital), `hospital`, `level` (1–3).

    Answer: `{"period", "region", "by", "rows": [{"key", …}], "region_total": {…}}`. Each row
    (and `region_total`) holds: cases, grouped, grouping_rate (入组率), groups_covered,
    scheme_groups, coverage_rate (病组覆盖率), cmi, cost_index, time_index (消耗指数), average_los,
    average_cost, self_pay_ratio, high_outliers, high_outlier_share, low_outliers,
    low_outlier_share, special_review, special_cases, special_case_share, flagged, flagged_share,
    readmissions_15, readmission_rate_15, readmissions_31, readmission_rate_31, near_high,
    near_low, near_threshold_share (临界区), transfers_out, left_against_advice, cost_sum,
    own_pay_sum, payment_sum, fund_payment_sum, paid_cost_sum, surplus (盈亏), surplus_rate.
    With `by=rule` a row is `{"key": rule, "flagged", "flagged_share"}`. Ratios are decimal
    strings (4 places), money yuan strings (2 places); a ratio over nothing is null. The
    consumption indices compare with the region's mean per group over the same period;
    `region_total` is the whole region (neither `hospital` nor `level` applies to it)."""
    return await _indicators(request, gw, who, engine)


@router.get("/indicators/budget")
async def budget_execution(request: Request, up: Upstream, who: Caller,
                           region: str = Query(min_length=1, max_length=32),
                           year: str = Query(min_length=4, max_length=4)) -> Response:
    """Budget execution of a region's year (bureau roles): per month the hospitals' pre-settled
    amounts, fund due and the provisional point value; the annual clearing (final point value,
    cleared, balance); the prepayments (预付金) granted per hospital, as published."""
    who.require(*BUREAU_ROLES)
    _only(request, "region", "year")
    return await up.relay("pricer", "GET", "/indicators/budget", b"", _headers(who),
                          params={"region": region, "year": year})


MONTH_PATTERN = r"^(19|20)\d{2}-(0[1-9]|1[0-2])$"
YEAR_PATTERN = r"^(19|20)\d{2}$"


def _own(who: Principal) -> dict[str, str]:
    """A hospital's own rows only; the bureau's roles see every hospital's."""
    return {} if who.is_bureau else {"hospital": who.hospital_code or ""}


@router.get("/indicators/timeliness")
async def settlement_timeliness(request: Request, up: Upstream, who: Caller,
                                region: str = Query(min_length=1, max_length=32),
                                period: str = Query(pattern=MONTH_PATTERN, description="YYYY-MM")) -> Response:
    """Settlement timeliness (结算及时性, §8) of a region's month per hospital: declared at,
    pre-settled at (its first monthly statement), the working days between against the limit
    (20), within the rule yes/no, and the late and pending ones (declared, not yet settled, with
    the working days so far). A hospital sees only its own row."""
    who.require(*BUREAU_ROLES, HOSPITAL)
    _only(request, "region", "period")
    return await up.relay("pricer", "GET", "/indicators/timeliness", b"", _headers(who),
                          params={"region": region, "period": period} | _own(who))


async def _prepayments(request: Request, up: Upstreams, who: Principal, region: str, year: str) -> Response:
    who.require(*BUREAU_ROLES, HOSPITAL)
    _only(request, "region", "year")
    return await up.relay("pricer", "GET", "/indicators/prepayments", b"", _headers(who),
                          params={"region": region, "year": year} | _own(who))


@router.get("/indicators/prepayments")
async def prepayments(request: Request, up: Upstream, who: Caller,
                      region: str = Query(min_length=1, max_length=32),
                      year: str = Query(pattern=YEAR_PATTERN)) -> Response:
    """The year-end prepayment (预付金) publication: per hospital of the region the prepayments
    granted for the year, netted at the annual clearing, and outstanding. A hospital sees only
    its own row."""
    return await _prepayments(request, up, who, region, year)


PREPAYMENT_COLUMNS = ("hospital_code", "granted", "netted", "outstanding")


@router.get("/indicators/prepayments.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the prepayments as CSV"}})
async def prepayments_csv(request: Request, up: Upstream, who: Caller,
                          region: str = Query(min_length=1, max_length=32),
                          year: str = Query(pattern=YEAR_PATTERN)) -> Response:
    """The prepayment publication as CSV: one line per hospital, then the total."""
    r = await _prepayments(request, up, who, region, year)
    if r.status_code != 200:
        return r
    a = _answer(r)
    rows = [*(a.get("rows") or []), {"hospital_code": "total"} | (a.get("total") or {})]
    return Response(to_csv(PREPAYMENT_COLUMNS, rows), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": attachment(f"drgdip-prepayments-{region}-{year}.csv")})


class DeclarationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(pattern=MONTH_PATTERN, description="the month declared, YYYY-MM")


@router.post("/declarations", status_code=201)
async def declare(body: DeclarationRequest, request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """A hospital declares (申报) a month for settlement, its own only: 201 with the time it was
    declared; a repeat answers the first declaration (200). The month's settlement timeliness is
    counted from it (audited)."""
    who.require(HOSPITAL)
    _only(request)
    r = await up.relay("pricer", "POST", "/declarations",
                       orjson.dumps({"hospital_code": who.hospital_code, "period": body.period}), _audited(who))
    if r.status_code == 201:
        a = _answer(r)
        await _record(engine, request, who, audit.DECLARATION_SUBMITTED,
                      audit.change_subject(audit.DECLARATION_SUBMITTED, a), audit.change_detail(audit.DECLARATION_SUBMITTED, a))
    return r


CALENDAR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["year"],
    "properties": {"format": {"type": "string", "enum": ["drgdip.calendar/1"]}, "year": {"type": "integer"},
                   "source": {"type": "string"},
                   "holidays": {"type": "array", "items": {"type": "object"}},
                   "workdays": {"type": "array", "items": {"type": "object"}}},
}
BUDGET_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["region", "year", "amount"], "additionalProperties": False,
    "properties": {"region": {"type": "string"}, "year": {"type": "string"},
                   "amount": {"type": "string", "description": "yuan, e.g. \"120000000.00\""},
                   "point_value": {"type": ["string", "null"], "description": "the budget point value (预算点值)"}},
}


@router.post("/calendar", status_code=201, openapi_extra=_body(CALENDAR_SCHEMA))
async def import_calendar(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Import a year's public holidays and make-up working days (bureau-admin; audited), as
    `drgdip calendar import` does; it replaces that year's earlier import."""
    _only(request)
    return await _admin_change(request, up, who, engine, "pricer", "/calendar", audit.CALENDAR_IMPORTED,
                               headers=_audited(who))


@router.get("/calendar")
async def calendar_years(request: Request, up: Upstream, who: Caller) -> Response:
    """The imported calendar years (bureau roles)."""
    who.require(*BUREAU_ROLES)
    _only(request)
    return await up.relay("pricer", "GET", "/calendar", b"", _headers(who))


@router.post("/budgets", status_code=201, openapi_extra=_body(BUDGET_SCHEMA))
async def set_budget(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Set a region's budget (and budget point value) for a year (bureau-admin; audited), as
    `drgdip budget set` does: a new version, which budget execution and the annual clearing use."""
    _only(request)
    return await _admin_change(request, up, who, engine, "pricer", "/budgets", audit.BUDGET_SET,
                               headers=_audited(who))


def _indicator_table(answer: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The export's columns and rows: the answer's rows, then the region's total (key
    `region_total`)."""
    if answer["by"] == "rule":
        return ["key", "flagged", "flagged_share"], answer["rows"]
    return ["key", *ind.FIELDS], [*answer["rows"], {"key": "region_total"} | answer["region_total"]]


def attachment(name: str) -> str:
    """The content-disposition of a download; the name quoted, as a header is latin-1 and a
    region, hospital or group may be any text."""
    return f'attachment; filename="{quote(name, safe="-_.")}"'


def _export_name(answer: dict[str, Any], ext: str) -> str:
    return attachment(f'drgdip-indicators-{answer["period"]}-{answer["by"]}.{ext}')


@router.get("/indicators.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the indicators as CSV"}})
async def indicators_csv(request: Request, gw: The, who: Caller, engine: Engine) -> Response:
    """The indicators as CSV, with the same parameters: the rows, then the region's total."""
    answer = await _indicators(request, gw, who, engine)
    return Response(to_csv(*_indicator_table(answer)), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": _export_name(answer, "csv")})


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/indicators.xlsx", response_class=Response,
            responses={200: {"content": {XLSX: {}}, "description": "the indicators as XLSX"}})
async def indicators_xlsx(request: Request, gw: The, who: Caller, engine: Engine) -> Response:
    """The indicators as an XLSX workbook, with the same parameters: the rows, then the region's total."""
    answer = await _indicators(request, gw, who, engine)
    return Response(to_xlsx(*_indicator_table(answer), sheet="indicators"), media_type=XLSX,
                    headers={"content-disposition": _export_name(answer, "xlsx")})


# ---------------------------------------------------------------- tokens and the audit (bureau-admin)

class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(max_length=32)
    hospital: str | None = Field(None, min_length=1, max_length=32)
    label: str | None = Field(None, max_length=128)
    days: int | None = Field(None, ge=0, le=3650, description="lifetime; default DRGDIP_TOKEN_DAYS, 0: never expires")


@router.get("/tokens")
async def list_tokens(request: Request, who: Caller, conn: Conn) -> dict:
    """Every token's id, role, hospital, label and dates (never the token or its hash)."""
    who.require("bureau-admin")
    _only(request)
    return {"tokens": await repository.list_tokens(conn)}


@router.post("/tokens", status_code=201)
async def create_token(body: TokenRequest, request: Request, gw: The, who: Caller, conn: Conn) -> dict:
    """Issue a token; the answer is the only time it is shown (audited)."""
    who.require("bureau-admin")
    days = gw.settings.token_days if body.days is None else body.days
    token_id, token = await repository.create_token(conn, body.role, body.hospital, body.label, days)
    await _record_on(conn, request, who, audit.TOKEN_CREATED, token_id,
                     {"role": body.role, "hospital": body.hospital, "days": days})
    return {"token_id": token_id, "token": token, "role": body.role, "hospital": body.hospital, "days": days}


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(token_id: str, request: Request, who: Caller, conn: Conn) -> dict:
    """Revoke a token by its id (audited)."""
    who.require("bureau-admin")
    if not await repository.revoke_token(conn, token_id):
        raise NotFound(f"no active token {token_id!r}", code="TOKEN_NOT_FOUND", field="token_id")
    await _record_on(conn, request, who, audit.TOKEN_REVOKED, token_id)
    return {"token_id": token_id, "revoked": True}


AUDIT_FILTERS = ("action", "actor", "from", "to")


async def _audit_rows(conn: Any, action: str | None, actor: str | None,
                      since: datetime | None, until: datetime | None, limit: int | None, offset: int,
                      ) -> list[dict[str, Any]]:
    if action is not None and action not in audit.ACTIONS:
        raise Invalid(f"action must be one of {', '.join(audit.ACTIONS)}", code="INVALID_FIELD", field="action")
    return await repository.audit_rows(conn, action=action, actor=actor, since=since, until=until,
                                       limit=limit, offset=offset)


@router.get("/audit")
async def list_audit(request: Request, who: Caller, conn: Conn,
                     action: str | None = Query(None, max_length=64),
                     actor: str | None = Query(None, max_length=128, description="token:<id> or cli:<user>"),
                     since: datetime | None = Query(None, alias="from", description="ISO 8601, inclusive"),
                     until: datetime | None = Query(None, alias="to", description="ISO 8601, exclusive"),
                     limit: int = Query(1000, ge=1, le=10_000),
                     offset: int = Query(0, ge=0, le=100_000_000)) -> dict:
    """The audit of administrative actions, oldest first (bureau-admin)."""
    who.require("bureau-admin")
    _only(request, *AUDIT_FILTERS, "limit", "offset")
    rows = await _audit_rows(conn, action, actor, since, until, limit, offset)
    return {"entries": [r | {"at": r["at"].isoformat()} for r in rows]}


@router.get("/audit.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the audit as CSV"}})
async def export_audit(request: Request, who: Caller, conn: Conn,
                       action: str | None = Query(None, max_length=64),
                       actor: str | None = Query(None, max_length=128),
                       since: datetime | None = Query(None, alias="from"),
                       until: datetime | None = Query(None, alias="to")) -> Response:
    """The audit as CSV, with the same filters (bureau-admin); the export is audited itself."""
    who.require("bureau-admin")
    _only(request, *AUDIT_FILTERS)
    rows = await _audit_rows(conn, action, actor, since, until, None, 0)
    await _record_on(conn, request, who, audit.AUDIT_READ, None, dict(request.query_params))
    return Response(to_csv(audit.CSV_COLUMNS, rows), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": attachment("drgdip-audit.csv")})


def _to_review(who: Principal) -> dict[str, str]:
    """Who asks, for review: the actor, the role and a hospital token's hospital."""
    return _audited(who) | {"x-drgdip-role": who.role}


# ---------------------------------------------------------------- monitoring flags (review)

FLAG_ID = Annotated[int, Path(ge=1, le=2**63 - 1, description="the flag's id")]
FLAG_FILTERS = ("hospital", "rule", "status", "period", "level", "limit", "offset")
FLAG_DECISION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["outcome", "reason"], "additionalProperties": False,
    "properties": {"outcome": {"type": "string", "enum": ["confirmed", "dismissed"]},
                   "reason": {"type": "string", "maxLength": 4000},
                   "deduction": {"type": ["string", "null"], "description": "yuan to the fen, e.g. \"1200.00\"; "
                                 "confirmed only: the hospital's next settlement is lowered by it"}},
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["answer"], "additionalProperties": False,
    "properties": {"answer": {"type": "string", "maxLength": 4000, "description": "the hospital's 申诉"}},
}
REVIEW_RUN_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["period"], "additionalProperties": False,
    "properties": {"period": {"type": "string", "description": "YYYY-MM or YYYYQn"},
                   "region": {"type": ["string", "null"]}},
}


def _masked_answer(r: Response) -> Response:
    """A review answer with every personal field masked, whoever asks (a flag's evidence and
    answers are read by reviewers who need no names)."""
    if r.status_code != 200:
        return r
    return Response(orjson.dumps(mask_document(_answer(r))), media_type="application/json")


@router.get("/flags")
async def list_flags(request: Request, up: Upstream, who: Caller,
                     hospital: str | None = Query(None, min_length=1, max_length=32),
                     rule: str | None = Query(None, max_length=40),
                     status: str | None = Query(None, max_length=16, description="open | answered | confirmed | "
                                                "dismissed | superseded (default: every status but superseded)"),
                     period: str | None = Query(None, max_length=7, description="YYYY-MM or YYYYQn"),
                     level: str | None = Query(None, max_length=8, description="case | hospital"),
                     limit: int = Query(100, ge=1, le=1000),
                     offset: int = Query(0, ge=0, le=100_000_000)) -> Response:
    """Monitoring flags (case- and hospital-level) with their evidence and workflow, newest first:
    a hospital's own, or (bureau) any hospital's."""
    _only(request, *FLAG_FILTERS)
    if hospital is not None and not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own flags", code="HOSPITAL_MISMATCH", field="hospital")
    params = dict(request.query_params)
    if not who.is_bureau:
        params["hospital"] = who.hospital_code or ""
    return _masked_answer(await up.relay("review", "GET", "/flags", b"", _headers(who), params=params))


@router.get("/flags/{flag_id}")
async def get_flag(flag_id: FLAG_ID, request: Request, up: Upstream, who: Caller) -> Response:
    """A flag with its evidence, its workflow and its history (another hospital's: 404)."""
    _only(request)
    params = {} if who.is_bureau else {"hospital": who.hospital_code or ""}
    return _masked_answer(await up.relay("review", "GET", f"/flags/{flag_id}", b"", _headers(who), params=params))


async def _flag_step(request: Request, up: Upstreams, who: Principal, engine: Any, flag_id: int, step: str,
                     action: str) -> Response:
    _only(request)
    body = await _read(request, up)
    r = await up.relay("review", "POST", f"/flags/{flag_id}/{step}", body, _to_review(who))
    if r.status_code < 300:
        a = _answer(r)
        await _record(engine, request, who, action, f"flag {flag_id}", {
            "status": a.get("status"), "hospital": a.get("hospital_code"), "rule": a.get("rule"),
            "deduction": a.get("deduction")})
    return _masked_answer(r)


@router.post("/flags/{flag_id}/decision", openapi_extra=_body(FLAG_DECISION_SCHEMA))
async def decide_flag(flag_id: FLAG_ID, request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """A bureau reviewer confirms (optionally with a deduction) or dismisses a flag, with a reason
    (audited). An open flag is confirmed only once the hospital's time to answer has passed
    (409 `ANSWER_PENDING`); a decision is final (409 `FLAG_DECIDED`)."""
    who.require("bureau-reviewer")
    return await _flag_step(request, up, who, engine, flag_id, "decision", audit.FLAG_DECIDED)


@router.post("/flags/{flag_id}/answer", openapi_extra=_body(ANSWER_SCHEMA))
async def answer_flag(flag_id: FLAG_ID, request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """The hospital answers (申诉) one of its own open flags by its deadline (audited); after the
    deadline 409 `ANSWER_DEADLINE_PASSED`, another hospital's flag 404."""
    who.require(HOSPITAL)
    return await _flag_step(request, up, who, engine, flag_id, "answer", audit.FLAG_ANSWERED)


@router.post("/review/runs", openapi_extra=_body(REVIEW_RUN_SCHEMA))
async def run_review(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Run the hospital-level monitoring rules for a month or quarter (bureau-admin or
    bureau-reviewer; audited), as `drgdip review run` does."""
    who.require("bureau-admin", "bureau-reviewer")
    _only(request)
    r = await up.relay("review", "POST", "/hospital-rules:run", await _read(request, up), _headers(who))
    if r.status_code < 300:
        a = _answer(r)
        await _record(engine, request, who, audit.REVIEW_RUN, str(a.get("period")),
                      {"runs": [{k: run.get(k) for k in ("region", "rules", "cases", "raised", "superseded")}
                                for run in a.get("runs") or []]})
    return r


FLAG_HISTORY_FILTERS = ("flag_id", "hospital", "from", "to")


async def _flag_history(request: Request, up: Upstreams, who: Principal, paged: bool) -> list[dict[str, Any]]:
    who.require(*BUREAU_ROLES)
    _only(request, *FLAG_HISTORY_FILTERS, *(("limit", "offset") if paged else ()))
    r = await up.relay("review", "GET", "/flag-history", b"", _headers(who), params=dict(request.query_params))
    if r.status_code != 200:  # a filter review refused: its error as it gave it
        err = _answer(r).get("error") or {}
        raise DomainError(str(err.get("message") or "refused"), code=str(err.get("code") or "INVALID_FIELD"),
                          field=err.get("field"), status=r.status_code)
    entries: list[dict[str, Any]] = mask_document(_answer(r).get("entries") or [])
    return entries


@router.get("/flag-history")
async def flag_history(request: Request, up: Upstream, who: Caller) -> dict:
    """The append-only audit of the flag workflow (bureau roles): every answer and decision with
    who, when, the state before and after, and why; filters flag_id, hospital, from, to."""
    return {"entries": await _flag_history(request, up, who, paged=True)}


@router.get("/flag-history.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the flag workflow's audit as CSV"}})
async def export_flag_history(request: Request, up: Upstream, who: Caller) -> Response:
    """The flag workflow's audit as CSV (bureau roles), with the same filters."""
    rows = await _flag_history(request, up, who, paged=False)
    return Response(to_csv(audit.FLAG_HISTORY_COLUMNS, rows), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": attachment("drgdip-flag-history.csv")})


# ---------------------------------------------------------------- special-case review (特例单议)
# Review keeps the applications, the panel and their audit; the gateway checks the role and the
# hospital and passes on who asks (`x-drgdip-actor`, `x-drgdip-role`, `x-drgdip-hospital`).

APPLICATION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["case_id", "reason", "text"], "additionalProperties": False,
    "properties": {
        "case_id": {"type": "string"},
        "reason": {"type": "string", "enum": ["long_stay", "high_cost", "innovative_drugs_devices",
                                              "icu_ventilation", "not_grouped_or_ambiguous", "multi_disciplinary"]},
        "text": {"type": "string"},
        "evidence": {"type": "array", "items": {
            "type": "object", "required": ["name", "sha256"],
            "properties": {"name": {"type": "string"}, "sha256": {"type": "string"}, "size": {"type": "integer"}}}}},
}
SPECIAL_DECISION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["outcome", "reason"], "additionalProperties": False,
    "properties": {"outcome": {"type": "string", "enum": ["pay_by_item", "adjust_standard", "reject"]},
                   "amount": {"type": ["string", "null"], "description": "yuan, for adjust_standard"},
                   "reason": {"type": "string"}},
}
APPEAL_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["reason"], "additionalProperties": False,
    "properties": {"reason": {"type": "string"}},
}
MEMBER_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["token_id", "period"], "additionalProperties": False,
    "properties": {"token_id": {"type": "string", "description": "a bureau-reviewer token's id"},
                   "period": {"type": "string", "description": "the quarter the member sits on the panel, e.g. 2024Q1"},
                   "hospitals": {"type": "array", "items": {"type": "string"},
                                 "description": "the hospitals the member is tied to"},
                   "active": {"type": "boolean"}, "reason": {"type": ["string", "null"]}},
}


SpecialCaseId = Annotated[int, Path(ge=1, le=2**53)]


async def _review(up: Upstreams, who: Principal, method: str, path: str, body: bytes = b"",
                  params: dict[str, str] | None = None) -> Response:
    return await up.relay("review", method, path, body, _to_review(who), params=params)


def _scoped(request: Request, who: Principal, *known: str) -> dict[str, str]:
    """The query, with a hospital's own code for a hospital token (another's is refused)."""
    _only(request, *known)
    params = dict(request.query_params)
    hospital = params.get("hospital")
    if hospital is not None and not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own", field="hospital")
    if not who.is_bureau and "hospital" in known:
        params["hospital"] = who.hospital_code or ""
    return params


@router.post("/special-cases", status_code=201, openapi_extra=_body(APPLICATION_SCHEMA))
async def apply_special_case(request: Request, up: Upstream, who: Caller) -> Response:
    """A hospital applies for special-case review of one of its cases (特例单议): the reason is
    checked against the case's priced figures (a refusal names the rule and the numbers) and the
    quarter's quota of its region (5 % of DRG, 5 ‰ of DIP discharges, shared by complex cases)."""
    who.require(HOSPITAL)
    _only(request)
    return await _review(up, who, "POST", "/special-cases", await _read(request, up))


@router.get("/special-cases")
async def list_special_cases(request: Request, up: Upstream, who: Caller) -> Response:
    """Applications: the panel's quarterly queue (`period=2024Q1&status=pending`), a hospital's
    own. No patient names or ID numbers: the case's figures and the evidence's names and hashes."""
    params = _scoped(request, who, "period", "hospital", "status", "limit", "offset")
    return await _review(up, who, "GET", "/special-cases", params=params)


@router.get("/special-cases/panel")
async def list_panel(request: Request, up: Upstream, who: Caller) -> Response:
    """The panel's members per quarter (`period=2024Q1`) and the hospitals each is tied to
    (bureau roles)."""
    who.require(*BUREAU_ROLES)
    _only(request, "period")
    return await _review(up, who, "GET", "/special-cases/panel", params=dict(request.query_params))


@router.post("/special-cases/panel", status_code=201, openapi_extra=_body(MEMBER_SCHEMA))
async def register_panel_member(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Register a bureau-reviewer token as a panel member for a quarter with the hospitals they
    are tied to, or change them (bureau-admin; audited by review with the before and after)."""
    who.require("bureau-admin")
    _only(request)
    body = await _read(request, up)
    try:
        token_id = orjson.loads(body).get("token_id")
    except (orjson.JSONDecodeError, AttributeError):
        token_id = None
    if isinstance(token_id, str):
        async with engine.connect() as conn:
            role = await repository.token_role(conn, token_id)
        if role != "bureau-reviewer":
            raise Invalid(f"token {token_id!r} is not an active bureau-reviewer token", code="NOT_A_REVIEWER",
                          field="token_id")
    return await _review(up, who, "POST", "/special-cases/panel", body)


async def _publication(request: Request, up: Upstream, who: Principal, fmt: str) -> Response:
    params = _scoped(request, who, "half", "hospital") | {"format": fmt}
    return await _review(up, who, "GET", "/special-cases/publication", params=params)


@router.get("/special-cases/publication")
async def special_case_publication(request: Request, up: Upstream, who: Caller) -> Response:
    """The half year's special cases per hospital: counts and outcomes (`half=2024H1`); a hospital
    sees its own row."""
    return await _publication(request, up, who, "json")


@router.get("/special-cases/publication.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the publication as CSV"}})
async def special_case_publication_csv(request: Request, up: Upstream, who: Caller) -> Response:
    """The half-yearly publication as CSV."""
    return await _publication(request, up, who, "csv")


SPECIAL_AUDIT_FILTERS = ("action", "actor", "subject", "from", "to")


@router.get("/special-cases/audit")
async def special_case_audit(request: Request, up: Upstream, who: Caller) -> Response:
    """Every application, decision, appeal, panel change and parameter change, oldest first:
    who, when, before, after and why (bureau roles)."""
    who.require(*BUREAU_ROLES)
    _only(request, *SPECIAL_AUDIT_FILTERS, "limit", "offset")
    return await _review(up, who, "GET", "/special-cases/audit", params=dict(request.query_params))


@router.get("/special-cases/audit.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the audit as CSV"}})
async def special_case_audit_csv(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """The special-case audit as CSV, with the same filters (bureau roles); the export is audited."""
    who.require(*BUREAU_ROLES)
    _only(request, *SPECIAL_AUDIT_FILTERS)
    r = await _review(up, who, "GET", "/special-cases/audit", params=dict(request.query_params) | {"format": "csv"})
    if r.status_code == 200:
        await _record(engine, request, who, audit.AUDIT_READ, "special-cases", dict(request.query_params))
        r.headers["content-disposition"] = attachment("drgdip-special-case-audit.csv")
    return r


@router.get("/special-cases/{application_id}")
async def get_special_case(application_id: SpecialCaseId, request: Request, up: Upstream, who: Caller) -> Response:
    """One application with its decisions (a hospital: its own)."""
    _only(request)
    return await _review(up, who, "GET", f"/special-cases/{application_id}")


@router.post("/special-cases/{application_id}/decision", openapi_extra=_body(SPECIAL_DECISION_SCHEMA))
async def decide_special_case(application_id: SpecialCaseId, request: Request, up: Upstream, who: Caller) -> Response:
    """A panel member's decision (bureau-reviewer registered on the panel, not tied to the
    case's hospital): pay by item, adjust the standard (an amount in yuan) or reject, with the
    reason. An approved decision re-prices the case as a new priced version."""
    who.require("bureau-reviewer")
    _only(request)
    return await _review(up, who, "POST", f"/special-cases/{application_id}/decision", await _read(request, up))


@router.post("/special-cases/{application_id}/appeal", openapi_extra=_body(APPEAL_SCHEMA))
async def appeal_special_case(application_id: SpecialCaseId, request: Request, up: Upstream, who: Caller) -> Response:
    """The hospital's one appeal of the panel's decision, decided by another member."""
    who.require(HOSPITAL)
    _only(request)
    return await _review(up, who, "POST", f"/special-cases/{application_id}/appeal", await _read(request, up))


# ---------------------------------------------------------------- negotiation rounds (协商谈判, pricer)
# The pricer keeps the drafts, the comments and answers, the adoption and the round's history; the
# gateway checks the role and the hospital, passes on who asks and records every change it relayed.

DRAFT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["kind", "title", "document", "opens", "closes"], "additionalProperties": False,
    "properties": {"kind": {"type": "string", "enum": ["policy", "dip-policy", "scheme-changeset"]},
                   "title": {"type": "string"},
                   "document": {"type": "object", "description": "a policy document as POST /policies takes it; "
                                "{policy, catalogue} for a DIP policy; a scheme change set"},
                   "opens": {"type": "string", "format": "date", "description": "China Standard Time"},
                   "closes": {"type": "string", "format": "date", "description": "China Standard Time"}},
}
DRAFT_COMMENT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["item", "reason"], "additionalProperties": False,
    "properties": {"item": {"type": "string", "description": "weight:<DRG>, rate:<insurance>:<level>, "
                            "coefficient:level:<n>, coefficient:hospital:<code>, mean-cost:<DRG>, score:<group>, "
                            "change:<n> (a change set's operations[n]), document"},
                   "kind": {"type": "string", "enum": ["comment", "objection"]},
                   "reason": {"type": "string"},
                   "counter_proposal": {"type": ["string", "null"], "description": "a decimal for a numeric item"}},
}
DRAFT_ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["outcome", "reason"], "additionalProperties": False,
    "properties": {"outcome": {"type": "string", "enum": ["accepted", "partly", "rejected"]},
                   "reason": {"type": "string"}},
}
ADOPT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["valid_from"], "additionalProperties": False,
    "properties": {"valid_from": {"type": "string", "format": "date"},
                   "version": {"type": ["integer", "null"]}, "notes": {"type": "string"},
                   "changes": {"type": "array", "items": {
                       "type": "object", "required": ["item", "value", "reason"],
                       "properties": {"item": {"type": "string"},
                                      "value": {"type": ["string", "object"],
                                                "description": "a decimal; for a change set's operation "
                                                "(change:<n>) \"withdrawn\" or the operation as adopted"},
                                      "reason": {"type": "string"},
                                      "comment_ids": {"type": "array", "items": {"type": "integer"}}}}}},
}
DraftId = Annotated[int, Path(ge=1, le=2**53, description="the draft's id")]
CommentId = Annotated[int, Path(ge=1, le=2**53, description="the comment's id")]


async def _pricer(up: Upstreams, who: Principal, method: str, path: str, body: bytes = b"",
                  params: dict[str, str] | None = None) -> Response:
    return await up.relay("pricer", method, path, body, _to_review(who), params=params)


async def _relayed_change(request: Request, up: Upstreams, who: Principal, engine: Any, upstream: str, path: str,
                          action: str, subject: Callable[[dict[str, Any]], str],
                          detail: Callable[[dict[str, Any]], Any], raw: bytes | None = None) -> Response:
    """Forward a change (its body, or `raw` when the route read it already) with who makes it;
    once the upstream accepted it, record it."""
    _only(request)
    r = await up.relay(upstream, "POST", path, raw if raw is not None else await _read(request, up),
                       _to_review(who))
    if r.status_code < 300:
        a = _answer(r)
        await _record(engine, request, who, action, subject(a), detail(a))
    return r


@router.post("/negotiations", status_code=201, openapi_extra=_body(DRAFT_SCHEMA))
async def publish_draft(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Publish a draft of a negotiable element to the hospitals with its comment window
    (bureau-admin; audited)."""
    who.require("bureau-admin")
    raw = await _read(request, up)
    draft = _json_object(raw)
    if draft.get("kind") == "scheme-changeset" and isinstance(draft.get("document"), dict):
        # the grouper checks a change set against its base before any hospital sees it
        checked = await up.relay("grouper", "POST", "/changesets:check", orjson.dumps(draft["document"]),
                                 _headers(who))
        if checked.status_code >= 300:
            return checked
    return await _relayed_change(request, up, who, engine, "pricer", "/negotiations", audit.NEGOTIATION_PUBLISHED,
                                 lambda a: f"draft {a.get('id')}",
                                 lambda a: {k: a.get(k) for k in ("kind", "title", "policy_id", "version",
                                                                  "opens", "closes")}, raw=raw)


@router.get("/negotiations")
async def list_drafts(request: Request, up: Upstream, who: Caller) -> Response:
    """The drafts published (hospitals and the bureau), newest first; `status=open|adopted`."""
    _only(request, "status")
    return await _pricer(up, who, "GET", "/negotiations", params=dict(request.query_params))


@router.get("/negotiations/{draft_id}")
async def get_draft(draft_id: DraftId, request: Request, up: Upstream, who: Caller) -> Response:
    """A draft: its document, items and window; once adopted, what changed and why."""
    _only(request)
    return await _pricer(up, who, "GET", f"/negotiations/{draft_id}")


@router.get("/negotiations/{draft_id}/impact")
async def draft_impact(draft_id: DraftId, request: Request, up: Upstream, who: Caller,
                       hospital: str | None = Query(None, min_length=1, max_length=32),
                       year: int | None = Query(None, ge=1900, le=2099)) -> Response:
    """What the draft means for a hospital: its own stored cases priced under the draft vs the
    policy in force, payment and 盈亏 per group and in total. A hospital sees only its own
    (another's: 403); the bureau names the hospital."""
    _only(request, "hospital", "year")
    if hospital is not None and not who.may_see(hospital):
        raise Forbidden("a hospital sees only its own impact", code="HOSPITAL_MISMATCH", field="hospital")
    if not who.is_bureau:
        hospital = who.hospital_code
    if hospital is None:
        raise Invalid("name the hospital", code="HOSPITAL_REQUIRED", field="hospital")
    params = {"hospital": hospital} | ({"year": str(year)} if year is not None else {})
    draft = await _pricer(up, who, "GET", f"/negotiations/{draft_id}")
    if draft.status_code == 200 and (found := _answer(draft)).get("kind") == "scheme-changeset":
        return await _migration(up, who, draft_id, hospital, found)
    return await _pricer(up, who, "GET", f"/negotiations/{draft_id}/impact", params=params)


async def _migration(up: Upstreams, who: Principal, draft_id: int, hospital: str,
                     draft: dict[str, Any]) -> Response:
    """A change set's impact on a hospital: its own stored cases regrouped by the grouper under
    the base scheme and under the change set (old group → new group, cases)."""
    r = await up.relay("grouper", "POST", "/changesets:check", orjson.dumps(draft.get("document")),
                       _headers(who), params={"hospital": hospital})
    if r.status_code != 200:
        return r
    checked = _answer(r)
    body = {"draft_id": draft_id, "kind": "scheme-changeset", "hospital_code": hospital,
            "changeset": checked.get("changeset"), "summary": checked.get("summary"),
            "migration": checked.get("migration")}
    return Response(orjson.dumps(body), media_type="application/json")


@router.post("/negotiations/{draft_id}/comments", status_code=201, openapi_extra=_body(DRAFT_COMMENT_SCHEMA))
async def comment_on_draft(draft_id: DraftId, request: Request, up: Upstream, who: Caller,
                           engine: Engine) -> Response:
    """A hospital's comment or objection on one item of the draft, with a reason and an optional
    counter-proposal, while the window is open (after: 409 `NEGOTIATION_WINDOW_CLOSED`; audited)."""
    who.require(HOSPITAL)
    return await _relayed_change(request, up, who, engine, "pricer", f"/negotiations/{draft_id}/comments",
                                 audit.NEGOTIATION_COMMENTED, lambda a: f"draft {draft_id} comment {a.get('id')}",
                                 lambda a: {k: a.get(k) for k in ("item", "kind", "counter_proposal")})


@router.get("/negotiations/{draft_id}/comments")
async def list_draft_comments(draft_id: DraftId, request: Request, up: Upstream, who: Caller) -> Response:
    """The bureau: every comment with its hospital. A hospital: its own comments with the answers,
    and every comment and answer anonymised (`all`: no hospital codes)."""
    _only(request)
    params = {} if who.is_bureau else {"hospital": who.hospital_code or ""}
    return await _pricer(up, who, "GET", f"/negotiations/{draft_id}/comments", params=params)


@router.post("/negotiations/{draft_id}/comments/{comment_id}/answer", openapi_extra=_body(DRAFT_ANSWER_SCHEMA))
async def answer_draft_comment(draft_id: DraftId, comment_id: CommentId, request: Request, up: Upstream,
                               who: Caller, engine: Engine) -> Response:
    """The bureau's answer to a comment: accepted, partly or rejected, with the reason (once; audited)."""
    who.require("bureau-reviewer", "bureau-admin")
    return await _relayed_change(request, up, who, engine, "pricer",
                                 f"/negotiations/{draft_id}/comments/{comment_id}/answer",
                                 audit.NEGOTIATION_ANSWERED, lambda a: f"draft {draft_id} comment {comment_id}",
                                 lambda a: {k: a.get(k) for k in ("item", "hospital_code", "answer")})


@router.post("/negotiations/{draft_id}/adopt", openapi_extra=_body(ADOPT_SCHEMA))
async def adopt_draft(draft_id: DraftId, request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """Adopt the draft as the policy version in force from `valid_from`, through the policy
    import, with each item changed from the draft, why, and the comments that caused it
    (bureau-admin; audited)."""
    who.require("bureau-admin")
    _only(request)
    draft = await _pricer(up, who, "GET", f"/negotiations/{draft_id}")
    if draft.status_code == 200 and _answer(draft).get("kind") == "scheme-changeset":
        return await _adopt_change_set(draft_id, request, up, who, engine)
    return await _relayed_change(request, up, who, engine, "pricer", f"/negotiations/{draft_id}/adopt",
                                 audit.NEGOTIATION_ADOPTED, _adopted_subject(draft_id), _adopted_detail)


def _adopted_subject(draft_id: int) -> Callable[[dict[str, Any]], str]:
    return lambda a: f"draft {draft_id}: {a.get('policy_id')} v{a.get('version')}"


def _adopted_detail(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a.get(k) for k in ("kind", "valid_from", "changes")}


async def _adopt_change_set(draft_id: int, request: Request, up: Upstreams, who: Principal, engine: Any) -> Response:
    """A change set is adopted around the grouper's build: the pricer answers the change set as
    adopted (the operations withdrawn or amended; nothing stored yet), the grouper builds and
    registers exactly those bytes for the change set's region from `valid_from` (refusing an
    amended operation that does not fit, 422), then the pricer records the adoption with the
    scheme built. A retry after a failure between the two builds nothing twice (same change
    set, same folder; the same registration replaced)."""
    raw = await _read(request, up)
    path = f"/negotiations/{draft_id}/adopt"
    checked = await up.relay("pricer", "POST", path, raw, _to_review(who), params={"check": "true"})
    if checked.status_code != 200:
        return checked
    adopted = _answer(checked)
    params = {"valid_from": str(adopted.get("valid_from"))} | (
        {"region": str(adopted["region"])} if adopted.get("region") else {})
    built = await up.relay("grouper", "POST", "/changesets:build", str(adopted.get("changeset_json")).encode(),
                           _headers(who), params=params)
    if built.status_code >= 300:
        return built
    scheme = _answer(built)
    await _record(engine, request, who, audit.SCHEME_BUILT, audit.change_subject(audit.SCHEME_BUILT, scheme),
                  {k: scheme.get(k) for k in ("scheme", "base", "changeset", "path", "built", "registration")}
                  | {"draft_id": draft_id})
    body = _json_object(raw) | {"scheme": scheme}
    r = await up.relay("pricer", "POST", path, orjson.dumps(body), _to_review(who))
    if r.status_code < 300:
        a = _answer(r)
        await _record(engine, request, who, audit.NEGOTIATION_ADOPTED, _adopted_subject(draft_id)(a),
                      _adopted_detail(a) | {"scheme": scheme.get("scheme"), "registration": scheme.get("registration")})
    return r


async def _draft_report(draft_id: int, request: Request, up: Upstreams, who: Principal, fmt: str) -> Response:
    who.require(*BUREAU_ROLES)
    _only(request)
    r = await _pricer(up, who, "GET", f"/negotiations/{draft_id}/report", params={"format": fmt})
    if r.status_code == 200:
        disposition = "inline" if fmt == "html" else "attachment"  # the page opens in the browser
        r.headers["content-disposition"] = f'{disposition}; filename="drgdip-negotiation-{draft_id}.{fmt}"'
    return r


@router.get("/negotiations/{draft_id}/report.html", response_class=Response,
            responses={200: {"content": {"text/html": {}}, "description": "the round's report"}})
async def draft_report_html(draft_id: DraftId, request: Request, up: Upstream, who: Caller) -> Response:
    """The round's report: items, objections, answers and changes, as an HTML page (bureau roles)."""
    return await _draft_report(draft_id, request, up, who, "html")


@router.get("/negotiations/{draft_id}/report.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the round's report"}})
async def draft_report_csv(draft_id: DraftId, request: Request, up: Upstream, who: Caller) -> Response:
    """The round's report as CSV (bureau roles)."""
    return await _draft_report(draft_id, request, up, who, "csv")


@router.get("/negotiations/{draft_id}/history")
async def draft_history(draft_id: DraftId, request: Request, up: Upstream, who: Caller) -> Response:
    """The round's own history: publication, comments, answers, adoption (bureau roles)."""
    who.require(*BUREAU_ROLES)
    _only(request)
    return await _pricer(up, who, "GET", f"/negotiations/{draft_id}/history")


# ---------------------------------------------------------------- feedback channel (意见收集, review)

FEEDBACK_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["category", "text"], "additionalProperties": False,
    "properties": {"category": {"type": "string", "enum": ["grouping", "weights", "payment", "rules", "monitoring",
                                                          "special-cases", "data", "other"]},
                   "text": {"type": "string"}, "author": {"type": ["string", "null"],
                                                          "description": "a doctor or department, optional"},
                   "case_ids": {"type": "array", "items": {"type": "string"}}},
}
FEEDBACK_STEP_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"note": {"type": ["string", "null"]}, "answer": {"type": ["string", "null"]}},
}
FeedbackId = Annotated[int, Path(ge=1, le=2**53, description="the opinion's id")]


@router.post("/feedback", status_code=201, openapi_extra=_body(FEEDBACK_SCHEMA))
async def send_feedback(request: Request, up: Upstream, who: Caller, engine: Engine) -> Response:
    """A hospital (or a doctor, with the hospital's token) sends an opinion on grouping or the
    rules, naming its own cases concerned (audited)."""
    who.require(HOSPITAL)
    return await _relayed_change(request, up, who, engine, "review", "/feedback", audit.FEEDBACK_SENT,
                                 lambda a: f"feedback {a.get('id')}",
                                 lambda a: {k: a.get(k) for k in ("category", "case_ids")})


@router.get("/feedback")
async def list_feedback(request: Request, up: Upstream, who: Caller) -> Response:
    """Opinions, newest first: a hospital's own, or (bureau) every hospital's; filters status,
    category, hospital."""
    params = _scoped(request, who, "status", "category", "hospital", "limit", "offset")
    return await _review(up, who, "GET", "/feedback", params=params)


@router.get("/feedback/stats")
async def feedback_stats(request: Request, up: Upstream, who: Caller) -> Response:
    """Counts by status and category and the answer times in working days (for the bureau's
    indicators); `from`, `to` (sent dates, inclusive), `region` (whose review calendar counts)."""
    who.require(*BUREAU_ROLES)
    _only(request, "from", "to", "region")
    return await _review(up, who, "GET", "/feedback/stats", params=dict(request.query_params))


@router.get("/feedback/{feedback_id}")
async def get_feedback(feedback_id: FeedbackId, request: Request, up: Upstream, who: Caller) -> Response:
    """One opinion with its history (another hospital's: 404)."""
    _only(request)
    return await _review(up, who, "GET", f"/feedback/{feedback_id}")


async def _feedback_step(feedback_id: int, step: str, action: str, request: Request, up: Upstreams,
                         who: Principal, engine: Any) -> Response:
    who.require("bureau-reviewer", "bureau-admin")
    return await _relayed_change(request, up, who, engine, "review", f"/feedback/{feedback_id}/{step}", action,
                                 lambda a: f"feedback {feedback_id}",
                                 lambda a: {k: a.get(k) for k in ("status", "hospital_code", "category")})


@router.post("/feedback/{feedback_id}/triage", openapi_extra=_body(FEEDBACK_STEP_SCHEMA))
async def triage_feedback(feedback_id: FeedbackId, request: Request, up: Upstream, who: Caller,
                          engine: Engine) -> Response:
    """The bureau takes a new opinion in hand (new → triaged; audited)."""
    return await _feedback_step(feedback_id, "triage", audit.FEEDBACK_TRIAGED, request, up, who, engine)


@router.post("/feedback/{feedback_id}/answer", openapi_extra=_body(FEEDBACK_STEP_SCHEMA))
async def answer_feedback(feedback_id: FeedbackId, request: Request, up: Upstream, who: Caller,
                          engine: Engine) -> Response:
    """The bureau answers an opinion (triaged → answered; audited)."""
    return await _feedback_step(feedback_id, "answer", audit.FEEDBACK_ANSWERED, request, up, who, engine)


@router.post("/feedback/{feedback_id}/close", openapi_extra=_body(FEEDBACK_STEP_SCHEMA))
async def close_feedback(feedback_id: FeedbackId, request: Request, up: Upstream, who: Caller,
                         engine: Engine) -> Response:
    """The bureau closes an answered opinion (answered → closed; audited)."""
    return await _feedback_step(feedback_id, "close", audit.FEEDBACK_CLOSED, request, up, who, engine)
