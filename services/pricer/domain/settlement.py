"""Monthly pre-settlement and annual clearing, per hospital (docs/domain.md §8).

Inputs are the priced cases (`Price`) of a period, summed per hospital by `hospital_totals`.

Monthly pre-settlement (月度预结算)
    DRG amount = Σ case payments at the provisional rate / point value (the `Price`s already
    hold them) + add-ons; fund due = DRG amount − patient share (not below 0);
    due now = fund due × pre_settlement_share (default 0.95), rounded to the fen;
    quality deposit (质量保证金) = due now × quality_deposit_share (default 0.05), to the fen,
    withheld; paid now = due now − quality deposit, less the
    review deductions (monitoring flags the bureau confirmed with a deduction, §11) the run
    applies: each deduction lowers the first pre-settlement of its hospital run after it was
    confirmed (and the new versions of that same month), by exactly its amount. What is paid
    is never negative: the part of the deductions (with the rest carried in from the
    hospital's previous month of the year, `carried_in`) that the month's amount does not
    cover is carried over (`carried_over`) to the hospital's next pre-settlement of the year,
    and what the year's last month still carries is settled by the annual clearing:
      owed = review deductions + carried in; presettled = max(fund due × share − owed, 0);
      carried over = owed − (fund due × share − presettled).

Annual clearing (年度清算), with the final point value (point method)
    reserve (调剂金) = budget × reserve_share, withheld first;
    point budget = budget − reserve;
    final point value = point budget / Σ points of all hospitals (shown to 6 decimals);
    hospital DRG amount A_h = point budget × points_h / Σ points, **largest-remainder rounding**:
      every hospital gets its exact share rounded down to the fen, and the fen left over
      (fewer than the number of hospitals) go one each to the largest fractional remainders
      (ties: hospital code ascending). So Σ A_h = point budget exactly, each A_h ≥ 0, and no
      hospital is more than 1 fen from its exact share. The amounts come from the exact ratio,
      not from the rounded point value.
    Under the rate method A_h = Σ case payments at the final rates (no budget share).

结余留用、合理超支分担 (each hospital against its actual cost C_h of the same cases, without
  the innovative drugs paid by item on top)
    surplus S = A − C > 0: the hospital keeps S, up to surplus_keep_cap × A; the rest is
      recovered by the fund.
    overspend O = C − A > 0: the overspend is cut into bands by share of A (default: the first
      10 % of A); the fund shares fund_share (default 50 %) of the part in each band, and the
      hospital bears everything beyond the last band.
    The sharing is paid from the reserve. If the requests exceed the reserve, the reserve is
      split in proportion to the requests (largest remainder again); what is left of the
      reserve returns to the fund.
    cleared amount = A − recovered + shared + outside-points payments (out-of-scope cases and
      by-item add-ons, paid in full);
    fund amount = cleared − patient share (not below 0);
    quality deposit: the deposit withheld by the year's monthly statements (latest versions)
      is returned in proportion to the yearly performance score's share (绩效评价: the share
      the adopted evaluation set; none adopted: returned in full), to the fen (half up);
      what is not returned is forfeited;
    balance = fund amount − review deductions − pre-settled − prepayment advances (预付金) −
      forfeited deposit, to net; > 0 the bureau pays, < 0 the hospital refunds (the
      pre-settled amounts are net of the deposit, so the returned part is paid here). The review deductions are those the
      year's monthly statements applied (their pre-settled amounts are net of them, so the
      deduction is not paid back here) plus those the clearing applies itself. What the last
      month carried over (`deductions_carried_over`: deductions the months could not net) is
      shown; it is part of the review deductions, and the pre-settled amounts are what was
      really paid, so the balance nets it once.
    Budget identity (point method): Σ A + reserve = budget, and
      Σ (A − recovered + shared) + Σ recovered + reserve left = budget.

Statements are versioned documents (`version`, never overwritten, §13) per hospital and period.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from services.pricer.domain.policy import Policy
from services.pricer.domain.pricing import DRG_PRICED, CaseType, Price
from shared.errors import Invalid
from shared.money import FEN, ZERO, to_fen, to_point_value

STATEMENT_FORMAT = "drgdip.settlement-statement/1"


def allocate_fen(total: Decimal, shares: Mapping[str, Decimal | Fraction]) -> dict[str, Decimal]:
    """Split `total` yuan in proportion to `shares` so the parts sum to it exactly in fen.

    Largest-remainder (Hamilton) rounding: floor each exact part to the fen, then hand the
    leftover fen one by one to the largest fractional remainders (ties by key ascending).
    """
    if total != total.quantize(FEN):
        raise ValueError(f"total {total} is not a whole number of fen")
    if any(s < 0 for s in shares.values()):
        raise ValueError("shares must not be negative")
    total_fen = int(total * 100)
    weight = sum((Fraction(s) for s in shares.values()), Fraction(0))
    if weight == 0:
        if total_fen != 0:
            raise ValueError("nothing to allocate to: all shares are zero")
        return {k: ZERO for k in shares}
    exact = {k: Fraction(total_fen) * Fraction(s) / weight for k, s in shares.items()}
    floors = {k: int(v) for k, v in exact.items()}  # int() floors: every part is ≥ 0
    leftover = total_fen - sum(floors.values())
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - floors[k]), k))
    for k in by_remainder[:leftover]:
        floors[k] += 1
    return {k: (Decimal(v) / 100).quantize(FEN) for k, v in floors.items()}


@dataclass(frozen=True)
class HospitalTotals:
    """One hospital's priced cases of a period, summed (input of the settlement functions)."""

    hospital_code: str
    cases: int = 0
    points: Decimal = ZERO  # Σ DRG points + add-on points (point method)
    drg_payment: Decimal = ZERO  # Σ DRG payments (+ add-ons paid as points) at provisional values
    outside_points: Decimal = ZERO  # out-of-scope payments + by-item add-ons, paid in full
    actual_cost: Decimal = ZERO  # Σ cost of the DRG-priced cases, without by-item add-on drugs
    patient_share: Decimal = ZERO
    unpriced: int = 0


