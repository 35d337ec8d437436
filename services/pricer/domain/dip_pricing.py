"""DIP pricing (按病种分值付费, docs/domain.md §7–§8): the DIP policy, a case's price,
point values, clearing through the DRG settlement engine, and the DRG/DIP comparison.

Pure: standard library and pydantic, plus the DRG pricer's own models (hospitals, scope and
settlement sections of a policy, `pricing.Price`, the settlement engine) and the money rounding
of `shared.money`. DIP and DRG are two ways to price the same cases, so they share every
formula they have in common. Catalogues and scores are built in `dip_catalogue.py`.

Pricing (§7 DIP)
----------------
    base score  = to_points(score_g × auxiliary)          (`dip_catalogue.base_score`)
    mean        = the group's mean cost at the case's hospital level in the newest data year
                  ("last year"; kept cases); else all levels that year; else M_g.
                  Primary-care groups (基层病种) always use the all-levels mean.
    ratio       = cost / mean
    very low  (ratio < 0.5): case score = base × ratio
    very high (ratio > 2):   case score = base × (ratio − 2 + 1); ratio > 5 also flags special
                             review (特例单议, §10)
    normal:                  case score = base                    (all to 4 decimals)
    coefficient = the hospital's (or its level's) coefficient; 1 for primary-care groups
    points      = to_points(case score × coefficient)
    payment     = to_fen(case score × point value × coefficient)
Out-of-scope cases (per-diem stays, LOS ≤ scope.min_los, LOS ≥ scope.max_los) are paid by
item or per bed-day as the DRG pricer does; per-diem and long stays are flagged for special
review.

Point values (§7), 6 decimals (the budget point value of history: `dip_catalogue`):
    settlement point value = (fund available / reimbursement ratio) / Σ points

Clearing (§8): DIP prices become `pricing.Price` rows (very low → low outlier, very high → high
outlier) and go through the DRG engine unchanged: `settlement.hospital_totals` and
`settlement.annual_clearing` under a point-method `Policy` made from the DIP policy
(`settlement_policy`). With budget B = fund available / reimbursement ratio, the point budget
B − reserve is split by largest remainder, so Σ hospital amounts + reserve = B to the fen.

Errors for callers are `shared.errors.Invalid` subclasses with a stable code: `PolicyError`
(an invalid DIP policy document, as for DRG) and `DipPricingError` (no point value, no points, …).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.pricer.domain.dip_catalogue import base_score
from services.pricer.domain.policy import (
    Hospitals,
    PointSettings,
    Policy,
    PolicyError,
    Scope,
    Settlement,
    WeightsTable,
)
from services.pricer.domain.pricing import CaseType, Price
from services.pricer.domain.settlement import (
    Clearing,
    HospitalTotals,
    HospitalYear,
    Statement,
    annual_clearing,
    hospital_totals,
    monthly_presettlement,
)
from shared.dip import Catalogue, CatalogueGroup, DipCase
from shared.errors import Invalid
from shared.money import (
    ONE,
    ZERO,
    PointValue,
    Ratio,
    to_fen,
    to_point_value,
    to_points,
    to_weight,
)

DIP_POLICY_FORMAT: Literal["drgdip.dip-policy/1"] = "drgdip.dip-policy/1"


class DipPricingError(Invalid):
    """A DIP price or point value cannot be computed from what was given (422)."""

    default_code = "DIP_NOT_PRICEABLE"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- policy ---------------------------------------------------------------------------------------

class Deviation(_Model):
    """Deviation-case thresholds (§7 DIP), as multiples of the same-level group mean."""

    very_low_ratio: Ratio = Decimal("0.5")
    very_high_ratio: Ratio = Decimal("2")
    special_review_ratio: Ratio = Decimal("5")


class DipPoints(_Model):
    provisional_point_value: PointValue | None = None  # for monthly pre-settlement and pricing
    reimbursement_ratio: Ratio | None = None  # for the settlement point value


class DipPolicy(_Model):
    """One region's DIP pricing rules for a period; the DRG policy's sections where they match."""

    format: Literal["drgdip.dip-policy/1"] = DIP_POLICY_FORMAT
    policy_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    region: str = Field(min_length=1)
    valid_from: date
    valid_to: date | None = None
    hospitals: Hospitals = Field(default_factory=Hospitals)
    deviation: Deviation = Field(default_factory=Deviation)
    scope: Scope = Field(default_factory=Scope)
    points: DipPoints = Field(default_factory=DipPoints)
    settlement: Settlement = Field(default_factory=Settlement)
    notes: str = ""

    def level_of(self, hospital_code: str, case_level: int | None) -> int | None:
        return self.hospitals.level_of(hospital_code, case_level)

    def coefficient_for(self, hospital_code: str, level: int | None) -> Decimal | None:
        return self.hospitals.coefficient_for(hospital_code, level)


def parse_dip_policy(document: bytes | str) -> DipPolicy:
    """A DIP policy from its JSON document; raises `PolicyError` naming every field at fault
    (the same error as a DRG policy's)."""
    try:
        return DipPolicy.model_validate_json(document)
    except ValidationError as e:
        raise PolicyError.from_validation(e) from None


# --- pricing --------------------------------------------------------------------------------------

class DipCaseType(StrEnum):
    NORMAL = "normal"
    VERY_LOW = "very_low"  # 费用极低
    VERY_HIGH = "very_high"  # 费用极高
    OUT_OF_SCOPE = "out_of_scope"
    NO_COEFFICIENT = "no_coefficient"  # unknown hospital level: not priced


_AS_DRG_TYPE = {DipCaseType.NORMAL: CaseType.NORMAL, DipCaseType.VERY_LOW: CaseType.LOW_OUTLIER,
                DipCaseType.VERY_HIGH: CaseType.HIGH_OUTLIER,
                DipCaseType.OUT_OF_SCOPE: CaseType.OUT_OF_SCOPE,
                DipCaseType.NO_COEFFICIENT: CaseType.NO_RATE}


@dataclass(frozen=True)
class DipPrice:
    """A DIP-priced case: every figure used, and which catalogue and policy produced it."""

    case_id: str
    hospital_code: str
    group: str
    kind: str
    case_type: DipCaseType
    catalogue_id: str
    catalogue_version: int
    policy_id: str
    policy_version: int
    total_cost: Decimal
    patient_share: Decimal
    hospital_level: int | None = None
    primary_care: bool = False
    group_score: Decimal | None = None
    auxiliary: Decimal = ONE
    base_score: Decimal = ZERO
    mean_cost: Decimal | None = None
    mean_basis: str = ""
    cost_ratio: Decimal | None = None
    case_score: Decimal = ZERO
    coefficient: Decimal | None = None
    points: Decimal = ZERO  # case score × coefficient: the hospital's share of the budget
    point_value: Decimal | None = None
    payment: Decimal | None = None
    special_review: bool = False
    trace: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def priced(self) -> bool:
        return self.payment is not None

    def to_price(self) -> Price:
        """The DRG pricer's `Price` shape, so settlement and reports treat both methods alike."""
        return Price(
            case_id=self.case_id, hospital_code=self.hospital_code, drg=self.group,
            case_type=_AS_DRG_TYPE[self.case_type], policy_id=self.policy_id,
            policy_version=self.policy_version,
            weights_version=f"{self.catalogue_id}/v{self.catalogue_version}", method="dip",
            total_cost=self.total_cost, patient_share=self.patient_share,
            hospital_level=self.hospital_level, coefficient=self.coefficient,
            group_mean_cost=self.mean_cost, outlier_cost=self.total_cost,
            base_points=self.base_score, points=self.points, point_value=self.point_value,
            payment=self.payment, special_review=self.special_review, notes=self.notes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            out[name] = (str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple)
                         else v)
        return out


def _group_mean(group: CatalogueGroup, level: int | None) -> tuple[Decimal, str]:
    """Same-level mean last year, else all levels last year, else M_g (§7 DIP)."""
    if not group.primary_care and level is not None and str(level) in group.level_mean_costs:
        return group.level_mean_costs[str(level)], f"level {level}, last year"
    if "all" in group.level_mean_costs:
        return group.level_mean_costs["all"], "all levels, last year"
    return group.mean_cost, "group mean (weighted years)"


def price_dip_case(catalogue: Catalogue, policy: DipPolicy, case: DipCase, *,
                   point_value: Decimal | None = None) -> DipPrice:
    """Price one case by DIP (§7; formulas in the module docstring)."""
    pv = point_value if point_value is not None else policy.points.provisional_point_value
    if pv is None:
        raise DipPricingError("no point value: pass one or set points.provisional_point_value",
                              code="NO_POINT_VALUE", field="points.provisional_point_value")
    pv = to_point_value(pv)
    a, aux, base = base_score(catalogue, case)
    group = catalogue.groups[a.code]
    level = policy.level_of(case.hospital_code, case.hospital_level)
    head: dict[str, Any] = dict(
        case_id=case.case_id, hospital_code=case.hospital_code, group=a.code, kind=a.kind,
        catalogue_id=catalogue.catalogue_id, catalogue_version=catalogue.version,
        policy_id=policy.policy_id, policy_version=policy.version, total_cost=case.total_cost,
        patient_share=case.patient_share, hospital_level=level, primary_care=group.primary_care,
        group_score=group.score, auxiliary=aux, base_score=base, trace=a.trace, point_value=pv)

    note = policy.scope.out_of_scope(case.los, case.per_diem)
    if note is not None:
        if policy.scope.out_of_scope_payment == "per_diem":
            assert policy.scope.per_diem_rate is not None  # guaranteed by validation
            payment = to_fen(policy.scope.per_diem_rate * (case.los or 0))
        else:
            payment = case.total_cost
        return DipPrice(case_type=DipCaseType.OUT_OF_SCOPE, payment=payment,
                        special_review=not policy.scope.short_stay(case.los, case.per_diem),
                        notes=(note,), **head)

    coefficient = ONE if group.primary_care else policy.coefficient_for(case.hospital_code, level)
    if coefficient is None:
        return DipPrice(case_type=DipCaseType.NO_COEFFICIENT,
                        notes=("no coefficient: unknown hospital level",), **head)

    mean, basis = _group_mean(group, level)
    d = policy.deviation
    case_type, ratio, score, review = DipCaseType.NORMAL, None, base, False
    if mean > 0:
        ratio = case.total_cost / mean
        if ratio < d.very_low_ratio:
            case_type, score = DipCaseType.VERY_LOW, to_points(base * ratio)
        elif ratio > d.very_high_ratio:
            case_type = DipCaseType.VERY_HIGH
            score = to_points(base * (ratio - d.very_high_ratio + 1))
            review = ratio > d.special_review_ratio
    notes = ("primary-care group: coefficient 1 at every level",) if group.primary_care else ()
    return DipPrice(
        case_type=case_type, mean_cost=mean, mean_basis=basis,
        cost_ratio=None if ratio is None else to_weight(ratio), case_score=score,
        coefficient=coefficient, points=to_points(score * coefficient),
        payment=to_fen(score * pv * coefficient), special_review=review, notes=notes, **head)


def price_dip_many(catalogue: Catalogue, policy: DipPolicy, cases: Iterable[DipCase], *,
                   point_value: Decimal | None = None) -> list[DipPrice]:
    return [price_dip_case(catalogue, policy, c, point_value=point_value) for c in cases]


# --- point values ---------------------------------------------------------------------------------

def settlement_budget(fund_available: Decimal, reimbursement_ratio: Decimal) -> Decimal:
    """The cost budget the fund can pay for: fund available / reimbursement ratio, to the fen."""
    if reimbursement_ratio <= 0:
        raise DipPricingError("the reimbursement ratio must be positive",
                              code="INVALID_REIMBURSEMENT_RATIO", field="reimbursement_ratio")
    return to_fen(fund_available / reimbursement_ratio)


def settlement_point_value(fund_available: Decimal, reimbursement_ratio: Decimal,
                           total_points: Decimal) -> Decimal:
    """结算点值 = (fund available / reimbursement ratio) / Σ points (§7 DIP), 6 decimals."""
    if total_points <= 0:
        raise DipPricingError("Σ points must be positive", code="NO_POINTS")
    return to_point_value(fund_available / reimbursement_ratio / total_points)


# --- settlement: the DRG engine -------------------------------------------------------------------

def settlement_policy(policy: DipPolicy, catalogue: Catalogue, *,
                      point_value: Decimal | None = None) -> Policy:
    """A point-method `Policy` carrying the DIP policy's hospitals and settlement rules, so
    `settlement.py` clears DIP exactly as it clears DRG; the scores stand in for the weights."""
    pv = point_value if point_value is not None else policy.points.provisional_point_value
    return Policy(
        policy_id=policy.policy_id, version=policy.version, region=policy.region,
        valid_from=policy.valid_from, valid_to=policy.valid_to, method="points",
        scheme_id=catalogue.catalogue_id,
        weights=WeightsTable(version=catalogue.version_label, table=catalogue.scores),
        hospitals=policy.hospitals, overall_mean_cost=catalogue.overall_mean_cost,
        scope=policy.scope, settlement=policy.settlement,
        points=PointSettings(scale=catalogue.scale,
                             provisional_point_value=pv if pv is not None else ONE),
        notes=f"DIP settlement view of {policy.policy_id} v{policy.version}",
    )


def dip_hospital_totals(prices: Iterable[DipPrice]) -> dict[str, HospitalTotals]:
    """Per-hospital totals of DIP prices (`settlement.hospital_totals` over `to_price()`)."""
    return hospital_totals(p.to_price() for p in prices)


def presettle_dip_month(policy: DipPolicy, catalogue: Catalogue, period: str,
                        prices: Iterable[DipPrice], *, version: int = 1) -> list[Statement]:
    """Monthly pre-settlement (§8) of DIP prices at the provisional point value."""
    return monthly_presettlement(settlement_policy(policy, catalogue), period,
                                 dip_hospital_totals(prices).values(), version=version)


def clear_dip_year(policy: DipPolicy, catalogue: Catalogue, year: str,
                   prices: Iterable[DipPrice], budget: Decimal, *,
                   presettled: Mapping[str, Decimal] | None = None,
                   advances: Mapping[str, Decimal] | None = None, version: int = 1) -> Clearing:
    """Annual DIP clearing (§8) through `settlement.annual_clearing`: Σ A_h + reserve = budget.

    ``budget`` is the cost budget (`settlement_budget(fund, reimbursement ratio)`); the
    clearing's final point value is (budget − reserve) / Σ points.
    """
    totals = dip_hospital_totals(prices)
    rows = [HospitalYear(t, presettled=(presettled or {}).get(h, ZERO),
                         advances=(advances or {}).get(h, ZERO)) for h, t in totals.items()]
    return annual_clearing(settlement_policy(policy, catalogue), year, rows, budget,
                           version=version)


# --- DRG vs DIP -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ComparisonRow:
    """DRG vs DIP payment for the same cases; unpriced cases count at their cost (by item)."""

    key: str
    cases: int
    drg_payment: Decimal
    dip_payment: Decimal
    drg_unpriced: int = 0
    dip_unpriced: int = 0

    @property
    def difference(self) -> Decimal:
        """DIP − DRG (> 0: DIP pays more)."""
        return self.dip_payment - self.drg_payment

    def to_dict(self, key_name: str) -> dict[str, Any]:
        return {key_name: self.key, "cases": self.cases, "drg_payment": str(self.drg_payment),
                "dip_payment": str(self.dip_payment), "difference": str(self.difference),
                "drg_unpriced": self.drg_unpriced, "dip_unpriced": self.dip_unpriced}


@dataclass(frozen=True)
class Comparison:
    by_hospital: tuple[ComparisonRow, ...]
    by_dip_group: tuple[ComparisonRow, ...]
    by_drg: tuple[ComparisonRow, ...]
    total: ComparisonRow
    only_drg: tuple[str, ...]  # case ids priced by one method only
    only_dip: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total.to_dict("scope"),
                "hospitals": [r.to_dict("hospital_code") for r in self.by_hospital],
                "dip_groups": [r.to_dict("dip_group") for r in self.by_dip_group],
                "drgs": [r.to_dict("drg") for r in self.by_drg],
                "only_drg": list(self.only_drg), "only_dip": list(self.only_dip)}


