"""Ingest's HTTP routes: lists in the native and the national forms, bulk imports, versions and
quality scores.

The routes that receive lists open their one transaction themselves (`Engine`) instead of taking
`Conn`: a rejected list is stored with its problems (it counts in the quality scores), so the
transaction commits before the rejection is raised as the API error.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from services.ingest import repository
from services.ingest.domain import national as nat
from services.ingest.domain import quality
from services.ingest.domain.intake import Outcome, Received, problem
from services.ingest.handlers import Intake, import_stream
from shared.errors import Invalid, NotFound
from shared.web import Conn, stage_service

router = APIRouter(tags=["ingest"])
Ingest = Annotated[Intake, Depends(stage_service("ingest"))]
# the hospital the caller acts for (set by the gateway; absent: the bureau, any hospital)
CallerHospital = Annotated[str | None, Header(alias="x-drgdip-hospital")]
CorrelationId = Annotated[str | None, Header(alias="x-correlation-id")]
NATIONAL_INTERFACES = ("4101", "4101A", "4102")


async def _receive_one(intake: Intake, fmt: str, request: Request, caller: str | None,
                       correlation_id: str | None) -> Outcome:
    body = await request.body()
    item = (Received(fmt, body, caller, correlation_id) if correlation_id
            else Received(fmt, body, caller))
    return (await intake.receive([item]))[0]


@router.post("/settlement-lists", status_code=202)
async def submit(request: Request, intake: Ingest, caller: CallerHospital = None,
                 correlation_id: CorrelationId = None) -> JSONResponse:
    """One list in the native form (the 4101 `input` node)."""
    outcome = await _receive_one(intake, "native", request, caller, correlation_id)
    if outcome.status == "rejected":
        raise outcome.rejection()
    return JSONResponse(outcome.to_dict(), status_code=202 if outcome.status == "accepted" else 200)


@router.post("/hsa/{infno}")
async def national(infno: str, request: Request, intake: Ingest,
                   caller: CallerHospital = None, correlation_id: CorrelationId = None) -> dict:
    """The national interfaces 4101, 4101A and 4102, answered in the national shape."""
    if infno not in NATIONAL_INTERFACES:
        return nat.failure_reply([problem("infno", "NAT-INFNO", f"不支持的交易编号 {infno}",
                                          f"unsupported interface {infno}")])
    outcome = await _receive_one(intake, infno, request, caller, correlation_id)
    if outcome.status == "rejected":
        return nat.failure_reply(outcome.problems)
    return nat.success_reply(outcome.case_id or "", [p for p in outcome.problems if p.severity == "warning"])


@router.post("/settlement-lists:import")
async def bulk_import(request: Request, intake: Ingest, format: str = "jsonl",
                      caller: CallerHospital = None) -> dict:
    """A streamed bulk upload: JSON Lines of native lists, or CSV (`format=csv`); one
    transaction per chunk of lists (`import_stream`)."""
    if format not in ("jsonl", "csv"):
        raise Invalid("format must be jsonl or csv", code="INVALID_FIELD", field="format")
    return await import_stream(intake, request.stream(), format, caller)


@router.get("/settlement-lists/{case_id}/versions")
async def versions(case_id: str, conn: Conn, caller: CallerHospital = None) -> dict:
    rows = await repository.versions(conn, case_id)
    if not rows or (caller is not None and rows[0].hospital_code != caller):
        raise NotFound(f"no list {case_id!r}", code="CASE_NOT_FOUND", field="case_id")
    return {"case_id": case_id, "versions": [
        {"list_version": r.list_version, "status": r.status, "received_at": r.received_at.isoformat(),
         "format": r.format, "warnings": orjson.loads(r.warnings), "raw": r.raw.decode("utf-8", "replace")}
        for r in rows]}


@router.get("/quality")
async def quality_scores(conn: Conn, month: str | None = None, hospital: str | None = None,
                         caller: CallerHospital = None) -> dict:
    """时效性, 完整度, 合格率, 准确性 per hospital and month of discharge."""
    rows = await repository.decided_lists(conn, caller or hospital)
    scores = quality.score_quality(quality.stored_records(
        ((r.hospital_code, r.discharge_date, r.received_at, r.problems) for r in rows), month))
    return {"scores": [_score(s) for s in scores]}


def _score(s: quality.QualityScore) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, str | int) else v) for k, v in s.__dict__.items()}


@router.get("/lists/count")
async def count(conn: Conn) -> dict:
    return {"lists": await repository.count_lists(conn)}
