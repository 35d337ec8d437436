"""Ingest's HTTP routes: lists in the native and the national forms, bulk imports, versions and
quality scores.

The routes that receive lists open their one transaction themselves (`Engine`) instead of taking
`Conn`: a rejected list is stored with its problems (it counts in the quality scores), so the
transaction commits before the rejection is raised as the API error.

Every input is bounded before it is used: a list's body (`max_list_bytes`, 413 beyond, never
read whole nor stored), the headers and query parameters that reach a query (a NUL or an
over-long value would fail in PostgreSQL, so they are refused here with their field).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from services.ingest import repository
from services.ingest.domain import national as nat
from services.ingest.domain import quality
from services.ingest.domain.intake import Outcome, Received, problem
from services.ingest.handlers import Intake, import_stream
from shared.errors import Invalid, NotFound
from shared.text import is_plain_id
from shared.web import Conn, read_body, stage_service

router = APIRouter(tags=["ingest"])
Ingest = Annotated[Intake, Depends(stage_service("ingest"))]
# the hospital the caller acts for (set by the gateway; absent: the bureau, any hospital)
CallerHospital = Annotated[str | None, Header(alias="x-drgdip-hospital")]
CorrelationId = Annotated[str | None, Header(alias="x-correlation-id")]
NATIONAL_INTERFACES = ("4101", "4101A", "4102")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _checked(value: str | None, field: str, max_len: int) -> str | None:
    """A header or query value that reaches the database: at most `max_len` printable characters."""
    if value is not None and not is_plain_id(value, max_len):
        raise Invalid(f"{field} must be 1-{max_len} printable characters", code="INVALID_FIELD", field=field)
    return value


async def _receive_one(intake: Intake, fmt: str, request: Request, caller: str | None,
                       correlation_id: str | None) -> Outcome:
    caller = _checked(caller, "x-drgdip-hospital", 32)
    correlation_id = _checked(correlation_id, "x-correlation-id", 64)
    body = await read_body(request, intake.limits.list_bytes, code="LIST_TOO_LARGE", what="the list")
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
                      encoding: str | None = None, caller: CallerHospital = None) -> dict:
    """A streamed bulk upload: JSON Lines of native lists, or CSV (`format=csv`, in UTF-8 or
    GB18030/GBK, detected or declared by `encoding`); one transaction per chunk of lists
    (`import_stream`). Each line is bounded (`max_line_bytes`)."""
    if format not in ("jsonl", "csv"):
        raise Invalid("format must be jsonl or csv", code="INVALID_FIELD", field="format")
    return await import_stream(intake, request.stream(), format,
                               _checked(caller, "x-drgdip-hospital", 32), encoding=encoding)


@router.get("/imports/{job_id}")
async def import_job(job_id: str, conn: Conn, offset: int = Query(0, ge=0),
                     limit: int = Query(1000, ge=1, le=10_000), caller: CallerHospital = None) -> dict:
    """An import job: when it started and ended (or that it was interrupted), its counts, and the
    lines it kept, each with its line number in the upload, status and problems (a page of
    `limit` from `offset`). A line missing from the numbering was never stored (blank, or over
    the line bound: its problem was in the import's answer)."""
    job = await repository.job(conn, job_id) if is_plain_id(job_id, 32) else None
    if job is None or (caller is not None and job.caller_hospital != caller):
        raise NotFound(f"no import job {job_id!r}", code="JOB_NOT_FOUND", field="job_id")
    summary = orjson.loads(job.summary) if job.summary else None
    return {
        "job_id": job_id, "format": job.format, "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "interrupted": bool(summary and summary.get("interrupted")),
        "counts": await repository.job_counts(conn, job_id),
        "offset": offset,
        "lines": [{"line": r.job_line, "status": r.status, "case_id": r.case_id,
                   "list_version": r.list_version,
                   "problems": orjson.loads(r.problems) if r.problems else []}
                  for r in await repository.job_lines(conn, job_id, offset, limit)],
    }


@router.get("/settlement-lists/{case_id}/versions")
async def versions(case_id: str, conn: Conn, caller: CallerHospital = None) -> dict:
    if not is_plain_id(case_id, 100):  # no such case id is ever stored
        raise NotFound(f"no list {case_id!r}", code="CASE_NOT_FOUND", field="case_id")
    rows = await repository.versions(conn, case_id)
    if not rows or (caller is not None and rows[0].hospital_code != caller):
        raise NotFound(f"no list {case_id!r}", code="CASE_NOT_FOUND", field="case_id")
    return {"case_id": case_id, "versions": [
        {"list_version": r.list_version, "status": r.status, "received_at": r.received_at.isoformat(),
         "format": r.format, "warnings": orjson.loads(r.warnings), "raw": r.raw.decode("utf-8", "replace")}
        for r in rows]}


@router.get("/quality")
async def quality_scores(conn: Conn, intake: Ingest, month: str | None = None, hospital: str | None = None,
                         caller: CallerHospital = None) -> dict:
    """时效性, 完整度, 合格率, 准确性 per hospital and month of discharge (时效性 from the lists'
    own discharge and declaration dates)."""
    if month is not None and not _MONTH.fullmatch(month):
        raise Invalid("month must be YYYY-MM", code="INVALID_FIELD", field="month")
    rows = await repository.decided_lists(conn, _checked(caller or hospital, "hospital", 32))

    def scores() -> list[dict[str, Any]]:
        return [_score(s) for s in quality.score_quality(quality.stored_records(
            ((r.hospital_code, r.discharge_date, r.declared_on, r.received_at, r.problems) for r in rows), month),
            deadline_days=intake.settings.timeliness_deadline_days)]

    # every decided list of the region is scored: CPU work, off the event loop
    return {"scores": await asyncio.to_thread(scores)}


def _score(s: quality.QualityScore) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, str | int) else v) for k, v in s.__dict__.items()}


@router.get("/lists/count")
async def count(conn: Conn) -> dict:
    return {"lists": await repository.count_lists(conn)}