def hospital_totals(prices: Iterable[Price]) -> dict[str, HospitalTotals]:
    """Sum priced cases per hospital. Unpriced cases (not grouped, no weight/rate) are counted."""
    acc: dict[str, dict[str, Any]] = {}
    for p in prices:
        a = acc.setdefault(p.hospital_code, {"cases": 0, "points": ZERO, "drg_payment": ZERO,
                                             "outside_points": ZERO, "actual_cost": ZERO,
                                             "patient_share": ZERO, "unpriced": 0})
        a["cases"] += 1
        if not p.priced:
            a["unpriced"] += 1
            continue
        a["patient_share"] += p.patient_share
        # add-ons converted to points share in the budget; by-item ones are paid outside it
        points_add_on = p.add_on if p.add_on_points else ZERO
        if p.special_case == "pay_by_item":  # the panel's decision (§10): paid by item, in full
            a["outside_points"] += (p.payment or ZERO) + p.add_on
        elif p.case_type in DRG_PRICED:
            a["points"] += p.points + p.add_on_points
            a["drg_payment"] += (p.payment or ZERO) + points_add_on
            a["outside_points"] += p.add_on - points_add_on
            # drugs paid by item on top are settled apart: the DRG amount answers for the rest
            by_item_drugs = p.add_on and not p.add_on_points
            a["actual_cost"] += p.outlier_cost if by_item_drugs and p.outlier_cost is not None else p.total_cost
        elif p.case_type is CaseType.OUT_OF_SCOPE:
            a["outside_points"] += (p.payment or ZERO) + p.add_on
    return {h: HospitalTotals(hospital_code=h, **a) for h, a in sorted(acc.items())}


