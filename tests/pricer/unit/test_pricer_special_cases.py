"""A case priced with the special-case panel's decision (特例单议, docs/domain.md §10): paid by
item outside the points, the decided amount as its payment (or points), a rejection changes
nothing; settlement sums them accordingly."""

from __future__ import annotations

from decimal import Decimal as D

from pricer_testkit import case, make_policy, points_policy

from services.pricer.domain.grouped import SpecialDecision, decided_price, price_from_dict
from services.pricer.domain.pricing import price_case
from services.pricer.domain.settlement import hospital_totals


def test_adjusting_the_standard_makes_the_amount_the_payment() -> None:
    p = price_case(make_policy(), case(case_id="1", total_cost="12000", patient_share="2000"))
    assert p.payment == D("15000.00")
    adjusted = decided_price(p, SpecialDecision(1, "adjust_standard", D("18000.50"), 7))
    assert (adjusted.payment, adjusted.payment_standard, adjusted.special_case) == (
        D("18000.50"), D("18000.50"), "adjust_standard")
    assert adjusted.fund_payment == D("16000.50") and "application 7" in adjusted.notes[-1]
    assert price_from_dict(adjusted.to_dict()) == adjusted  # stored and read back
    t = hospital_totals([adjusted])["H3"]
    assert t.drg_payment == D("18000.50") and t.outside_points == 0


def test_adjusting_under_a_point_method_gives_points_at_the_provisional_value() -> None:
    p = price_case(points_policy(), case(case_id="1", total_cost="12000"))
    assert p.point_value
    adjusted = decided_price(p, SpecialDecision(1, "adjust_standard", D("30000.00")))
    assert adjusted.points == (D("30000.00") / p.point_value).quantize(D("0.0001"))
    assert hospital_totals([adjusted])["H3"].points == adjusted.points


def test_adjusting_under_a_point_method_pays_the_decided_amount_to_the_fen() -> None:
    p = price_case(points_policy(points={"provisional_point_value": "123.456789"}), case(case_id="1"))
    # 18000.50 / 123.456789 = 145.8041 points; paid from the points it would be 18000.51
    adjusted = decided_price(p, SpecialDecision(1, "adjust_standard", D("18000.50")))
    assert (adjusted.points, adjusted.payment, adjusted.total_payment) == (
        D("145.8041"), D("18000.50"), D("18000.50"))
    assert hospital_totals([adjusted])["H3"].drg_payment == D("18000.50")


def test_paid_by_item_is_paid_in_full_outside_the_points_and_reject_changes_nothing() -> None:
    p = price_case(make_policy(), case(case_id="1", total_cost="12000"))
    by_item = decided_price(p, SpecialDecision(2, "pay_by_item"))
    assert by_item.payment == D("12000") and by_item.points == 0
    t = hospital_totals([by_item])["H3"]
    assert (t.drg_payment, t.outside_points, t.actual_cost) == (0, D("12000"), 0)
    assert decided_price(p, SpecialDecision(1, "reject")) is p
