"""Pricer's HTTP routes: policy versions (import, list), settlement runs and statements, re-pricing,
negotiation rounds over drafts of policies (`/negotiations…`, `negotiations.py`),
hospitals' monthly declarations, the working-day calendar, budgets and the indicators they feed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.pricer import handlers, negotiations, repository
from services.pricer.domain import negotiation as ng
from services.pricer.domain.policy import PolicyError
from services.pricer.domain.standards import group_standards
from shared.errors import Invalid, NotFound
from shared.messaging import Outbox
from shared.text import ID_PATTERN
from shared.web import Conn, Engine, stage_service

ACTOR_HEADER = "x-drgdip-actor"  # who changes a policy over HTTP (set by the gateway)

Policies = Annotated[repository.Policies, Depends(stage_service(repository.NAME))]

router = APIRouter(tags=["pricer"])


def _actor(request: Request) -> str:
    return request.headers.get(ACTOR_HEADER) or "api"


@router.post("/policies", status_code=201)
async def upload_policy(request: Request, response: Response, conn: Conn, policies: Policies) -> dict:
    """Import a policy version (bureau only: the gateway protects this route)."""
    policy, stored = await handlers.import_policy(conn, await request.body(), _actor(request),
                                                  book=policies.drg)
    if not stored:
        response.status_code = 200
    return handlers.policy_summary(policy, stored)


@router.post("/dip/policies", status_code=201)
async def upload_dip_policy(body: dict[str, Any], request: Request, conn: Conn) -> dict:
    """Import a DIP policy version with the catalogue it prices with: {"policy", "catalogue"}."""
    for key in ("policy", "catalogue"):
        if not isinstance(body.get(key), dict):
            raise PolicyError([(key, "required (a JSON object)")])
    # the standard library writes any JSON number back (orjson refuses integers past 64 bits:
    # such a document is then refused by the parsers with the field at fault)
    dip = await handlers.import_dip_policy(conn, json.dumps(body["policy"]).encode(),
                                           json.dumps(body["catalogue"]).encode(), _actor(request))
    return handlers.dip_policy_summary(dip)


@router.get("/policies")
async def list_policies(conn: Conn) -> dict:
    return {"policies": await repository.list_policies(conn)}


@router.get("/statements")
async def list_statements(hospital: str, conn: Conn, period: str | None = None) -> dict:
    """Every stored settlement statement version of a hospital (optionally one period)."""
    return {"statements": await repository.list_statements(conn, hospital, period)}


Region = Annotated[str, Query(min_length=1, max_length=32, pattern=ID_PATTERN)]
Year = Annotated[str, Query(pattern=r"^(19|20)\d{2}$")]


@router.get("/indicators/budget")
async def budget_execution(conn: Conn, region: Region, year: Year) -> dict:
    """Budget execution of a region's year (§12): pre-settled per month with the point value and
    the share of the budget paid (per month and cumulatively), the current point value against
    the budget point value, the annual clearing and the prepayments (预付金) per hospital. Money
    as yuan strings; `budget` is null until the bureau sets it."""
    return jsonable(await handlers.budget_report(conn, region, year))


@router.get("/indicators/timeliness")
async def settlement_timeliness(conn: Conn, policies: Policies, region: Region,
                                period: str = Query(pattern=r"^(19|20)\d{2}-(0[1-9]|1[0-2])$"),
                                hospital: str | None = Query(None, min_length=1, max_length=32)) -> dict:
    """Settlement timeliness (结算及时性, §8) of a region's month per hospital: declared at,
    first pre-settled at, the working days between (or so far, while pending) against the
    policy's limit (20). `hospital`: that hospital's row only (the counts stay the region's)."""
    doc = await handlers.settlement_timeliness(conn, policies.drg, region, period, datetime.now(UTC).date())
    if hospital is not None:
        doc["rows"] = [r for r in doc["rows"] if r["hospital_code"] == hospital]
        doc["late"] = [h for h in doc["late"] if h == hospital]
        doc["pending"] = [h for h in doc["pending"] if h == hospital]
    return jsonable(doc)


@router.get("/indicators/prepayments")
async def prepayments(conn: Conn, region: Region, year: Year,
                      hospital: str | None = Query(None, min_length=1, max_length=32)) -> dict:
    """The year's prepayments (预付金) per hospital of the region: granted, netted at the annual
    clearing, outstanding. `hospital`: that hospital's row only."""
    doc = await handlers.prepayment_report(conn, region, year)
    if hospital is not None:
        doc["rows"] = [r for r in doc["rows"] if r["hospital_code"] == hospital]
        doc["total"] = {k: sum((r[k] for r in doc["rows"]), Decimal(0)) for k in doc["total"]}
    return jsonable(doc)


class DeclarationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hospital_code: str = Field(min_length=1, max_length=32)
    period: str = Field(pattern=r"^(19|20)\d{2}-(0[1-9]|1[0-2])$", description="YYYY-MM")


@router.post("/declarations", status_code=201)
async def declare(body: DeclarationRequest, request: Request, response: Response, conn: Conn) -> dict:
    """A hospital's monthly declaration (申报): stored once per hospital and month (201); a
    repeat answers the stored one (200)."""
    answer = await handlers.declare(conn, body.hospital_code, body.period, _actor(request))
    if not answer["stored"]:
        response.status_code = 200
    return jsonable(answer)


@router.post("/calendar", status_code=201)
async def import_calendar(request: Request, conn: Conn) -> dict:
    """Import a year's public holidays and make-up working days (domain/timeliness.py),
    replacing that year's earlier import."""
    return await handlers.import_calendar(conn, await request.body(), _actor(request))


@router.get("/calendar")
async def calendar(conn: Conn) -> dict:
    """The imported years, with their numbers of holidays and make-up working days."""
    return jsonable({"years": await repository.calendar_years(conn)})


class BudgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = Field(min_length=1, max_length=32, pattern=ID_PATTERN)
    year: str = Field(pattern=r"^(19|20)\d{2}$")
    amount: str = Field(pattern=r"^\d{1,15}(\.\d{1,2})?$", description="yuan, e.g. \"120000000.00\"")
    point_value: str | None = Field(None, pattern=r"^\d{1,12}(\.\d{1,6})?$",
                                    description="the budget point value (预算点值), point method")


@router.post("/budgets", status_code=201)
async def set_budget(body: BudgetRequest, request: Request, conn: Conn) -> dict:
    """Set a region's budget for a year (a new version; the annual clearing uses the latest)."""
    return jsonable(await handlers.set_budget(
        conn, body.region, body.year, Decimal(body.amount),
        None if body.point_value is None else Decimal(body.point_value), _actor(request)))


def jsonable(value: Any) -> Any:
    """Decimals as strings, times in ISO 8601 (the API's money never travels as a float)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value.isoformat() if hasattr(value, "isoformat") else value


class SettlementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    period: str = Field(pattern=r"^(19|20)\d{2}(-(0[1-9]|1[0-2]))?$",
                        description="YYYY-MM: monthly pre-settlement; YYYY: annual clearing (1900-2099)")
    # a decimal string to the fen, bounded so that every figure of the clearing stays exact
    budget: str | None = Field(None, pattern=r"^\d{1,15}(\.\d{1,2})?$",
                               description="the year's budget in yuan, e.g. \"120000000.00\"; a year only")


@router.post("/settlements", status_code=201)
async def run_settlement(body: SettlementRequest, conn: Conn) -> dict:
    """Pre-settle a month or clear a year (§8) in one transaction: a new statement version."""
    budget = None if body.budget is None else Decimal(body.budget)
    run = await handlers.settle(conn, body.policy_id, body.period, budget)
    return run.summary()


class RepriceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = Field(min_length=1, max_length=32, pattern=ID_PATTERN)
    date_from: date | None = Field(None, alias="from", description="first discharge date")
    date_to: date | None = Field(None, alias="to", description="last discharge date")


@router.post("/cases:reprice")
async def reprice(body: RepriceRequest, engine: Engine, policies: Policies) -> dict:
    """Re-price the stored cases of a region under the policies in force now, as `drgdip reprice`
    does: one transaction per batch, so the route holds no connection of its own (the embedded
    SQLite engine has one, which every batch needs)."""
    if body.date_from and body.date_to and body.date_to < body.date_from:
        raise Invalid(f"to {body.date_to} is before from {body.date_from}", code="INVALID_PERIOD", field="to")
    # the stage's relay publishes the new outbox rows (the table is the stage's own)
    r = await handlers.reprice(engine, Outbox(repository.NAME, repository.metadata), policies, body.region,
                               date_from=body.date_from, date_to=body.date_to)
    return r.summary(body.region, body.date_from, body.date_to)


@router.get("/standards")
async def standards_of_group(conn: Conn, policy_id: str = Query(min_length=1, max_length=64, pattern=ID_PATTERN),
                          drg: str = Query(min_length=1, max_length=32),
                          version: int | None = Query(None, ge=1, le=1_000_000)) -> dict:
    """A group's payment standard per hospital level under a DRG policy version (the latest
    without `version`): the input of the cross-region / cross-version comparison (§12)."""
    if version is None:
        policy = await repository.policy_book().latest(conn, policy_id)
    else:
        try:
            policy = await repository.policy_book().get(conn, policy_id, version)
        except KeyError:
            policy = None
    if policy is None:
        raise NotFound(f"no DRG policy {policy_id!r}" + (f" v{version}" if version else ""),
                       code="POLICY_NOT_FOUND", field="policy_id")
    return group_standards(policy, drg)


class DepositReturns(BaseModel):
    model_config = ConfigDict(extra="forbid")
    year: str = Field(pattern=r"^(19|20)\d{2}$")
    evaluation_id: str = Field(min_length=1, max_length=64)
    hospitals: dict[str, dict[str, Any]] = Field(
        min_length=1, max_length=100_000,
        description='per hospital {"score": "87.50", "deposit_return_share": "0.9167"}')


@router.post("/deposit-returns", status_code=201)
async def adopt_deposit_returns(body: DepositReturns, request: Request, conn: Conn) -> dict:
    """Keep an adopted yearly performance evaluation (绩效评价) for the year's clearing: each
    hospital's share of its withheld quality deposit (质量保证金) returned (bureau only: the
    gateway relays it when an evaluation is adopted)."""
    n = await handlers.adopt_deposit_returns(conn, body.year, body.evaluation_id, _actor(request), body.hospitals)
    return {"year": body.year, "evaluation_id": body.evaluation_id, "hospitals": n}


# --- negotiation rounds (协商谈判, docs/domain.md §14) ----------------------------------------------

def _who(request: Request) -> negotiations.Who:
    h = request.headers
    return negotiations.Who(h.get(ACTOR_HEADER) or "api", h.get("x-drgdip-role"), h.get("x-drgdip-hospital"))


Who = Annotated[negotiations.Who, Depends(_who)]
DraftId = Annotated[int, Path(ge=1, le=2**53)]
CommentId = Annotated[int, Path(ge=1, le=2**53)]
TEXT = r"^[^\x00]+$"  # free text: anything but NUL (which PostgreSQL refuses in text)
DECIMAL = r"^\d{1,12}(\.\d{1,6})?$"


class DraftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["policy", "dip-policy", "scheme-changeset"]
    title: str = Field(min_length=1, max_length=200, pattern=TEXT)
    document: dict[str, Any] = Field(description="a policy document; {policy, catalogue}; a change set")
    opens: date = Field(description="first day comments are taken (China Standard Time)")
    closes: date = Field(description="last day comments are taken (China Standard Time)")


@router.post("/negotiations", status_code=201)
async def publish_draft(body: DraftRequest, who: Who, conn: Conn) -> dict:
    """Publish a draft to the hospitals with its comment window (bureau-admin, through the gateway)."""
    return await negotiations.publish(conn, who, body.kind, body.title, body.document, body.opens, body.closes)


@router.get("/negotiations")
async def list_drafts(conn: Conn, status: Literal["open", "adopted"] | None = None) -> dict:
    return {"drafts": await repository.list_drafts(conn, status)}


@router.get("/negotiations/{draft_id}")
async def get_draft(draft_id: DraftId, conn: Conn) -> dict:
    return await negotiations.get(conn, draft_id)


@router.get("/negotiations/{draft_id}/impact")
async def draft_impact(draft_id: DraftId, conn: Conn, policies: Policies,
                       hospital: str = Query(min_length=1, max_length=32, pattern=ID_PATTERN),
                       year: int | None = Query(None, ge=1900, le=2099)) -> dict:
    """One hospital's cases priced under the draft vs the policy in force: per group and in total."""
    return await negotiations.impact(conn, policies, draft_id, hospital, year)


class CommentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(min_length=1, max_length=120, pattern=TEXT, description="e.g. weight:<DRG>, coefficient:level:3")
    kind: ng.CommentKind = "comment"
    reason: str = Field(min_length=1, max_length=4000, pattern=TEXT)
    counter_proposal: str | None = Field(None, min_length=1, max_length=200, pattern=TEXT,
                                         description="a decimal for a numeric item")


@router.post("/negotiations/{draft_id}/comments", status_code=201)
async def comment_on_draft(draft_id: DraftId, body: CommentRequest, who: Who, conn: Conn) -> dict:
    return await negotiations.comment(conn, who, draft_id, body.item, body.kind, body.reason, body.counter_proposal)


@router.get("/negotiations/{draft_id}/comments")
async def list_draft_comments(draft_id: DraftId, conn: Conn,
                              hospital: str | None = Query(None, min_length=1, max_length=32,
                                                           pattern=ID_PATTERN)) -> dict:
    return await negotiations.list_comments(conn, draft_id, hospital)


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: ng.Outcome
    reason: str = Field(min_length=1, max_length=4000, pattern=TEXT)


@router.post("/negotiations/{draft_id}/comments/{comment_id}/answer")
async def answer_comment(draft_id: DraftId, comment_id: CommentId, body: AnswerRequest, who: Who,
                         conn: Conn) -> dict:
    return await negotiations.answer(conn, who, draft_id, comment_id, body.outcome, body.reason)


class ChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(min_length=1, max_length=120, pattern=TEXT)
    value: Annotated[str, Field(pattern=rf"^(\d{{1,12}}(\.\d{{1,6}})?|{ng.WITHDRAWN})$")] | dict[str, Any] = Field(
        description='a decimal; for a change-set operation "withdrawn" or the operation as adopted')
    reason: str = Field(min_length=1, max_length=4000, pattern=TEXT)
    comment_ids: list[int] = Field(default_factory=list, max_length=1000)


class AdoptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    valid_from: date = Field(description="the adopted version is in force from this day")
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="default: the draft's version")
    changes: list[ChangeBody] = Field(default_factory=list, max_length=10_000)
    notes: str = Field("", max_length=4000)
    scheme: dict[str, Any] | None = Field(None, description="a scheme change set: the grouper's answer to "
                                          "building and registering it as adopted (the gateway passes it on)")


@router.post("/negotiations/{draft_id}/adopt")
async def adopt_draft(draft_id: DraftId, body: AdoptRequest, who: Who, conn: Conn, policies: Policies,
                      check: bool = Query(False, description="a scheme change set: answer it as adopted, "
                                                             "store nothing")) -> dict:
    changes = [ng.ChangeRequest(c.item, c.value, c.reason, tuple(c.comment_ids)) for c in body.changes]
    return await negotiations.adopt(conn, policies, who, draft_id, body.valid_from, body.version, changes, body.notes,
                                    scheme=body.scheme, check_only=check)


@router.get("/negotiations/{draft_id}/report")
async def draft_report(draft_id: DraftId, conn: Conn, format: Literal["html", "csv"] = "html") -> Response:
    text = await negotiations.report(conn, draft_id, format)
    return Response(text, media_type="text/csv; charset=utf-8" if format == "csv" else "text/html; charset=utf-8")


@router.get("/negotiations/{draft_id}/history")
async def draft_history(draft_id: DraftId, conn: Conn) -> dict:
    return {"entries": await negotiations.history(conn, draft_id)}
