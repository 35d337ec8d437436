"""Pricing a grouped case: which payment method and policy are in force, the DRG or DIP price,
and the figures the stored result and the `case-priced` event carry (§7, §13).

Pure: the policies in force come in as look-ups (`shared.periods.InForce`, read once per batch);
the caller stores the result and publishes the event.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.pricer.domain.dip_pricing import DipPolicy, _group_mean, price_dip_case
from services.pricer.domain.policy import Policy
from services.pricer.domain.pricing import (
    CASE_TYPE_TEXT,
    DRG_PRICED,
    GROUPED_STATUSES,
    CaseToPrice,
    CaseType,
    Price,
    price_case,
)
from shared.dip import Catalogue
from shared.events import CaseGrouped, CasePriced, CcLift
from shared.money import FEN, ZERO, to_fen, to_points
from shared.periods import InForce

NO_POLICY = "NO_POLICY"
PRICED = "PRICED"
WITHDRAWN = "WITHDRAWN"


def case_to_price(case_id: str, g: CaseGrouped) -> CaseToPrice:
    """The pricing input from a `case-grouped` event.

    LOS is the number of days between admission and discharge (the list's own LOS was checked
    against the dates at intake); the innovative-drug amount is not carried (0: no add-on).

    The event is validated: its amounts are decimals already, so they are made what `Amount`
    makes of them (to the fen, none as zero) without validating each one again; a value
    `CaseToPrice` refuses (a negative amount or LOS) goes through its validation, which says why.
    """
    f = g.facts
    los = (f.discharge_date - f.admission_date).days if f.discharge_date and f.admission_date else None
    cost, share, fees = f.total_cost, f.patient_share, f.fees
    if ((los is not None and los < 0) or (cost is not None and cost < 0) or (share is not None and share < 0)
            or (fees and min(fees.values()) < 0)):
        return CaseToPrice(
            case_id=case_id, hospital_code=f.hospital_code, region=f.region,
            treatment_region=f.treatment_region, insurance_type=f.insurance_type, drg=g.drg,
            group_status=g.status, los=los, total_cost=cost, fees=dict(fees), patient_share=share,
            discharge_date=f.discharge_date)
    return _trusted_case(dict(
        case_id=case_id, hospital_code=f.hospital_code, hospital_level=None, region=f.region,
        treatment_region=f.treatment_region, insurance_type=f.insurance_type, drg=g.drg,
        group_status=g.status, los=los, total_cost=ZERO if cost is None else cost.quantize(FEN, ROUND_HALF_UP),
        fees={k: v.quantize(FEN, ROUND_HALF_UP) for k, v in fees.items()}, innovative_drug_amount=ZERO,
        patient_share=ZERO if share is None else share.quantize(FEN, ROUND_HALF_UP), per_diem=False,
        discharge_date=f.discharge_date))


_CASE_FIELDS = set(CaseToPrice.model_fields)


def _trusted_case(values: dict[str, Any]) -> CaseToPrice:
    """`CaseToPrice.model_construct(**values)` for `values` that name every field, in the
    model's order, by its own name: the same instance (its fields set, no extra, no private
    attributes), without model_construct's search of each field's aliases (about 3 µs a case).
    The amounts are rounded to the fen as `to_fen` does, the rounding passed positionally (a
    keyword argument costs the call about three times as much)."""
    m = CaseToPrice.__new__(CaseToPrice)
    object.__setattr__(m, "__dict__", values)
    object.__setattr__(m, "__pydantic_fields_set__", _CASE_FIELDS.copy())
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


def legacy_status(price: Price | None) -> str:
    """The `status` of `case-priced` (PRICED | NOT_GROUPED | NO_WEIGHT | NO_RATE | …)."""
    if price is None:
        return NO_POLICY
    return PRICED if price.case_type in DRG_PRICED else CASE_TYPE_TEXT[price.case_type].upper()


@dataclass(frozen=True, slots=True)
class PricingResult:
    """A grouped case priced: what its `pricer_results` row and its `case-priced` event hold.

    `figures` are the fields the row and the event share (policy id, weight, base rate,
    coefficient, payment standard, case type, payment, fund payment), present when priced.
    """

    case: CaseToPrice
    status: str
    price: Price | None
    method: str | None  # "drg" | "dip": how the case was paid; None when not priced
    dip_group: str | None
    breakdown: dict[str, Any]
    figures: dict[str, Any]
    event: CasePriced


def price_grouped(case_id: str, g: CaseGrouped, policies: InForce[Policy],
                  dip_policies: InForce[tuple[DipPolicy, Catalogue]]) -> PricingResult:
    """Price a grouped case with the policy in force.

    The payment method is the treatment region's on the discharge date (§7): DIP when a DIP
    policy is in force and the grouper assigned a group of its catalogue, else DRG; off-site
    cases are priced by the treatment region's policy. A withdrawn list (4102) is kept in
    history and left out of settlement.
    """
    f = g.facts
    case = case_to_price(case_id, g)
    dip = None if f.withdrawn else dip_policies.on(case.where_treated, case.discharge_date)
    p: Price | None
    breakdown: dict[str, Any]
    method: str | None = None
    dip_group: str | None = None
    # what monitoring (review, §11) reads, whatever the case type: the group's region mean and
    # the hospital's level under the policy in force, the lower group's mean for a CC/MCC lift
    context: dict[str, Any] = {"adrg": g.adrg if g.status in GROUPED_STATUSES else None}
    lift: CcLift | None = g.cc_lift
    if dip is not None and g.dip is not None and g.dip.catalogue_id == dip[1].catalogue_id:
        # priced by DIP at the provisional point value; the row and event have the DRG shape
        # (`DipPrice.to_price()`, so settlement treats both alike) plus the DIP figures
        dp = price_dip_case(dip[1], dip[0], g.dip.case)
        p = dp.to_price()
        breakdown = p.to_dict() | {"dip": dp.to_dict()}
        method, dip_group = "dip", dp.group
        group = dip[1].groups[dp.group]
        context |= dict(dip_group=dp.group, hospital_level=dp.hospital_level,
                        primary_care=dp.primary_care,
                        group_mean_cost=dp.mean_cost if dp.mean_cost is not None
                        else _group_mean(group, dp.hospital_level)[0])
        figures: dict[str, Any] = dict(
            policy_id=p.policy_id, coefficient=p.coefficient, case_type=CASE_TYPE_TEXT[p.case_type],
            payment=p.total_payment, fund_payment=p.fund_payment)
    else:
        # the treatment region's policy in force on the discharge date, the latest start, then
        # version, first: `select_policy` of the policies in force, without filtering them again
        policy = None if f.withdrawn else policies.on(case.where_treated, case.discharge_date)
        p = None if policy is None else price_case(policy, case)
        if policy is not None:
            context |= dict(hospital_level=policy.level_of(case.hospital_code, case.hospital_level),
                            group_mean_cost=policy.group_mean_costs.get(g.drg))
            if lift is not None:
                lift = lift.model_copy(update={
                    "drg_without_mean_cost": policy.group_mean_costs.get(lift.drg_without)})
        breakdown = p.to_dict() if p is not None else {}
        method = "drg" if p is not None else None
        # the columns of `pricer_results` and the fields of `case-priced` share these names;
        # payment includes the add-on, so fund payment = payment − patient share (§7)
        figures = {} if p is None else dict(
            policy_id=p.policy_id, weight=p.rw, base_rate=p.base_rate, coefficient=p.coefficient,
            payment_standard=p.payment_standard, case_type=CASE_TYPE_TEXT[p.case_type],
            payment=p.total_payment, fund_payment=p.fund_payment)
    status = WITHDRAWN if f.withdrawn else legacy_status(p)
    return PricingResult(case, status, p, method, dip_group, breakdown, figures,
                         CasePriced(facts=f, drg=g.drg, status=status, breakdown=breakdown, **figures,
                                    **context, cc_lift=lift))


_PRICE_TEXT = {"case_id", "hospital_code", "drg", "policy_id", "weights_version", "method", "special_case"}
_PRICE_OTHER = {"policy_version", "hospital_level", "offsite", "special_review"}


def price_from_dict(d: dict[str, Any]) -> Price:
    """Read back a stored `Price.to_dict()` (decimals were written as strings)."""
    values: dict[str, Any] = {}
    for f in fields(Price):
        v = d.get(f.name)
        if f.name == "case_type":
            v = CaseType(d["case_type"])
        elif f.name == "notes":
            v = tuple(v or ())
        elif f.name not in _PRICE_TEXT | _PRICE_OTHER and v is not None:
            v = Decimal(v)
        values[f.name] = v
    return Price(**values)


# --- special-case decisions (特例单议, §10) ---------------------------------------------------------

PAY_BY_ITEM = "pay_by_item"
ADJUST_STANDARD = "adjust_standard"
REJECT = "reject"


@dataclass(frozen=True)
class SpecialDecision:
    """The special-case panel's latest decision on a case (review's `special-case-decided`):
    `decision` 1 the panel's, 2 the appeal's; a price names the decision it was made with."""

    decision: int
    outcome: str  # pay_by_item | adjust_standard | reject
    amount: Decimal | None = None
    application_id: int | None = None


def reprices(d: SpecialDecision, current: SpecialDecision | None) -> bool:
    """Whether a decision prices the case again (a new priced version), given the decision the
    case is priced with now: pay by item and adjust the standard do; a rejection leaves the
    price as it stands, unless it overturns an approval the case is priced with (an appeal's
    rejection of a first pay-by-item or adjustment), which brings the standard price back."""
    if d.outcome != REJECT:
        return True
    return current is not None and current.outcome != REJECT


def decided_price(p: Price, d: SpecialDecision) -> Price:
    """The price under the panel's decision.

    - pay_by_item: the case is paid its actual cost, in full and outside the points (as an
      out-of-scope case; settlement adds it to `outside_points`);
    - adjust_standard: the decided amount is the case's DRG/DIP payment (it replaces the
      standard and any outlier payment), to the fen; under a point method it is also turned
      into points at the provisional point value, so at the annual clearing it shares in the
      budget like every other case;
    - reject: the price stands.
    Add-ons (innovative drugs paid on top) are kept."""
    note = f"special case {d.outcome} (application {d.application_id}, decision {d.decision})"
    if d.outcome == PAY_BY_ITEM:
        return replace(p, special_case=PAY_BY_ITEM, payment=p.total_cost, points=ZERO, outlier_extra=ZERO,
                       notes=(*p.notes, note))
    if d.outcome == ADJUST_STANDARD and d.amount is not None:
        amount = to_fen(d.amount)
        if p.point_value:
            # the payment is the decided amount itself: points × point value would round twice
            # (amount → points to 4 decimals → yuan) and could end a fen off the decision
            points = to_points(amount / p.point_value)
            return replace(p, special_case=ADJUST_STANDARD, points=points, payment=amount,
                           payment_standard=amount, outlier_extra=ZERO, notes=(*p.notes, note))
        return replace(p, special_case=ADJUST_STANDARD, payment=amount, payment_standard=amount,
                       outlier_extra=ZERO, notes=(*p.notes, note))
    return p


def with_decision(r: PricingResult, d: SpecialDecision | None) -> PricingResult:
    """A priced case with the panel's decision applied (unchanged without one, for a rejection,
    or for a case the decision cannot price: not priced, withdrawn)."""
    if d is None or r.price is None or not r.price.priced or r.status == WITHDRAWN:
        return r
    p = decided_price(r.price, d)
    if p is r.price:
        return r
    breakdown = p.to_dict() | ({"dip": r.breakdown["dip"]} if "dip" in r.breakdown else {})
    figures = r.figures | dict(payment=p.total_payment, fund_payment=p.fund_payment)
    if "payment_standard" in r.figures:
        figures["payment_standard"] = p.payment_standard
    event = r.event.model_copy(update={"breakdown": breakdown, "payment": p.total_payment,
                                       "fund_payment": p.fund_payment,
                                       "payment_standard": figures.get("payment_standard", r.event.payment_standard)})
    return replace(r, price=p, breakdown=breakdown, figures=figures, event=event)