# --- statements ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """A settlement statement for one hospital and period; a recomputation is a new version."""

    kind: str  # "monthly" | "annual"
    hospital_code: str
    period: str  # "2024-03" or "2024"
    version: int
    policy_id: str
    policy_version: int
    weights_version: str
    lines: tuple[tuple[str, Decimal | str], ...]

    def amount(self, item: str) -> Decimal:
        for name, value in self.lines:
            if name == item and isinstance(value, Decimal):
                return value
        raise KeyError(item)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATEMENT_FORMAT, "kind": self.kind, "hospital_code": self.hospital_code,
            "period": self.period, "version": self.version, "policy_id": self.policy_id,
            "policy_version": self.policy_version, "weights_version": self.weights_version,
            "lines": {name: str(value) for name, value in self.lines},
        }

    def csv_rows(self) -> list[dict[str, str]]:
        """One row per statement line, with the identity columns repeated."""
        head = {k: str(v) for k, v in self.to_dict().items() if k != "lines"}
        return [{**head, "item": name, "amount": str(value)} for name, value in self.lines]


def _statement(policy: Policy, kind: str, hospital: str, period: str, version: int,
               lines: list[tuple[str, Decimal | str]]) -> Statement:
    return Statement(kind, hospital, period, version, policy.policy_id, policy.version,
                     policy.weights.version, tuple(lines))


def monthly_presettlement(policy: Policy, period: str, totals: Iterable[HospitalTotals],
                          *, version: int = 1, deductions: Mapping[str, Decimal] | None = None,
                          carried_in: Mapping[str, Decimal] | None = None) -> list[Statement]:
    """Monthly pre-settlement statements (§8): provisional amounts × pre-settlement share, less
    each hospital's review deductions and what its previous month carried over (`carried_in`),
    never below 0: the rest is carried over to its next month (see the module docstring)."""
    share = policy.settlement.pre_settlement_share
    deductions = deductions or {}
    carried_in = carried_in or {}
    out = []
    for t in totals:
        gross = t.drg_payment + t.outside_points
        fund_due = max(gross - t.patient_share, ZERO)
        deducted = deductions.get(t.hospital_code, ZERO)
        brought = carried_in.get(t.hospital_code, ZERO)
        due = to_fen(fund_due * share)
        deposit = to_fen(due * policy.settlement.quality_deposit_share)
        paid = max(due - deposit - deducted - brought, ZERO)
        carried = deducted + brought - (due - deposit - paid)
        lines: list[tuple[str, Decimal | str]] = [
            ("cases", Decimal(t.cases)),
            ("unpriced_cases", Decimal(t.unpriced)),
            ("points", t.points),
            ("method", policy.method),
            ("drg_payment", t.drg_payment),
            ("outside_points_payment", t.outside_points),
            ("patient_share", t.patient_share),
            ("fund_due", fund_due),
            ("pre_settlement_share", share),
            ("quality_deposit", deposit),
            ("review_deductions", deducted),
            ("carried_in", brought),
            ("presettled", paid),
            ("carried_over", carried),
        ]
        if policy.method == "points" and policy.points.provisional_point_value is not None:
            lines.insert(4, ("provisional_point_value", policy.points.provisional_point_value))
        out.append(_statement(policy, "monthly", t.hospital_code, period, version, lines))
    return out


# --- annual clearing ----------------------------------------------------------------------------

@dataclass(frozen=True)
class HospitalYear:
    """A hospital's year for clearing: its totals plus what was already paid."""

    totals: HospitalTotals
    presettled: Decimal = ZERO  # Σ monthly pre-settlement paid
    advances: Decimal = ZERO  # prepayment (预付金) still outstanding
    deductions: Decimal = ZERO  # review deductions of the year (§11)
    deposit_withheld: Decimal = ZERO  # Σ quality deposit the monthly statements withheld
    deposit_return_share: Decimal | None = None  # the yearly evaluation's share; None: not evaluated
    carried_over: Decimal = ZERO  # of them, what the year's last monthly statement carried over


