"""Review's event consumer and commands: every priced case is reviewed and announced as
`case-flagged`; the monitoring rules' parameters are imported per region and period.

Every reviewed case gets a `case-flagged` event (with an empty flag list when nothing was
found), so the read model knows the case went through review. A new priced version of a case
is reviewed again and replaces its open flags (kept in `review_flags`). When a case turns out to
be the earlier stay of one already reviewed, the later case is reviewed again (a new review
version) when its split-admission flags change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review import special_cases as special
from services.review.domain import workflow
from services.review.domain.hospital_rules import (
    HospitalFlag,
    Period,
    judge,
    periods_needed,
)
from services.review.domain.parameters import (
    DEFAULTS,
    FlagWorkflow,
    RulesError,
    RuleSet,
    parse_rules,
)
from services.review.domain.review import PricedStay, review_cases, share_keys, where_treated
from services.review.domain.workflow import FlagState, answer_deadline, cst_day, reconcile
from shared.db import Versions
from shared.errors import NotFound
from shared.events import (
    CaseFacts,
    CaseFlagged,
    CasePriced,
    DeductionConfirmed,
    Envelope,
    PeriodSettled,
)


class Rules:
    """The review stage's object: the stored rule-parameter versions, each parsed once."""

    def __init__(self) -> None:
        self.book: Versions[RuleSet] = repository.rule_book()


_DEFAULT_RULES = Rules()


async def on_case_priced(conn: AsyncConnection, envs: Sequence[Envelope],
                         rules: Rules | None = None) -> list[Envelope]:
    """Review a batch of priced cases (reads and writes each table once per batch)."""
    rules = rules or _DEFAULT_RULES
    in_force = await rules.book.in_force(conn)

    def decode() -> tuple[list[PricedStay], dict[str, tuple[CaseFacts, str]], dict[str, dict[str, Any]]]:
        priced, facts_json, figures = [], {}, {}
        for e in envs:
            case_id, p = e.case_id, e.typed_payload()
            priced.append(PricedStay.of(case_id, p, e.correlation_id))
            # the stay's facts as stored: the validated payload's own JSON, not serialized again
            facts_json[case_id] = (p.facts, orjson.dumps(e.payload["facts"]).decode())
            # what the hospital-level rules and the special-case review read of it (the latest wins)
            figures[case_id] = _figures(p, special.figures_of(case_id, p, in_force))
        return priced, facts_json, figures

    priced, facts_json, figures = await asyncio.to_thread(decode)  # CPU work: off the event loop
    known = await repository.load_known(conn, {p.facts.psn_key for p in priced},
                                        {p.case_id for p in priced})
    shares = await repository.load_shares(conn, share_keys(known, priced))
    # reviewing a batch is CPU work: off the event loop, which keeps serving meanwhile
    outcome = await asyncio.to_thread(review_cases, known, priced, rules_on=in_force.on, shares=shares)
    await repository.save(conn, outcome.changed, known, outcome.announcements, facts_json, figures)
    await repository.save_share_deltas(conn, outcome.share_deltas)
    return await asyncio.to_thread(lambda: [
        Envelope.new(CaseFlagged(facts=a.facts, drg=a.drg, flags=list(a.flags), rules=a.rules,
                                 readmission_days=a.readmission_days),
                     case_id=a.case_id, correlation_id=a.correlation_id, producer=repository.NAME)
        for a in outcome.announcements])


def _figures(p: CasePriced, kept: dict[str, Any]) -> dict[str, Any]:
    """What the hospital-level rules keep of a priced case (besides what its stay holds), added
    to `kept` (the special-case review's figures of it) and returned."""
    f = p.facts
    kept.update(region=where_treated(f), hospital_level=p.hospital_level, weight=p.weight, case_type=p.case_type,
                discharge_way=f.discharge_way, planned=f.planned_readmission, withdrawn=f.withdrawn)
    return kept


@dataclass(frozen=True)
class Imported:
    region: str
    version: int
    valid_from: date
    valid_to: date | None
    stored: bool  # False: the same parameters and period are the latest version already


