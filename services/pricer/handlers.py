"""What the pricer does on an event, a request or a command: load via the repository, decide via
the domain, save via the repository. Each takes the caller's connection (the edge owns the one
transaction) and never commits.

- `on_case_grouped`: every grouped case is priced with the policy in force and announced as
  `case-priced`.
- `on_special_case_decided`: review's special-case decision kept and the case priced again with
  it (a new priced version, `case-priced`).
- `import_policy`, `import_dip_policy`: store a policy version (audited); re-importing the same
  content is a no-op, so a service can import its configured file at every start; a policy of
  another id for the same region and an overlapping period is refused (409 `POLICY_OVERLAP`).
- `reprice`: stored cases re-priced under the policies in force now, as new price versions
  announced as `case-priced` (the regroup pattern).
- `run_monthly_presettlement`, `run_annual_clearing`, `settle`, `record_advance`: settlement (§8).
  An annual clearing without a budget given uses the region's stored one (`set_budget`).
- `declare`, `import_calendar`, `set_budget`: a hospital's monthly declaration (申报), the
  working-day calendar, the year's budget; `settlement_timeliness`, `budget_report`,
  `prepayment_report`: the indicators they feed (§12).
  A monthly pre-settlement is announced as `period-settled` (review runs the period's
  hospital-level rules); `on_deduction_confirmed` keeps review's confirmed deductions, which the
  next settlement run of the hospital applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.pricer import repository
from services.pricer.domain import timeliness
from services.pricer.domain.dip_policy import policy_for_settlement, read_dip_policy
from services.pricer.domain.dip_pricing import DipPolicy
from services.pricer.domain.grouped import (
    SpecialDecision,
    price_from_dict,
    price_grouped,
    reprices,
    with_decision,
)
from services.pricer.domain.policy import (
    Policy,
    check_new_version,
    check_no_overlap,
    parse_policy,
)
from services.pricer.domain.settlement import (
    Clearing,
    HospitalTotals,
    HospitalYear,
    SettlementError,
    Statement,
    annual_clearing,
    check_advance,
    hospital_totals,
    month_bounds,
    monthly_presettlement,
    year_bounds,
)
from shared.db import Versions
from shared.dip import Catalogue
from shared.errors import NotFound
from shared.events import (
    CaseGrouped,
    DeductionConfirmed,
    Envelope,
    PeriodSettled,
    SpecialCaseDecided,
    new_event_id,
)
from shared.messaging import Outbox
from shared.money import ZERO
from shared.observability import get_logger
from shared.periods import InForce

log = get_logger("drgdip.pricer")


async def on_case_grouped(policies: repository.Policies, conn: AsyncConnection,
                          envs: Sequence[Envelope]) -> list[Envelope]:
    """Price a batch of grouped cases (the policies are read once per batch, the results
    written with one statement)."""
    drg, dip = await policies.in_force(conn)
    decisions = await repository.decisions_of(conn, [env.case_id for env in envs])
    now = datetime.now(UTC)

    def price_batch() -> tuple[list[dict[str, Any]], list[Envelope]]:
        rows, events = [], []
        for env in envs:
            g: CaseGrouped = env.typed_payload()
            d = decisions.get(env.case_id)
            result = with_decision(price_grouped(env.case_id, g, drg, dip), d)
            rows.append(repository.result_row(env.case_id, g, result, now, env.payload_json.decode(),
                                              d.decision if d else 0))
            events.append(Envelope.new(result.event, case_id=env.case_id,
                                       correlation_id=env.correlation_id, producer=repository.NAME))
        return rows, events

    rows, events = await asyncio.to_thread(price_batch)  # CPU work: off the event loop
    await repository.save_results(conn, rows)
    return events


async def on_special_case_decided(policies: repository.Policies, conn: AsyncConnection,
                                  envs: Sequence[Envelope]) -> list[Envelope]:
    """The special-case panel decided (review, §10): the decision is kept (the latest per case)
    and the case priced again from the grouping it was last priced from, under the policies in
    force, with the decision: a new priced version announced as `case-priced`, which monthly
    settlement and annual clearing then use. A rejection is kept but prices nothing again,
    unless it overturns the approval the case is priced with (`reprices`). A decision older
    than the one kept changes nothing; a case priced before its grouping was kept cannot be
    re-priced (logged, the decision kept)."""
    kept = await repository.decisions_of(conn, [env.case_id for env in envs])
    latest: dict[str, tuple[Envelope, SpecialDecision]] = {}
    for env in envs:
        sd: SpecialCaseDecided = env.typed_payload()
        d = SpecialDecision(sd.decision, sd.outcome, sd.amount, sd.application_id)
        old = latest[env.case_id][1] if env.case_id in latest else kept.get(env.case_id)
        if old is None or (d.application_id, d.decision) >= (old.application_id, old.decision):
            latest[env.case_id] = (env, d)
    if not latest:
        return []
    await repository.save_decisions(conn, {cid: d for cid, (_e, d) in latest.items()})
    latest = {cid: (e, d) for cid, (e, d) in latest.items() if reprices(d, kept.get(cid))}
    if not latest:
        return []
    grouped = await repository.latest_grouped_of(conn, list(latest))
    seen = await repository.priced_keys(conn, list(latest))
    drg, dip = await policies.in_force(conn)
    now = datetime.now(UTC)
    rows, events = [], []
    for case_id, (env, d) in latest.items():
        payload = grouped.get(case_id)
        if payload is None:
            log.warning("special-case decision on a case that cannot be re-priced", case_id=case_id)
            continue
        g = CaseGrouped.model_validate_json(payload)
        result = with_decision(price_grouped(case_id, g, drg, dip), d)
        p = result.price
        if (case_id, g.facts.list_version, g.grouping_version, p.policy_id if p else None,
                p.policy_version if p else None, d.decision) in seen:
            continue
        rows.append(repository.result_row(case_id, g, result, now, payload, d.decision))
        events.append(Envelope.new(result.event, case_id=case_id, correlation_id=env.correlation_id,
                                   producer=repository.NAME))
    await repository.save_results(conn, rows)
    return events


@dataclass
class Repricing:
    """What a re-pricing did: cases read, re-priced (a new price version each), unchanged (the
    policy version in force already priced them), and not re-priceable: priced before the
    pricer kept the `case-grouped` payload it priced from (migration pricer_0007). Those rows
    hold the pricing figures but not the list's facts the new `case-priced` event carries
    (settlement id, person key, admission date …, which review needs), so they cannot be
    re-priced from what the pricer stores: a regroup sends them through the pipeline again,
    and the pricer prices them under the policies in force, keeping the payload."""

    cases: int = 0
    repriced: int = 0
    unchanged: int = 0
    not_repriceable: int = 0
    by_policy: dict[str, int] = field(default_factory=dict)
    to_regroup: list[str] = field(default_factory=list)  # the cases not re-priceable
    regroup_from: date | None = None  # their first and last discharge dates
    regroup_to: date | None = None
    regroup_scheme: str | None = None  # the scheme of the DRG policy in force for them, if any

    def not_priceable(self, case_id: str, discharged: date | None) -> None:
        self.not_repriceable += 1
        self.to_regroup.append(case_id)
        if discharged is not None:
            self.regroup_from = min(self.regroup_from or discharged, discharged)
            self.regroup_to = max(self.regroup_to or discharged, discharged)

    def regroup_command(self) -> str | None:
        """The command that makes the cases not re-priceable priceable again."""
        if not self.to_regroup:
            return None
        span = "".join(f" --{o} {d.isoformat()}" for o, d in (("from", self.regroup_from),
                                                              ("to", self.regroup_to)) if d)
        return f"drgdip regroup --scheme {self.regroup_scheme or 'SCHEME'}{span}"

    def regroup_hint(self, region: str, examples: int = 3) -> str | None:
        """One line naming the cases that need regrouping and the command that does it."""
        if not self.to_regroup:
            return None
        shown = ", ".join(self.to_regroup[:examples]) + (", …" if len(self.to_regroup) > examples else "")
        span = (f"discharged {self.regroup_from}–{self.regroup_to}: " if self.regroup_from else "")
        scheme = "" if self.regroup_scheme else " (SCHEME: the grouping scheme in force for them)"
        return (f"{self.not_repriceable} cases of {region} were priced before the pricer kept their "
                f"grouping ({span}{shown}) and cannot be re-priced until regrouped: run "
                f"`{self.regroup_command()}`{scheme} with the pipeline running, which prices them "
                "under the policies in force now")

    def summary(self, region: str, date_from: date | None, date_to: date | None) -> dict[str, Any]:
        """What a re-pricing answers (the route and `drgdip reprice`; the audit records it)."""
        answer: dict[str, Any] = {
            "region": region, "from": date_from and date_from.isoformat(),
            "to": date_to and date_to.isoformat(), "cases": self.cases, "repriced": self.repriced,
            "unchanged": self.unchanged, "not_repriceable": self.not_repriceable,
            "by_policy": self.by_policy}
        if self.to_regroup:
            answer["regroup"] = {"cases": self.to_regroup[:100], "command": self.regroup_command(),
                                 "message": self.regroup_hint(region)}
        return answer


async def reprice(engine: AsyncEngine, outbox: Outbox, policies: repository.Policies, region: str,
                  *, date_from: date | None = None, date_to: date | None = None, batch: int = 500,
                  progress: Callable[[int, int], None] | None = None) -> Repricing:
    """Re-price the stored cases treated in `region` and discharged in [date_from, date_to]
    under the policies in force now (e.g. after `policy import`), through the live path
    (`price_grouped`): each case whose price would come from another policy version gets a new
    `pricer_results` row and a new `case-priced` event (through the outbox, so the running
    pricer publishes it and review sees it). Idempotent: a price already stored for the case's
    list, grouping and policy version is not stored again, so a second run changes nothing.

    One transaction per `batch` cases, as a regroup, so the live stages keep working."""
    async with engine.begin() as conn:
        stored = await repository.latest_grouped(conn, region, date_from, date_to)
        drg, dip = await policies.in_force(conn)
    done = Repricing(cases=len(stored))
    correlation_id = new_event_id()
    for start in range(0, len(stored), batch):
        chunk = stored[start:start + batch]
        async with engine.begin() as conn:
            seen = await repository.priced_keys(conn, [case_id for case_id, _day, _payload in chunk])
            decisions = await repository.decisions_of(conn, [case_id for case_id, _day, _payload in chunk])
            # pricing a batch is CPU work: off the event loop, which keeps serving meanwhile
            rows, events = await asyncio.to_thread(
                _reprice_batch, chunk, seen, decisions, drg, dip, done, datetime.now(UTC), correlation_id)
            await repository.save_results(conn, rows)
            await outbox.add(conn, events)
        outbox.wakeup.set()
        done.repriced += len(rows)
        if progress:
            progress(min(start + batch, len(stored)), len(stored))
    if (policy := drg.on(region, done.regroup_to)) is not None:
        done.regroup_scheme = policy.scheme_id  # the scheme the policy's weights are for
    return done


def _reprice_batch(chunk: Sequence[tuple[str, date | None, str | None]], seen: set[tuple[Any, ...]],
                   decisions: Mapping[str, SpecialDecision], drg: InForce[Policy],
                   dip: InForce[tuple[DipPolicy, Catalogue]], done: Repricing,
                   now: datetime, correlation_id: str) -> tuple[list[dict[str, Any]], list[Envelope]]:
    """The new price rows and `case-priced` events of a batch of stored cases (counted in `done`)."""
    rows, events = [], []
    for case_id, discharged, payload in chunk:
        if payload is None:
            done.not_priceable(case_id, discharged)
            continue
        g = CaseGrouped.model_validate_json(payload)  # the stored text is kept as it is
        d = decisions.get(case_id)
        result = with_decision(price_grouped(case_id, g, drg, dip), d)
        p = result.price
        key = (case_id, g.facts.list_version, g.grouping_version,
               p.policy_id if p else None, p.policy_version if p else None, d.decision if d else 0)
        if key in seen:
            done.unchanged += 1
            continue
        rows.append(repository.result_row(case_id, g, result, now, payload, d.decision if d else 0))
        events.append(Envelope.new(result.event, case_id=case_id, correlation_id=correlation_id,
                                   producer=repository.NAME))
        label = f"{p.policy_id} v{p.policy_version}" if p else result.status
        done.by_policy[label] = done.by_policy.get(label, 0) + 1
    return rows, events


# --- policies -----------------------------------------------------------------------------------

async def import_policy(conn: AsyncConnection, document: bytes, who: str = "cli",
                        book: Versions[Policy] | None = None) -> tuple[Policy, bool]:
    """Validate and store a policy version with its audit row; (policy, stored).

    The same version with the same content is a no-op (stored = False); with another content,
    or a version older than the latest stored one, it raises `PolicyConflict`; an invalid
    document raises `PolicyError` naming the field.
    """
    policy = parse_policy(document)
    book = book or repository.policy_book()
    stored = await repository.stored_versions(conn, repository.policy_versions, policy.policy_id)
    same = (await book.get(conn, policy.policy_id, policy.version) == policy
            if policy.version in stored else None)
    if not check_new_version("policy", policy.policy_id, policy.version,
                             stored[0] if stored else None, same):
        return policy, False
    check_no_overlap("policy", policy.policy_id, policy.region, policy.valid_from, policy.valid_to,
                     await repository.stored_periods(conn, repository.policy_versions, policy.region))
    await repository.insert_policy(conn, policy, document, who)
    return policy, True


def policy_summary(policy: Policy, stored: bool) -> dict[str, Any]:
    """What a policy import answers (the route and `drgdip policy import`; the audit records it)."""
    return {"policy_id": policy.policy_id, "version": policy.version, "region": policy.region,
            "weights_version": policy.weights.version, "weights": len(policy.weights.table),
            "stored": stored}


def dip_policy_summary(policy: DipPolicy) -> dict[str, Any]:
    """What a DIP policy import answers (the route and `drgdip dip import-policy`)."""
    return {"policy_id": policy.policy_id, "version": policy.version, "region": policy.region}


async def import_dip_policy(conn: AsyncConnection, policy_bytes: bytes, catalogue_bytes: bytes,
                            who: str = "cli") -> DipPolicy:
    """Store a DIP policy version with its catalogue (audited), as `import_policy` does."""
    policy, catalogue = read_dip_policy(policy_bytes, catalogue_bytes)
    stored = await repository.stored_versions(conn, repository.dip_policies, policy.policy_id)
    same = (await repository.dip_book().get(conn, policy.policy_id, policy.version) == (policy, catalogue)
            if policy.version in stored else None)
    if check_new_version("DIP policy", policy.policy_id, policy.version,
                         stored[0] if stored else None, same):
        check_no_overlap("DIP policy", policy.policy_id, policy.region, policy.valid_from,
                         policy.valid_to,
                         await repository.stored_periods(conn, repository.dip_policies, policy.region))
        await repository.insert_dip_policy(conn, policy, catalogue, policy_bytes, catalogue_bytes, who)
    return policy


# --- settlement ---------------------------------------------------------------------------------

async def _period_totals(conn: AsyncConnection, policy_id: str, start: date,
                         end: date) -> dict[str, HospitalTotals]:
    """Each hospital's totals of the cases priced under the policy in [start, end): the stored
    prices are read back and summed off the event loop (a region's year is tens of thousands)."""
    breakdowns = await repository.period_breakdowns(conn, policy_id, start, end)
    return await asyncio.to_thread(
        lambda: hospital_totals(price_from_dict(orjson.loads(b)) for b in breakdowns))


async def run_monthly_presettlement(conn: AsyncConnection, policy_id: str, period: str) -> list[Statement]:
    """Pre-settle a month (§8) from the stored priced cases; stores a new statement version.

    Uses the latest stored version of the policy for the settlement parameters; the cases keep
    the prices (and versions) they were priced with. Review deductions the hospital's previous
    month of the year could not net are carried in.
    """
    start, end = month_bounds(period)
    policy = policy_for_settlement(policy_id, await repository.latest_policy(conn, policy_id))
    totals = await _period_totals(conn, policy_id, start, end)
    version = await repository.next_statement_version(conn, "monthly", period, policy_id)
    deducted = await repository.claim_deductions(conn, f"monthly|{policy_id}|{period}", list(totals))
    carried = await repository.carried_over(conn, policy_id, period[:4], before=period)
    out = monthly_presettlement(policy, period, totals.values(), version=version, deductions=deducted,
                                carried_in=carried)
    await repository.save_statements(conn, out)
    if out:  # the scheduled step after it: review's hospital-level rules for the month
        await Outbox(repository.NAME, repository.metadata).add(conn, [Envelope.new(
            PeriodSettled(policy_id=policy_id, region=policy.region, period=period, version=version,
                          hospitals=sorted(totals),
                          statements={st.hospital_code: st.to_dict()["lines"] for st in out}),
            case_id=f"settlement:{policy_id}:{period}", correlation_id=f"settlement:{policy_id}:{period}:v{version}",
            producer=repository.NAME)])
    return out


async def on_deduction_confirmed(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
    """Keep review's confirmed deductions for the hospitals' next settlement runs."""
    now = datetime.now(UTC)
    rows = []
    for e in envs:
        d: DeductionConfirmed = e.typed_payload()
        rows.append(dict(flag_id=d.flag_id, hospital_code=d.hospital_code, amount=d.amount, rule=d.rule,
                         case_id=d.case_id, flag_period=d.period, decided_by=d.decided_by,
                         decided_at=d.decided_at, received_at=now, applied_to=None))
    await repository.add_deductions(conn, rows)
    return []


async def record_advance(conn: AsyncConnection, hospital_code: str, year: str, amount: Decimal,
                         who: str = "cli", note: str | None = None) -> None:
    """A prepayment (预付金, §8) advanced to a hospital; the year's clearing nets it."""
    await repository.insert_advance(conn, hospital_code, year, check_advance(amount), who, note)


async def run_annual_clearing(conn: AsyncConnection, policy_id: str, year: str,
                              budget: Decimal) -> Clearing:
    """Clear a year (§8) from the stored priced cases; stores a new annual statement version.

    Pre-settled amounts are the latest monthly statements of the year; the prepayment advances
    granted for the year are netted from each hospital's balance, and so are the review
    deductions, with what the year's last month carried over shown apart.
    """
    start, end = year_bounds(year)
    policy = policy_for_settlement(policy_id, await repository.latest_policy(conn, policy_id))
    totals = await _period_totals(conn, policy_id, start, end)
    paid = await repository.presettled(conn, policy_id, year)
    advanced = await repository.advances_of_year(conn, year)
    version = await repository.next_statement_version(conn, "annual", year, policy_id)
    deducted = await repository.monthly_deductions(conn, policy_id, year)
    withheld = await repository.deposit_withheld(conn, policy_id, year)
    returns = await repository.deposit_return_shares(conn, year)
    carried = await repository.carried_over(conn, policy_id, year)
    for h, amount in (await repository.claim_deductions(conn, f"annual|{policy_id}|{year}", list(totals))).items():
        deducted[h] = deducted.get(h, ZERO) + amount
    clearing = annual_clearing(
        policy, year, [HospitalYear(t, presettled=paid.get(h, ZERO), advances=Decimal(advanced.get(h, 0)),
                                    deductions=deducted.get(h, ZERO), deposit_withheld=withheld.get(h, ZERO),
                                    deposit_return_share=returns.get(h), carried_over=carried.get(h, ZERO))
                       for h, t in totals.items()], budget, version=version)
    summary = {k: v for k, v in clearing.to_dict().items() if k != "hospitals"}
    await repository.save_statements(conn, clearing.statements(), summary)
    return clearing


async def adopt_deposit_returns(conn: AsyncConnection, year: str, evaluation_id: str, who: str,
                               hospitals: Mapping[str, Mapping[str, Any]]) -> int:
    """Keep an adopted yearly evaluation's scores and return shares (质量保证金) for the year's
    clearing; a share outside [0, 1] is refused (422 naming the hospital)."""
    shares: dict[str, tuple[Decimal, Decimal]] = {}
    for h, v in hospitals.items():
        try:
            score, share = Decimal(str(v["score"])), Decimal(str(v["deposit_return_share"]))
        except (KeyError, TypeError, ArithmeticError):
            raise SettlementError(f"hospitals.{h}", "needs score and deposit_return_share (decimal strings)") from None
        if not (share.is_finite() and 0 <= share <= 1 and score.is_finite() and 0 <= score <= 100):
            raise SettlementError(f"hospitals.{h}", "score 0–100 and deposit_return_share 0–1")
        shares[h] = (score.quantize(Decimal("0.01")), share.quantize(Decimal("0.0001")))
    year_bounds(year)
    await repository.add_deposit_returns(conn, year, evaluation_id, who, shares)
    return len(shares)


@dataclass(frozen=True)
class SettlementRun:
    """What a settlement run stored: the statements, and for a year its clearing."""

    statements: list[Statement]
    clearing: Clearing | None = None

    def summary(self) -> dict[str, object]:
        """The run's key figures and its statements (amounts as decimal strings)."""
        figure = "balance" if self.clearing is not None else "presettled"  # what the bureau pays
        first = self.statements[0]
        head: dict[str, object] = {
            "kind": first.kind, "policy_id": first.policy_id, "policy_version": first.policy_version,
            "period": first.period, "version": first.version, "hospitals": len(self.statements),
            "figure": figure, "total": str(sum((st.amount(figure) for st in self.statements), ZERO))}
        if self.clearing is not None:
            head |= {k: v for k, v in self.clearing.to_dict().items() if k not in head and k != "hospitals"}
        return head | {"statements": [st.to_dict() for st in self.statements]}


async def settle(conn: AsyncConnection, policy_id: str, period: str, budget: Decimal | None) -> SettlementRun:
    """Pre-settle a month ("YYYY-MM") or clear a year ("YYYY", with its budget: given, else the
    region's stored one), as `drgdip
    settle` does. A period without any case priced under the policy is refused (404
    `NO_PRICED_CASES`): nothing is stored."""
    if len(period) == 4:
        if budget is None:  # the region's budget for the year, as the bureau set it
            region = policy_for_settlement(policy_id, await repository.latest_policy(conn, policy_id)).region
            stored = await repository.latest_budget(conn, region, period)
            budget = stored["amount"] if stored else None
        if budget is None:
            raise SettlementError("budget", "the annual clearing needs the year's budget "
                                            "(given, or set with `drgdip budget set`)")
        clearing = await run_annual_clearing(conn, policy_id, period, budget)
        run = SettlementRun(clearing.statements(), clearing)
    else:
        if budget is not None:
            raise SettlementError("budget", "a budget is given for an annual clearing (period YYYY) only")
        run = SettlementRun(await run_monthly_presettlement(conn, policy_id, period))
    if not run.statements:
        raise NotFound(f"no case priced under {policy_id} in {period}", code="NO_PRICED_CASES", field="period")
    return run


# --- declarations, calendar, budgets and the indicators they feed (§8, §12) -----------------------

async def declare(conn: AsyncConnection, hospital_code: str, period: str, who: str) -> dict[str, Any]:
    """A hospital's declaration (申报) of a month: stored once, a repeat answers the first."""
    timeliness.check_month(period)
    at, stored = await repository.declare(conn, hospital_code, period, who)
    return {"hospital_code": hospital_code, "period": period, "declared_at": at, "stored": stored}


async def import_calendar(conn: AsyncConnection, document: bytes, who: str) -> dict[str, Any]:
    """A year's public holidays and make-up working days (replacing the year's earlier import)."""
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError:
        raise timeliness.CalendarError("the calendar is not JSON", field=None) from None
    year, days = timeliness.parse_calendar(doc)
    await repository.replace_calendar_year(conn, year, days, who)
    return {"year": year, "holidays": sum(d.kind == timeliness.HOLIDAY for d in days),
            "workdays": sum(d.kind == timeliness.WORKDAY for d in days),
            "source": str(doc.get("source") or "")[:200] or None}


async def set_budget(conn: AsyncConnection, region: str, year: str, amount: Decimal,
                     point_value: Decimal | None, who: str) -> dict[str, Any]:
    """The region's budget (and budget point value) for the year, as a new version."""
    timeliness.check_year(year)
    amount, point_value = timeliness.check_budget(amount, point_value)
    version = await repository.set_budget(conn, region, year, amount, point_value, who)
    return {"region": region, "year": year, "version": version, "amount": amount, "point_value": point_value}


async def settlement_limit(conn: AsyncConnection, book: Versions[Policy], region: str, period: str) -> int:
    """The working days a month has from declaration to pre-settlement: the region's policy in
    force on the month's first day, else the rule's 20 (§8)."""
    policy = (await book.in_force(conn)).on(region, month_bounds(period)[0])
    return policy.settlement.settlement_working_days if policy is not None \
        else timeliness.DEFAULT_SETTLEMENT_WORKING_DAYS


async def settlement_timeliness(conn: AsyncConnection, book: Versions[Policy], region: str, period: str,
                                today: date) -> dict[str, Any]:
    """The month's timeliness per hospital of the region (domain/timeliness.py), `today` the
    day pending declarations are counted to."""
    timeliness.check_month(period)
    hospitals = await repository.region_hospitals(conn, region)
    declared = {h: at for h, at in (await repository.declarations_of(conn, period)).items() if h in hospitals}
    presettled = await repository.first_presettled(conn, await repository.region_policy_ids(conn, region), period)
    calendar = timeliness.Calendar.of(await repository.load_calendar(conn))
    limit = await settlement_limit(conn, book, region, period)
    return {"region": region} | timeliness.timeliness_report(period, declared, presettled, today, calendar, limit)


async def budget_report(conn: AsyncConnection, region: str, year: str) -> dict[str, Any]:
    """Budget execution (§12): the year as settled so far against the region's stored budget."""
    timeliness.check_year(year)
    doc = await repository.budget_execution(conn, region, year)
    stored = await repository.latest_budget(conn, region, year)
    provisional = [m["provisional_point_value"] for m in doc["months"] if m["provisional_point_value"]]
    current = doc["annual"]["point_value"] or (provisional[-1] if provisional else None)
    doc["execution"] = timeliness.budget_execution(
        doc["months"], stored["amount"] if stored else None, stored["point_value"] if stored else None,
        Decimal(current) if current is not None else None)
    doc["budget"] = stored
    return doc


async def prepayment_report(conn: AsyncConnection, region: str, year: str) -> dict[str, Any]:
    """The year's prepayments (预付金) per hospital of the region, as published at year end."""
    timeliness.check_year(year)
    hospitals = await repository.region_hospitals(conn, region)
    granted = {h: a for h, a in (await repository.advances_of_year(conn, year)).items() if h in hospitals}
    netted = await repository.netted_advances(conn, await repository.region_policy_ids(conn, region), year)
    rows = timeliness.prepayments(granted, {h: a for h, a in netted.items() if h in hospitals})
    return {"region": region, "year": year, "rows": rows,
            "total": {k: sum((r[k] for r in rows), ZERO) for k in ("granted", "netted", "outstanding")}}
