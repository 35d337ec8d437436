"""Review's domain core: the case-level monitoring rules (智能监控, docs/domain.md §11).

Each rule has a stable code, a severity and parameters (`parameters.py`, per region and period);
a flag carries its evidence: the related case ids and the numbers that fired it, with the
parameters they were compared with, so a reviewer can judge it without a query.

- SPLIT_ADMISSION (分解住院): the same person readmitted to the same hospital within N days
  (DRG 15, DIP 31) into the same ADRG (DRG) or DIP category, not planned, neither stay a
  chemotherapy, radiotherapy or dialysis stay. Flagged on the readmission.
- UPCODING_SECONDARY (高套): one secondary diagnosis alone lifts the case into its CC/MCC group
  (the grouper says which, and the group it would have without it) and the cost is below the
  mean of that lower group at hospitals of the case's level (as §7 compares DIP deviation cases
  with the same-level mean: costs differ by level, so a regional mean flags every cheaper level);
  until the region has enough of the lower group's cases at that level, the lower group's
  regional mean × the hospital's coefficient stands in for it.
- LOW_STANDARD_ADMISSION (低标入院): a short stay (LOS ≤ 2) costing below 0.4 × the group mean
  (DIP: graded by the ratio).
- PRIMARY_CARE_AT_TERTIARY: a primary-care group (基层病组) treated at a tertiary hospital.
- COST_SHIFTING (转移费用): the case's self-pay (自费) share far above its group's regional share
  (its ADRG's while the group has too few cases in the region to have a share of its own).

Hospital-level rules (the rest of §11) run per period over many cases and live beside these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from services.review.domain.parameters import (
    CostShifting,
    LowStandardAdmission,
    PrimaryCareAtTertiary,
    RuleParameters,
    SplitAdmission,
    Upcoding,
)
from shared.events import CaseFlag

SPLIT_ADMISSION = "SPLIT_ADMISSION"
UPCODING_SECONDARY = "UPCODING_SECONDARY"
LOW_STANDARD_ADMISSION = "LOW_STANDARD_ADMISSION"
PRIMARY_CARE_AT_TERTIARY = "PRIMARY_CARE_AT_TERTIARY"
COST_SHIFTING = "COST_SHIFTING"
CASE_RULES = (SPLIT_ADMISSION, UPCODING_SECONDARY, LOW_STANDARD_ADMISSION, PRIMARY_CARE_AT_TERTIARY,
              COST_SHIFTING)
_RATIO = Decimal("0.0001")


def _ratio(d: Decimal) -> str:
    return str(d.quantize(_RATIO, rounding=ROUND_HALF_UP))


# Made for every priced case (and every stored stay read back): plain slotted dataclasses, never
# changed once made (a frozen one sets each field through object.__setattr__, several times the
# cost of the rest of making it).
@dataclass(slots=True)
class Stay:
    """A stay as the split-admission rule compares it with the person's other stays."""

    case_id: str
    psn_key: str
    hospital_code: str
    admission_date: date | None
    discharge_date: date | None
    method: str = "drg"  # "drg" | "dip": how the case was priced
    adrg: str | None = None  # None: not grouped
    dip_group: str | None = None
    principal_diagnosis: str | None = None
    procedures: tuple[str, ...] = ()
    planned: bool = False  # its list says a readmission within 31 days is planned
    withdrawn: bool = False


@dataclass(frozen=True, slots=True)
class Lift:
    """The one secondary diagnosis lifting the case into its CC/MCC group (from the grouper)."""

    codes: tuple[str, ...]
    level: str
    drg_without: str
    drg_without_mean_cost: Decimal | None


@dataclass(slots=True)
class CaseFigures:
    """What the single-case rules read of a priced case."""

    drg: str
    los: int | None
    total_cost: Decimal | None
    own_pay: Decimal | None  # 自费
    group_mean_cost: Decimal | None
    hospital_level: int | None
    primary_care: bool = False  # the DIP catalogue marks its group primary-care
    lift: Lift | None = None
    coefficient: Decimal | None = None  # the hospital's (or its level's) coefficient as priced


