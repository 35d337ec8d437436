"""Special-case review's pure core (特例单议, docs/domain.md §10): eligibility on a case's priced
figures, the region cap and its allocation by complex-case load, decisions, appeals and the
half-yearly publication."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.review.domain import special_cases as sc
from services.review.domain.parameters import SpecialCases
from shared.csvexport import to_csv
from shared.errors import Conflict, Forbidden, Invalid
from shared.events import CaseFacts, CasePriced

P = SpecialCases()


def case(**kw: object) -> sc.CaseData:
    base: dict[str, object] = dict(case_id="H1-S1", hospital_code="H1", region="350500",
                                   discharge_date=date(2024, 5, 2), drg="FM19", los=10,
                                   total_cost=Decimal("20000.00"), group_mean_cost=Decimal("15000.00"),
                                   high_threshold=Decimal("45000.00"))
    return sc.CaseData(**(base | kw))  # type: ignore[arg-type]


def refused(c: sc.CaseData, reason: sc.Reason, p: SpecialCases = P, evidence: int = 0) -> dict:
    with pytest.raises(sc.NotEligible) as e:
        sc.check_eligibility(c, reason, p, evidence)
    body = e.value.body()["error"]
    assert e.value.status == 422 and body["field"] == "reason" and body["code"] == sc.RULE_CODES[reason]
    return dict(body["details"][0]["numbers"])


def test_long_stay_from_60_days_and_the_refusal_names_the_numbers() -> None:
    assert sc.check_eligibility(case(los=60), sc.Reason.LONG_STAY, P)["los"] == 60
    assert refused(case(los=59), sc.Reason.LONG_STAY) == {"los": "59", "long_stay_days": "60"}
    # a parameter changes the outcome
    assert sc.check_eligibility(case(los=45), sc.Reason.LONG_STAY, SpecialCases(long_stay_days=45))


def test_high_cost_above_the_high_outlier_threshold_or_five_times_the_group_mean() -> None:
    assert sc.check_eligibility(case(total_cost=Decimal("45000.01")), sc.Reason.HIGH_COST, P)
    numbers = refused(case(total_cost=Decimal("45000.00")), sc.Reason.HIGH_COST)
    assert numbers["high_threshold"] == "45000.00" and numbers["multiple_threshold"] == "75000.00"
    # without a threshold (DIP), 5 × the group mean
    dip = case(high_threshold=None, method="dip")
    assert sc.check_eligibility(replace(dip, total_cost=Decimal("75000.01")), sc.Reason.HIGH_COST, P)
    refused(replace(dip, total_cost=Decimal("75000.00")), sc.Reason.HIGH_COST)


def test_innovative_drugs_need_evidence_and_a_share_of_drugs_and_materials() -> None:
    c = case(fees={"09": Decimal("3000"), "08": Decimal("1000"), "01": Decimal("16000")})  # 0.2 of 20000
    assert refused(c, sc.Reason.INNOVATIVE, evidence=0)["evidence"] == "0"
    assert sc.check_eligibility(c, sc.Reason.INNOVATIVE, P, evidence=1)["share"] == "0.2000"
    assert refused(case(fees={"09": Decimal("3999")}), sc.Reason.INNOVATIVE, evidence=2)["share"] == "0.2000"
    numbers = refused(case(fees={"09": Decimal("3000")}), sc.Reason.INNOVATIVE, evidence=2)
    assert numbers["share"] == "0.1500" and numbers["min_share"] == "0.2"


def test_icu_or_ventilation_by_hours_or_by_the_ventilation_procedure() -> None:
    assert sc.check_eligibility(case(icu_hours=24), sc.Reason.ICU_VENTILATION, P)
    assert sc.check_eligibility(case(ventilation_hours=96), sc.Reason.ICU_VENTILATION, P)
    assert sc.check_eligibility(case(procedures=("96.7201",)), sc.Reason.ICU_VENTILATION, P)
    numbers = refused(case(icu_hours=23, ventilation_hours=95), sc.Reason.ICU_VENTILATION)
    assert numbers["icu_hours"] == "23" and numbers["min_ventilation_hours"] == "96"


def test_not_grouped_or_ambiguous() -> None:
    assert sc.check_eligibility(case(status="NOT_GROUPED", drg="0000"), sc.Reason.NOT_GROUPED, P)
    assert sc.check_eligibility(case(drg="FMQY"), sc.Reason.NOT_GROUPED, P)
    assert refused(case(), sc.Reason.NOT_GROUPED) == {"status": "PRICED", "drg": "FM19"}


def test_multi_disciplinary_needs_two_surgical_chapters() -> None:
    # 36.10 cardiovascular + 45.73 digestive; 88.72 (diagnostic) is no discipline of its own
    assert sc.check_eligibility(case(procedures=("36.1000", "45.7300")), sc.Reason.MULTI_DISCIPLINARY, P)
    assert refused(case(procedures=("36.1000", "88.7200", "37.2200")),
                   sc.Reason.MULTI_DISCIPLINARY) == {"surgical_chapters": "1", "min_surgical_chapters": "2"}


def test_a_withdrawn_list_is_never_eligible_nor_complex() -> None:
    c = case(los=90, withdrawn=True)
    refused(c, sc.Reason.LONG_STAY)
    assert not sc.is_complex(c, P) and sc.is_complex(case(los=90), P) and not sc.is_complex(case(), P)


_MONEY = st.none() | st.decimals(min_value=0, max_value=10**6, places=2)


@given(los=st.none() | st.integers(0, 200), cost=_MONEY, mean=_MONEY, high=_MONEY,
       case_type=st.sampled_from([None, "normal", "high_outlier", "low_outlier", "not_grouped"]),
       status=st.sampled_from(["PRICED", "NOT_GROUPED", "NO_WEIGHT", "NO_POLICY"]),
       drg=st.sampled_from(["", "0000", "FR23", "GZ1QY", "gz1qy", "ES31"]),
       procedures=st.lists(st.sampled_from(["96.7201", "96.7101", "36.1001", "81.5100", "47.0901", "x"]),
                           max_size=4).map(tuple),
       icu=st.integers(0, 200), vent=st.integers(0, 200), withdrawn=st.booleans())
def test_a_complex_case_is_one_a_reason_but_innovative_drugs_admits(
        los: int | None, cost: Decimal | None, mean: Decimal | None, high: Decimal | None, case_type: str | None,
        status: str, drg: str, procedures: tuple[str, ...], icu: int, vent: int, withdrawn: bool) -> None:
    c = case(los=los, total_cost=cost, group_mean_cost=mean, high_threshold=high, case_type=case_type,
             status=status, drg=drg, procedures=procedures, icu_hours=icu, ventilation_hours=vent,
             withdrawn=withdrawn)
    assert sc.is_complex(c, P) == (not withdrawn and any(
        r is not sc.Reason.INNOVATIVE for r in sc.grounds(c, P)))


@given(los=st.none() | st.integers(0, 200), cost=_MONEY, mean=_MONEY, high=_MONEY,
       case_type=st.sampled_from([None, "normal", "high_outlier", "not_grouped"]),
       status=st.sampled_from(["PRICED", "NOT_GROUPED", "NO_WEIGHT"]),
       drg=st.sampled_from(["", "0000", "FR23", "GZ1QY", "ES31"]),
       procedures=st.lists(st.sampled_from(["96.7201", "36.1001", "81.5100", "47.0901", "x"]), max_size=4),
       icu=st.integers(0, 200), vent=st.integers(0, 200), withdrawn=st.booleans(), dip=st.booleans())
def test_a_priced_case_is_complex_as_its_case_data_is(
        los: int | None, cost: Decimal | None, mean: Decimal | None, high: Decimal | None, case_type: str | None,
        status: str, drg: str, procedures: list[str], icu: int, vent: int, withdrawn: bool, dip: bool) -> None:
    admitted = date(2024, 5, 2)
    facts = CaseFacts(hospital_code="H1", setl_id="S1", psn_key="k", admission_date=None if los is None else admitted,
                      discharge_date=admitted + timedelta(days=los or 0), total_cost=cost, procedures=tuple(procedures),
                      icu_hours=icu, ventilation_hours=vent, withdrawn=withdrawn)
    p = CasePriced(facts=facts, drg=drg, status=status, case_type=case_type, group_mean_cost=mean,
                   dip_group="D1" if dip else None,
                   breakdown={} if high is None else {"high_threshold": str(high)})
    assert sc.high_threshold_of(p) == high
    assert sc.priced_is_complex(p, high, P) == sc.is_complex(sc.case_data("H1-S1", p), P)


def test_the_figures_survive_their_json() -> None:
    c = case(fees={"09": Decimal("1.50")}, procedures=("36.1000",), icu_hours=5)
    assert sc.from_json(sc.to_json(c)) == c


# --- the cap -----------------------------------------------------------------------------------------

def test_region_cap_is_five_percent_of_drg_and_five_per_mille_of_dip_rounded_down() -> None:
    assert sc.region_cap(200, 0, P) == 10
    assert sc.region_cap(219, 0, P) == 10  # 10.95
    assert sc.region_cap(0, 1000, P) == 5
    assert sc.region_cap(100, 200, P) == 6  # 5 + 1
    assert sc.region_cap(100, 0, SpecialCases(drg_cap_share=Decimal("0.1"))) == 10


def test_allocation_gives_the_floor_first_then_the_rest_by_complex_cases() -> None:
    assert sc.allocate(10, {"H1": 30, "H2": 10, "H3": 0}, 1) == {"H1": 7, "H2": 3}
    # the floor, busiest first, while the cap lasts
    assert sc.allocate(2, {"H1": 1, "H2": 5, "H3": 3}, 1) == {"H1": 0, "H2": 1, "H3": 1}
    assert sc.allocate(0, {"H1": 4}, 1) == {"H1": 0}
    assert sc.allocate(5, {}, 1) == {}


@given(st.integers(0, 500), st.dictionaries(st.sampled_from([f"H{i}" for i in range(8)]),
                                            st.integers(0, 200), max_size=8), st.integers(0, 5))
def test_the_quotas_add_up_to_the_cap_exactly(cap: int, loads: dict[str, int], floor: int) -> None:
    quotas = sc.allocate(cap, loads, floor)
    assert set(quotas) == {h for h, n in loads.items() if n > 0}
    assert all(q >= 0 for q in quotas.values())
    if quotas:
        assert sum(quotas.values()) == cap
        if cap >= floor * len(quotas):
            assert all(q >= floor for q in quotas.values())


def test_the_quota_refusal_names_the_numbers() -> None:
    q = sc.quota_of("350500", "2024Q2", 200, 0, {"H1": 30, "H2": 10}, {"H1": 7}, "H1", P)
    assert (q.cap, q.quota, q.used) == (10, 7, 7)
    with pytest.raises(Conflict) as e:
        sc.check_quota(q)
    assert e.value.code == "SPECIAL_CASE_QUOTA_EXHAUSTED"
    assert e.value.details[0]["numbers"]["quota"] == "7"
    sc.check_quota(sc.quota_of("350500", "2024Q2", 200, 0, {"H1": 30, "H2": 10}, {"H1": 7}, "H2", P))


# --- the panel -----------------------------------------------------------------------------------------

def test_a_tied_member_never_decides_and_the_appeal_goes_to_another_member() -> None:
    m1, m2 = sc.Member("a" * 12, frozenset({"H1"})), sc.Member("b" * 12, frozenset())
    with pytest.raises(Forbidden) as e:
        sc.may_decide(m1, "H1", sc.Status.PENDING, None)
    assert e.value.code == "SPECIAL_CASE_MEMBER_TIED"
    with pytest.raises(Forbidden) as e:
        sc.may_decide(None, "H1", sc.Status.PENDING, None)
    assert e.value.code == "SPECIAL_CASE_NOT_PANEL_MEMBER"
    assert sc.may_decide(m2, "H1", sc.Status.PENDING, None) == 1
    with pytest.raises(Conflict):
        sc.may_decide(m2, "H1", sc.Status.DECIDED, m2.token_id)
    with pytest.raises(Forbidden) as e:
        sc.may_decide(m2, "H1", sc.Status.APPEALED, m2.token_id)
    assert e.value.code == "SPECIAL_CASE_SAME_MEMBER"
    assert sc.may_decide(sc.Member("c" * 12, frozenset({"H2"})), "H1", sc.Status.APPEALED, m2.token_id) == 2


def test_one_appeal_after_the_first_decision() -> None:
    sc.may_appeal(sc.Status.DECIDED, False)
    for status, appealed in ((sc.Status.PENDING, False), (sc.Status.APPEALED, True), (sc.Status.FINAL, True)):
        with pytest.raises(Conflict):
            sc.may_appeal(status, appealed)


def test_a_decision_needs_its_reason_and_an_amount_only_to_adjust_the_standard() -> None:
    sc.check_decision(sc.DecisionInput(sc.Outcome.ADJUST_STANDARD, "complex", Decimal("52000.00")))
    for bad, field in ((sc.DecisionInput(sc.Outcome.ADJUST_STANDARD, "x", None), "amount"),
                       (sc.DecisionInput(sc.Outcome.ADJUST_STANDARD, "x", Decimal("1.001")), "amount"),
                       (sc.DecisionInput(sc.Outcome.REJECT, "x", Decimal("1")), "amount"),
                       (sc.DecisionInput(sc.Outcome.REJECT, " "), "reason")):
        with pytest.raises(Invalid) as e:
            sc.check_decision(bad)
        assert e.value.field == field


def test_periods() -> None:
    assert sc.quarter_of(date(2024, 3, 31)) == "2024Q1" and sc.quarter_of(date(2024, 10, 1)) == "2024Q4"
    assert sc.half_year_of("2024Q2") == "2024H1" and sc.half_year_of("2024Q3") == "2024H2"
    for bad in ("2024Q5", "2024-Q1", "1800Q1", "2024"):
        with pytest.raises(Invalid):
            sc.check_period(bad)


def test_the_publication_counts_outcomes_per_hospital() -> None:
    apps = [{"hospital_code": "H2", "status": "final", "outcome": "adjust_standard", "amount": "100.50"},
            {"hospital_code": "H2", "status": "decided", "outcome": "adjust_standard", "amount": "10.00"},
            {"hospital_code": "H1", "status": "pending", "outcome": None},
            {"hospital_code": "H1", "status": "decided", "outcome": "reject"},
            {"hospital_code": "H1", "status": "appealed", "outcome": "reject"},
            {"hospital_code": "H1", "status": "final", "outcome": "pay_by_item"}]
    rows = sc.publication("2024H1", apps)
    assert [r["hospital_code"] for r in rows] == ["H1", "H2"]
    assert rows[0] == {"half": "2024H1", "hospital_code": "H1", "applications": "4", "pending": "1",
                            "appealed": "1", "pay_by_item": "1", "adjust_standard": "0", "rejected": "1",
                            "adjusted_amount": "0"}
    assert rows[1]["adjust_standard"] == "2" and rows[1]["adjusted_amount"] == "110.50"
    text = to_csv(sc.PUBLICATION_COLUMNS, rows)
    assert text.splitlines()[0] == ",".join(sc.PUBLICATION_COLUMNS) and len(text.splitlines()) == 3
    assert to_csv(("a",), [{"a": "=1+1"}]).splitlines()[1] == "'=1+1"