@dataclass(frozen=True)
class HospitalClearing:
    hospital_code: str
    points: Decimal
    drg_amount: Decimal  # A: share of the point budget (or Σ payments, rate method)
    actual_cost: Decimal  # C
    surplus: Decimal
    surplus_kept: Decimal
    recovered: Decimal
    overspend: Decimal
    share_requested: Decimal
    shared: Decimal  # paid from the reserve
    outside_points: Decimal
    cleared: Decimal  # A − recovered + shared + outside points
    patient_share: Decimal
    fund_amount: Decimal
    presettled: Decimal
    advances: Decimal
    review_deductions: Decimal
    quality_deposit_withheld: Decimal
    performance_return_share: Decimal
    quality_deposit_returned: Decimal
    deductions_carried_over: Decimal  # part of review_deductions the months could not net
    balance: Decimal  # > 0 the bureau pays, < 0 the hospital refunds


@dataclass(frozen=True)
class Clearing:
    """The annual clearing of a region: the final point value and every hospital's result."""

    policy: Policy
    year: str
    version: int
    budget: Decimal
    reserve: Decimal
    point_budget: Decimal
    total_points: Decimal
    point_value: Decimal | None
    reserve_used: Decimal
    reserve_left: Decimal
    hospitals: tuple[HospitalClearing, ...] = field(default=())

    @property
    def total_drg_amount(self) -> Decimal:
        return sum((h.drg_amount for h in self.hospitals), ZERO)

    def statements(self) -> list[Statement]:
        out = []
        for h in self.hospitals:
            lines: list[tuple[str, Decimal | str]] = [
                (name, getattr(h, name)) for name in HospitalClearing.__dataclass_fields__
                if name != "hospital_code"
            ]
            if self.point_value is not None:
                lines.insert(0, ("final_point_value", self.point_value))
            out.append(_statement(self.policy, "annual", h.hospital_code, self.year,
                                  self.version, lines))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "year": self.year, "version": self.version, "policy_id": self.policy.policy_id,
            "policy_version": self.policy.version, "weights_version": self.policy.weights.version,
            "budget": str(self.budget), "reserve": str(self.reserve),
            "point_budget": str(self.point_budget), "total_points": str(self.total_points),
            "point_value": None if self.point_value is None else str(self.point_value),
            "reserve_used": str(self.reserve_used), "reserve_left": str(self.reserve_left),
            "hospitals": [s.to_dict() for s in self.statements()],
        }


def deposit_returned(withheld: Decimal, share: Decimal | None) -> tuple[Decimal, Decimal]:
    """The quality deposit returned at clearing (and the share applied): withheld × the yearly
    evaluation's share, to the fen (half up); in full when no evaluation was adopted."""
    share = Decimal(1) if share is None else share
    if not 0 <= share <= 1:
        raise SettlementError("deposit_return_share", f"{share} is not between 0 and 1")
    return to_fen(withheld * share), share


def _band_share(overspend: Decimal, base: Decimal, policy: Policy) -> Decimal:
    """Fund's share of an overspend (§8: overspend ≤ 10 % of the payment shared 50 %)."""
    shared, lower = ZERO, ZERO
    for band in policy.settlement.overspend_bands:
        upper = None if band.up_to is None else band.up_to * base
        in_band = overspend - lower if upper is None else min(overspend, upper) - lower
        if in_band <= 0:
            break
        shared += in_band * band.fund_share
        if upper is None:
            break
        lower = upper
    return to_fen(shared)


