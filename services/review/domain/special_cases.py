"""Special-case review (特例单议, docs/domain.md §10): eligibility, the region's cap and its
allocation, the panel's decisions and the appeal, the half-yearly publication.

Pure: the handlers load what review knows of a case (`CaseData`, from the priced case), the
parameters in force (`SpecialCases`, the SPECIAL_CASES section of the review rules) and the
stored applications; these functions decide; the handlers store and announce.

- A hospital applies for one of its cases with a reason of `Reason`; the reason is checked
  against the case's priced figures (`check_eligibility`), and a refusal names the rule and the
  numbers it compared.
- Per region and quarter the applications are capped (`region_cap`): 5 % of the DRG discharges
  plus 5 ‰ of the DIP discharges, rounded down; the cap is shared across hospitals by their
  complex-case load (`allocate`): each hospital with complex cases gets the floor first (the
  busiest first while the cap lasts), the rest in proportion to its complex cases, largest
  remainder; the quotas add up to the cap exactly.
- A panel member (a bureau-reviewer token) decides an application of a hospital they are not
  tied to: pay by item, adjust the standard (an amount) or reject, with the reason. The hospital
  may appeal a decision once; a different member decides the appeal, and that decision is final.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from services.review.domain.parameters import SpecialCases
from shared.errors import Conflict, Forbidden, Invalid, detail
from shared.events import CasePriced

FEN = Decimal("0.01")


class Reason(StrEnum):
    """Why a case is special (§10), each checked against the case's figures."""

    LONG_STAY = "long_stay"  # LOS ≥ long_stay_days
    HIGH_COST = "high_cost"  # cost above the high-outlier threshold or cost_multiple × the group mean
    INNOVATIVE = "innovative_drugs_devices"  # new drugs, devices or technology (with evidence)
    ICU_VENTILATION = "icu_ventilation"
    NOT_GROUPED = "not_grouped_or_ambiguous"
    MULTI_DISCIPLINARY = "multi_disciplinary"


class Outcome(StrEnum):
    PAY_BY_ITEM = "pay_by_item"
    ADJUST_STANDARD = "adjust_standard"
    REJECT = "reject"


class Status(StrEnum):
    PENDING = "pending"  # waiting for the panel
    DECIDED = "decided"  # decided once; the hospital may appeal
    APPEALED = "appealed"  # waiting for a second member
    FINAL = "final"  # the appeal is decided


RULE_CODES = {
    Reason.LONG_STAY: "SC_LONG_STAY",
    Reason.HIGH_COST: "SC_HIGH_COST",
    Reason.INNOVATIVE: "SC_INNOVATIVE",
    Reason.ICU_VENTILATION: "SC_ICU_VENTILATION",
    Reason.NOT_GROUPED: "SC_NOT_GROUPED",
    Reason.MULTI_DISCIPLINARY: "SC_MULTI_DISCIPLINARY",
}
# ICD-9-CM-3 surgical chapters by the first two digits of the code (87–99, diagnostic and
# therapeutic procedures, and 00/17, not a body system, are no discipline of their own)
_CHAPTERS = ((1, 5), (6, 7), (8, 16), (18, 20), (21, 29), (30, 34), (35, 39), (40, 41), (42, 54),
             (55, 59), (60, 64), (65, 71), (72, 75), (76, 84), (85, 86))
_UNGROUPED_STATUSES = frozenset({"NOT_GROUPED", "NO_WEIGHT"})


