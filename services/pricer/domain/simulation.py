"""Simulation before go-live (模拟运行, docs/domain.md §9): DRG payment vs fee-for-service.

Runs the pricing of a `Policy` over historical cases without paying anything, and compares per
hospital and per DRG what the DRG method would pay with what fee-for-service (按项目) paid, the
cases' actual total cost:

    DRG payment   = Σ (payment + add-on) of the priced cases; cases the DRG method cannot price
                    (not grouped, no weight, no rate) are assumed to stay paid by item, so they
                    add their cost to both sides (and are counted as `unpriced`);
    profit/loss   = DRG payment − fee-for-service (盈亏; > 0 the hospital gains);
    CMI           = Σ RW / number of DRG-priced cases (§12);
    outlier shares = high / low outlier cases over DRG-priced cases.

Under the point method the point value is the policy's provisional one, or, given a `budget`,
the value that spends exactly that budget: budget / Σ points (§7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.pricer.domain.policy import Policy
from services.pricer.domain.pricing import DRG_PRICED, CaseToPrice, CaseType, Price, price_many
from shared.money import ZERO, to_fen, to_point_value, to_weight


@dataclass(frozen=True)
class SimulationRow:
    """One hospital's (or DRG's) comparison."""

    key: str
    cases: int
    drg_cases: int  # normal + outliers
    unpriced: int
    out_of_scope: int
    high_outliers: int
    low_outliers: int
    rw_sum: Decimal
    drg_payment: Decimal
    fee_for_service: Decimal

    @property
    def profit_loss(self) -> Decimal:
        return self.drg_payment - self.fee_for_service

    @property
    def profit_loss_ratio(self) -> Decimal | None:
        return None if not self.fee_for_service else to_weight(self.profit_loss / self.fee_for_service)

    @property
    def cmi(self) -> Decimal | None:
        return to_weight(self.rw_sum / self.drg_cases) if self.drg_cases else None

    def _share(self, n: int) -> Decimal | None:
        return to_weight(Decimal(n) / self.drg_cases) if self.drg_cases else None

    @property
    def high_share(self) -> Decimal | None:
        return self._share(self.high_outliers)

    @property
    def low_share(self) -> Decimal | None:
        return self._share(self.low_outliers)

    def to_dict(self, key_name: str) -> dict[str, Any]:
        def s(v: Decimal | None) -> str | None:
            return None if v is None else str(v)
        return {
            key_name: self.key, "cases": self.cases, "drg_cases": self.drg_cases,
            "unpriced": self.unpriced, "out_of_scope": self.out_of_scope,
            "high_outliers": self.high_outliers, "low_outliers": self.low_outliers,
            "high_share": s(self.high_share), "low_share": s(self.low_share),
            "cmi": s(self.cmi), "drg_payment": str(self.drg_payment),
            "fee_for_service": str(self.fee_for_service), "profit_loss": str(self.profit_loss),
            "profit_loss_ratio": s(self.profit_loss_ratio),
        }


def _rows(prices: Iterable[Price], key: Callable[[Price], str]) -> list[SimulationRow]:
    acc: dict[str, dict[str, Any]] = {}
    for p in prices:
        a = acc.setdefault(key(p), dict(cases=0, drg_cases=0, unpriced=0, out_of_scope=0,
                                        high_outliers=0, low_outliers=0, rw_sum=ZERO,
                                        drg_payment=ZERO, fee_for_service=ZERO))
        a["cases"] += 1
        a["fee_for_service"] += p.total_cost
        total = p.total_payment
        if total is None:
            a["unpriced"] += 1
            a["drg_payment"] += p.total_cost  # stays paid by item
            continue
        a["drg_payment"] += total
        if p.case_type is CaseType.OUT_OF_SCOPE:
            a["out_of_scope"] += 1
        elif p.case_type in DRG_PRICED:
            a["drg_cases"] += 1
            a["rw_sum"] += p.rw or ZERO
            a["high_outliers"] += p.case_type is CaseType.HIGH_OUTLIER
            a["low_outliers"] += p.case_type is CaseType.LOW_OUTLIER
    return [SimulationRow(key=k, **a) for k, a in sorted(acc.items())]


@dataclass(frozen=True)
class SimulationReport:
    policy_id: str
    policy_version: int
    weights_version: str
    point_value: Decimal | None
    hospitals: tuple[SimulationRow, ...]
    drgs: tuple[SimulationRow, ...]
    total: SimulationRow
    prices: tuple[Price, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id, "policy_version": self.policy_version,
            "weights_version": self.weights_version,
            "point_value": None if self.point_value is None else str(self.point_value),
            "total": self.total.to_dict("scope"),
            "hospitals": self.hospital_rows(), "drgs": self.drg_rows(),
        }

    def hospital_rows(self) -> list[dict[str, Any]]:
        return [r.to_dict("hospital_code") for r in self.hospitals]

    def drg_rows(self) -> list[dict[str, Any]]:
        return [r.to_dict("drg") for r in self.drgs]

    def table_text(self) -> str:
        """The per-hospital profit/loss table as fixed-width text."""
        cols = ["hospital_code", "cases", "cmi", "drg_payment", "fee_for_service",
                "profit_loss", "profit_loss_ratio", "high_share", "low_share"]
        rows = [*self.hospital_rows(), {**self.total.to_dict("hospital_code")}]
        rows[-1]["hospital_code"] = "TOTAL"
        cells = [[("" if r[c] is None else str(r[c])) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cols, widths, strict=True)))]
        for row in cells:
            out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(row, widths, strict=True))))
        return "\n".join(out)


def simulate(policy: Policy, cases: Iterable[CaseToPrice], *,
             budget: Decimal | None = None) -> SimulationReport:
    """Price `cases` under `policy` and compare with fee-for-service (§9)."""
    cases = list(cases)
    point_value = policy.points.provisional_point_value if policy.method == "points" else None
    if policy.method == "points" and budget is not None:
        # the point value that spends the budget exactly: price once for Σ points, then again
        first = price_many(policy, cases)
        total_points = sum((p.points + p.add_on_points for p in first if p.case_type in DRG_PRICED), ZERO)
        if total_points > 0:
            point_value = to_point_value(to_fen(budget) / total_points)
            policy = policy.with_point_value(point_value)
    prices = tuple(price_many(policy, cases))
    hospitals = _rows(prices, lambda p: p.hospital_code)
    drgs = _rows((p for p in prices if p.drg), lambda p: p.drg)
    totals = _rows(prices, lambda p: "total")
    total = totals[0] if totals else SimulationRow("total", 0, 0, 0, 0, 0, 0, ZERO, ZERO, ZERO)
    return SimulationReport(policy.policy_id, policy.version, policy.weights.version,
                            point_value, tuple(hospitals), tuple(drgs), total, prices)


def coverage_warning(policy: Policy, cases: Iterable[CaseToPrice]) -> str | None:
    """A warning when the policy does not cover some of the simulated cases (another treatment
    region, or discharged outside its period, or with no discharge date): they are still priced
    under it, as a what-if, but a bureau should know it is not the policy in force for them."""
    cases = list(cases)
    outside = [c for c in cases if not policy.covers(c.where_treated, c.discharge_date)]
    if not outside:
        return None
    years = sorted({c.discharge_date.year for c in outside if c.discharge_date is not None})
    regions = sorted({c.where_treated for c in outside} - {policy.region})
    where = []
    if years:
        where.append("discharged in " + ", ".join(map(str, years)))
    if regions:
        where.append("treated in " + ", ".join(regions))
    period = f"{policy.valid_from}–{policy.valid_to or 'open'}"
    return (f"policy {policy.policy_id} v{policy.version} ({policy.region}, {period}) does not "
            f"cover {len(outside)} of {len(cases)} cases ({'; '.join(where) or 'no discharge date'}): "
            "they are priced under it as a what-if")
