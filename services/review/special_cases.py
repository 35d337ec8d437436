"""What review does for the special-case review (特例单议, docs/domain.md §10): load via the
repository, decide via `domain/special_cases.py`, save via the repository. Each takes the
caller's connection (the edge owns the one transaction) and never commits.

- `figures_of`: what is kept of every priced case (its latest version, stored with its stay by
  the handler), so an application is judged on it and the cap counts the region's discharges
  and complex cases.
- `apply`: a hospital applies for one of its cases; the region-quarter's counter row is locked
  first, so concurrent applications count the cap one at a time. `record_refusal`: an
  application refused on eligibility or the cap, audited.
- `decide`, `appeal`: the panel's decision (published as `special-case-decided`, which the
  pricer prices the case again with), the hospital's one appeal, the second member's decision.
- `register_member`, `publication`: the panel (each member registered per quarter with the
  hospitals they are tied to in it), and the half-yearly counts and outcomes.
Every application (refused ones too), decision, appeal, membership and parameter change is appended to
`review_audit` (who, when, before, after, why) in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review.domain import special_cases as sc
from services.review.domain.parameters import DEFAULTS, RuleSet
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.events import CasePriced, Envelope, SpecialCaseDecided
from shared.messaging import Outbox
from shared.periods import InForce

APPLIED = "special-case.applied"
REFUSED = "special-case.refused"
DECIDED = "special-case.decided"
APPEALED = "special-case.appealed"
MEMBER_REGISTERED = "panel-member.registered"
RULES_IMPORTED = "review-rules.imported"
ACTIONS = (APPLIED, REFUSED, DECIDED, APPEALED, MEMBER_REGISTERED, RULES_IMPORTED)
REVIEWER = "bureau-reviewer"  # the role whose tokens sit on the panel
AUDIT_COLUMNS = ("id", "at", "action", "actor", "role", "subject", "before", "after", "reason")


@dataclass(frozen=True)
class Who:
    """Who asks, as the gateway passes it on: the audit's actor (token:<id>), role and hospital."""

    actor: str
    role: str | None = None
    hospital_code: str | None = None

    @property
    def token_id(self) -> str:
        return self.actor.removeprefix("token:")


def _params(rules: InForce[RuleSet] | None, region: str, day: date | None) -> sc.SpecialCases:
    found = rules.on(region, day) if rules is not None else None
    return (found or DEFAULTS).params.special_cases


def figures_of(case_id: str, p: CasePriced, rules: InForce[RuleSet]) -> dict[str, Any]:
    """What the special-case review keeps of a priced case (the repository stores it with the
    case's stay, its latest version): how it was priced, whether it counts in its hospital's
    complex-case load, and its figures: those of its `CaseData` the stay's other columns and
    facts do not hold (`repository.KEPT_FIGURES`, as JSON; `repository.case_figures` makes the
    whole `sc.to_json` of it again). Read from the payload: no `CaseData` made for it."""
    f, high = p.facts, sc.high_threshold_of(p)
    params = _params(rules, f.treatment_region or f.region, f.discharge_date)
    return dict(method="dip" if p.dip_group else "drg", complex=sc.priced_is_complex(p, high, params),
                figures=_kept_json({"status": p.status, "group_mean_cost": p.group_mean_cost,
                                    "high_threshold": high, "payment": p.payment}))