@dataclass(frozen=True, slots=True)
class CaseData:
    """What review knows of a priced case: enough to judge an application without a query."""

    case_id: str
    hospital_code: str
    region: str  # where it was treated
    discharge_date: date | None
    method: str = "drg"  # "drg" | "dip"
    status: str = "PRICED"  # case-priced's status
    drg: str = ""
    case_type: str | None = None
    los: int | None = None
    total_cost: Decimal | None = None
    group_mean_cost: Decimal | None = None
    high_threshold: Decimal | None = None
    payment: Decimal | None = None
    fees: Mapping[str, Decimal] = field(default_factory=dict)
    procedures: tuple[str, ...] = ()
    icu_hours: int = 0
    ventilation_hours: int = 0
    withdrawn: bool = False

    @property
    def period(self) -> str | None:
        return quarter_of(self.discharge_date) if self.discharge_date else None


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def case_data(case_id: str, p: CasePriced) -> CaseData:
    """What `case-priced` says of a case, for special-case review."""
    f = p.facts
    return CaseData(
        case_id, f.hospital_code, f.treatment_region or f.region, f.discharge_date,
        method="dip" if p.dip_group else "drg", status=p.status, drg=p.drg, case_type=p.case_type,
        los=_los(p), total_cost=f.total_cost, group_mean_cost=p.group_mean_cost,
        high_threshold=high_threshold_of(p), payment=p.payment,
        fees=f.fees, procedures=tuple(f.procedures), icu_hours=f.icu_hours,  # the facts' own (read only)
        ventilation_hours=f.ventilation_hours, withdrawn=f.withdrawn)


def _los(p: CasePriced) -> int | None:
    f = p.facts
    return (f.discharge_date - f.admission_date).days if f.discharge_date and f.admission_date else None


def high_threshold_of(p: CasePriced) -> Decimal | None:
    """The high-outlier threshold the pricer used (its breakdown's), as `CaseData` holds it."""
    return _decimal(p.breakdown.get("high_threshold"))


def to_json(c: CaseData) -> dict[str, Any]:
    """JSON-ready (decimals as strings): stored with the case, read back by `from_json`."""
    out: dict[str, Any] = {}
    for name in c.__dataclass_fields__:
        v = getattr(c, name)
        out[name] = (str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, date)
                     else {k: str(x) for k, x in v.items()} if name == "fees" else list(v) if isinstance(v, tuple)
                     else v)
    return out


def from_json(d: Mapping[str, Any]) -> CaseData:
    money = ("total_cost", "group_mean_cost", "high_threshold", "payment")
    known = {k: v for k, v in d.items() if k in CaseData.__dataclass_fields__}
    return CaseData(**{**known, **{k: _decimal(d.get(k)) for k in money},
                       "discharge_date": date.fromisoformat(d["discharge_date"]) if d.get("discharge_date") else None,
                       "fees": {k: Decimal(v) for k, v in (d.get("fees") or {}).items()},
                       "procedures": tuple(d.get("procedures") or ())})


