"""The indicators' arithmetic (docs/domain.md §12) on small hand-computed examples: a case's
contribution to its cell, the delta when its view changes, and the formulas over summed cells."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.gateway.domain import indicators as ind


def _view(*, drg: str = "ES23", weight: str | None = "1.2000", payment: str | None = "12000.00",
          case_type: str = "normal", los: int | None = 5, dept: str = "A03", level: int = 3,
          flags: list[str] | None = None, readmission_days: int | None = None, status: str = "SUCCESS",
          breakdown: dict[str, Any] | None = None, list_version: int = 1, withdrawn: bool = False) -> dict[str, Any]:
    def js(d: dict[str, Any]) -> str:
        return orjson.dumps(d).decode()

    return {
        "list_version": list_version, "withdrawn": withdrawn,
        "received": js({"dept": dept, "los": los}),
        "grouped": js({"scheme_id": "chs-drg-1.1", "drg": drg, "status": status}),
        "priced": js({"drg": drg, "status": "PRICED", "weight": weight, "payment": payment,
                      "fund_payment": None if payment is None else "10000.00", "case_type": case_type,
                      "hospital_level": level, "breakdown": breakdown or {}}),
        "reviewed": None if flags is None else js({"flags": [{"rule": r} for r in flags],
                                                   "readmission_days": readmission_days}),
    }


def _facts(cost: str = "9000.00", **more: Any) -> dict[str, Any]:
    return {"hospital_code": "H1", "region": "350500", "discharge_date": "2024-03-15", "total_cost": cost,
            "own_pay": "900.00"} | more


def test_a_priced_case_adds_its_figures_to_its_cell() -> None:
    c = ind.contribution(_view(flags=["SPLIT_ADMISSION", "UPCODING"], readmission_days=12),
                         _facts(discharge_way=2))
    assert c is not None
    assert c.key == ("350500", "2024-03", "H1", 3, "A03", "chs-drg-1.1", "ES23")
    s = c.sums
    assert (s["cases"], s["grouped"], s["weighted"], s["paid"], s["los_sum"], s["los_cases"]) == (1, 1, 1, 1, 5, 1)
    assert (s["weight_sum"], s["cost_sum"], s["payment_sum"]) == (Decimal("1.2000"), Decimal("9000.00"),
                                                                   Decimal("12000.00"))
    assert (s["readmissions_15"], s["readmissions_31"], s["transfers_out"], s["flagged"]) == (1, 1, 1, 1)
    assert c.rules == ("SPLIT_ADMISSION", "UPCODING")
    assert ind.Contribution.from_json(c.to_json()).sums == {k: v for k, v in c.sums.items() if v}  # type: ignore[union-attr]


def test_a_planned_readmission_is_not_counted_and_31_days_is_not_15() -> None:
    c = ind.contribution(_view(flags=[], readmission_days=20), _facts())
    assert c is not None and (c.sums["readmissions_15"], c.sums["readmissions_31"]) == (0, 1)
    planned = ind.contribution(_view(flags=[], readmission_days=3), _facts(planned_readmission=True))
    assert planned is not None and planned.sums["readmissions_31"] == 0


def test_not_priced_or_withdrawn_counts_nowhere_and_ungrouped_has_no_group() -> None:
    assert ind.contribution(_view() | {"priced": None}, _facts()) is None
    assert ind.contribution(_view(withdrawn=True), _facts()) is None
    c = ind.contribution(_view(status="NOT_GROUPED", weight=None, payment=None), _facts())
    assert c is not None and c.key[5:] == ("", "") and c.sums["grouped"] == 0 and c.sums["paid"] == 0


@pytest.mark.parametrize(("cost", "near_high", "near_low"), [
    ("30000.00", 0, 0),  # at the high threshold: not above it
    ("30000.01", 1, 0), ("33000.00", 1, 0), ("33000.01", 0, 0),  # band 10 %: up to 33,000
    ("4000.00", 0, 0), ("4400.00", 0, 1), ("4400.01", 0, 0),  # just above the low threshold
])
def test_near_threshold_band(cost: str, near_high: int, near_low: int) -> None:
    b = {"outlier_cost": cost, "high_threshold": "30000.00", "low_threshold": "4000.00"}
    c = ind.contribution(_view(breakdown=b), _facts(cost))
    assert c is not None and (c.sums["near_high"], c.sums["near_low"]) == (near_high, near_low)


def test_a_new_version_moves_the_case_and_a_withdrawal_takes_it_out() -> None:
    v1 = ind.contribution(_view(dept="A03"), _facts("9000.00"))
    v2 = ind.contribution(_view(dept="A05", list_version=2), _facts("7000.00"))
    assert v1 is not None and v2 is not None
    d = ind.delta([(None, v1)])
    d2 = ind.delta([(v1, v2)])
    cells = d2.changed_cells()
    assert cells[v1.key]["cases"] == -1 and cells[v1.key]["cost_sum"] == Decimal("-9000.00")
    assert cells[v2.key]["cases"] == 1 and cells[v2.key]["cost_sum"] == Decimal("7000.00")
    d3 = ind.delta([(v2, None)])
    # the three batches together leave nothing anywhere
    total: dict[Any, dict[str, Any]] = {}
    for step in (d, d2, d3):
        for k, v in step.changed_cells().items():
            ind.add_sums(total.setdefault(k, ind.empty_sums()), v)
    assert all(not any(v.values()) for v in total.values())
    assert ind.delta([(v1, v1)]).changed_cells() == {}


def test_flags_by_rule_follow_the_review() -> None:
    before = ind.contribution(_view(flags=["SPLIT_ADMISSION"]), _facts())
    after = ind.contribution(_view(flags=[]), _facts())
    assert before is not None and after is not None
    d = ind.delta([(before, after)])
    assert d.changed_rules() == {(before.key, "SPLIT_ADMISSION"): -1}
    assert d.changed_cells()[before.key]["flagged"] == -1


@pytest.mark.parametrize(("before", "after"), [
    (None, ([], None)), (None, (["SPLIT_ADMISSION"], 12)), ((["UPCODING"], None), (["SPLIT_ADMISSION", "UPCODING"], 20)),
    ((["UPCODING"], 3), ([], None)), ((["UPCODING"], 3), (["UPCODING"], 3)),
])
def test_a_review_changed_on_the_stored_text_is_what_the_whole_contribution_gives(
        before: tuple[list[str], int | None] | None, after: tuple[list[str], int | None]) -> None:
    """The fold's review path (`review_changed`: the stored JSON's review sums replaced) writes the
    text `with_review` on the parsed contribution writes, and changes the cells as much."""
    flags, days = before or (None, None)
    old = ind.contribution(_view(flags=flags, readmission_days=days), _facts())
    assert old is not None
    reviewed = {"flags": [{"rule": r} for r in after[0]], "readmission_days": after[1]}
    whole = ind.with_review(old, reviewed, _facts())
    text, part_before, part_after = ind.review_changed(old.to_json(), reviewed, _facts())
    assert text == whole.to_json()
    assert ind.delta([(part_before, part_after)]).changed_cells() == ind.delta([(old, whole)]).changed_cells()
    assert ind.delta([(part_before, part_after)]).changed_rules() == ind.delta([(old, whole)]).changed_rules()
    legacy = orjson.loads(old.to_json()) | {"sums": orjson.loads(old.to_json())["sums"] | {"near_high": 0,
                                                                                            "payment_sum": "0.00"}}
    legacy.pop("rules")  # stored before the rules were kept: written again as to_json writes it
    text, _, _ = ind.review_changed(orjson.dumps(legacy).decode(), reviewed, _facts())
    assert text == ind.with_review(ind.Contribution.from_json(orjson.dumps(legacy).decode()),  # type: ignore[arg-type]
                                   reviewed, _facts()).to_json()


def _cell(hospital: str, drg: str, cases: int, cost: str, los: int, **more: Any) -> dict[str, Any]:
    return ind.empty_sums() | {"hospital_code": hospital, "scheme_id": "s", "drg": drg, "cases": cases,
                               "cost_sum": Decimal(cost), "los_cases": cases, "los_sum": los} | more


def test_consumption_indices_against_the_region_means() -> None:
    # hospital A: ES23 2 cases, 4000 yuan, 12 days (mean 2000, 6); FR21 1 case 500 yuan, 3 days
    # hospital B: ES23 2 cases, 2000 yuan, 8 days; FR21 1 case, 1500 yuan, 5 days
    # region means: ES23 6000/4 = 1500 yuan, 20/4 = 5 days; FR21 2000/2 = 1000 yuan, 8/2 = 4 days
    # A's cost index = (2 × 2000/1500 + 1 × 500/1000) / 3 = 19/18 = 1.0556
    # A's time index = (2 × 6/5 + 1 × 3/4) / 3 = 3.15/3 = 1.05
    cells = [_cell("A", "ES23", 2, "4000", 12), _cell("A", "FR21", 1, "500", 3),
             _cell("B", "ES23", 2, "2000", 8), _cell("B", "FR21", 1, "1500", 5)]
    region = [_cell("", "ES23", 4, "6000", 20), _cell("", "FR21", 2, "2000", 8)]
    rows, total = ind.summarise(cells, region, {"s": 10}, "hospital")
    a, b = rows
    assert (a["key"], a["cost_index"], a["time_index"]) == ("A", "1.0556", "1.0500")
    # B: (2 × 1000/1500 + 1500/1000) / 3 = (4/3 + 3/2)/3 = 17/18 = 0.9444; (2 × 4/5 + 5/4)/3 = 0.95
    assert (b["cost_index"], b["time_index"]) == ("0.9444", "0.9500")
    assert (total["cost_index"], total["time_index"]) == ("1.0000", "1.0000")
    assert (a["groups_covered"], a["scheme_groups"], a["coverage_rate"]) == (2, 10, "0.2000")
    assert (a["average_cost"], a["average_los"]) == ("1500.00", "5.00")


def test_cmi_rates_and_surplus() -> None:
    s = ind.empty_sums() | {
        "cases": 4, "grouped": 3, "weighted": 3, "weight_sum": Decimal("4.0000"),  # 1.2 + 0.8 + 2.0
        "cost_sum": Decimal("40000.00"), "own_pay_sum": Decimal("3000.00"), "paid": 3,
        "paid_cost_sum": Decimal("30000.00"), "payment_sum": Decimal("33000.00"),
        "high_outliers": 1, "special_cases": 1, "readmissions_31": 2, "near_high": 1}
    r = ind.indicators(s, groups_covered=3, scheme_groups=None, cost_index=None, time_index=None)
    assert r["cmi"] == "1.3333" and r["grouping_rate"] == "0.7500"
    assert r["self_pay_ratio"] == "0.0750" and r["average_cost"] == "10000.00"
    assert r["surplus"] == "3000.00" and r["surplus_rate"] == "0.1000"  # 盈亏: 33,000 − 30,000
    assert (r["high_outlier_share"], r["special_case_share"], r["readmission_rate_31"]) == ("0.2500", "0.2500", "0.5000")
    assert r["near_threshold_share"] == "0.2500" and r["coverage_rate"] is None
    assert r["average_los"] is None and set(r) == set(ind.FIELDS)


def test_periods() -> None:
    assert ind.months_of("2024-02") == ["2024-02"]
    assert ind.months_of("2024Q2") == ["2024-04", "2024-05", "2024-06"]
    assert len(ind.months_of("2024")) == 12
    for bad in ("2024-13", "2024Q5", "24", ""):
        with pytest.raises(ValueError):
            ind.months_of(bad)
