"""The grouper's HTTP routes: the draft check, DIP catalogue and scheme registration, the loaded
schemes, and local schemes from change sets (checked, with a hospital's migration table; built,
loaded and registered)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.grouper import handlers, repository
from services.grouper.domain import (
    DraftCase,
    catalogue_registration,
    check_draft,
    engine_input,
    grouping_trace,
)
from services.grouper.handlers import GrouperService
from shared.errors import NotFound
from shared.events import CaseReceived
from shared.text import ID_PATTERN
from shared.web import Conn, stage_service

router = APIRouter(tags=["grouper"])
Grouper = Annotated[GrouperService, Depends(stage_service(repository.NAME))]



@router.post("/group")
async def group_one(draft: DraftCase, grouper: Grouper, conn: Conn, trace: bool = True) -> dict:
    """Group a case before it is submitted (nothing stored); where a DIP catalogue is in force,
    its DIP group too, as the live stage assigns it."""
    await grouper.refresh(conn)
    catalogue = (await grouper.catalogues.in_force(conn)).on(draft.region, draft.discharge_date)
    return check_draft(grouper.book, draft, catalogue, code_mode=grouper.settings.code_mode, trace=trace)


@router.get("/cases/{case_id}/grouping")
async def case_grouping(case_id: str, grouper: Grouper, conn: Conn) -> dict:
    """A stored case's latest grouping with its trace and explanation. The trace is recomputed
    from the stored list under the scheme and code mode it was grouped with (grouping is
    deterministic for a scheme): the same trace as at grouping time."""
    stored = await repository.latest_grouping(conn, case_id)
    if stored is None:
        raise NotFound(f"no grouping of case {case_id!r}", code="CASE_NOT_FOUND", field="case_id")
    scheme = grouper.book.schemes.get(stored.scheme_id)
    if scheme is None and stored.status != "NO_SCHEME":
        raise NotFound(f"scheme {stored.scheme_id!r} is no longer loaded: the trace cannot be recomputed",
                       code="UNKNOWN_SCHEME", field="scheme")
    received = CaseReceived.model_validate_json(stored.received)
    trace = grouping_trace(scheme, received, stored.code_mode, stored.trace)
    explanation = (scheme.group(engine_input(received), code_mode=stored.code_mode, trace=True).trace
                   if scheme is not None else None)
    return {"case_id": stored.case_id, "list_version": stored.list_version,
            "grouping_version": stored.grouping_version, "scheme_id": stored.scheme_id,
            "code_mode": stored.code_mode, "status": stored.status, "drg": stored.drg, "trace": trace,
            "explanation": explanation.render() if explanation is not None else []}


@router.post("/dip/catalogues", status_code=201)
async def register_catalogue(request: Request, conn: Conn,
                             region: str = Query(min_length=1, max_length=32),
                             valid_from: date = Query(), valid_to: date | None = Query(None)) -> dict:
    """Register a DIP catalogue document for a region from a date (bureau only, via the gateway)."""
    reg = catalogue_registration(await request.body(), region, valid_from, valid_to)
    await repository.register_catalogue(conn, reg)
    return reg.summary()


class SchemeRegistration(BaseModel):
    """A loaded scheme (by its id) in force in a region from `valid_from` to `valid_to`."""

    model_config = ConfigDict(extra="forbid")
    scheme: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN, description="id of a scheme the grouper has loaded")
    region: str = Field(min_length=1, max_length=32, pattern=ID_PATTERN)
    valid_from: date
    valid_to: date | None = None


@router.post("/schemes/registrations", status_code=201)
async def register_scheme(body: SchemeRegistration, grouper: Grouper, conn: Conn) -> dict:
    """Register a scheme for a region and period (bureau only, via the gateway); in force with the
    grouper's next batch."""
    scheme, replaced = await handlers.register_scheme(grouper, conn, body.scheme, body.region,
                                                      body.valid_from, body.valid_to)
    return {"scheme": scheme.id, "title": scheme.title, "region": body.region,
            "valid_from": body.valid_from.isoformat(),
            "valid_to": body.valid_to.isoformat() if body.valid_to else None, "replaced": replaced}


@router.get("/schemes")
async def list_schemes(grouper: Grouper) -> list[dict]:
    """The loaded schemes; a local one says which scheme and change set (by hash) it came from."""
    book = grouper.book
    return [{"id": s.id, "title": s.title, "path": book.paths[s.id], "groups": len(s.drgs),
             "derived_from": s.manifest.get("derived_from")}
            for s in book.schemes.values()]


HospitalQuery = Query(None, min_length=1, max_length=32, pattern=ID_PATTERN,
                      description="also regroup this hospital's own stored cases: its migration table")


@router.post("/changesets:check")
async def check_change_set(request: Request, grouper: Grouper, conn: Conn,
                           hospital: str | None = HospitalQuery) -> dict:
    """Check a change set (the body, docs/scheme-changesets.md) against its loaded base scheme:
    422 `INVALID_CHANGESET` with one `{field, code, message}` per problem, or what it changes
    (groups added, split, merged, renamed; lists) and, given a hospital, how its own cases move
    (old group → new group, cases). Nothing is stored."""
    return await handlers.check_change_set(grouper, conn, await request.body(), hospital)


@router.post("/changesets:build", status_code=201)
async def build_change_set(request: Request, grouper: Grouper, conn: Conn,
                           region: str | None = Query(None, min_length=1, max_length=32, pattern=ID_PATTERN,
                                                      description="default: the change set's region"),
                           valid_from: date | None = Query(None, description="register it from this day"),
                           valid_to: date | None = Query(None)) -> dict:
    """Build the local scheme of a change set (the body) over its loaded base, store its folder
    in the local schemes folder, load it and, with `valid_from`, register it for the region
    (bureau only, via the gateway)."""
    return await handlers.build_change_set(grouper, conn, await request.body(), region=region,
                                           valid_from=valid_from, valid_to=valid_to)