def quarter_of(day: date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def half_year_of(period: str) -> str:
    """The half year ("2024H1") a quarter ("2024Q2") belongs to."""
    return f"{period[:4]}H{1 if period[5] in '12' else 2}"


def check_period(period: str, field_name: str = "period") -> str:
    """A quarter "YYYYQn" (1900–2099), or 422 naming the field."""
    if not (len(period) == 6 and period[:4].isdigit() and period[:2] in ("19", "20")
            and period[4] == "Q" and period[5] in "1234"):
        raise Invalid(f"{field_name} must be a quarter, e.g. 2024Q1", code="INVALID_PERIOD", field=field_name)
    return period


def check_half_year(half: str) -> str:
    if not (len(half) == 6 and half[:4].isdigit() and half[:2] in ("19", "20") and half[4] == "H"
            and half[5] in "12"):
        raise Invalid("half must be a half year, e.g. 2024H1", code="INVALID_PERIOD", field="half")
    return half


def _chapter(code: str) -> int | None:
    head = code[:2]
    if not head.isdigit():
        return None
    n = int(head)
    return next((i for i, (lo, hi) in enumerate(_CHAPTERS) if lo <= n <= hi), None)


# the chapter of each two-digit head ("00"–"99"), looked up once per procedure code
_CHAPTER_OF = {f"{n:02d}": _chapter(f"{n:02d}") for n in range(100)}


def surgical_chapters(procedures: Iterable[str]) -> int:
    chapters = set()
    for p in procedures:
        head = p[:2]
        c = _CHAPTER_OF[head] if head in _CHAPTER_OF else _chapter(p)
        if c is not None:
            chapters.add(c)
    return len(chapters)


def _ratio(d: Decimal) -> str:
    return str(d.quantize(Decimal("0.0001")))


class NotEligible(Invalid):
    """The case's figures do not meet the reason's rule (422, the rule's code, field "reason");
    `details` carries the numbers compared."""

    def __init__(self, reason: Reason, message: str, **numbers: Any) -> None:
        code = RULE_CODES[reason]
        super().__init__(message, code=code, field="reason",
                         details=[detail("reason", code, message, rule=code,
                                         numbers={k: str(v) if v is not None else None
                                                  for k, v in numbers.items()})])


def grounds(case: CaseData, p: SpecialCases, evidence: int = 0) -> dict[Reason, dict[str, Any]]:
    """Every reason the case's figures meet, with the numbers that meet it."""
    out: dict[Reason, dict[str, Any]] = {}
    for reason in Reason:
        try:
            out[reason] = check_eligibility(case, reason, p, evidence)
        except NotEligible:
            pass
    return out


def is_complex(case: CaseData, p: SpecialCases) -> bool:
    """A complex case (its hospital's load, which shares the cap): a reason met on its figures
    alone (innovative drugs also need the hospital's evidence, so they do not count). Asked of
    every reviewed case: the rules of `check_eligibility` as plain tests, without building the
    numbers and the refusal of each reason not met."""
    return _complex(case.withdrawn, case.los, case.total_cost, case.group_mean_cost, case.high_threshold,
                    case.case_type, case.icu_hours, case.ventilation_hours, case.procedures, case.status,
                    case.drg, p)


def priced_is_complex(priced: CasePriced, high_threshold: Decimal | None, p: SpecialCases) -> bool:
    """`is_complex` of the priced case's `case_data`, read from the payload itself (no `CaseData`
    made for each reviewed case); `high_threshold`: its `high_threshold_of`."""
    f = priced.facts
    return _complex(f.withdrawn, _los(priced), f.total_cost, priced.group_mean_cost, high_threshold,
                    priced.case_type, f.icu_hours, f.ventilation_hours, f.procedures, priced.status,
                    priced.drg, p)


def _complex(withdrawn: bool, los: int | None, cost: Decimal | None, mean: Decimal | None,
             high: Decimal | None, case_type: str | None, icu_hours: int, ventilation_hours: int,
             procedures: Sequence[str], status: str, drg: str, p: SpecialCases) -> bool:
    if withdrawn:
        return False
    if los is not None and los >= p.long_stay_days:
        return True
    if cost is not None and ((high is not None and cost > high) or case_type == "high_outlier"
                             or (mean is not None and cost > (p.cost_multiple * mean).quantize(FEN))):
        return True
    if (icu_hours > 0 and icu_hours >= p.icu_hours) or \
            (ventilation_hours > 0 and ventilation_hours >= p.ventilation_hours) or \
            any(c.startswith(p.ventilation_procedures) for c in procedures):  # a tuple already
        return True
    if status in _UNGROUPED_STATUSES or case_type == "not_grouped" \
            or drg.upper().endswith("QY") or drg in ("", "0000"):
        return True
    return surgical_chapters(procedures) >= p.min_surgical_chapters


def check_eligibility(case: CaseData, reason: Reason, p: SpecialCases, evidence: int = 0) -> dict[str, Any]:
    """The numbers that make the case eligible for `reason`, or `NotEligible` naming the rule and
    the numbers; `evidence`: how many evidence documents the application lists."""
    numbers: dict[str, Any]
    if case.withdrawn:
        raise NotEligible(reason, "the list was withdrawn (4102): it is out of settlement")
    if reason is Reason.LONG_STAY:
        if case.los is None or case.los < p.long_stay_days:
            raise NotEligible(reason, f"a long stay needs at least {p.long_stay_days} days; the case stayed "
                              f"{case.los if case.los is not None else 'an unknown number of'} days",
                              los=case.los, long_stay_days=p.long_stay_days)
        return {"los": case.los, "long_stay_days": p.long_stay_days}
    if reason is Reason.HIGH_COST:
        cost, mean, high = case.total_cost, case.group_mean_cost, case.high_threshold
        multiple = None if mean is None else (p.cost_multiple * mean).quantize(FEN)
        numbers = {"total_cost": cost, "high_threshold": high, "group_mean_cost": mean,
                   "cost_multiple": p.cost_multiple, "multiple_threshold": multiple}
        if cost is not None and ((high is not None and cost > high) or (multiple is not None and cost > multiple)
                                 or case.case_type == "high_outlier"):
            return {k: str(v) if v is not None else None for k, v in numbers.items()}
        raise NotEligible(reason, f"a high-cost case costs more than its high-outlier threshold ({high}) or "
                          f"{p.cost_multiple} × its group mean ({multiple}); the case cost {cost}", **numbers)
    if reason is Reason.INNOVATIVE:
        cost = case.total_cost or Decimal(0)
        items = sum((case.fees.get(i, Decimal(0)) for i in p.innovative_fee_items), Decimal(0))
        share = items / cost if cost > 0 else Decimal(0)
        numbers = {"fees": items, "total_cost": cost, "share": _ratio(share),
                   "min_share": p.innovative_fee_share, "fee_items": ",".join(p.innovative_fee_items),
                   "evidence": evidence}
        if evidence < 1:
            raise NotEligible(reason, "innovative drugs or devices need evidence (the product's approval, "
                              "the invoice)", **numbers)
        if share < p.innovative_fee_share:
            raise NotEligible(reason, f"drugs and materials ({items}) are {_ratio(share)} of the cost; "
                              f"at least {p.innovative_fee_share} needed", **numbers)
        return {k: str(v) for k, v in numbers.items()}
    if reason is Reason.ICU_VENTILATION:
        ventilated = [c for c in case.procedures if c.startswith(tuple(p.ventilation_procedures))]
        numbers = {"icu_hours": case.icu_hours, "min_icu_hours": p.icu_hours,
                   "ventilation_hours": case.ventilation_hours, "min_ventilation_hours": p.ventilation_hours,
                   "ventilation_procedures": ",".join(ventilated)}
        if (case.icu_hours > 0 and case.icu_hours >= p.icu_hours) or \
                (case.ventilation_hours > 0 and case.ventilation_hours >= p.ventilation_hours) or ventilated:
            return {k: str(v) for k, v in numbers.items()}
        raise NotEligible(reason, f"intensive care needs at least {p.icu_hours} hours in ICU or "
                          f"{p.ventilation_hours} hours of ventilation; the case had {case.icu_hours} and "
                          f"{case.ventilation_hours}", **numbers)
    if reason is Reason.NOT_GROUPED:
        ambiguous = case.drg.upper().endswith("QY")
        if case.status in _UNGROUPED_STATUSES or case.case_type == "not_grouped" or ambiguous \
                or case.drg in ("", "0000"):
            return {"status": case.status, "drg": case.drg}
        raise NotEligible(reason, f"the case is grouped ({case.drg}, {case.status}), not ambiguous",
                          status=case.status, drg=case.drg)
    chapters = surgical_chapters(case.procedures)
    if chapters < p.min_surgical_chapters:
        raise NotEligible(reason, f"multi-disciplinary care needs procedures of {p.min_surgical_chapters} "
                          f"surgical chapters; the case has {chapters}",
                          surgical_chapters=chapters, min_surgical_chapters=p.min_surgical_chapters)
    return {"surgical_chapters": str(chapters), "min_surgical_chapters": str(p.min_surgical_chapters)}


# --- the cap ----------------------------------------------------------------------------------------

def region_cap(drg_discharges: int, dip_discharges: int, p: SpecialCases) -> int:
    """Applications the region may file for a quarter: drg_cap_share × DRG discharges +
    dip_cap_share × DIP discharges, rounded down."""
    exact = p.drg_cap_share * drg_discharges + p.dip_cap_share * dip_discharges
    return int(exact.to_integral_value(rounding=ROUND_FLOOR))


def allocate(cap: int, loads: Mapping[str, int], floor: int) -> dict[str, int]:
    """Each hospital's quota of the cap, by its complex-case load: hospitals without complex
    cases get none; the others the floor first (the busiest first while the cap lasts), then the
    rest in proportion to their load, largest remainder (ties by hospital code). Σ = cap when
    some hospital has a load."""
    hospitals = sorted(h for h, n in loads.items() if n > 0)
    out = dict.fromkeys(hospitals, 0)
    left = max(cap, 0)
    for h in sorted(hospitals, key=lambda h: (-loads[h], h)):
        give = min(floor, left)
        out[h] += give
        left -= give
    if left == 0 or not hospitals:
        return out
    total = sum(loads[h] for h in hospitals)
    exact = {h: Fraction(left * loads[h], total) for h in hospitals}
    parts = {h: int(v) for h, v in exact.items()}
    for h in sorted(hospitals, key=lambda h: (-(exact[h] - parts[h]), h))[:left - sum(parts.values())]:
        parts[h] += 1
    return {h: out[h] + parts[h] for h in hospitals}


@dataclass(frozen=True)
class Quota:
    """Where a region's quarter stands for one hospital when it applies."""

    region: str
    period: str
    drg_discharges: int
    dip_discharges: int
    cap: int
    hospital_code: str
    load: int  # the hospital's complex cases
    quota: int
    used: int  # its applications so far
    region_used: int

    def numbers(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def quota_of(region: str, period: str, drg: int, dip: int, loads: Mapping[str, int], used: Mapping[str, int],
             hospital_code: str, p: SpecialCases) -> Quota:
    cap = region_cap(drg, dip, p)
    quotas = allocate(cap, loads, p.hospital_floor)
    return Quota(region, period, drg, dip, cap, hospital_code, loads.get(hospital_code, 0),
                 quotas.get(hospital_code, 0), used.get(hospital_code, 0), sum(used.values()))


class QuotaExhausted(Conflict):
    """The hospital's quota (or the region's cap) is used (409 SPECIAL_CASE_QUOTA_EXHAUSTED);
    `details` carries the quota's numbers."""

    def __init__(self, q: Quota) -> None:
        code = "SPECIAL_CASE_QUOTA_EXHAUSTED"
        message = (f"hospital {q.hospital_code} has used {q.used} of its {q.quota} special-case applications "
                   f"for {q.region} {q.period} (region cap {q.cap}: {q.drg_discharges} DRG and "
                   f"{q.dip_discharges} DIP discharges; its complex cases: {q.load})")
        super().__init__(message, code=code, field="case_id",
                         details=[detail("case_id", code, message, rule=code,
                                         numbers={k: str(v) for k, v in q.numbers().items()})])


# what refuses an application on its merits (eligibility, the cap): each refusal is audited
REFUSALS: tuple[type[Invalid | Conflict], ...] = (NotEligible, QuotaExhausted)


def refusal_record(error: Invalid | Conflict) -> dict[str, Any]:
    """What the audit keeps of a refusal: the rule that refused and the numbers it compared."""
    first = error.details[0] if error.details else {}
    return {"rule": error.code, "numbers": first.get("numbers", {})}


def check_quota(q: Quota) -> None:
    """409 SPECIAL_CASE_QUOTA_EXHAUSTED when the hospital's quota (or the region's cap) is used."""
    if q.used >= q.quota or q.region_used >= q.cap:
        raise QuotaExhausted(q)


# --- the panel ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """A panel member: a bureau-reviewer token and the hospitals they are tied to (employer,
    consulting, family: never decides their cases)."""

    token_id: str
    hospitals: frozenset[str]
    active: bool = True


@dataclass(frozen=True)
class DecisionInput:
    outcome: Outcome
    reason: str
    amount: Decimal | None = None


def check_decision(d: DecisionInput) -> DecisionInput:
    """An amount (yuan, to the fen, > 0) for "adjust the standard" and only then; a reason always."""
    if not d.reason.strip():
        raise Invalid("a decision needs its reason", code="INVALID_FIELD", field="reason")
    if d.outcome is Outcome.ADJUST_STANDARD:
        if d.amount is None or d.amount <= 0 or d.amount != d.amount.quantize(FEN):
            raise Invalid("adjusting the standard needs the amount in yuan, to the fen, above 0",
                          code="INVALID_AMOUNT", field="amount")
    elif d.amount is not None:
        raise Invalid(f"{d.outcome.value} takes no amount", code="INVALID_AMOUNT", field="amount")
    return d


def may_decide(member: Member | None, hospital_code: str, status: Status, first_decider: str | None) -> int:
    """The round a member would decide (1: the application, 2: the appeal), or 403/409 with a
    stable code: not a member, tied to the hospital, the same member as the first decision,
    nothing to decide."""
    if member is None or not member.active:
        raise Forbidden("only a registered panel member decides special cases",
                        code="SPECIAL_CASE_NOT_PANEL_MEMBER")
    if hospital_code in member.hospitals:
        raise Forbidden(f"this panel member is tied to hospital {hospital_code} and never decides its cases",
                        code="SPECIAL_CASE_MEMBER_TIED", field="case_id")
    if status is Status.PENDING:
        return 1
    if status is Status.APPEALED:
        if member.token_id == first_decider:
            raise Forbidden("the appeal is decided by another member than the first decision",
                            code="SPECIAL_CASE_SAME_MEMBER")
        return 2
    raise Conflict(f"the application is {status.value}: nothing to decide", code="SPECIAL_CASE_NOT_OPEN",
                   field="status")


def may_appeal(status: Status, appealed: bool) -> None:
    """A hospital appeals a first decision once."""
    if appealed or status is not Status.DECIDED:
        raise Conflict("a decision may be appealed once, after the first decision"
                       if appealed or status is Status.FINAL else
                       f"the application is {status.value}: there is no decision to appeal",
                       code="SPECIAL_CASE_NOT_APPEALABLE", field="status")


# --- the half-yearly publication -----------------------------------------------------------------------

PUBLICATION_COLUMNS = ("half", "hospital_code", "applications", "pending", "appealed", "pay_by_item",
                       "adjust_standard", "rejected", "adjusted_amount")


def publication(half: str, applications: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Counts and outcomes per hospital of the applications of a half year (their current
    outcome: the appeal's when there was one), hospital code order."""
    rows: dict[str, dict[str, Any]] = {}
    for a in applications:
        r = rows.setdefault(a["hospital_code"], {
            "half": half, "hospital_code": a["hospital_code"], "applications": 0, "pending": 0, "appealed": 0,
            "pay_by_item": 0, "adjust_standard": 0, "rejected": 0, "adjusted_amount": Decimal(0)})
        r["applications"] += 1
        status, outcome = Status(a["status"]), a.get("outcome")
        if status is Status.PENDING:
            r["pending"] += 1
            continue
        if status is Status.APPEALED:
            r["appealed"] += 1
            continue
        if outcome == Outcome.PAY_BY_ITEM:
            r["pay_by_item"] += 1
        elif outcome == Outcome.ADJUST_STANDARD:
            r["adjust_standard"] += 1
            r["adjusted_amount"] += Decimal(a.get("amount") or 0)
        else:
            r["rejected"] += 1
    return [{k: str(v) for k, v in r.items()} for _h, r in sorted(rows.items())]
