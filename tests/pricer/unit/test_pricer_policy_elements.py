"""Policy elements (docs/domain.md §7): the lower LOS bound of the DRG/DIP scope, the bureau's
expected case volumes for the rate."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from pricer_testkit import case, dip_policy, make_policy, points_policy

from services.pricer.domain.calibration import (
    CalibrationParams,
    ExpectedCasesError,
    HistoricalCase,
    calibrate,
    parse_expected_cases,
)
from services.pricer.domain.dip_catalogue import build_catalogue
from services.pricer.domain.dip_pricing import DipCaseType, price_dip_case
from services.pricer.domain.policy import PolicyError, Scope
from services.pricer.domain.pricing import CaseType, price_case
from shared.dip import DipCase


@pytest.mark.parametrize(("los", "case_type", "review"), [
    (0, CaseType.OUT_OF_SCOPE, False),
    (2, CaseType.OUT_OF_SCOPE, False),  # LOS ≤ 2 (the default min_los)
    (3, CaseType.NORMAL, False),
    (59, CaseType.NORMAL, False),
    (60, CaseType.OUT_OF_SCOPE, True),  # LOS ≥ 60: special review, as before
])
def test_min_los_default_two_short_stays_paid_by_item(los, case_type, review):
    p = price_case(make_policy(), case(los=los, total_cost="12345.67"))
    assert (p.case_type, p.special_review) == (case_type, review)
    if case_type is CaseType.OUT_OF_SCOPE:
        assert p.payment == D("12345.67") and p.rw is None and p.points == 0


def test_min_los_zero_switches_the_lower_bound_off():
    pol = make_policy(scope={"min_los": 0})
    p = price_case(pol, case(los=1, total_cost="12000"))
    assert p.case_type is CaseType.NORMAL and p.payment == D("15000.00")  # 10000 × 1.5
    # a larger bound moves short stays out of scope under the point method too
    q = price_case(points_policy(scope={"min_los": 4}), case(los=4, total_cost="12000"))
    assert (q.case_type, q.points, q.payment, q.notes[-1]) == (
        CaseType.OUT_OF_SCOPE, D(0), D("12000.00"), "LOS 4 ≤ 4")


def test_short_stay_follows_out_of_scope_payment():
    pol = make_policy(scope={"out_of_scope_payment": "per_diem", "per_diem_rate": "500"})
    assert price_case(pol, case(los=2, total_cost="9000")).payment == D("1000.00")


def test_unknown_los_is_in_scope():
    assert price_case(make_policy(), case(los=None)).case_type is CaseType.NORMAL


@pytest.mark.parametrize(("scope", "path"), [
    ({"min_los": -1}, "scope.min_los"),
    ({"min_los": 59}, "scope.min_los"),  # nothing left in scope below max_los 60
    ({"min_los": 9, "max_los": 10}, "scope.min_los"),
])
def test_min_los_validated(scope, path):
    with pytest.raises(PolicyError) as e:
        make_policy(scope=scope)
    assert e.value.path == path


def test_scope_reasons():
    s = Scope()
    assert (s.min_los, s.max_los) == (2, 60)
    assert s.out_of_scope(1, False) == "LOS 1 ≤ 2"
    assert s.out_of_scope(61, False) == "LOS 61 ≥ 60"
    assert s.out_of_scope(1, True) == "per-diem stay"
    assert s.out_of_scope(3, False) is None
    assert Scope(min_los=0).out_of_scope(0, False) is None


def _dip_case(los: int) -> DipCase:
    return DipCase(case_id="c", year=2024, region="R1", hospital_code="H3", hospital_level=3,
                   principal_diagnosis="I21.000", total_cost=D("3000"), los=los)


def test_dip_min_los():
    history = [DipCase(case_id=f"h{y}", year=y, hospital_code="H3", hospital_level=3,
                       principal_diagnosis="I21.000", total_cost=D("3000"), los=5)
               for y in (2021, 2022, 2023)]
    dip_catalogue = build_catalogue(history, region="R1", year=2024, min_cases=3)
    short = price_dip_case(dip_catalogue, dip_policy(), _dip_case(2))
    assert (short.case_type, short.payment, short.special_review) == (
        DipCaseType.OUT_OF_SCOPE, D("3000"), False)
    assert short.to_price().case_type is CaseType.OUT_OF_SCOPE
    kept = price_dip_case(dip_catalogue, dip_policy(scope=Scope(min_los=0)), _dip_case(2))
    assert kept.case_type is DipCaseType.NORMAL


# --- expected cases given by the bureau (§7 rate method) ----------------------------------------

def test_expected_cases_file_formats():
    assert parse_expected_cases("drg,expected_cases\nAB11,100\n\n# forecast\nAB15\t250 # up\n") == {
        "AB11": 100, "AB15": 250}
    assert parse_expected_cases('{"AB11": 100, "AB15": 0}') == {"AB11": 100, "AB15": 0}


@pytest.mark.parametrize(("text", "field", "words"), [
    ("drg,cases\nAB11,100\nAB15,1.5\n", "line 3", "whole number"),
    ("AB11,100\nAB15,-1\n", "line 2", "whole number"),
    ("AB11,100\nAB15\n", "line 2", "DRG,cases"),
    ("AB11,100\nAB11,7\n", "line 2", "given twice"),
    ("AB11,1,2\n", "line 1", "DRG,cases"),
    ('{"AB11": "x"}', "AB11", "whole number"),
    ('{"AB11": 2.0}', "AB11", "whole number"),
    ("{nope", "(document)", "not valid JSON"),
    ("# nothing\n", "(document)", "no DRG"),
])
def test_expected_cases_errors_name_the_line(text, field, words):
    with pytest.raises(ExpectedCasesError) as e:
        parse_expected_cases(text)
    assert e.value.field == field and words in str(e.value)
    assert e.value.code == "INVALID_EXPECTED_CASES" and e.value.status == 422


def test_base_rate_with_the_bureaus_expected_cases():
    # the weights don't move; r = budget / Σ(expected × RW) with the given volumes; a DRG the
    # bureau leaves out counts 0, one without a weight is named in the summary
    rows = [HistoricalCase(case_id=f"{drg}-{y}-{i}", year=y, drg=drg, cost=cost, los=5)
            for y in (2021, 2022, 2023) for drg, cost in (("AB11", 200), ("AB15", 100))
            for i in range(6)]
    default = calibrate(rows, CalibrationParams(region="R1", year=2024, budget=D("90000")))
    given = calibrate(rows, CalibrationParams(region="R1", year=2024, budget=D("90000"),
                                              expected_cases={"AB11": 10, "ZZ99": 5}))
    assert default.weights == given.weights
    rw11, rw15 = given.weights["AB11"], given.weights["AB15"]
    assert default.expected_rw_sum == 6 * rw11 + 6 * rw15  # the newest year's cases
    assert given.expected_rw_sum == 10 * rw11
    assert given.base_rate == (D("90000") / (10 * rw11)).quantize(D("0.01"))
    assert "given by the bureau" in given.summary_text() and "ZZ99" in given.summary_text()
    assert given.params.to_dict()["expected_cases"] == "given"
