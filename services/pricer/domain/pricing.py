"""Price one case under a `Policy`: case type, weight, payment standard, outliers, add-ons (§7).

`price_case(policy, case)` is a pure function: the same policy and case always give the same
`Price`, which names the policy id/version and weights version it came from (§13).

Off-site cases (异地就医, §7 [seed: Jilin]) are priced by the **treatment location's** rules:
the caller chooses the policy (`select_policy` picks it by `treatment_region` and discharge
date) and passes it; `price_case` prices with whatever policy it is given and adds a note when
the policy's region is not the case's treatment region.

Order of the checks, each giving a case type:

1. `not_grouped`  group status is not SUCCESS/QY: not priced (payment None).
2. `out_of_scope` a per-diem stay, LOS ≤ scope.min_los (default 2; 0 = off) or
   LOS ≥ scope.max_los: paid by item or per bed-day (scope.out_of_scope_payment); per-diem
   and long stays are flagged for special review (特例单议, §10). Not part of the points.
3. `no_weight`    the DRG has no weight in the policy: not priced.
4. `no_rate`      no rate/coefficient for the insurance type or hospital level: not priced.
5. by cost against the group's region mean (§7), using the cost *without* the innovative-drug
   amount (add-on drugs don't count for outlier typing):
   `high_outlier` cost > k_high(RW) × mean, `low_outlier` cost < low_ratio × mean, else `normal`.
   A group without a mean cost in the policy is typed `normal` (with a note).

Rate method (费率法):   standard = rate × RW × coefficient;
   normal = standard; high = standard + (cost − k_high × mean) × extra;
   low = cost (by item) or standard × cost / mean ("ratio").
Point method (点数法):  base = RW × scale;
   normal = base × coefficient; low = base × min(cost / mean, 1);
   high = base + (cost − k_high × mean) / overall mean × scale × extra (§7 as written: the
   hospital coefficient applies to normal cases); payment = points × provisional point value.
Add-on: innovative drugs × pay_ratio, in yuan ("by_item") or as points ("points").
Fund payment = payment + add-on − patient share, not below 0 (§7).

Rounding: each yuan figure is rounded half-up to the fen once, from the exact product
(standard, extra, add-on separately; payment = their sum); points to 4 decimals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from services.pricer.domain.policy import Policy
from shared.money import FEN, POINT_PLACES, ZERO, Amount

GROUPED_STATUSES = frozenset({"SUCCESS", "QY"})  # grouper's GROUPED_STATUSES, as strings


class CaseType(StrEnum):
    NORMAL = "normal"
    HIGH_OUTLIER = "high_outlier"  # 高倍率
    LOW_OUTLIER = "low_outlier"  # 低倍率
    OUT_OF_SCOPE = "out_of_scope"  # 不纳入DRG付费 / special review
    NOT_GROUPED = "not_grouped"
    NO_WEIGHT = "no_weight"
    NO_RATE = "no_rate"


DRG_PRICED = frozenset({CaseType.NORMAL, CaseType.HIGH_OUTLIER, CaseType.LOW_OUTLIER})
# each case type's text: a look-up costs a fifth of the enum's `.value` (read for every case)
CASE_TYPE_TEXT = {t: t.value for t in CaseType}
PAID = DRG_PRICED | {CaseType.OUT_OF_SCOPE}




class CaseToPrice(BaseModel):
    """One grouped case as the pricer needs it (input of `price_case` and `drgdip price`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    case_id: str = Field(validation_alias=AliasChoices("case_id", "id"))
    hospital_code: str
    hospital_level: int | None = Field(default=None, ge=1, le=3)
    region: str = "default"  # insured region (参保地)
    treatment_region: str | None = None  # 就医地; None = same as region
    insurance_type: str | None = Field(
        default=None, validation_alias=AliasChoices("insurance_type", "hi_type")
    )
    drg: str = ""
    group_status: str = Field(
        default="SUCCESS", validation_alias=AliasChoices("group_status", "status")
    )
    los: int | None = Field(default=None, ge=0)
    total_cost: Amount
    fees: dict[str, Amount] = Field(default_factory=dict)
    innovative_drug_amount: Amount = ZERO
    patient_share: Amount = ZERO  # 自付 + 自费
    per_diem: bool = False  # bed-day stay (psychiatric, rehabilitation, nursing), §14
    discharge_date: date | None = None

    @property
    def where_treated(self) -> str:
        return self.treatment_region or self.region

    @property
    def offsite(self) -> bool:
        return self.treatment_region is not None and self.treatment_region != self.region


@dataclass(frozen=True)
class Price:
    """The priced case: every figure used, and which policy version produced it."""

    case_id: str
    hospital_code: str
    drg: str
    case_type: CaseType
    policy_id: str
    policy_version: int
    weights_version: str
    method: str
    total_cost: Decimal
    patient_share: Decimal
    offsite: bool = False
    rw: Decimal | None = None
    hospital_level: int | None = None
    base_rate: Decimal | None = None
    coefficient: Decimal | None = None
    payment_standard: Decimal | None = None
    group_mean_cost: Decimal | None = None
    outlier_cost: Decimal | None = None  # total cost without the innovative-drug amount
    high_threshold: Decimal | None = None
    low_threshold: Decimal | None = None
    outlier_extra: Decimal = ZERO
    base_points: Decimal | None = None
    points: Decimal = ZERO  # DRG points of the case (point method)
    add_on_points: Decimal = ZERO
    point_value: Decimal | None = None
    payment: Decimal | None = None  # DRG (or out-of-scope) payment, without the add-on
    add_on: Decimal = ZERO
    special_review: bool = False
    notes: tuple[str, ...] = field(default=())
    # the special-case panel's decision it was priced with (§10): pay_by_item | adjust_standard
    special_case: str | None = None

    @classmethod
    def of(cls, **values: Any) -> Price:
        """`Price(**values)`, made without the frozen dataclass's `object.__setattr__` per field
        (31 of them): the same instance, its fields in their order, the defaults for those not
        given."""
        if not _REQUIRED <= values.keys():
            raise TypeError(f"Price needs {sorted(_REQUIRED - values.keys())}")
        p = object.__new__(cls)
        d = p.__dict__
        d.update(_DEFAULTS)
        d.update(values)
        return p

    @property
    def priced(self) -> bool:
        return self.case_type in PAID

    @property
    def total_payment(self) -> Decimal | None:
        return None if self.payment is None else self.payment + self.add_on

    @property
    def fund_payment(self) -> Decimal | None:
        """What the fund pays the hospital: payment + add-on − patient share, not below 0."""
        total = self.total_payment
        return None if total is None else max(total - self.patient_share, ZERO)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: decimals as strings, None kept as null."""
        d = self.__dict__.copy()  # the fields in their order (flat: no need for asdict's deep copy)
        for name in _DECIMAL_FIELDS:
            v = d[name]
            if isinstance(v, Decimal):
                d[name] = str(v)
        d["case_type"] = CASE_TYPE_TEXT[self.case_type]
        d["notes"] = list(self.notes)
        total, fund = self.total_payment, self.fund_payment
        d["total_payment"] = None if total is None else str(total)
        d["fund_payment"] = None if fund is None else str(fund)
        return d


# the fields that hold a Decimal (or None), which `Price.to_dict` writes as strings
_DECIMAL_FIELDS = tuple(f.name for f in fields(Price) if "Decimal" in str(f.type))
# every field in its order with its default (None for a required one: `Price.of` is given those)
_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(Price)}
_REQUIRED = frozenset(f.name for f in fields(Price) if f.default is MISSING)


def _fen(amount: Decimal) -> Decimal:
    """`shared.money.to_fen`, the rounding passed positionally (a keyword argument makes the
    call about three times as costly, and a case rounds a dozen figures)."""
    return amount.quantize(FEN, ROUND_HALF_UP)


def _points(value: Decimal) -> Decimal:
    """`shared.money.to_points`, as `_fen`."""
    return value.quantize(POINT_PLACES, ROUND_HALF_UP)


def select_policy(policies: Iterable[Policy], case: CaseToPrice) -> Policy | None:
    """The policy of the case's treatment region in force on its discharge date (latest wins)."""
    matching = [p for p in policies if p.covers(case.where_treated, case.discharge_date)]
    return max(matching, key=lambda p: (p.valid_from, p.version)) if matching else None


def price_case(policy: Policy, case: CaseToPrice) -> Price:
    """Price one case under `policy` (the treatment location's, for off-site cases)."""
    notes: list[str] = []
    if case.offsite:
        notes.append(f"off-site case: insured in {case.region}, treated in {case.treatment_region}")
    if policy.region != case.where_treated:
        notes.append(f"policy region {policy.region} is not the treatment region {case.where_treated}")
    head: dict[str, Any] = dict(
        case_id=case.case_id, hospital_code=case.hospital_code, drg=case.drg,
        policy_id=policy.policy_id, policy_version=policy.version,
        weights_version=policy.weights.version, method=policy.method,
        total_cost=case.total_cost, patient_share=case.patient_share, offsite=case.offsite,
    )

    def done(case_type: CaseType, **figures: Any) -> Price:
        return Price.of(case_type=case_type, **head, **figures, notes=tuple(notes))

    if case.group_status not in GROUPED_STATUSES:
        return done(CaseType.NOT_GROUPED)

    why = policy.scope.out_of_scope(case.los, case.per_diem)
    if why is not None:
        # Out of DRG scope (§7, §10, §14): paid by item or per bed-day; per-diem and long stays
        # are reviewed case by case, short stays (LOS ≤ scope.min_los) are not.
        notes.append(why)
        if policy.scope.out_of_scope_payment == "per_diem":
            assert policy.scope.per_diem_rate is not None  # guaranteed by validation
            payment = _fen(policy.scope.per_diem_rate * (case.los or 0))
            add_on, add_on_points = _add_on(policy, case, point_value=None)
        else:
            payment, add_on, add_on_points = case.total_cost, ZERO, ZERO  # by item: all items
        return done(CaseType.OUT_OF_SCOPE, payment=payment, add_on=add_on,
                    add_on_points=add_on_points, special_review=not policy.scope.short_stay(case.los, case.per_diem))

    rw = policy.weights.table.get(case.drg)
    if rw is None:
        return done(CaseType.NO_WEIGHT)

    level = policy.level_of(case.hospital_code, case.hospital_level)
    coefficient = policy.coefficient_for(case.hospital_code, level)
    rate = policy.rate_for(case.insurance_type, level) if policy.method == "rate" else None
    if coefficient is None or (policy.method == "rate" and rate is None):
        notes.append("no coefficient: unknown hospital level" if coefficient is None
                     else f"no rate for insurance type {case.insurance_type!r}, level {level}")
        return done(CaseType.NO_RATE, rw=rw, hospital_level=level)

    cost = max(case.total_cost - case.innovative_drug_amount, ZERO)
    mean = policy.group_mean_costs.get(case.drg)
    case_type = CaseType.NORMAL
    high_threshold = low_threshold = None
    if mean is None or mean == 0:
        notes.append("no group mean cost in the policy: outliers not typed")
    else:
        high_threshold = policy.high_multiple(rw) * mean
        low_threshold = policy.outliers.low_ratio * mean
        if cost > high_threshold:
            case_type = CaseType.HIGH_OUTLIER
        elif cost < low_threshold:
            case_type = CaseType.LOW_OUTLIER
    figures: dict[str, Any] = dict(
        rw=rw, hospital_level=level, coefficient=coefficient, group_mean_cost=mean,
        outlier_cost=cost,
        high_threshold=None if high_threshold is None else _fen(high_threshold),
        low_threshold=None if low_threshold is None else _fen(low_threshold),
    )
    extra = policy.outliers.high_extra_coefficient

    if policy.method == "rate":
        assert rate is not None
        standard = _fen(rate * rw * coefficient)
        outlier_extra = ZERO
        if case_type is CaseType.HIGH_OUTLIER:
            assert high_threshold is not None
            outlier_extra = _fen((cost - high_threshold) * extra)
            payment = standard + outlier_extra
        elif case_type is CaseType.LOW_OUTLIER:
            assert mean is not None
            payment = cost if policy.outliers.low_payment == "by_item" else _fen(rate * rw * coefficient * cost / mean)
        else:
            payment = standard
        add_on, add_on_points = _add_on(policy, case, point_value=None)
        return done(case_type, base_rate=rate, payment_standard=standard,
                    outlier_extra=outlier_extra, payment=payment, add_on=add_on,
                    add_on_points=add_on_points, **figures)

    # point method
    pv = policy.points.provisional_point_value
    overall = policy.overall_mean_cost
    assert pv is not None and overall is not None  # guaranteed by validation
    scale = Decimal(policy.points.scale)
    base = _points(rw * scale)
    extra_points = ZERO
    if case_type is CaseType.HIGH_OUTLIER:
        assert high_threshold is not None
        extra_points = _points((cost - high_threshold) / overall * scale * extra)
        points = base + extra_points
    elif case_type is CaseType.LOW_OUTLIER:
        assert mean is not None
        points = _points(base * min(cost / mean, Decimal(1)))
    else:
        points = _points(base * coefficient)
    add_on, add_on_points = _add_on(policy, case, point_value=pv)
    return done(case_type, base_points=base, points=points, point_value=pv,
                payment_standard=_fen(base * coefficient * pv),
                outlier_extra=_fen(extra_points * pv), payment=_fen(points * pv),
                add_on=add_on, add_on_points=add_on_points, **figures)


def _add_on(policy: Policy, case: CaseToPrice, *, point_value: Decimal | None) -> tuple[Decimal, Decimal]:
    """(yuan, points) paid on top for innovative drugs (§7 add-ons)."""
    rule = policy.add_ons.innovative_drugs
    amount = case.innovative_drug_amount * rule.pay_ratio
    if amount == 0:
        return ZERO, ZERO
    if rule.mode == "points" and point_value is not None and policy.overall_mean_cost:
        points = _points(amount / policy.overall_mean_cost * policy.points.scale)
        return _fen(points * point_value), points
    return _fen(amount), ZERO


def price_many(policy: Policy, cases: Sequence[CaseToPrice] | Iterable[CaseToPrice]) -> list[Price]:
    """Price a batch under one policy (what-if repricing); order is kept."""
    return [price_case(policy, c) for c in cases]