async def import_rules(conn: AsyncConnection, document: bytes, region: str, valid_from: date,
                       valid_to: date | None = None, who: str = "cli") -> Imported:
    """Store the parameters as the region's next version, in force from `valid_from` (the
    latest start, then the highest version, wins for a discharge date). Importing the same
    parameters and period as the latest version again stores nothing."""
    if not region or len(region) > 32:
        raise RulesError("region must be 1 to 32 characters", field="region")
    if valid_to is not None and valid_to < valid_from:
        raise RulesError("the period ends before it starts", field="valid_to")
    params = parse_rules(document)
    latest = await repository.latest_rules(conn, region)
    if latest is not None and (latest["valid_from"], latest["valid_to"]) == (valid_from, valid_to) \
            and parse_rules(latest["document"].encode()) == params:
        return Imported(region, latest["version"], valid_from, valid_to, False)
    version = (latest["version"] if latest else 0) + 1
    await repository.insert_rules(conn, region, version, valid_from, valid_to, params, who)
    await special.record_rules_change(
        conn, who, region,
        None if latest is None else {"version": latest["version"], "valid_from": str(latest["valid_from"]),
                                     "valid_to": str(latest["valid_to"]) if latest["valid_to"] else None,
                                     "rules": orjson.loads(latest["document"])["rules"]},
        {"version": version, "valid_from": str(valid_from), "valid_to": str(valid_to) if valid_to else None,
         "rules": params.to_document()["rules"]})
    return Imported(region, version, valid_from, valid_to, True)



# --- hospital-level rules -------------------------------------------------------------------------

@dataclass(frozen=True)
class HospitalRun:
    """One region's run of a period's hospital-level rules."""

    region: str
    period: str
    rules: str  # the parameters used: "<region> v<n>" | "default"
    cases: int  # the period's cases
    hospitals: int
    flags: list[HospitalFlag]
    raised: list[int]  # new flag ids
    superseded: list[int]

    def summary(self) -> dict[str, Any]:
        return {"region": self.region, "period": self.period, "rules": self.rules, "cases": self.cases,
                "hospitals": self.hospitals, "raised": self.raised, "superseded": self.superseded,
                "flags": [{"hospital_code": f.hospital_code, "rule": f.rule, "severity": f.severity,
                           "message": f.message} for f in self.flags]}


async def run_hospital_rules(conn: AsyncConnection, period: str, region: str | None = None,
                             rules: Rules | None = None, trigger: str = "command") -> list[HospitalRun]:
    """Run the hospital-level rules for a month or quarter, in one region or in every region with
    cases discharged in it, with the parameters in force on the period's last day. A run again
    replaces the open flags it finds changed or gone; answered and decided flags stand."""
    rules = rules or _DEFAULT_RULES
    p = Period.parse(period)
    in_force = await rules.book.in_force(conn)
    regions = [region] if region else await repository.regions_with_cases(conn, p.start, p.end)
    out = []
    for r in regions:
        rs = in_force.on(r, p.end - timedelta(days=1)) or DEFAULTS
        # each hospital's figures per period, summed by the database (not the cases themselves)
        counts = await repository.hospital_counts(
            conn, r, periods_needed(p, rs.params), readmission_days=rs.params.under_service.readmission_days,
            high_rw=rs.params.refusing_severe.high_rw)
        found = judge(counts, p, rs.params)
        insert, supersede = reconcile(await repository.hospital_flags_of(conn, r, p.label), found)
        ids = await repository.raise_hospital_flags(conn, r, rs.label, insert, supersede)
        run = HospitalRun(r, p.label, rs.label, sum(k.cases for k in counts[p].values()), len(counts[p]),
                          found, ids, supersede)
        await repository.record_run(conn, r, p.label, rs.label, run.cases, run.hospitals, len(found), len(ids),
                                    len(supersede), trigger)
        out.append(run)
    return out


async def on_period_settled(conn: AsyncConnection, envs: Sequence[Envelope],
                            rules: Rules | None = None) -> list[Envelope]:
    """The scheduled step after a monthly pre-settlement: the month's hospital-level rules in the
    policy's region, and the quarter's when the month closes one."""
    for e in envs:
        s: PeriodSettled = e.typed_payload()
        month = Period.parse(s.period)
        trigger = f"settlement {s.policy_id} v{s.version}"
        await run_hospital_rules(conn, month.label, s.region, rules, trigger)
        if month.closes_quarter():
            await run_hospital_rules(conn, month.quarter().label, s.region, rules, trigger)
    return []


# --- the flag workflow ----------------------------------------------------------------------------

def _state(row: dict[str, Any], wf: FlagWorkflow) -> FlagState:
    return FlagState(row["id"], row["hospital_code"] or "", row["status"], answer_deadline(row["raised_at"], wf),
                     row["answer"], row["answered_at"], row["answered_by"], row["decision_reason"],
                     row["decided_at"], row["decided_by"], row["deduction"])


def _workflow(in_force: Any, row: dict[str, Any]) -> FlagWorkflow:
    """The calendar of the flag's region in force on the day it was raised."""
    rs = in_force.on(row["region"] or "", cst_day(row["raised_at"])) or DEFAULTS
    return rs.params.flag_workflow


def _aware(at: datetime | None) -> datetime | None:
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


