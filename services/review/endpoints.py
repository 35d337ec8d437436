"""Review's HTTP routes (internal: the gateway checks who calls and passes the hospital a
hospital token is bound to, and who acts, in headers).

- `GET /flags`, `GET /flags/{id}`: flags with their evidence and workflow (`hospital`: only that
  hospital's; another's is 404).
- `POST /flags/{id}/answer`: the hospital's answer (申诉), by the deadline.
- `POST /flags/{id}/decision`: a bureau reviewer's decision; a deduction goes to the outbox as
  `deduction-confirmed` for the pricer's next settlement.
- `POST /hospital-rules:run`: the hospital-level rules for a month or quarter.
- `GET /flag-history`: the append-only audit of answers and decisions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from services.review import handlers, repository
from services.review.domain.workflow import STATUSES
from shared.errors import Invalid
from shared.messaging import Outbox
from shared.text import ID_PATTERN
from shared.web import Conn, stage_service

ACTOR_HEADER = "x-drgdip-actor"  # who acts (set by the gateway): token:<id>
ROLE_HEADER = "x-drgdip-role"
HOSPITAL_HEADER = "x-drgdip-hospital"  # the hospital a hospital token is bound to

Rules = Annotated[handlers.Rules, Depends(stage_service(repository.NAME))]
Actor = Annotated[str, Header(alias=ACTOR_HEADER, min_length=1, max_length=128)]
FlagId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(tags=["review"])


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


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str = Field(max_length=16, description="confirmed | dismissed")
    reason: str = Field(max_length=4000)
    deduction: str | None = Field(None, max_length=24, description="yuan to the fen, confirmed only")


@router.post("/flags/{flag_id}/decision")
async def decide_flag(flag_id: FlagId, body: Decision, conn: Conn, rules: Rules, actor: Actor,
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
