"""Review's domain: the readmission rule (docs/domain.md §11) and reviewing a batch in order."""

from __future__ import annotations

from datetime import date, timedelta

from services.review.domain.review import PricedStay, Reviewed, review_cases, stay_of
from services.review.domain.rules import READMISSION, Stay, is_readmission, readmission_flags
from shared.events import CaseFacts

DAY0 = date(2024, 3, 1)


def _stay(case_id: str, admitted: int, days: int, hospital: str = "H1") -> Stay:
    adm = DAY0 + timedelta(days=admitted)
    return Stay(case_id, "P1", hospital, adm, adm + timedelta(days=days))


def test_a_readmission_is_a_new_stay_at_the_same_hospital_within_the_limit() -> None:
    first = _stay("A", 0, 5)  # discharged on day 5
    assert is_readmission(first, _stay("B", 20, 2), 15)  # 15 days after: still within
    assert not is_readmission(first, _stay("B", 21, 2), 15)
    assert not is_readmission(first, _stay("B", 10, 2, hospital="H2"), 15)
    assert not is_readmission(first, first, 15)
    assert not is_readmission(_stay("B", 10, 2), first, 15)  # not after it
    flags = readmission_flags(_stay("B", 8, 2), [first, _stay("C", 30, 1)], 15)
    assert [(f.rule, f.related_case_id) for f in flags] == [(READMISSION, "A")]
    assert "3 days" in flags[0].message


def _priced(case_id: str, admitted: int, days: int, *, withdrawn: bool = False) -> PricedStay:
    adm = DAY0 + timedelta(days=admitted)
    facts = CaseFacts(hospital_code="H1", setl_id=case_id, psn_key="P1", admission_date=adm,
                      discharge_date=adm + timedelta(days=days), withdrawn=withdrawn)
    return PricedStay(case_id, facts, "ES23", "corr")


def test_an_earlier_stay_arriving_later_flags_the_stay_already_reviewed() -> None:
    known: dict[str, Reviewed] = {}
    later, earlier = _priced("B", 10, 2), _priced("A", 0, 5)
    changed, out = review_cases(known, [later])
    assert [(a.case_id, a.flags) for a in out] == [("B", ())]
    changed, out = review_cases(known, [earlier])
    assert [(a.case_id, [f.related_case_id for f in a.flags]) for a in out] == [("A", []), ("B", ["A"])]
    assert changed["B"].review_version == 2 and set(changed) == {"A", "B"}
    # the same earlier stay again (a redelivery or a new list version) flags nothing twice
    _changed, out = review_cases(known, [earlier])
    assert [a.case_id for a in out] == ["A"]


def test_a_withdrawn_list_is_reviewed_clean() -> None:
    known = {"A": Reviewed(stay_of("A", _priced("A", 0, 5).facts), "ES23", _priced("A", 0, 5).facts,
                           1, 1)}
    _changed, out = review_cases(known, [_priced("B", 8, 2, withdrawn=True)])
    assert [(a.case_id, a.flags) for a in out] == [("B", ())]
