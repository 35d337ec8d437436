"""Review's HTTP routes, reached only through the gateway (which authenticates the caller and
passes on who it is: `x-drgdip-actor`, `x-drgdip-role`, and the hospital a hospital token is
bound to, `x-drgdip-hospital`).

- `GET /flags`, `GET /flags/{id}`: flags with their evidence and workflow (`hospital`: only that
  hospital's; another's is 404).
- `POST /flags/{id}/answer`: the hospital's answer (申诉), by the deadline.
- `POST /flags/{id}/decision`: a bureau reviewer's decision; a deduction goes to the outbox as
  `deduction-confirmed` for the pricer's next settlement.
- `POST /hospital-rules:run`: the hospital-level rules for a month or quarter.
- `GET /flag-history`: the append-only audit of answers and decisions.
- `/special-cases…`: special-case review (特例单议): applications, the panel and its decisions,
  the one appeal, the half-yearly publication and the audit; a decision goes to the outbox as
  `special-case-decided` for the pricer to price the case again.
- `/feedback…`: the feedback channel (意见收集): opinions of hospitals and their doctors, the
  bureau's triage, answer and closing, and the counts and answer times for the indicators.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.review import feedback, handlers, repository
from services.review import special_cases as special
from services.review.domain import feedback as fb
from services.review.domain import special_cases as sc
from services.review.domain.workflow import STATUSES
from shared.csvexport import to_csv
from shared.errors import Invalid, NotFound
from shared.messaging import Outbox
from shared.text import ID_PATTERN
from shared.web import Conn, Engine, stage_service

router = APIRouter(tags=["review"])

Rules = Annotated[handlers.Rules, Depends(stage_service(repository.NAME))]


# --- monitoring flags and their workflow ----------------------------------------------------------

ACTOR_HEADER = "x-drgdip-actor"  # who acts (set by the gateway): token:<id>
ROLE_HEADER = "x-drgdip-role"
HOSPITAL_HEADER = "x-drgdip-hospital"  # the hospital a hospital token is bound to

Actor = Annotated[str, Header(alias=ACTOR_HEADER, min_length=1, max_length=128)]
FlagId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/flags")
async def list_flags(conn: Conn, rules: Rules,
                     hospital: str | None = Query(None, min_length=1, max_length=32),
                     rule: str | None = Query(None, min_length=1, max_length=40),
                     status: str | None = Query(None, max_length=16),
                     period: str | None = Query(None, pattern=r"^\d{4}(-(0[1-9]|1[0-2])|Q[1-4])$"),
                     level: str | None = Query(None, pattern="^(case|hospital)$"),
                     limit: int = Query(100, ge=1, le=1000),
                     offset: int = Query(0, ge=0, le=100_000_000)) -> dict:
    """Flags, newest first (superseded ones only with `status=superseded`)."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", code="INVALID_FIELD", field="status")
    return {"flags": await handlers.list_flags(conn, rules, hospital=hospital, rule=rule, status=status,
                                               period=period, level=level, limit=limit, offset=offset)}


@router.get("/flags/{flag_id}")
async def get_flag(flag_id: FlagId, conn: Conn, rules: Rules,
                   hospital: str | None = Query(None, min_length=1, max_length=32)) -> dict:
    return await handlers.get_flag(conn, flag_id, hospital, rules)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(max_length=4000, description="the hospital's explanation (申诉)")


@router.post("/flags/{flag_id}/answer")
async def answer_flag(flag_id: FlagId, body: Answer, conn: Conn, rules: Rules, actor: Actor,
                      hospital: Annotated[str, Header(alias=HOSPITAL_HEADER, min_length=1, max_length=32)]) -> dict:
    return await handlers.answer_flag(conn, flag_id, hospital, body.answer, actor, rules)


class FlagDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str = Field(max_length=16, description="confirmed | dismissed")
    reason: str = Field(max_length=4000)
    deduction: str | None = Field(None, max_length=24, description="yuan to the fen, confirmed only")


