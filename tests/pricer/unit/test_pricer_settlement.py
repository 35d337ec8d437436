"""Settlement (§8): largest-remainder allocation, point value, clearing bands, reserve,
pre-settlement and the property that point-method clearing spends the budget exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pricer_testkit import case, make_policy, points_policy

from services.pricer.domain.pricing import price_many
from services.pricer.domain.settlement import (
    HospitalTotals,
    HospitalYear,
    allocate_fen,
    annual_clearing,
    hospital_totals,
    monthly_presettlement,
)

D = Decimal


def test_allocate_fen_largest_remainder():
    # 100.00 yuan = 10000 fen in thirds: 3333.33… each, floors 3333 × 3 = 9999, 1 fen left:
    # all remainders equal → by code, "a" gets it
    assert allocate_fen(D("100.00"), {"b": D(1), "a": D(1), "c": D(1)}) == {
        "a": D("33.34"), "b": D("33.33"), "c": D("33.33")}
    # 10.00 as 2:1 → 666.67 / 333.33 fen; floors 666 + 333 = 999; the larger remainder
    # (0.67 of "x") gets the last fen
    assert allocate_fen(D("10.00"), {"x": D(2), "y": D(1)}) == {"x": D("6.67"), "y": D("3.33")}
    with pytest.raises(ValueError):
        allocate_fen(D("1.005"), {"a": D(1)})


def _year(code: str, points: str, cost: str, **kw: str) -> HospitalYear:
    t = HospitalTotals(hospital_code=code, points=D(points), actual_cost=D(cost),
                       patient_share=D(kw.get("patient_share", "0")))
    return HospitalYear(t, presettled=D(kw.get("presettled", "0")), advances=D(kw.get("advances", "0")))


def test_point_value_and_clearing_bands():
    pol = points_policy(settlement={"surplus_keep_cap": "0.10"})
    hospitals = [
        _year("A", "6000", "650000", patient_share="60000", presettled="500000", advances="50000"),
        _year("B", "3500", "300000"),
        _year("C", "500", "70000"),
    ]
    c = annual_clearing(pol, "2024", hospitals, D("1050000"))
    # reserve 5 % of 1,050,000 = 52,500; point budget 997,500; Σ points 10,000
    # point value = 997,500 / 10,000 = 99.75
    assert (c.reserve, c.point_budget, c.total_points) == (D("52500.00"), D("997500.00"), D(10000))
    assert c.point_value == D("99.750000")
    a, b, cc = c.hospitals
    # A = 6000 × 99.75 = 598,500; B = 349,125; C = 49,875; Σ = 997,500
    assert (a.drg_amount, b.drg_amount, cc.drg_amount) == (D("598500.00"), D("349125.00"), D("49875.00"))
    # A overspends 650,000 − 598,500 = 51,500 ≤ 10 % × 598,500 = 59,850: fund shares 50 % = 25,750
    assert (a.overspend, a.shared) == (D("51500.00"), D("25750.00"))
    # B surplus 349,125 − 300,000 = 49,125; cap 10 % × 349,125 = 34,912.50 kept, 14,212.50 recovered
    assert (b.surplus, b.surplus_kept, b.recovered) == (D("49125.00"), D("34912.50"), D("14212.50"))
    assert b.cleared == D("334912.50")  # 349,125 − 14,212.50
    # C overspends 20,125; the band is 10 % × 49,875 = 4,987.50, shared 50 % = 2,493.75;
    # the other 15,137.50 the hospital bears
    assert (cc.overspend, cc.shared, cc.cleared) == (D("20125.00"), D("2493.75"), D("52368.75"))
    # the reserve (52,500) covers the 28,243.75 requested; 24,256.25 left
    assert (c.reserve_used, c.reserve_left) == (D("28243.75"), D("24256.25"))
    # A: cleared 598,500 + 25,750 = 624,250; fund 624,250 − 60,000 = 564,250;
    # balance 564,250 − 500,000 pre-settled − 50,000 advances = 14,250 to pay
    assert (a.cleared, a.fund_amount, a.balance) == (D("624250.00"), D("564250.00"), D("14250.00"))


def test_reserve_too_small_is_split_in_proportion():
    # reserve 1 % of 1,000,000 = 10,000; point budget 990,000 split 500 : 490 points
    pol = points_policy(settlement={"reserve_share": "0.01"})
    c = annual_clearing(pol, "2024", [_year("X", "500", "1000000"), _year("Y", "490", "500000")],
                        D("1000000"))
    x, y = c.hospitals
    assert (x.drg_amount, y.drg_amount) == (D("500000.00"), D("490000.00"))
    # X overspends 500,000: only the first 10 % × 500,000 = 50,000 is shared, 50 % → 25,000
    # Y overspends 10,000 ≤ 49,000: 50 % → 5,000; requests 30,000 > reserve 10,000
    assert (x.share_requested, y.share_requested) == (D("25000.00"), D("5000.00"))
    # 10,000 split 5 : 1 → 8,333.333… and 1,666.666…; floors 833,333 + 166,666 fen leave
    # 1 fen, which goes to the larger remainder (Y's 0.67)
    assert (x.shared, y.shared) == (D("8333.33"), D("1666.67"))
    assert c.reserve_used == D("10000.00") and c.reserve_left == 0


def test_rate_method_clearing_uses_the_payments():
    pol = make_policy(settlement={"reserve_share": "0"})
    t = HospitalTotals("H3", drg_payment=D("1000.00"), actual_cost=D("1050.00"))
    c = annual_clearing(pol, "2024", [HospitalYear(t)], D("0"))
    # overspend 50 ≤ 10 % of 1000: shared 25, but the reserve is 0 → nothing granted
    h = c.hospitals[0]
    assert (h.drg_amount, h.share_requested, h.shared, c.point_value) == (D("1000.00"), D("25.00"), D("0"), None)


def test_monthly_presettlement_and_totals():
    pol = make_policy()
    prices = price_many(pol, [
        case(case_id="1", total_cost="12000", patient_share="2000"),  # 15,000.00
        case(case_id="2", drg="AB15", total_cost="20000", innovative_drug_amount="1000"),
        case(case_id="3", los=80, total_cost="50000"),  # out of scope, by item
        case(case_id="4", drg="ZZ19"),  # no weight
    ])
    totals = hospital_totals(prices)["H3"]
    # AB15: typing cost 19,000 > 18,000: 8,000 + 1,000 × 0.9 = 8,900; add-on 1,000 by item
    assert totals.drg_payment == D("23900.00")
    assert totals.outside_points == D("51000.00")  # 50,000 by item + 1,000 add-on
    # actual cost against the DRG amount: 12,000 + (20,000 − 1,000 drugs paid by item) = 31,000
    assert totals.actual_cost == D("31000.00") and totals.unpriced == 1 and totals.cases == 4
    [s] = monthly_presettlement(pol, "2024-03", [totals], version=2)
    # fund due = 23,900 + 51,000 − 2,000 = 72,900; × 0.95 = 69,255.00, of which the quality
    # deposit (5 %) 3,462.75 is withheld: 65,792.25 paid
    assert s.amount("fund_due") == D("72900.00") and s.amount("quality_deposit") == D("3462.75")
    assert s.amount("presettled") == D("65792.25")
    doc = s.to_dict()
    assert (doc["kind"], doc["period"], doc["version"], doc["policy_version"]) == ("monthly", "2024-03", 2, 1)
    assert {r["item"] for r in s.csv_rows()} >= {"fund_due", "presettled", "patient_share"}


def test_review_deductions_lower_what_is_paid_by_exactly_their_amount():
    pol = make_policy()
    a = HospitalTotals(hospital_code="A", drg_payment=D("10000.00"))
    b = HospitalTotals(hospital_code="B", drg_payment=D("10000.00"))
    plain = {s.hospital_code: s for s in monthly_presettlement(pol, "2024-03", [a, b])}
    cut = {s.hospital_code: s for s in monthly_presettlement(pol, "2024-03", [a, b],
                                                            deductions={"A": D("1234.56")})}
    assert plain["A"].amount("presettled") - cut["A"].amount("presettled") == D("1234.56")
    assert cut["A"].amount("review_deductions") == D("1234.56") and cut["A"].amount("fund_due") == D("10000.00")
    assert cut["B"].to_dict() == plain["B"].to_dict()
    # the clearing does not pay the deduction back: the hospital gets its fund amount less it
    pol_rate = make_policy()
    year = HospitalYear(HospitalTotals(hospital_code="A", drg_payment=D("10000.00"), actual_cost=D("10000.00")),
                        presettled=cut["A"].amount("presettled"), deductions=D("1234.56"))
    [h] = annual_clearing(pol_rate, "2024", [year], D("100000.00")).hospitals
    assert h.review_deductions == D("1234.56")
    assert h.presettled + h.balance == h.fund_amount - D("1234.56")


def test_annual_statements_are_versioned_documents():
    pol = points_policy()
    c = annual_clearing(pol, "2024", [_year("A", "10", "100")], D("1000"), version=3)
    [s] = c.statements()
    d = s.to_dict()
    assert (d["kind"], d["period"], d["version"], d["weights_version"]) == ("annual", "2024", 3, "w-test-1")
    assert d["lines"]["final_point_value"] == "95.000000"  # 950 / 10
    assert c.to_dict()["hospitals"][0]["lines"]["drg_amount"] == "950.00"


# --- property: the point method never spends more or less than the budget ----------------------

_cases = st.lists(
    st.tuples(
        st.sampled_from(["H1", "H2", "H3", "H4"]),
        st.sampled_from(["AB11", "AB13", "AB15", "ZZ19"]),
        st.integers(min_value=0, max_value=20_000_000),  # cost in fen
        st.integers(min_value=0, max_value=90),  # LOS
        st.integers(min_value=0, max_value=500_000),  # innovative drugs in fen
    ),
    min_size=1, max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(cases=_cases, budget_fen=st.integers(min_value=0, max_value=10**12),
       reserve=st.sampled_from(["0", "0.05", "0.1"]), mode=st.sampled_from(["by_item", "points"]))
def test_point_clearing_spends_the_budget_exactly(cases, budget_fen, reserve, mode):
    pol = points_policy(settlement={"reserve_share": reserve},
                        add_ons={"innovative_drugs": {"mode": mode}},
                        hospitals={"levels": {"H4": 2}})
    priced = price_many(pol, [
        case(case_id=str(i), hospital_code=h, hospital_level=None if h == "H4" else int(h[1]),
             drg=drg, total_cost=str(D(cost) / 100), los=los,
             innovative_drug_amount=str(min(D(drug), D(cost)) / 100))
        for i, (h, drg, cost, los, drug) in enumerate(cases)
    ])
    totals = hospital_totals(priced)
    budget = D(budget_fen) / 100
    assume(sum(t.points for t in totals.values()) > 0)  # no points: nothing to clear on
    c = annual_clearing(pol, "2024", [HospitalYear(t) for t in totals.values()], budget)
    # Σ hospital DRG amounts + reserve = budget, to the fen; with no reserve, = budget
    assert c.total_drg_amount + c.reserve == budget
    if reserve == "0":
        assert c.total_drg_amount == budget
    assert all(h.drg_amount >= 0 and h.cleared >= 0 for h in c.hospitals)
    # every fen is accounted for: paid out (net of recoveries), recovered, or left in the reserve
    paid = sum((h.drg_amount - h.recovered + h.shared for h in c.hospitals), D(0))
    assert paid + sum((h.recovered for h in c.hospitals), D(0)) + c.reserve_left == budget
    assert c.reserve_used <= c.reserve


def test_quality_deposit_withheld_monthly_and_returned_by_the_yearly_score():
    pol = make_policy(settlement={"quality_deposit_share": "0.10"})
    t = HospitalTotals(hospital_code="A", drg_payment=D("20000.00"), actual_cost=D("20000.00"))
    [m] = monthly_presettlement(pol, "2024-03", [t])
    # 20,000 × 0.95 = 19,000 due; 10 % deposit = 1,900.00 withheld; 17,100.00 paid
    assert (m.amount("quality_deposit"), m.amount("presettled")) == (D("1900.00"), D("17100.00"))
    # the year: 12 such months; the evaluation returns 0.7500 of the deposit (22,800.00 withheld)
    year = dict(presettled=D("205200.00"), deposit_withheld=D("22800.00"))
    totals = HospitalTotals(hospital_code="A", drg_payment=D("240000.00"), actual_cost=D("240000.00"))
    [h] = annual_clearing(pol, "2024", [HospitalYear(totals, deposit_return_share=D("0.7500"), **year)],
                          D("1000000.00")).hospitals
    # returned 22,800 × 0.75 = 17,100.00; forfeited 5,700.00;
    # balance = 240,000 fund − 205,200 pre-settled − 5,700 = 29,100.00
    assert (h.quality_deposit_withheld, h.quality_deposit_returned) == (D("22800.00"), D("17100.00"))
    assert h.performance_return_share == D("0.7500") and h.balance == D("29100.00")
    # no adopted evaluation: returned in full; a share of 0: forfeited in full
    [full] = annual_clearing(pol, "2024", [HospitalYear(totals, **year)], D("1000000.00")).hospitals
    [none] = annual_clearing(pol, "2024", [HospitalYear(totals, deposit_return_share=D(0), **year)],
                             D("1000000.00")).hospitals
    assert (full.quality_deposit_returned, full.balance) == (D("22800.00"), D("34800.00"))
    assert (none.quality_deposit_returned, none.balance) == (D("0.00"), D("12000.00"))
    # rounding to the fen, half up: 333.33 × 0.3333 = 111.0989 → 111.10
    [odd] = annual_clearing(pol, "2024", [HospitalYear(totals, deposit_withheld=D("333.33"),
                                                       deposit_return_share=D("0.3333"))], D("1000000.00")).hospitals
    assert odd.quality_deposit_returned == D("111.10")


def test_a_deduction_larger_than_the_month_is_carried_over_never_paid_negative():
    pol = make_policy(settlement={"quality_deposit_share": "0"})  # pre-settlement share 0.95, no deposit
    march, april = (HospitalTotals(hospital_code="A", drg_payment=D("10000.00")),
                    HospitalTotals(hospital_code="A", drg_payment=D("20000.00")))
    [m] = monthly_presettlement(pol, "2024-03", [march], deductions={"A": D("12000.00")})
    # 10,000 × 0.95 = 9,500.00 due; 12,000.00 deducted: nothing paid, 2,500.00 carried over
    assert (m.amount("presettled"), m.amount("carried_over"), m.amount("review_deductions")) == (
        D("0.00"), D("2500.00"), D("12000.00"))
    [a] = monthly_presettlement(pol, "2024-04", [april], carried_in={"A": m.amount("carried_over")})
    assert (a.amount("carried_in"), a.amount("presettled"), a.amount("carried_over")) == (
        D("2500.00"), D("16500.00"), D("0.00"))
    # a carry larger than the next month again: it keeps going
    [b] = monthly_presettlement(pol, "2024-05", [march], carried_in={"A": D("9600.00")},
                                deductions={"A": D("1.00")})
    assert (b.amount("presettled"), b.amount("carried_over")) == (D("0.00"), D("101.00"))
    # the annual clearing nets what the last month still carried: over the year the hospital
    # gets its fund amount less the deductions, once
    year = HospitalYear(HospitalTotals(hospital_code="A", drg_payment=D("40000.00"), actual_cost=D("40000.00")),
                        presettled=m.amount("presettled") + a.amount("presettled") + b.amount("presettled"),
                        deductions=D("12001.00"), carried_over=b.amount("carried_over"))
    [h] = annual_clearing(pol, "2024", [year], D("100000.00")).hospitals
    assert h.deductions_carried_over == D("101.00")
    assert h.presettled + h.balance == h.fund_amount - D("12001.00")


def test_the_quality_deposit_is_withheld_before_deductions_and_only_the_rest_nets_them():
    pol = make_policy(settlement={"quality_deposit_share": "0.05"})
    month = HospitalTotals(hospital_code="A", drg_payment=D("10000.00"))
    [m] = monthly_presettlement(pol, "2024-03", [month], deductions={"A": D("12000.00")})
    # 10,000 × 0.95 = 9,500.00 due; 475.00 deposit withheld; 9,025.00 nets the 12,000.00 deduction:
    # nothing paid, 2,975.00 carried over
    assert (m.amount("quality_deposit"), m.amount("presettled"), m.amount("carried_over")) == (
        D("475.00"), D("0.00"), D("2975.00"))
    [a] = monthly_presettlement(pol, "2024-04", [month], carried_in={"A": D("2975.00")})
    # 9,500.00 due − 475.00 deposit − 2,975.00 carried in = 6,050.00 paid
    assert (a.amount("presettled"), a.amount("carried_over")) == (D("6050.00"), D("0.00"))
