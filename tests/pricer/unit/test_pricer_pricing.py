"""Pricing a case (§7): each case type, both methods, add-ons, off-site cases, determinism.

Policy figures (pricer_testkit): rates employee 10000 / resident 8000 per RW; coefficients by
level 1.0 / 0.85 / 0.7; AB11 RW 2.5 mean 20000, AB13 RW 1.5 mean 12000, AB15 RW 0.8 mean 6000.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pricer_testkit import case, make_policy, points_policy

from services.pricer.domain.pricing import (
    CaseToPrice,
    CaseType,
    price_case,
    price_many,
    select_policy,
)

D = Decimal


def test_normal_case_rate_method():
    # AB13 at a level-2 hospital, employee: standard = 10000 × 1.5 × 0.85 = 12750.00
    # thresholds: high 2 × 12000 = 24000 (RW 1.5 is in the 1 < RW ≤ 2 tier), low 0.4 × 12000 = 4800
    p = price_case(make_policy(), case(hospital_code="H2", total_cost="12000", patient_share="3000"))
    assert p.case_type is CaseType.NORMAL
    assert (p.rw, p.base_rate, p.coefficient) == (D("1.5"), D("10000"), D("0.85"))
    assert p.payment_standard == D("12750.00")
    assert (p.high_threshold, p.low_threshold) == (D("24000.00"), D("4800.00"))
    assert p.payment == D("12750.00")
    # fund payment = 12750 − 3000 = 9750
    assert p.fund_payment == D("9750.00")


def test_resident_by_hi_type_code():
    # hi_type 390 = resident: 8000 × 0.8 × 1.0 = 6400.00
    p = price_case(make_policy(), case(drg="AB15", insurance_type="390", total_cost="6000"))
    assert p.payment == D("6400.00")


def test_high_outlier_rw_le_1_uses_3x():
    # AB15 RW 0.8 ≤ 1 → k = 3, threshold 3 × 6000 = 18000; cost 20000 is above it.
    # standard 10000 × 0.8 × 1.0 = 8000; extra = (20000 − 18000) × 0.9 = 1800; payment 9800
    p = price_case(make_policy(), case(drg="AB15", total_cost="20000"))
    assert p.case_type is CaseType.HIGH_OUTLIER
    assert p.high_threshold == D("18000.00")
    assert p.outlier_extra == D("1800.00")
    assert p.payment == D("9800.00")


def test_high_outlier_rw_above_2_uses_1_5x():
    # AB11 RW 2.5 > 2 → k = 1.5, threshold 30000; cost 40000.
    # standard 25000; extra (40000 − 30000) × 0.9 = 9000; payment 34000
    p = price_case(make_policy(), case(drg="AB11", total_cost="40000"))
    assert p.case_type is CaseType.HIGH_OUTLIER
    assert p.payment == D("34000.00")
    # 29999.99 is below 30000: normal
    assert price_case(make_policy(), case(drg="AB11", total_cost="29999.99")).case_type is CaseType.NORMAL


def test_high_outlier_rw_between_1_and_2_uses_2x():
    # AB13 RW 1.5 → k = 2, threshold 24000; cost 30000: extra (6000) × 0.9 = 5400; 15000 + 5400
    p = price_case(make_policy(), case(total_cost="30000"))
    assert p.case_type is CaseType.HIGH_OUTLIER and p.payment == D("20400.00")


def test_low_outlier_by_item_and_by_ratio():
    # AB13 mean 12000, low threshold 4800; cost 4000 is below it
    by_item = price_case(make_policy(), case(total_cost="4000"))
    assert by_item.case_type is CaseType.LOW_OUTLIER
    assert by_item.payment == D("4000.00")  # the actual cost
    # ratio: standard × cost / mean = 15000 × 4000 / 12000 = 5000.00
    ratio = price_case(make_policy(outliers={"low_payment": "ratio"}), case(total_cost="4000"))
    assert ratio.payment == D("5000.00")
    # exactly at 0.4 × mean is not low
    assert price_case(make_policy(), case(total_cost="4800")).case_type is CaseType.NORMAL


def test_innovative_drug_is_an_add_on_and_not_in_the_outlier_cost():
    # cost 26000 with 3000 of innovative drugs: typing cost 23000 < 24000 → normal (26000 would
    # have been a high outlier); paid 15000 standard + 3000 add-on = 18000
    p = price_case(make_policy(), case(total_cost="26000", innovative_drug_amount="3000",
                                       patient_share="1000"))
    assert p.case_type is CaseType.NORMAL
    assert p.outlier_cost == D("23000.00")
    assert (p.payment, p.add_on, p.total_payment) == (D("15000.00"), D("3000.00"), D("18000.00"))
    assert p.fund_payment == D("17000.00")


def test_out_of_scope_long_stay_by_item_and_per_diem():
    # LOS 60 ≥ 60: out of DRG scope, paid by item, flagged for special review
    p = price_case(make_policy(), case(los=60, total_cost="90000"))
    assert p.case_type is CaseType.OUT_OF_SCOPE and p.special_review
    assert p.payment == D("90000.00") and p.rw is None
    # per bed-day: 500 × 70 = 35000
    per_diem = make_policy(scope={"out_of_scope_payment": "per_diem", "per_diem_rate": "500"})
    p2 = price_case(per_diem, case(los=70, total_cost="90000"))
    assert p2.payment == D("35000.00")
    # a per-diem stay (psychiatric) is out of scope whatever its LOS
    assert price_case(make_policy(), case(los=10, per_diem=True)).case_type is CaseType.OUT_OF_SCOPE


def test_unpriced_case_types():
    pol = make_policy()
    assert price_case(pol, case(group_status="FAIL", drg="0000")).case_type is CaseType.NOT_GROUPED
    no_weight = price_case(pol, case(drg="ZZ19"))
    assert no_weight.case_type is CaseType.NO_WEIGHT and no_weight.payment is None
    assert no_weight.fund_payment is None
    # unknown hospital, no level on the case: no coefficient
    assert price_case(pol, case(hospital_code="HX")).case_type is CaseType.NO_RATE
    # the case's own level is enough: HX at level 1 → 10000 × 1.5 × 0.7 = 10500
    assert price_case(pol, case(hospital_code="HX", hospital_level=1)).payment == D("10500.00")


def test_fund_payment_not_below_zero():
    p = price_case(make_policy(), case(patient_share="20000"))
    assert p.payment == D("15000.00") and p.fund_payment == D("0")


def test_point_method_each_case_type():
    pol = points_policy()  # scale 100, point value 95 yuan
    # normal: AB13 base 1.5 × 100 = 150 points × 0.85 (level 2) = 127.5; × 95 = 12112.50
    normal = price_case(pol, case(hospital_code="H2"))
    assert (normal.base_points, normal.points) == (D("150.0000"), D("127.5000"))
    assert normal.payment == D("12112.50")
    # high: AB15 base 80; cost 20000 > 18000: 80 + (20000 − 18000) / 10000 × 100 × 0.9 = 98
    high = price_case(pol, case(drg="AB15", total_cost="20000"))
    assert high.case_type is CaseType.HIGH_OUTLIER and high.points == D("98.0000")
    assert high.payment == D("9310.00")  # 98 × 95
    # low: AB13 cost 4000 < 4800: 150 × 4000 / 12000 = 50 points → 4750.00
    low = price_case(pol, case(total_cost="4000"))
    assert low.case_type is CaseType.LOW_OUTLIER and low.points == D("50.0000")
    assert low.payment == D("4750.00")


def test_point_method_add_on_as_points():
    # 2000 of innovative drugs → 2000 / 10000 × 100 = 20 add-on points → 1900.00 yuan
    pol = points_policy(add_ons={"innovative_drugs": {"mode": "points"}})
    p = price_case(pol, case(total_cost="14000", innovative_drug_amount="2000"))
    assert p.add_on_points == D("20.0000") and p.add_on == D("1900.00")
    assert p.points == D("150.0000")  # typing cost 12000: normal, level 3


def test_off_site_case_priced_by_the_treatment_location():
    home = make_policy(region="R1")
    away = make_policy(region="R2", policy_id="r2-2024",
                       rates={"employee": {"default": "12000"}})
    c = case(region="R1", treatment_region="R2", discharge_date=date(2024, 5, 1))
    chosen = select_policy([home, away], c)
    assert chosen is away
    p = price_case(chosen, c)
    assert p.offsite and p.policy_id == "r2-2024"
    assert p.payment == D("18000.00")  # 12000 × 1.5
    # priced with the wrong policy, the price says so
    wrong = price_case(home, c)
    assert any("not the treatment region" in n for n in wrong.notes)


def test_repricing_twice_gives_identical_results():
    pol = make_policy()
    cases = [case(case_id=f"c{i}", drg=drg, total_cost=str(cost), hospital_code=h)
             for i, (drg, cost, h) in enumerate([("AB11", 40000, "H1"), ("AB13", 4000, "H2"),
                                                 ("AB15", 6100.55, "H3"), ("ZZ19", 1, "H3")])]
    first, second = price_many(pol, cases), price_many(pol, cases)
    assert first == second
    assert [p.to_dict() for p in first] == [p.to_dict() for p in second]


def test_to_dict_is_json_ready_with_decimal_strings():
    d = price_case(make_policy(), case()).to_dict()
    assert d["payment"] == "15000.00" and d["case_type"] == "normal"
    assert d["fund_payment"] == "15000.00" and d["weights_version"] == "w-test-1"
    assert all(not isinstance(v, float) for v in d.values())


def test_input_is_read_tolerantly():
    # JSON numbers, aliases (id, status, hi_type) and unknown fields are accepted
    c = CaseToPrice.model_validate({"id": "x9", "hospital_code": "H3", "status": "QY",
                                   "hi_type": "310", "total_cost": 1234.56, "extra_field": 1})
    assert (c.case_id, c.group_status, c.insurance_type) == ("x9", "QY", "310")
    assert c.total_cost == D("1234.56")