@router.post("/flags/{flag_id}/decision")
async def decide_flag(flag_id: FlagId, body: FlagDecision, conn: Conn, rules: Rules, actor: Actor,
                      role: Annotated[str | None, Header(alias=ROLE_HEADER, max_length=32)] = None) -> dict:
    view, events = await handlers.decide_flag(conn, flag_id, body.outcome, body.reason, body.deduction,
                                              actor, role, rules)
    # the stage's relay publishes the outbox rows (the table is the stage's own)
    await Outbox(repository.NAME, repository.metadata).add(conn, events)
    return view


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(pattern=r"^\d{4}(-(0[1-9]|1[0-2])|Q[1-4])$", description="YYYY-MM or YYYYQn")
    region: str | None = Field(None, min_length=1, max_length=32, pattern=ID_PATTERN)


@router.post("/hospital-rules:run")
async def run_hospital_rules(body: RunRequest, conn: Conn, rules: Rules) -> dict:
    runs = await handlers.run_hospital_rules(conn, body.period, body.region, rules, trigger="api")
    return {"period": body.period, "runs": [r.summary() for r in runs]}


@router.get("/flag-history")
async def flag_history(conn: Conn, flag_id: int | None = Query(None, ge=1, le=2**63 - 1),
                       hospital: str | None = Query(None, min_length=1, max_length=32),
                       since: datetime | None = Query(None, alias="from"),
                       until: datetime | None = Query(None, alias="to"),
                       limit: int | None = Query(None, ge=1, le=100_000),
                       offset: int = Query(0, ge=0, le=100_000_000)) -> dict[str, Any]:
    return {"entries": await handlers.flag_history(conn, flag_id=flag_id, hospital=hospital, since=since,
                                                   until=until, limit=limit, offset=offset)}


# --- special-case review (特例单议) -------------------------------------------------------------------

def _who(request: Request) -> special.Who:
    h = request.headers
    return special.Who(h.get("x-drgdip-actor") or "api", h.get("x-drgdip-role"), h.get("x-drgdip-hospital"))


Who = Annotated[special.Who, Depends(_who)]
AMOUNT = r"^\d{1,12}(\.\d{1,2})?$"
TEXT = r"^[^\x00]+$"  # free text: anything but NUL (which PostgreSQL refuses in text)
Id = Annotated[str, Field(min_length=1, max_length=32, pattern=ID_PATTERN)]
ApplicationId = Annotated[int, Path(ge=1, le=2**53)]