def annual_clearing(policy: Policy, year: str, hospitals: Iterable[HospitalYear],
                    budget: Decimal, *, version: int = 1) -> Clearing:
    """Clear a year (§8); see the module docstring for every step and the rounding."""
    rows = sorted(hospitals, key=lambda h: h.totals.hospital_code)
    budget = to_fen(budget)
    reserve = to_fen(budget * policy.settlement.reserve_share)
    point_budget = budget - reserve
    total_points = sum((h.totals.points for h in rows), ZERO)
    if policy.method == "points":
        if total_points == 0 and point_budget != 0:
            raise SettlementError(None, "no points to clear: Σ points is 0")
        amounts = allocate_fen(point_budget, {h.totals.hospital_code: h.totals.points for h in rows})
        point_value = to_point_value(point_budget / total_points) if total_points else None
    else:
        amounts = {h.totals.hospital_code: h.totals.drg_payment for h in rows}
        point_value = None

    cap = policy.settlement.surplus_keep_cap
    partial: list[dict[str, Any]] = []
    for h in rows:
        code, t = h.totals.hospital_code, h.totals
        a, c = amounts[code], t.actual_cost
        surplus, overspend = max(a - c, ZERO), max(c - a, ZERO)
        kept = surplus if cap is None else min(surplus, to_fen(cap * a))
        partial.append(dict(hospital=h, a=a, surplus=surplus, kept=kept,
                            overspend=overspend, requested=_band_share(overspend, a, policy)))

    requested = {p["hospital"].totals.hospital_code: p["requested"] for p in partial}
    total_requested = sum(requested.values(), ZERO)
    # the reserve funds the sharing; when short, it is split in proportion to the requests
    granted = requested if total_requested <= reserve else allocate_fen(reserve, requested)
    reserve_used = sum(granted.values(), ZERO)

    results = []
    for p in partial:
        year_row: HospitalYear = p["hospital"]
        t = year_row.totals
        recovered = p["surplus"] - p["kept"]
        shared = granted[t.hospital_code]
        cleared = p["a"] - recovered + shared + t.outside_points
        fund = max(cleared - t.patient_share, ZERO)
        returned, return_share = deposit_returned(year_row.deposit_withheld, year_row.deposit_return_share)
        results.append(HospitalClearing(
            hospital_code=t.hospital_code, points=t.points, drg_amount=p["a"],
            actual_cost=t.actual_cost, surplus=p["surplus"], surplus_kept=p["kept"],
            recovered=recovered, overspend=p["overspend"], share_requested=p["requested"],
            shared=shared, outside_points=t.outside_points, cleared=cleared,
            patient_share=t.patient_share, fund_amount=fund, presettled=year_row.presettled,
            advances=year_row.advances, review_deductions=year_row.deductions,
            quality_deposit_withheld=year_row.deposit_withheld, performance_return_share=return_share,
            quality_deposit_returned=returned, deductions_carried_over=year_row.carried_over,
            balance=fund - year_row.deductions - year_row.presettled - year_row.advances
            - (year_row.deposit_withheld - returned),
        ))
    return Clearing(policy, year, version, budget, reserve, point_budget, total_points,
                    point_value, reserve_used, reserve - reserve_used, tuple(results))


# --- settlement runs ----------------------------------------------------------------------------

class SettlementError(Invalid):
    """A settlement run or an advance cannot be done (unknown policy, bad period, nothing to clear)."""

    default_code = "INVALID_SETTLEMENT"

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message, field=field)


_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^\d{4}$")


def month_bounds(period: str) -> tuple[date, date]:
    """[first day, first day of the next month) of a "YYYY-MM" period."""
    m = _MONTH.match(period)
    if not m:
        raise SettlementError("period", f"{period!r} is not a YYYY-MM month")
    year, month = int(m[1]), int(m[2])
    return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)


def year_bounds(year: str) -> tuple[date, date]:
    """[1 January, 1 January of the next year) of a "YYYY" year."""
    if not _YEAR.match(year):
        raise SettlementError("year", f"{year!r} is not a YYYY year")
    return date(int(year), 1, 1), date(int(year) + 1, 1, 1)


def check_advance(amount: Decimal) -> Decimal:
    """A prepayment advance (预付金, §8) is a positive amount in yuan, to the fen."""
    if amount <= 0 or amount != amount.quantize(FEN):
        raise SettlementError("amount", "a positive amount in yuan with at most 2 decimals")
    return amount