def _kept_json(figures: dict[str, Any]) -> str:
    """The kept figures (a `CaseData`'s, by name) as JSON, decimals as strings (`sc.to_json`
    writes them so)."""
    return orjson.dumps({name: None if (v := figures[name]) is None else str(v)
                         for name in repository.KEPT_FIGURES}).decode()


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def apply(conn: AsyncConnection, who: Who, rules: InForce[RuleSet], case_id: str, reason: sc.Reason,
                text: str, evidence: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A hospital's application for one of its cases: eligibility checked on the case's figures,
    then the quota of its region and quarter, counted under the region-quarter's lock."""
    stored = await repository.case_figures_of(conn, case_id)
    if stored is None or stored["hospital_code"] != who.hospital_code:
        # another hospital's case is reported as missing: its existence is not shared
        raise NotFound(f"no priced case {case_id!r} of hospital {who.hospital_code}", code="CASE_NOT_FOUND",
                       field="case_id")
    case = sc.from_json(stored["figures"])
    if case.period is None:
        raise sc.NotEligible(reason, "the case has no discharge date")
    params = _params(rules, case.region, case.discharge_date)
    figures = sc.check_eligibility(case, reason, params, len(evidence))
    await repository.lock_quota(conn, case.region, case.period)
    if (existing := await repository.application_of_case(conn, case_id)) is not None:
        raise Conflict(f"case {case_id} has an application already (id {existing})", code="SPECIAL_CASE_EXISTS",
                       field="case_id")
    drg, dip, loads, used = await repository.region_period(conn, case.region, case.period)
    quota = sc.quota_of(case.region, case.period, drg, dip, loads, used, case.hospital_code, params)
    sc.check_quota(quota)
    values = dict(case_id=case_id, hospital_code=case.hospital_code, region=case.region, period=case.period,
                  reason=reason.value, text=text, evidence=_json(list(evidence)), figures=_json(figures),
                  status=sc.Status.PENDING.value, applied_by=who.actor, applied_at=_now())
    application_id = await repository.insert_application(conn, values)
    await repository.count_applied(conn, case.region, case.period)
    quota_after = {k: str(v) for k, v in quota.numbers().items()} | {"used": str(quota.used + 1)}
    await repository.record(conn, APPLIED, actor=who.actor, role=who.role, subject=f"{application_id} {case_id}",
                            after={"reason": reason.value, "figures": figures, "evidence": list(evidence),
                                   "quota": quota_after}, reason=text)
    found = await repository.application(conn, application_id)
    assert found is not None
    return found | {"quota": quota_after}


async def record_refusal(conn: AsyncConnection, who: Who, case_id: str, reason: sc.Reason,
                         error: Invalid | Conflict) -> None:
    """Audit an application refused on eligibility or the cap (`sc.REFUSALS`): who, when, the
    case, the rule that refused and its numbers. The refused application's own transaction is
    rolled back, so the edge records it in a transaction of its own."""
    await repository.record(conn, REFUSED, actor=who.actor, role=who.role, subject=case_id,
                            after={"reason": reason.value, "hospital_code": who.hospital_code}
                            | sc.refusal_record(error), reason=error.message)


def _now() -> datetime:
    return datetime.now(UTC)


async def _member(conn: AsyncConnection, token_id: str, period: str) -> sc.Member | None:
    """The member's registration for the quarter (their ties in it), None when not registered."""
    m = await repository.panel_member(conn, token_id, period)
    return None if m is None else sc.Member(m["token_id"], frozenset(m["hospitals"]), m["active"])


async def _open(conn: AsyncConnection, application_id: int, who: Who | None = None) -> dict[str, Any]:
    a = await repository.application(conn, application_id, lock=True)
    if a is None or (who is not None and who.hospital_code and a["hospital_code"] != who.hospital_code):
        raise NotFound(f"no special-case application {application_id}", code="SPECIAL_CASE_NOT_FOUND",
                       field="application_id")
    return a


async def decide(conn: AsyncConnection, outbox: Outbox, who: Who, application_id: int,
                 d: sc.DecisionInput, correlation_id: str) -> dict[str, Any]:
    """A panel member's decision (the application's, or the appeal's by another member),
    published as `special-case-decided`."""
    sc.check_decision(d)
    a = await _open(conn, application_id)
    first = next((x["member"] for x in a["decisions"] if x["round"] == 1), None)
    member = await _member(conn, who.token_id, a["period"])  # the panel of the application's quarter
    round_ = sc.may_decide(member, a["hospital_code"], sc.Status(a["status"]), first)
    await repository.insert_decision(conn, application_id, round_, d.outcome.value, d.amount, d.reason,
                                     who.token_id)
    status = sc.Status.DECIDED if round_ == 1 else sc.Status.FINAL
    await repository.update_application(conn, application_id, status=status.value, outcome=d.outcome.value,
                                        amount=d.amount)
    before = {"status": a["status"], "outcome": a["outcome"], "amount": a["amount"]}
    after = {"status": status.value, "outcome": d.outcome.value, "amount": None if d.amount is None else str(d.amount),
             "round": round_}
    await repository.record(conn, DECIDED, actor=who.actor, role=who.role,
                            subject=f"{application_id} {a['case_id']}", before=before, after=after, reason=d.reason)
    await outbox.add(conn, [Envelope.new(
        SpecialCaseDecided(hospital_code=a["hospital_code"], application_id=application_id, decision=round_,
                           outcome=d.outcome.value, amount=d.amount, reason=d.reason),
        case_id=a["case_id"], correlation_id=correlation_id, producer=repository.NAME)])
    found = await repository.application(conn, application_id)
    assert found is not None
    return found


async def appeal(conn: AsyncConnection, who: Who, application_id: int, text: str) -> dict[str, Any]:
    """The hospital's one appeal (申诉) of the first decision."""
    a = await _open(conn, application_id, who)
    sc.may_appeal(sc.Status(a["status"]), a["appealed_at"] is not None)
    await repository.update_application(conn, application_id, status=sc.Status.APPEALED.value, appeal_text=text,
                                        appealed_by=who.actor, appealed_at=_now())
    await repository.record(conn, APPEALED, actor=who.actor, role=who.role,
                            subject=f"{application_id} {a['case_id']}",
                            before={"status": a["status"], "outcome": a["outcome"], "amount": a["amount"]},
                            after={"status": sc.Status.APPEALED.value}, reason=text)
    found = await repository.application(conn, application_id)
    assert found is not None
    return found


async def register_member(conn: AsyncConnection, who: Who, token_id: str, period: str, hospitals: Sequence[str],
                          active: bool, why: str | None) -> dict[str, Any]:
    """Register (or change) a panel member for a quarter with the hospitals they are tied to."""
    sc.check_period(period)
    before = await repository.panel_member(conn, token_id, period)
    await repository.save_panel_member(conn, token_id, period, hospitals, active, who.actor, before is not None)
    after = await repository.panel_member(conn, token_id, period)
    assert after is not None

    def shown(m: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if m is None else {"period": m["period"], "hospitals": m["hospitals"], "active": m["active"]}

    await repository.record(conn, MEMBER_REGISTERED, actor=who.actor, role=who.role, subject=f"{token_id} {period}",
                            before=shown(before), after=shown(after), reason=why)
    return after


async def queue(conn: AsyncConnection, who: Who, *, period: str | None, hospital: str | None,
                status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """The applications a caller may see: a hospital its own; the bureau any, except that a
    panel member's queue leaves out, in each quarter they are registered for, the hospitals
    they are tied to in it (they never decide those). Each carries the case's figures and the
    evidence's names and hashes, never the patient's name or ID number (review holds none)."""
    if status is not None and status not in {s.value for s in sc.Status}:
        raise Invalid(f"status must be one of {', '.join(s.value for s in sc.Status)}", code="INVALID_FIELD",
                      field="status")
    if who.hospital_code:
        if hospital is not None and hospital != who.hospital_code:
            raise Forbidden("a hospital sees only its own applications", field="hospital")
        hospital = who.hospital_code
    tied = await repository.ties_of(conn, who.token_id) if who.role == REVIEWER else None
    return await repository.applications(conn, period=sc.check_period(period) if period else None,
                                         hospital=hospital, status=status, tied=tied, limit=limit, offset=offset)


async def publication(conn: AsyncConnection, half: str, hospital: str | None) -> list[dict[str, str]]:
    """The half year's counts and outcomes per hospital (one hospital's row for a hospital)."""
    sc.check_half_year(half)
    quarters = [f"{half[:4]}Q{q}" for q in ((1, 2) if half[5] == "1" else (3, 4))]
    return sc.publication(half, await repository.applications(conn, periods=quarters, hospital=hospital))


async def record_rules_change(conn: AsyncConnection, who: str, region: str, before: dict[str, Any] | None,
                              after: dict[str, Any]) -> None:
    """A change of the review rules' parameters (the special cases' cap among them), audited."""
    await repository.record(conn, RULES_IMPORTED, actor=who, role=None, subject=region, before=before, after=after)