class Evidence(BaseModel):
    """One evidence document as the hospital holds it: its name and SHA-256 (not the file)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, ge=0, le=1 << 40)


class Application(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    reason: sc.Reason
    text: str = Field(min_length=1, max_length=4000, pattern=TEXT)
    evidence: list[Evidence] = Field(default_factory=list, max_length=50)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: sc.Outcome
    amount: str | None = Field(None, pattern=AMOUNT, description="yuan, for adjust_standard")
    reason: str = Field(min_length=1, max_length=4000, pattern=TEXT)


class Appeal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000, pattern=TEXT)


class MemberRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_id: str = Field(pattern=r"^[0-9a-f]{12}$")
    period: str = Field(max_length=6, description="the quarter, e.g. 2024Q1")
    hospitals: list[Id] = Field(default_factory=list, max_length=500)
    active: bool = True
    reason: str | None = Field(None, max_length=1000, pattern=TEXT)


@router.post("/special-cases", status_code=201)
async def apply(body: Application, who: Who, rules: Rules, engine: Engine) -> dict[str, Any]:
    """One transaction for the application; a refusal on eligibility or the cap rolls it back
    and is audited in a second one."""
    if not who.hospital_code:
        raise Invalid("an application comes from a hospital", code="HOSPITAL_REQUIRED", field="hospital")
    try:
        async with engine.begin() as conn:
            return await special.apply(conn, who, await rules.book.in_force(conn), body.case_id, body.reason,
                                       body.text, [e.model_dump(exclude_none=True) for e in body.evidence])
    except sc.REFUSALS as refused:
        async with engine.begin() as conn:
            await special.record_refusal(conn, who, body.case_id, body.reason, refused)
        raise


@router.get("/special-cases")
async def list_applications(who: Who, conn: Conn, period: str | None = Query(None, max_length=6),
                            hospital: str | None = Query(None, max_length=32, pattern=ID_PATTERN),
                            status: str | None = Query(None, max_length=12), limit: int = Query(1000, ge=1, le=10_000),
                            offset: int = Query(0, ge=0, le=100_000_000)) -> dict[str, Any]:
    return {"applications": await special.queue(conn, who, period=period, hospital=hospital, status=status,
                                                limit=limit, offset=offset)}


@router.get("/special-cases/panel")
async def list_panel(conn: Conn, period: str | None = Query(None, max_length=6)) -> dict[str, Any]:
    return {"members": await repository.list_panel(conn, sc.check_period(period) if period else None)}


@router.post("/special-cases/panel", status_code=201)
async def register_member(body: MemberRequest, who: Who, conn: Conn) -> dict[str, Any]:
    return await special.register_member(conn, who, body.token_id, body.period, body.hospitals, body.active,
                                         body.reason)


@router.get("/special-cases/publication")
async def publication(conn: Conn, half: str = Query(max_length=6),
                      hospital: str | None = Query(None, max_length=32, pattern=ID_PATTERN),
                      format: str = Query("json", pattern="^(json|csv)$")) -> Any:
    rows = await special.publication(conn, half, hospital)
    if format == "csv":
        return Response(to_csv(sc.PUBLICATION_COLUMNS, rows), media_type="text/csv; charset=utf-8")
    return {"half": half, "hospitals": rows}


@router.get("/special-cases/audit")
async def audit(conn: Conn, action: str | None = Query(None, max_length=40),
                actor: str | None = Query(None, max_length=128, pattern=ID_PATTERN),
                subject: str | None = Query(None, max_length=128, pattern=ID_PATTERN),
                since: datetime | None = Query(None, alias="from"), until: datetime | None = Query(None, alias="to"),
                limit: int = Query(1000, ge=1, le=100_000), offset: int = Query(0, ge=0, le=100_000_000),
                format: str = Query("json", pattern="^(json|csv)$")) -> Any:
    if action is not None and action not in special.ACTIONS:
        raise Invalid(f"action must be one of {', '.join(special.ACTIONS)}", code="INVALID_FIELD", field="action")
    rows = await repository.audit_rows(conn, action=action, actor=actor, subject=subject, since=since,
                                       until=until, limit=limit, offset=offset)
    if format == "csv":
        return Response(to_csv(special.AUDIT_COLUMNS, rows), media_type="text/csv; charset=utf-8")
    return {"entries": rows}


@router.get("/special-cases/{application_id}")
async def get_application(application_id: ApplicationId, who: Who, conn: Conn) -> dict[str, Any]:
    found = await repository.application(conn, application_id)
    if found is None or (who.hospital_code and found["hospital_code"] != who.hospital_code):
        raise NotFound(f"no special-case application {application_id}", code="SPECIAL_CASE_NOT_FOUND",
                       field="application_id")
    return found


@router.post("/special-cases/{application_id}/decision")
async def decide(application_id: ApplicationId, body: Decision, request: Request, who: Who, conn: Conn) -> dict[str, Any]:
    d = sc.DecisionInput(body.outcome, body.reason, None if body.amount is None else Decimal(body.amount))
    return await special.decide(conn, Outbox(repository.NAME, repository.metadata), who, application_id, d,
                                request.headers.get("x-correlation-id") or f"special-case-{application_id}")


@router.post("/special-cases/{application_id}/appeal")
async def appeal(application_id: ApplicationId, body: Appeal, who: Who, conn: Conn) -> dict[str, Any]:
    if not who.hospital_code:
        raise Invalid("an appeal comes from the hospital", code="HOSPITAL_REQUIRED", field="hospital")
    return await special.appeal(conn, who, application_id, body.reason)


# --- the feedback channel (意见收集) -----------------------------------------------------------------

FeedbackId = Annotated[int, Path(ge=1, le=2**53)]
CaseId = Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN)]


class Opinion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: fb.Category
    text: str = Field(min_length=1, max_length=4000, pattern=TEXT)
    author: str | None = Field(None, min_length=1, max_length=100, pattern=TEXT,
                               description="a doctor or a department, as the hospital names it")
    case_ids: list[CaseId] = Field(default_factory=list, max_length=fb.MAX_CASES)


class FeedbackStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=4000, pattern=TEXT)
    answer: str | None = Field(None, max_length=4000, pattern=TEXT)


@router.post("/feedback", status_code=201)
async def send_feedback(body: Opinion, who: Who, conn: Conn) -> dict[str, Any]:
    return await feedback.send(conn, who, body.category, body.text, body.author, body.case_ids)


@router.get("/feedback")
async def list_feedback(who: Who, conn: Conn, hospital: str | None = Query(None, max_length=32, pattern=ID_PATTERN),
                        status: str | None = Query(None, max_length=12), category: str | None = Query(None, max_length=24),
                        limit: int = Query(100, ge=1, le=1000),
                        offset: int = Query(0, ge=0, le=100_000_000)) -> dict[str, Any]:
    if status is not None and status not in fb.STATUSES:
        raise Invalid(f"status must be one of {', '.join(fb.STATUSES)}", code="INVALID_FIELD", field="status")
    if category is not None and category not in fb.CATEGORIES:
        raise Invalid(f"category must be one of {', '.join(fb.CATEGORIES)}", code="INVALID_FIELD", field="category")
    return {"feedback": await repository.list_feedback(conn, hospital=who.hospital_code or hospital, status=status,
                                                       category=category, limit=limit, offset=offset)}


@router.get("/feedback/stats")
async def feedback_stats(conn: Conn, rules: Rules,
                         first: date | None = Query(None, alias="from", description="sent on or after (CST)"),
                         last: date | None = Query(None, alias="to", description="sent on or before (CST)"),
                         region: str | None = Query(None, max_length=32, pattern=ID_PATTERN)) -> dict[str, Any]:
    """Counts and answer times (working days of the region's review calendar) for the indicators."""
    return await feedback.stats(conn, await rules.book.in_force(conn), region, first, last)


@router.get("/feedback/{feedback_id}")
async def get_feedback(feedback_id: FeedbackId, who: Who, conn: Conn) -> dict[str, Any]:
    return await feedback.get(conn, who, feedback_id)


async def _feedback_step(feedback_id: int, step: str, body: FeedbackStep, who: special.Who,
                         conn: Any) -> dict[str, Any]:
    return await feedback.step(conn, who, feedback_id, step, body.note, body.answer)


@router.post("/feedback/{feedback_id}/triage")
async def triage_feedback(feedback_id: FeedbackId, body: FeedbackStep, who: Who, conn: Conn) -> dict[str, Any]:
    return await _feedback_step(feedback_id, "triage", body, who, conn)


@router.post("/feedback/{feedback_id}/answer")
async def answer_feedback(feedback_id: FeedbackId, body: FeedbackStep, who: Who, conn: Conn) -> dict[str, Any]:
    return await _feedback_step(feedback_id, "answer", body, who, conn)


@router.post("/feedback/{feedback_id}/close")
async def close_feedback(feedback_id: FeedbackId, body: FeedbackStep, who: Who, conn: Conn) -> dict[str, Any]:
    return await _feedback_step(feedback_id, "close", body, who, conn)