class Share(NamedTuple):
    """A group's regional self-pay figures: cases, Σ cost, Σ 自费 (cases with both figures).
    A tuple: a batch's review makes several of them for each case."""

    cases: int = 0
    cost: Decimal = Decimal(0)
    own_pay: Decimal = Decimal(0)

    def plus(self, other: Share) -> Share:
        return make_share(self.cases + other.cases, self.cost + other.cost, self.own_pay + other.own_pay)

    def minus(self, other: Share) -> Share:
        return make_share(self.cases - other.cases, self.cost - other.cost, self.own_pay - other.own_pay)

    @property
    def mean_cost(self) -> Decimal | None:
        return self.cost / self.cases if self.cases > 0 else None


def make_share(cases: int, cost: Decimal, own_pay: Decimal) -> Share:
    """A `Share` of its three figures (without the keyword handling of `Share(...)`)."""
    return tuple.__new__(Share, (cases, cost, own_pay))


@dataclass(slots=True)
class Regional:  # made for each case: plain (see Stay)
    """The region's running figures a case is compared with (without the case itself): its
    group's and its ADRG's self-pay figures (cost shifting), and the cost figures of the group it
    would have without its lifting diagnosis, at hospitals of its level (upcoding)."""

    group: Share = Share()
    adrg: Share = Share()
    lower_at_level: Share = Share()


# --- split admission ------------------------------------------------------------------------------

def is_readmission(earlier: Stay, later: Stay, days: int) -> bool:
    """`later` began within `days` days after `earlier` ended, at the same hospital."""
    if earlier.case_id == later.case_id or earlier.hospital_code != later.hospital_code:
        return False
    if earlier.discharge_date is None or later.admission_date is None:
        return False
    gap = (later.admission_date - earlier.discharge_date).days
    return 0 <= gap <= days and later.admission_date >= (earlier.admission_date or later.admission_date)


READMISSION_REACH = 31  # the longest readmission window the bureau's indicators count (§12)


def readmission_days(stay: Stay, others: Iterable[Stay]) -> int | None:
    """Days from the person's latest earlier discharge at the same hospital to `stay`'s admission
    (the 15/31-day readmission indicators, planned or not); None when there is none or `stay`
    is withdrawn."""
    if stay.withdrawn or stay.admission_date is None:
        return None
    gaps = [(stay.admission_date - o.discharge_date).days for o in others
            if o.discharge_date is not None and not o.withdrawn and is_readmission(o, stay, 10**6)]
    return min(gaps) if gaps else None


def window(p: SplitAdmission, later: Stay) -> int:
    """The readmission window of the rule for `later` (the DIP variant for DIP-priced cases)."""
    return p.dip_days if later.method == "dip" else p.days


def max_window(p: SplitAdmission) -> int:
    return max(p.days, p.dip_days)


def treatment_stay(s: Stay, p: SplitAdmission) -> str | None:
    """Why `s` is a chemotherapy/radiotherapy/dialysis stay (the code matched), else None."""
    if s.principal_diagnosis and s.principal_diagnosis.startswith(p.excluded_diagnoses):
        return s.principal_diagnosis
    return next((c for c in s.procedures if c.startswith(p.excluded_procedures)), None)


def _category(s: Stay, later: Stay, p: SplitAdmission) -> str | None:
    """What must be equal for a split admission, as the later stay's method compares it."""
    if later.method == "dip":
        if p.dip_match == "group":
            return s.dip_group
        return s.principal_diagnosis[:3] if s.principal_diagnosis else None
    return s.adrg


def _planned(earlier: Stay, later: Stay, p: SplitAdmission) -> bool:
    if p.planned_on == "earlier":
        return earlier.planned
    if p.planned_on == "later":
        return later.planned
    return earlier.planned or later.planned


def split_admission(earlier: Stay, later: Stay, p: SplitAdmission) -> CaseFlag | None:
    """The flag on `later` when it is a split admission after `earlier`, else None."""
    if not p.enabled or earlier.withdrawn or later.withdrawn:
        return None
    days = window(p, later)
    if not is_readmission(earlier, later, days):
        return None
    basis = "DIP " + p.dip_match if later.method == "dip" else "ADRG"
    mine, theirs = _category(later, later, p), _category(earlier, later, p)
    if mine is None or mine != theirs or _planned(earlier, later, p):
        return None
    if treatment_stay(earlier, p) or treatment_stay(later, p):
        return None
    assert later.admission_date is not None and earlier.discharge_date is not None
    gap = (later.admission_date - earlier.discharge_date).days
    return CaseFlag(
        rule=SPLIT_ADMISSION, severity=p.severity.value, related_case_id=earlier.case_id,
        message=f"readmitted {gap} days after discharge from case {earlier.case_id} into the same "
                f"{basis} {mine} (limit {days} days, not planned)",
        evidence={"related_case_ids": [earlier.case_id], "gap_days": gap, "limit_days": days,
                  "basis": basis, "category": mine,
                  "earlier": {"case_id": earlier.case_id, "admission_date": _day(earlier.admission_date),
                              "discharge_date": _day(earlier.discharge_date), "adrg": earlier.adrg,
                              "dip_group": earlier.dip_group,
                              "principal_diagnosis": earlier.principal_diagnosis},
                  "later": {"admission_date": _day(later.admission_date),
                            "discharge_date": _day(later.discharge_date), "adrg": later.adrg,
                            "dip_group": later.dip_group, "principal_diagnosis": later.principal_diagnosis},
                  "planned": False})