def flag_view(row: dict[str, Any], wf: FlagWorkflow) -> dict[str, Any]:
    """A flag as the API shows it (JSON-ready): what fired, its evidence and its workflow."""
    row = {k: _aware(v) if isinstance(v, datetime) else v for k, v in row.items()}
    state = _state(row, wf)
    return {"id": row["id"], "level": row["level"], "case_id": row["case_id"],
            "hospital_code": row["hospital_code"], "region": row["region"], "period": row["period"],
            "rule": row["rule"], "severity": row["severity"], "message": row["message"],
            "related_case_id": row["related_case_id"], "evidence": row["evidence"], "rules": row["rules"],
            "raised_at": row["raised_at"].isoformat(),
            "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
            **state.public()}


async def list_flags(conn: AsyncConnection, rules: Rules | None = None, **filters: Any) -> list[dict[str, Any]]:
    rules = rules or _DEFAULT_RULES
    in_force = await rules.book.in_force(conn)
    return [flag_view(r, _workflow(in_force, r)) for r in await repository.list_flags(conn, **filters)]


async def _flag(conn: AsyncConnection, flag_id: int, hospital: str | None, *,
                for_update: bool = False) -> dict[str, Any]:
    row = await repository.get_flag(conn, flag_id, for_update=for_update)
    if row is None or (hospital is not None and row["hospital_code"] != hospital):
        # another hospital's flag is reported as missing: its existence is not shared
        raise NotFound(f"no flag {flag_id}", code="FLAG_NOT_FOUND", field="flag_id")
    return {k: _aware(v) if isinstance(v, datetime) else v for k, v in row.items()}


async def get_flag(conn: AsyncConnection, flag_id: int, hospital: str | None = None,
                   rules: Rules | None = None) -> dict[str, Any]:
    """A flag with its workflow history; `hospital`: only that hospital's (else 404)."""
    rules = rules or _DEFAULT_RULES
    row = await _flag(conn, flag_id, hospital)
    view = flag_view(row, _workflow(await rules.book.in_force(conn), row))
    history = await repository.flag_history(conn, flag_id=flag_id)
    return view | {"history": [_history_view(h) for h in history]}


def _history_view(h: dict[str, Any]) -> dict[str, Any]:
    return h | {"at": (_aware(h["at"]) or h["at"]).isoformat()}


async def answer_flag(conn: AsyncConnection, flag_id: int, hospital: str, text: str | None, who: str,
                      rules: Rules | None = None, at: datetime | None = None) -> dict[str, Any]:
    """The hospital's answer (申诉) to its own flag, by the deadline (audited)."""
    rules = rules or _DEFAULT_RULES
    row = await _flag(conn, flag_id, hospital, for_update=True)
    wf = _workflow(await rules.book.in_force(conn), row)
    before = _state(row, wf)
    after = workflow.answer(before, text, who, at or datetime.now(UTC))
    await repository.save_flag_state(conn, after, before, "answered", who, "hospital", after.answer)
    return flag_view(row | _columns(after), wf)


async def decide_flag(conn: AsyncConnection, flag_id: int, outcome: str, reason: str | None,
                      deduction: Any, who: str, role: str | None = None, rules: Rules | None = None,
                      at: datetime | None = None) -> tuple[dict[str, Any], list[Envelope]]:
    """A bureau reviewer's decision (audited); a confirmed flag's deduction is announced as
    `deduction-confirmed` (the events to add to the outbox come back with the flag)."""
    rules = rules or _DEFAULT_RULES
    amount = workflow.deduction_of(deduction)
    row = await _flag(conn, flag_id, None, for_update=True)
    wf = _workflow(await rules.book.in_force(conn), row)
    before = _state(row, wf)
    after = workflow.decide(before, outcome, reason, amount, who, at or datetime.now(UTC))
    await repository.save_flag_state(conn, after, before, "decided", who, role, after.decision_reason)
    events = []
    if after.deduction:
        assert after.decided_at is not None and after.decided_by is not None
        events.append(Envelope.new(DeductionConfirmed(
            flag_id=flag_id, hospital_code=after.hospital_code, amount=after.deduction, rule=row["rule"],
            case_id=row["case_id"], period=row["period"], decided_by=after.decided_by,
            decided_at=after.decided_at), case_id=f"flag:{flag_id}", correlation_id=f"flag:{flag_id}",
            producer=repository.NAME))
    return flag_view(row | _columns(after), wf), events


def _columns(s: FlagState) -> dict[str, Any]:
    closed = s.decided_at if s.status in workflow.OUTCOMES else None
    return {"status": s.status, "answer": s.answer, "answered_at": s.answered_at, "answered_by": s.answered_by,
            "decision_reason": s.decision_reason, "decided_at": s.decided_at, "decided_by": s.decided_by,
            "deduction": s.deduction, "closed_at": closed}


async def flag_history(conn: AsyncConnection, **filters: Any) -> list[dict[str, Any]]:
    return [_history_view(h) for h in await repository.flag_history(conn, **filters)]
