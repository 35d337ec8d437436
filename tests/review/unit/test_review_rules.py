"""Review's domain: the case-level monitoring rules (docs/domain.md §11), their parameters, and
reviewing a batch in order (a later stay flagged when its earlier stay arrives, a new version
replacing the flags of the previous one)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.review.domain.parameters import (
    DEFAULTS,
    CostShifting,
    LowStandardAdmission,
    PrimaryCareAtTertiary,
    RuleParameters,
    RulesError,
    RuleSet,
    SplitAdmission,
    Upcoding,
    parse_rules,
)
from services.review.domain.review import PricedStay, Reviewed, review_cases, stay_of
from services.review.domain.rules import (
    COST_SHIFTING,
    LOW_STANDARD_ADMISSION,
    PRIMARY_CARE_AT_TERTIARY,
    SPLIT_ADMISSION,
    UPCODING_SECONDARY,
    CaseFigures,
    Lift,
    Share,
    Stay,
    cost_shifting,
    is_readmission,
    low_standard_admission,
    primary_care_at_tertiary,
    split_admission,
    split_admission_flags,
    upcoding,
)
from shared.events import CaseFacts

DAY0 = date(2024, 3, 1)
SPLIT = SplitAdmission()


def _stay(case_id: str, admitted: int, days: int, hospital: str = "H1", *, adrg: str = "GB2",
          method: str = "drg", dx: str = "K80.100", px: tuple[str, ...] = (), planned: bool = False) -> Stay:
    adm = DAY0 + timedelta(days=admitted)
    return Stay(case_id, "P1", hospital, adm, adm + timedelta(days=days), method=method, adrg=adrg,
                principal_diagnosis=dx, procedures=px, planned=planned)


# --- split admission ------------------------------------------------------------------------------

def test_a_readmission_is_a_new_stay_at_the_same_hospital_within_the_limit() -> None:
    first = _stay("A", 0, 5)  # discharged on day 5
    assert is_readmission(first, _stay("B", 20, 2), 15)  # 15 days after: still within
    assert not is_readmission(first, _stay("B", 21, 2), 15)
    assert not is_readmission(first, _stay("B", 10, 2, hospital="H2"), 15)
    assert not is_readmission(first, first, 15)
    assert not is_readmission(_stay("B", 10, 2), first, 15)  # not after it


def test_an_unplanned_readmission_into_the_same_adrg_is_a_split_admission_with_its_evidence() -> None:
    flags = split_admission_flags(_stay("B", 8, 2), [_stay("A", 0, 5), _stay("C", 30, 1)], SPLIT)
    assert [(f.rule, f.related_case_id, f.severity) for f in flags] == [(SPLIT_ADMISSION, "A", "high")]
    e = flags[0].evidence
    assert (e["related_case_ids"], e["gap_days"], e["limit_days"], e["basis"], e["category"]) == \
        (["A"], 3, 15, "ADRG", "GB2")
    assert e["earlier"]["discharge_date"] == "2024-03-06" and e["later"]["admission_date"] == "2024-03-09"


def test_another_adrg_a_planned_readmission_or_a_treatment_stay_is_not_a_split_admission() -> None:
    first = _stay("A", 0, 5)
    assert split_admission(first, _stay("B", 8, 2, adrg="GC1"), SPLIT) is None
    assert split_admission(first, _stay("B", 8, 2, planned=True), SPLIT) is None
    assert split_admission(_stay("A", 0, 5, planned=True), _stay("B", 8, 2), SPLIT) is None
    assert split_admission(first, _stay("B", 8, 2, dx="Z51.100x001"), SPLIT) is None  # chemotherapy
    assert split_admission(first, _stay("B", 8, 2, px=("88.7600", "99.2500x001")), SPLIT) is None
    assert split_admission(first, _stay("B", 8, 2, dx="Z49.100"), SPLIT) is None  # dialysis
    assert split_admission(_stay("A", 0, 5, adrg=None), _stay("B", 8, 2, adrg=None), SPLIT) is None  # type: ignore[arg-type]


def test_the_planned_chemotherapy_readmission_into_another_adrg_is_not_flagged() -> None:
    surgery = _stay("A", 0, 7, adrg="GB1", dx="C18.700")
    chemo = _stay("B", 14, 3, adrg="RE1", dx="Z51.100x001", px=("99.2500",), planned=True)
    assert split_admission_flags(chemo, [surgery], SPLIT) == []
    # even unplanned and into the same ADRG, a chemotherapy stay is excluded by its codes
    assert split_admission_flags(_stay("B", 14, 3, adrg="GB1", dx="Z51.100x001"), [surgery], SPLIT) == []


def test_the_planned_flag_is_read_from_the_list_the_parameter_names() -> None:
    first, again = _stay("A", 0, 5), _stay("B", 8, 2, planned=True)
    assert split_admission(first, again, SplitAdmission(planned_on="earlier")) is not None
    assert split_admission(first, again, SplitAdmission(planned_on="later")) is None


def test_dip_cases_use_the_31_day_window_and_the_diagnosis_category() -> None:
    first = _stay("A", 0, 5, method="dip", dx="I21.000")
    later = _stay("B", 30, 2, method="dip", dx="I21.100")  # 25 days after, same category I21
    f = split_admission(first, later, SPLIT)
    assert f is not None and f.evidence["limit_days"] == 31 and f.evidence["category"] == "I21"
    assert split_admission(first, _stay("B", 30, 2, method="dip", dx="I25.100"), SPLIT) is None
    assert split_admission(_stay("A", 0, 5), _stay("B", 30, 2), SPLIT) is None  # DRG: 15 days


def test_changing_the_window_changes_the_outcome() -> None:
    first, later = _stay("A", 0, 5), _stay("B", 23, 2)  # 18 days after
    assert split_admission(first, later, SPLIT) is None
    assert split_admission(first, later, SplitAdmission(days=20)) is not None
    assert split_admission(_stay("A", 0, 5), _stay("B", 8, 2), SplitAdmission(enabled=False)) is None


# --- single-case rules ----------------------------------------------------------------------------

def _fig(cost: str, *, drg: str = "FR21", los: int | None = 5, mean: str | None = "10000",
         own: str | None = None, level: int | None = 3, lift: Lift | None = None,
         primary: bool = False, coefficient: str | None = None) -> CaseFigures:
    return CaseFigures(drg, los, Decimal(cost), None if own is None else Decimal(own),
                       None if mean is None else Decimal(mean), level, primary, lift,
                       None if coefficient is None else Decimal(coefficient))


LIFT = Lift(("J96.000",), "MCC", "FR25", Decimal("8000"))


def test_upcoding_one_secondary_lifting_the_group_of_a_cheap_case() -> None:
    f = upcoding(_fig("6000", lift=LIFT), Upcoding())
    assert f is not None and (f.rule, f.severity) == (UPCODING_SECONDARY, "medium")
    assert f.evidence == {"drg": "FR21", "drg_without": "FR25", "lifting_diagnoses": ["J96.000"],
                          "level": "MCC", "total_cost": "6000", "lower_group_mean_cost": "8000.00",
                          "basis": "region", "hospital_level": 3, "lower_group_level_cases": 0,
                          "lower_group_regional_mean_cost": "8000", "coefficient": None,
                          "ratio": "0.7500", "cost_ratio": "1", "min_level_cases": 30}
    assert upcoding(_fig("9000", lift=LIFT), Upcoding()) is None  # costs more than the lower group
    assert upcoding(_fig("6000"), Upcoding()) is None  # no single lifting diagnosis
    assert upcoding(_fig("6000", lift=Lift(("J96.000",), "MCC", "FR25", None)), Upcoding()) is None
    # a stricter bureau: only cases below 0.7 × the lower mean
    assert upcoding(_fig("6000", lift=LIFT), Upcoding(cost_ratio=Decimal("0.7"))) is None


def test_upcoding_compares_with_the_lower_groups_mean_at_the_hospitals_level() -> None:
    # a secondary hospital (coefficient 0.85) whose FR25 cases cost 5,000 on average: a lifted case
    # costing 6,000 is dearer than that, though below the regional mean of 8,000 (all levels)
    secondary = _fig("6000", level=2, coefficient="0.85", lift=LIFT)
    at_level = Share(30, Decimal("150000"), Decimal(0))
    assert upcoding(secondary, Upcoding(), at_level) is None
    f = upcoding(_fig("4500", level=2, coefficient="0.85", lift=LIFT), Upcoding(), at_level)
    assert f is not None and (f.evidence["basis"], f.evidence["lower_group_mean_cost"]) == ("level", "5000.00")
    assert f.evidence["lower_group_level_cases"] == 30 and f.evidence["ratio"] == "0.9000"
    # fewer than `min_level_cases` of FR25 at the level: the regional mean × the coefficient
    # (8,000 × 0.85 = 6,800) stands in, and 6,000 is below it
    few = Share(29, Decimal("145000"), Decimal(0))
    f = upcoding(secondary, Upcoding(), few)
    assert f is not None and (f.evidence["basis"], f.evidence["lower_group_mean_cost"]) == \
        ("region × coefficient", "6800.00")
    assert upcoding(_fig("7000", level=2, coefficient="0.85", lift=LIFT), Upcoding(), few) is None
    assert upcoding(secondary, Upcoding(min_level_cases=29), few) is None  # 29 are enough: 5,000
    # the bureau may keep the regional mean whatever the level
    region = upcoding(secondary, Upcoding(compare_with="region"), at_level)
    assert region is not None and region.evidence["basis"] == "region"


def test_low_standard_admission_short_and_cheap() -> None:
    p = LowStandardAdmission()
    f = low_standard_admission(_fig("3000", los=2), "drg", p)
    assert f is not None and f.rule == LOW_STANDARD_ADMISSION and f.evidence["ratio"] == "0.3000"
    assert low_standard_admission(_fig("3000", los=3), "drg", p) is None  # not a short stay
    assert low_standard_admission(_fig("4000", los=1), "drg", p) is None  # 0.4 is not below 0.4
    assert low_standard_admission(_fig("3000", los=1, mean=None), "drg", p) is None
    assert low_standard_admission(_fig("3000", los=3), "drg", LowStandardAdmission(max_los=3)) is not None


def test_low_standard_admission_dip_grades() -> None:
    p = LowStandardAdmission()
    grades = {cost: (f.severity if (f := low_standard_admission(_fig(cost, los=1), "dip", p)) else None)
              for cost in ("2000", "4000", "6000", "7000")}
    assert grades == {"2000": "high", "4000": "medium", "6000": "low", "7000": None}


def test_primary_care_groups_at_tertiary_hospitals() -> None:
    p = PrimaryCareAtTertiary(groups=("FR2",))
    f = primary_care_at_tertiary(_fig("5000"), ("FR21", "FR2", None), p)
    assert f is not None and (f.rule, f.severity) == (PRIMARY_CARE_AT_TERTIARY, "low")
    assert f.evidence == {"group": "FR2", "hospital_level": 3, "listed_by": "parameters", "levels": [3]}
    assert primary_care_at_tertiary(_fig("5000", level=2), ("FR21", "FR2"), p) is None
    assert primary_care_at_tertiary(_fig("5000"), ("GB21", "GB2"), p) is None
    # the DIP catalogue's primary-care groups count unless the bureau says otherwise
    cat = _fig("5000", drg="J18.9:conservative", primary=True)
    assert primary_care_at_tertiary(cat, (cat.drg,), PrimaryCareAtTertiary()) is not None
    assert primary_care_at_tertiary(cat, (cat.drg,), PrimaryCareAtTertiary(use_catalogue_flag=False)) is None


def test_cost_shifting_self_pay_far_above_the_groups_regional_share() -> None:
    p = CostShifting()
    region = Share(40, Decimal("400000"), Decimal("20000"))  # 5 %
    f = cost_shifting(_fig("10000", own="2500"), region, p)  # 25 %
    assert f is not None and f.rule == COST_SHIFTING
    assert (f.evidence["share"], f.evidence["regional_share"], f.evidence["regional_cases"]) == \
        ("0.2500", "0.0500", 40)
    assert cost_shifting(_fig("10000", own="900"), region, p) is None  # 9 %: below the floor
    assert cost_shifting(_fig("10000", own="2500"), Share(29, Decimal("290000"), Decimal("14500")), p) is None
    assert cost_shifting(_fig("10000"), region, p) is None  # no 自费 on the list
    assert cost_shifting(_fig("10000", own="2500"), region, CostShifting(factor=Decimal(6))) is None


def test_cost_shifting_falls_back_to_the_adrgs_share_while_the_group_is_small() -> None:
    p = CostShifting()
    group = Share(12, Decimal("120000"), Decimal("6000"))  # too few cases of its own
    adrg = Share(90, Decimal("900000"), Decimal("54000"))  # 6 % over the ADRG's groups
    f = cost_shifting(_fig("10000", own="2500"), group, p, adrg, "FR2")
    assert f is not None and (f.evidence["basis"], f.evidence["adrg"], f.evidence["regional_share"]) == \
        ("ADRG", "FR2", "0.0600")
    assert (f.evidence["regional_cases"], f.evidence["group_cases"]) == (90, 12)
    assert "ADRG FR2's regional share" in f.message
    assert cost_shifting(_fig("10000", own="1100"), group, p, adrg, "FR2") is None  # 11 % ≤ 2 × 6 %
    # the ADRG too small, no ADRG known, or the fallback switched off: not judged
    small = Share(29, Decimal("290000"), Decimal("14500"))
    assert cost_shifting(_fig("10000", own="2500"), group, p, small, "FR2") is None
    assert cost_shifting(_fig("10000", own="2500"), group, p, adrg, None) is None
    assert cost_shifting(_fig("10000", own="2500"), group, CostShifting(adrg_fallback=False), adrg, "FR2") is None
    # the group's own share is used once it has `min_cases`, even when the ADRG's would differ
    own = Share(30, Decimal("300000"), Decimal("150000"))  # 50 %: the group pays much 自费
    assert cost_shifting(_fig("10000", own="2500"), own, p, adrg, "FR2") is None


# --- parameters -----------------------------------------------------------------------------------

def test_a_document_names_what_it_changes_and_is_stored_resolved() -> None:
    params = parse_rules(b'{"format": "drgdip.review-rules/1", "rules": {"SPLIT_ADMISSION": {"days": 10}}}')
    assert params.split_admission.days == 10 and params.split_admission.dip_days == 31
    assert params.cost_shifting == CostShifting()
    doc = params.to_document()
    assert doc["rules"]["SPLIT_ADMISSION"]["days"] == 10 and doc["rules"]["COST_SHIFTING"]["min_cases"] == 30
    import orjson
    assert parse_rules(orjson.dumps(doc)) == params


@pytest.mark.parametrize("doc, field", [
    (b'{"format": "x"}', "format"),
    (b'{"format": "drgdip.review-rules/1", "rules": {"NO_SUCH_RULE": {}}}', "rules.NO_SUCH_RULE"),
    (b'{"format": "drgdip.review-rules/1", "rules": {"SPLIT_ADMISSION": {"dayz": 3}}}',
     "rules.SPLIT_ADMISSION.dayz"),
    (b'{"format": "drgdip.review-rules/1", "rules": {"COST_SHIFTING": {"factor": "-1"}}}',
     "rules.COST_SHIFTING.factor"),
])
def test_a_bad_document_is_refused_naming_the_field(doc: bytes, field: str) -> None:
    with pytest.raises(RulesError) as e:
        parse_rules(doc)
    assert e.value.field == field and e.value.code == "INVALID_REVIEW_RULES"


# --- reviewing a batch ----------------------------------------------------------------------------

def _priced(case_id: str, admitted: int, days: int, *, withdrawn: bool = False, adrg: str = "ES2",
            version: int = 1, cost: str | None = None, mean: str | None = None) -> PricedStay:
    adm = DAY0 + timedelta(days=admitted)
    facts = CaseFacts(hospital_code="H1", setl_id=case_id, psn_key="P1", admission_date=adm,
                      discharge_date=adm + timedelta(days=days), withdrawn=withdrawn, list_version=version,
                      principal_diagnosis="J18.900", total_cost=None if cost is None else Decimal(cost))
    return PricedStay(case_id, facts, adrg + "3", "corr", adrg=adrg,
                      group_mean_cost=None if mean is None else Decimal(mean), hospital_level=2)


def test_an_earlier_stay_arriving_later_flags_the_stay_already_reviewed() -> None:
    known: dict[str, Reviewed] = {}
    later, earlier = _priced("B", 10, 2), _priced("A", 0, 5)
    out = review_cases(known, [later])
    assert [(a.case_id, a.flags) for a in out.announcements] == [("B", ())]
    out = review_cases(known, [earlier])
    assert [(a.case_id, [f.related_case_id for f in a.flags]) for a in out.announcements] == \
        [("A", []), ("B", ["A"])]
    assert out.changed["B"].review_version == 2 and set(out.changed) == {"A", "B"}
    # the same earlier stay again (a redelivery or a new list version) flags nothing twice
    out = review_cases(known, [earlier])
    assert [a.case_id for a in out.announcements] == ["A"]
    # a new version of the earlier stay, withdrawn: the later stay's flag goes
    out = review_cases(known, [_priced("A", 0, 5, withdrawn=True, version=2)])
    assert [(a.case_id, a.flags) for a in out.announcements] == [("A", ()), ("B", ())]


def test_a_withdrawn_list_is_reviewed_clean() -> None:
    first = _priced("A", 0, 5)
    known = {"A": Reviewed(stay_of("A", first.facts), "ES23", first.facts, 1, 1)}
    out = review_cases(known, [_priced("B", 8, 2, withdrawn=True)])
    assert [(a.case_id, a.flags) for a in out.announcements] == [("B", ())]


def test_a_new_version_replaces_the_flags_of_the_previous_one() -> None:
    known: dict[str, Reviewed] = {}
    out = review_cases(known, [_priced("A", 0, 1, cost="1000", mean="10000")])
    assert [f.rule for f in out.announcements[0].flags] == [LOW_STANDARD_ADMISSION]
    out = review_cases(known, [_priced("A", 0, 1, cost="9000", mean="10000", version=2)])
    assert out.announcements[0].flags == () and out.announcements[0].review_version == 2


def test_the_parameters_in_force_on_the_discharge_date_are_used() -> None:
    narrow = RuleSet("350500", 2, RuleParameters(SPLIT_ADMISSION=SplitAdmission(days=2)))  # type: ignore[call-arg]

    def rules_on(region: str, day: date | None) -> RuleSet | None:
        return narrow if day is not None and day >= DAY0 + timedelta(days=10) else None

    # B comes 3 days after A: a split admission under the defaults (15 days), not under v2 (2 days)
    assert [len(a.flags) for a in review_cases({}, [_priced("A", 0, 5), _priced("B", 8, 2)]).announcements] == [0, 1]
    out = review_cases({}, [_priced("A", 0, 5), _priced("B", 8, 2)], rules_on=rules_on)
    assert [(a.case_id, a.rules, len(a.flags)) for a in out.announcements] == \
        [("A", DEFAULTS.label, 0), ("B", "350500 v2", 0)]



def test_the_days_since_the_previous_discharge_are_announced_for_the_readmission_indicators() -> None:
    known: dict[str, Reviewed] = {}
    # A: days 0..5; B admitted day 25 (20 days after A, another ADRG: no flag); C day 80 (52 after B)
    out = review_cases(known, [_priced("A", 0, 5), _priced("B", 25, 3, adrg="FR2"), _priced("C", 80, 2)])
    assert [(a.case_id, a.readmission_days, a.flags) for a in out.announcements] == \
        [("A", None, ()), ("B", 20, ()), ("C", 52, ())]
    # an earlier stay arriving late: the later stay within 31 days is announced again with its days
    known = {}
    review_cases(known, [_priced("B", 25, 3, adrg="FR2")])
    out = review_cases(known, [_priced("A", 0, 5)])
    assert [(a.case_id, a.readmission_days) for a in out.announcements] == [("A", None), ("B", 20)]


def _case(case_id: str, drg: str, cost: str, *, level: int = 2, own: str = "0", lift: Lift | None = None,
          version: int = 1) -> PricedStay:
    facts = CaseFacts(hospital_code="H1", setl_id=case_id, psn_key=case_id, admission_date=DAY0, region="350500",
                      discharge_date=DAY0 + timedelta(days=5), list_version=version,
                      principal_diagnosis="J18.900", total_cost=Decimal(cost), own_pay=Decimal(own))
    return PricedStay(case_id, facts, drg, "corr", adrg=drg[:3], hospital_level=level,
                      coefficient=Decimal("0.85"), lift=lift)


def test_review_keeps_the_groups_figures_per_level_and_per_adrg_as_it_goes() -> None:
    known: dict[str, Reviewed] = {}
    shares: dict[str, Share] = {}
    cheap = [_case(f"L{i}", "FR25", "5000") for i in range(29)] + [_case("T1", "FR25", "20000", level=3)]
    review_cases(known, cheap, shares=shares)
    assert shares["350500|drg|FR25|level:2"] == Share(29, Decimal("145000"), Decimal(0))
    assert shares["350500|drg|adrg:FR2"].cases == 30 and shares["350500|drg|FR25"].cases == 30
    lifted = _case("X", "FR21", "6000", lift=LIFT)
    # 29 level-2 cases of FR25: the regional mean 8,000 × 0.85 = 6,800 stands in, 6,000 is below
    out = review_cases(known, [lifted], shares=shares)
    assert [(f.rule, f.evidence["basis"]) for f in out.announcements[0].flags] == \
        [(UPCODING_SECONDARY, "region × coefficient")]
    # a 30th level-2 case: the level's mean (5,000) decides, and 6,000 is not below it
    review_cases(known, [_case("L29", "FR25", "5000")], shares=shares)
    out = review_cases(known, [replace(lifted, facts=lifted.facts.model_copy(update={"list_version": 2}))],
                       shares=shares)
    assert out.announcements[0].flags == ()
    # a new version takes back what the previous one added, on every key
    out = review_cases(known, [_case("L0", "FR25", "7000", version=2)], shares=shares)
    assert shares["350500|drg|FR25|level:2"] == Share(30, Decimal("152000"), Decimal(0))
    assert out.share_deltas["350500|drg|FR25|level:2"] == Share(0, Decimal("2000"), Decimal(0))