def _paid(p: Price) -> tuple[Decimal, bool]:
    total = p.total_payment
    return (p.total_cost, False) if total is None else (total, True)


def compare(drg_prices: Iterable[Price], dip_prices: Iterable[DipPrice | Price]) -> Comparison:
    """Per hospital, per DIP group and per DRG: DRG vs DIP payment for the same cases (by id)."""
    drg = {p.case_id: p for p in drg_prices}
    dip = {p.case_id: (p.to_price() if isinstance(p, DipPrice) else p) for p in dip_prices}
    both = sorted(drg.keys() & dip.keys())

    def rows(key_of: Any) -> list[ComparisonRow]:
        acc: dict[str, list[Any]] = {}
        for cid in both:
            a = acc.setdefault(key_of(cid), [0, ZERO, ZERO, 0, 0])
            (x, x_ok), (y, y_ok) = _paid(drg[cid]), _paid(dip[cid])
            a[0] += 1
            a[1] += x
            a[2] += y
            a[3] += not x_ok
            a[4] += not y_ok
        return [ComparisonRow(k, *v) for k, v in sorted(acc.items())]

    total = rows(lambda cid: "total")
    return Comparison(
        by_hospital=tuple(rows(lambda cid: drg[cid].hospital_code)),
        by_dip_group=tuple(rows(lambda cid: dip[cid].drg)),
        by_drg=tuple(rows(lambda cid: drg[cid].drg or "(none)")),
        total=total[0] if total else ComparisonRow("total", 0, ZERO, ZERO),
        only_drg=tuple(sorted(drg.keys() - dip.keys())),
        only_dip=tuple(sorted(dip.keys() - drg.keys())),
    )