def split_admission_flags(stay: Stay, others: Iterable[Stay], p: SplitAdmission) -> list[CaseFlag]:
    """Flags on `stay` for each earlier stay of the same person it is a split admission after."""
    out = [split_admission(o, stay, p) for o in others]
    return [f for f in out if f is not None]


def _day(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


# --- single-case rules ----------------------------------------------------------------------------

def _money(d: Decimal) -> str:
    return str(d.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def lower_group_mean(c: CaseFigures, lower_at_level: Share, p: Upcoding) -> tuple[Decimal, str] | None:
    """The mean cost the upcoding rule compares the case with, and its basis: the lower group's
    mean at the hospital's level once the region has `min_level_cases` of them, else its regional
    mean × the hospital's coefficient (the regional mean alone when the coefficient is unknown or
    `compare_with` is "region")."""
    lift = c.lift
    if lift is None:
        return None
    if p.compare_with == "level" and c.hospital_level is not None and lower_at_level.cases >= p.min_level_cases:
        mean = lower_at_level.mean_cost
        if mean:
            return mean, "level"
    if not lift.drg_without_mean_cost:
        return None
    if p.compare_with == "level" and c.coefficient:
        return lift.drg_without_mean_cost * c.coefficient, "region × coefficient"
    return lift.drg_without_mean_cost, "region"


def upcoding(c: CaseFigures, p: Upcoding, lower_at_level: Share = Share()) -> CaseFlag | None:
    """`lower_at_level`: the region's cases of the lower group at the case's hospital level."""
    lift = c.lift
    if not p.enabled or lift is None or c.total_cost is None:
        return None
    found = lower_group_mean(c, lower_at_level, p)
    if found is None:
        return None
    mean, basis = found
    limit = p.cost_ratio * mean
    if c.total_cost >= limit:
        return None
    codes = ", ".join(lift.codes)
    where = {"level": f"at level-{c.hospital_level} hospitals ({lower_at_level.cases} cases)",
             "region × coefficient": f"(regional mean {lift.drg_without_mean_cost} × coefficient {c.coefficient})",
             "region": "in the region"}[basis]
    return CaseFlag(
        rule=UPCODING_SECONDARY, severity=p.severity.value,
        message=f"secondary diagnosis {codes} ({lift.level}) alone lifts the case from {lift.drg_without} "
                f"to {c.drg}, and its cost {c.total_cost} is below {lift.drg_without}'s mean "
                f"{_money(mean)} {where}",
        evidence={"drg": c.drg, "drg_without": lift.drg_without, "lifting_diagnoses": list(lift.codes),
                  "level": lift.level, "total_cost": str(c.total_cost),
                  "lower_group_mean_cost": _money(mean), "basis": basis,
                  "hospital_level": c.hospital_level,
                  "lower_group_level_cases": lower_at_level.cases,
                  "lower_group_regional_mean_cost": None if lift.drg_without_mean_cost is None
                  else str(lift.drg_without_mean_cost),
                  "coefficient": None if c.coefficient is None else str(c.coefficient),
                  "ratio": _ratio(c.total_cost / mean), "cost_ratio": str(p.cost_ratio),
                  "min_level_cases": p.min_level_cases})


def low_standard_admission(c: CaseFigures, method: str, p: LowStandardAdmission) -> CaseFlag | None:
    if (not p.enabled or c.los is None or c.los > p.max_los or c.total_cost is None
            or not c.group_mean_cost):
        return None
    ratio = c.total_cost / c.group_mean_cost
    if method == "dip":
        grade = next((g for g in p.dip_grades if ratio < g.below), None)
        if grade is None:
            return None
        severity, below = grade.severity.value, grade.below
    else:
        if ratio >= p.cost_ratio:
            return None
        severity, below = p.severity.value, p.cost_ratio
    return CaseFlag(
        rule=LOW_STANDARD_ADMISSION, severity=severity,
        message=f"stay of {c.los} days (≤ {p.max_los}) costing {c.total_cost}, "
                f"{_ratio(ratio)} of the group mean {c.group_mean_cost} (below {below})",
        evidence={"los": c.los, "max_los": p.max_los, "total_cost": str(c.total_cost),
                  "group": c.drg, "group_mean_cost": str(c.group_mean_cost), "ratio": _ratio(ratio),
                  "below": str(below), "method": method})


def primary_care_at_tertiary(c: CaseFigures, groups: Iterable[str | None],
                             p: PrimaryCareAtTertiary) -> CaseFlag | None:
    if not p.enabled or c.hospital_level is None or c.hospital_level not in p.levels:
        return None
    listed = next((g for g in groups if g and g in p.groups), None) if p.groups else None
    source = "parameters" if listed else "DIP catalogue" if p.use_catalogue_flag and c.primary_care else None
    if source is None:
        return None
    group = listed or c.drg
    return CaseFlag(
        rule=PRIMARY_CARE_AT_TERTIARY, severity=p.severity.value,
        message=f"primary-care group {group} treated at a level-{c.hospital_level} hospital",
        evidence={"group": group, "hospital_level": c.hospital_level, "listed_by": source,
                  "levels": list(p.levels)})


def own_pay_share(c: CaseFigures) -> Share | None:
    """The case's contribution to its group's regional self-pay share (None: not counted)."""
    if c.own_pay is None or c.total_cost is None or c.total_cost <= 0:
        return None
    return make_share(1, c.total_cost, c.own_pay)


def cost_shifting(c: CaseFigures, regional: Share, p: CostShifting, adrg: Share = Share(),
                  adrg_code: str | None = None) -> CaseFlag | None:
    """`regional`: the group's figures without this case; `adrg`: its ADRG's (the fallback while
    the group has fewer than `min_cases`)."""
    mine = own_pay_share(c)
    if not p.enabled or mine is None:
        return None
    basis, base = "group", regional
    if regional.cases < p.min_cases or regional.cost <= 0:
        if not p.adrg_fallback or adrg_code is None or adrg.cases < p.min_cases or adrg.cost <= 0:
            return None
        basis, base = "ADRG", adrg
    share, region_share = mine.own_pay / mine.cost, base.own_pay / base.cost
    if share < p.min_case_share or share <= p.factor * region_share:
        return None
    whose = "group's" if basis == "group" else f"ADRG {adrg_code}'s"
    return CaseFlag(
        rule=COST_SHIFTING, severity=p.severity.value,
        message=f"self-pay share {_ratio(share)} of the cost is above {p.factor} × the {whose} "
                f"regional share {_ratio(region_share)} ({base.cases} cases)",
        evidence={"own_pay": str(mine.own_pay), "total_cost": str(mine.cost), "share": _ratio(share),
                  "regional_share": _ratio(region_share), "regional_cases": base.cases,
                  "basis": basis, "group_cases": regional.cases,
                  "factor": str(p.factor), "min_case_share": str(p.min_case_share),
                  "min_cases": p.min_cases, "group": c.drg,
                  **({"adrg": adrg_code} if basis == "ADRG" else {})})


def case_flags(c: CaseFigures, stay: Stay, regional: Regional, p: RuleParameters) -> list[CaseFlag]:
    """The single-case rules' flags, in rule order (split admissions are added by the caller)."""
    out = [upcoding(c, p.upcoding_secondary, regional.lower_at_level),
           low_standard_admission(c, stay.method, p.low_standard_admission),
           primary_care_at_tertiary(c, (c.drg, stay.adrg, stay.dip_group), p.primary_care_at_tertiary),
           cost_shifting(c, regional.group, p.cost_shifting, regional.adrg, stay.adrg)]
    return [f for f in out if f is not None]


def split_flags_of(flags: Iterable[CaseFlag]) -> list[CaseFlag]:
    return [f for f in flags if f.rule == SPLIT_ADMISSION]


def other_flags_of(flags: Iterable[CaseFlag]) -> list[CaseFlag]:
    return [f for f in flags if f.rule != SPLIT_ADMISSION]

