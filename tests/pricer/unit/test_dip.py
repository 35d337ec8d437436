"""DIP core (§5–§8): treatment typing, catalogue thresholds, scores, auxiliary coefficients,
deviation cases, point values, primary-care groups, clearing through the DRG settlement engine,
DRG vs DIP comparison. (A synthetic region end to end: tests/pipeline/test_dip_region.py.)"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pricer_testkit import case as drg_case
from pricer_testkit import dip_policy as policy
from pricer_testkit import make_policy

from services.pricer.domain.dip_catalogue import (
    budget_point_value,
    build_catalogue,
    catalogue_budget_point_value,
)
from services.pricer.domain.dip_pricing import (
    DipCaseType,
    DipPoints,
    DipPricingError,
    clear_dip_year,
    compare,
    parse_dip_policy,
    price_dip_case,
    price_dip_many,
    settlement_budget,
    settlement_point_value,
)
from services.pricer.domain.policy import PolicyError, Settlement
from services.pricer.domain.pricing import price_many
from shared.dip import (
    AuxiliaryRules,
    Catalogue,
    CatalogueError,
    DipCase,
    TreatmentTable,
    TreatmentType,
    assign,
    diagnosis_category,
    diagnosis_subcategory,
    load_catalogue,
)

D = Decimal


def dc(case_id: str, year: int, dx: str, cost: str, *, procs: tuple[str, ...] = (),
       hospital: str = "H3", level: int | None = 3, **kw: Any) -> DipCase:
    return DipCase(case_id=case_id, year=year, hospital_code=hospital, hospital_level=level,
                   principal_diagnosis=dx, procedures=procs, total_cost=cost,
                   los=kw.pop("los", 5), **kw)


# History for weights in 2024 (data years 2021–2023, weighted 1:2:7):
#   A  I21.0 conservative: 2021 1,000 · 2022 2,000 · 2023 3,000 (all at H3, level 3)
#   B  I21.1 + 36.0601 (PCI, chapter 36 → surgery): 2023 10,000 (H3) · 2023 12,000 (H2)
HISTORY = [
    dc("a1", 2021, "I21.000", "1000"), dc("a2", 2022, "I21.000x001", "2000"),
    dc("a3", 2023, "I21.000", "3000"),
    dc("b1", 2023, "I21.100", "10000", procs=("36.0601",)),
    dc("b2", 2023, "I21.101", "12000", procs=("36.0601",), hospital="H2", level=2),
]


def catalogue(**kw: Any) -> Catalogue:
    return build_catalogue(HISTORY, region="R1", year=2024, **{"min_cases": 3, **kw})




# --- codes and treatment types ------------------------------------------------------------------

def test_diagnosis_keys():
    assert diagnosis_subcategory("I21.000x001") == "I21.0"
    assert diagnosis_subcategory(" a17.000+G01* ") == "A17.0"
    assert diagnosis_subcategory("I210") == "I21.0"  # no dot: inserted
    assert diagnosis_subcategory("I21") == "I21"  # bare category stays
    assert diagnosis_category("I21.000x001") == "I21"


def test_treatment_typing_by_chapter_and_or_list():
    t = TreatmentTable()
    assert t.classify("88.0101") is TreatmentType.DIAGNOSTIC  # 88 diagnostic radiology
    assert t.classify("880101") is TreatmentType.DIAGNOSTIC  # read as 88.0101
    assert t.classify("92.2401") is TreatmentType.THERAPEUTIC  # 92.2 radiotherapy
    assert t.classify("92.0101") is TreatmentType.DIAGNOSTIC  # 92.0 scan
    assert t.classify("99.0401") is TreatmentType.THERAPEUTIC  # 99 other non-operative
    assert t.classify("45.1301") is TreatmentType.DIAGNOSTIC  # 45.1 diagnostic on small bowel
    assert t.classify("36.0601") is TreatmentType.SURGERY  # chapter 36, no OR list
    with_or = TreatmentTable(or_procedures=frozenset({"36.0601"}))
    assert with_or.classify("36.0601") is TreatmentType.SURGERY
    assert with_or.classify("57.9401") is TreatmentType.THERAPEUTIC  # chapter 57, not OR
    assert t.treatment_type([]) is TreatmentType.CONSERVATIVE
    assert t.treatment_type(["88.0101", "99.0401"]) is TreatmentType.THERAPEUTIC
    assert t.treatment_type(["88.0101", "36.0601"]) is TreatmentType.SURGERY


# --- catalogue: thresholds, codes, scores -------------------------------------------------------

def test_exactly_min_cases_is_core_one_fewer_is_comprehensive():
    cat = catalogue()  # min_cases 3
    # A has exactly 3 cases → core; B has 2 (one fewer) → pooled by category × type
    assert cat.groups["I21.0/conservative"].kind == "core"
    assert "I21.1/36.0601" not in cat.groups
    b = cat.groups["I21/comprehensive-surgery"]
    assert (b.kind, b.cases, b.treatment_type) == ("comprehensive", 2, TreatmentType.SURGERY)
    # with min_cases 4, A (3 cases) is one short as well
    cat4 = catalogue(min_cases=4)
    assert "I21.0/conservative" not in cat4.groups
    assert cat4.groups["I21/comprehensive-conservative"].cases == 3
    assert cat.report.groups_by_kind == {"core": 1, "comprehensive": 1, "fallback": 4}
    # 3 of the 5 in-scope cases are in core groups
    assert cat.report.core_case_share == D("0.6000")


def test_scores_weighted_one_two_seven():
    cat = catalogue()
    # M_A = (1·1000 + 2·2000 + 7·3000) / 10 = 26000 / 10 = 2600
    # M_B = 7·11000 / 7 = 11000 (cases only in 2023)
    # M   = (1·1000 + 2·2000 + 7·(3000+10000+12000)/3) / 10 = (5000 + 175000/3) / 10 = 6333.33…
    # score_A = 2600 / 6333.33… × 100 = 41.0526…; score_B = 11000 / 6333.33… × 100 = 173.6842…
    assert cat.overall_mean_cost == D("6333.33")
    a, b = cat.groups["I21.0/conservative"], cat.groups["I21/comprehensive-surgery"]
    assert (a.mean_cost, a.score) == (D("2600.00"), D("41.0526"))
    assert (b.mean_cost, b.score) == (D("11000.00"), D("173.6842"))
    # scale 1000 multiplies every score by 10
    assert catalogue(scale=1000).groups["I21.0/conservative"].score == D("410.5263")
    # last year's means by level: A only at level 3 (3,000); B 10,000 at 3 and 12,000 at 2
    assert a.level_mean_costs == {"3": D("3000.00"), "all": D("3000.00")}
    assert b.level_mean_costs == {"2": D("12000.00"), "3": D("10000.00"), "all": D("11000.00")}
    # CV of A: sd(1000, 2000, 3000) = 1000, mean 2000 → 0.5
    assert a.cv == D("0.5000")
    # fallbacks: every treatment type has one; without history the score is the scale
    assert cat.groups["*/comprehensive-conservative"].score == D("41.0526")
    assert cat.groups["*/comprehensive-diagnostic"].score == D("100.0000")


def test_exclusions_and_trimming_are_calibrations():
    cases = [*HISTORY, dc("x1", 2023, "I21.000", "900", los=2), dc("x2", 2020, "I21.000", "1"),
             dc("x3", 2023, "I21.000", "1", per_diem=True), dc("x4", 2023, "I21.000", "1", los=60)]
    cat = build_catalogue(cases, region="R1", year=2024, min_cases=3)
    assert {k: v for k, v in cat.report.exclusions.items() if v} == {
        "los_short": 1, "outside_years": 1, "per_diem": 1, "los_long": 1}
    # trimming: 4 costs 100, 100, 100, 10,000 in one group → Q1 100, Q3 2,575 (type 7: h = 2.25,
    # 100 + 0.25 × 9,900), IQR 2,475, upper fence 2,575 + 1.5 × 2,475 = 6,287.5: 10,000 trimmed
    pool = [dc(f"t{i}", 2023, "K35.800", c) for i, c in enumerate(["100", "100", "100", "10000"])]
    trimmed = build_catalogue(pool, region="R1", year=2024, min_cases=4)
    g = trimmed.groups["K35.8/conservative"]
    assert (g.cases, g.kept, g.mean_cost, trimmed.report.trimmed) == (4, 3, D("100.00"), 1)


def test_catalogue_document_round_trip():
    cat = catalogue(primary_care={"I21.0/conservative", "Z99.9/conservative"})
    doc = orjson.loads(orjson.dumps(cat.to_document()))
    assert doc["format"] == "drgdip.dip-catalogue/1" and doc["groups"]["I21.0/conservative"]["score"] == "41.0526"
    assert Catalogue.from_document(doc) == cat
    assert cat.report.primary_care_unknown == ("Z99.9/conservative",)
    assert {r["code"]: r["kind"] for r in cat.report_rows()}["I21/comprehensive-surgery"] == "comprehensive"


# --- grouping -----------------------------------------------------------------------------------

def test_assign_core_comprehensive_and_fallback_with_trace():
    cat = catalogue()
    core = assign(cat, dc("n1", 2024, "I21.000x005", "1"))
    assert (core.code, core.kind) == ("I21.0/conservative", "core") and "matched" in core.trace[0]
    pooled = assign(cat, dc("n2", 2024, "I21.100", "1", procs=("36.0601",)))
    assert (pooled.code, pooled.kind) == ("I21/comprehensive-surgery", "comprehensive")
    assert "not a core group" in pooled.trace[0] and "category I21 × surgery" in pooled.trace[1]
    # unseen category × type → the region-wide fallback of the treatment type
    fb = assign(cat, dc("n3", 2024, "J18.000", "1", procs=("88.0101",)))
    assert (fb.code, fb.kind) == ("*/comprehensive-diagnostic", "comprehensive")
    assert "fallback" in fb.trace[-1]
    # procedure order and duplicates don't matter: the combination is sorted
    assert assign(cat, dc("n4", 2024, "I21.1", "1", procs=("36.0601", "36.0601"))).code == pooled.code


# --- auxiliary coefficients ---------------------------------------------------------------------

def test_charlson_index_and_grades():
    rules = AuxiliaryRules()
    # heart failure 1 + diabetes with complications 2 (E11.2 beats E11.9's 1)
    # + metastatic 6 (C78 beats the lung primary's 2); K29 gastritis 0 → CCI 9 → grade 3 (≥ 5)
    dx = ["I50.900", "E11.200", "E11.900", "C78.000", "C34.900", "K29.500"]
    assert rules.charlson_index(dx) == 9 and rules.severity_grade(dx) == "3"
    assert rules.severity_grade(["I10.x00"]) == "0"
    assert rules.severity_grade(["J44.100", "I63.900"]) == "1"  # 1 + 1 = 2
    assert rules.severity_grade(["N18.500", "I21.000"]) == "2"  # 2 + 1 = 3
    assert [rules.age_band(a) for a in (0, 13, 14, 64, 65, None)] == [
        "child", "child", "adult", "adult", "elderly", "unknown"]


def test_age_coefficient_applied_only_when_the_split_lowers_variance():
    rules = AuxiliaryRules(min_subtype_cases=3)
    # J18.0, 2023 only: elderly (70) 2,000 × 3, adults (40) 1,000 × 3
    # fences: Q1 1,000, Q3 2,000 → [500, 3,500], all kept; M_g = 1,500; M = 1,500 → score 100
    # elderly 2,000 / 1,500 = 1.3333, adults 1,000 / 1,500 = 0.6667
    # SST = 6 × 500² = 1,500,000, SSW = 0 → reduction 1 ≥ 0.10: applied
    split = [dc(f"e{i}", 2023, "J18.000", "2000", age=70) for i in range(3)] + \
            [dc(f"y{i}", 2023, "J18.000", "1000", age=40) for i in range(3)]
    cat = build_catalogue(split, region="R1", year=2024, min_cases=3, auxiliary=rules)
    g = cat.groups["J18.0/conservative"]
    age = next(a for a in g.auxiliary if a.dimension == "age")
    sev = next(a for a in g.auxiliary if a.dimension == "severity")
    assert (g.score, age.applied, age.variance_reduction) == (D("100.0000"), True, D("1.0000"))
    assert age.coefficients == {"adult": D("0.6667"), "elderly": D("1.3333")}
    assert not sev.applied  # everyone grade 0: nothing to split
    # priced: base score = 100 × 1.3333 = 133.33 for an elderly patient; mean 1,500 → normal
    p = price_dip_case(cat, policy(), dc("q", 2024, "J18.000", "1500", age=80))
    assert (p.auxiliary, p.base_score, p.case_score) == (D("1.3333"), D("133.3300"), D("133.3300"))
    # same costs in both bands: reduction 0 < 0.10 → not applied, coefficient 1
    flat = [dc(f"f{i}", 2023, "J18.000", c, age=a)
            for i, (c, a) in enumerate([("1000", 70), ("2000", 70), ("1500", 70),
                                        ("1000", 40), ("2000", 40), ("1500", 40)])]
    cat2 = build_catalogue(flat, region="R1", year=2024, min_cases=3, auxiliary=rules)
    age2 = next(a for a in cat2.groups["J18.0/conservative"].auxiliary if a.dimension == "age")
    assert (age2.applied, age2.variance_reduction, age2.coefficients) == (False, D("0.0000"), {})


# --- pricing: deviation cases, coefficients, primary care ---------------------------------------

@pytest.mark.parametrize(("cost", "case_type", "score", "payment", "review"), [
    # group A, level-3 mean last year 3,000; score 41.0526; point value 50; H3 coefficient 1
    ("3000", DipCaseType.NORMAL, "41.0526", "2052.63", False),  # 41.0526 × 50 = 2,052.63
    ("1500", DipCaseType.NORMAL, "41.0526", "2052.63", False),  # ratio 0.5 is not < 0.5
    ("1200", DipCaseType.VERY_LOW, "16.4210", "821.05", False),  # 41.0526 × 0.4 = 16.42104
    ("6000", DipCaseType.NORMAL, "41.0526", "2052.63", False),  # ratio 2 is not > 2
    ("7500", DipCaseType.VERY_HIGH, "61.5789", "3078.95", False),  # × (2.5 − 2 + 1) = 61.5789
    ("15000", DipCaseType.VERY_HIGH, "164.2104", "8210.52", False),  # ratio 5: × 4, no review
    ("16500", DipCaseType.VERY_HIGH, "184.7367", "9236.84", True),  # ratio 5.5 > 5: × 4.5, review
])
def test_deviation_cases(cost, case_type, score, payment, review):
    p = price_dip_case(catalogue(), policy(), dc("c", 2024, "I21.000", cost))
    assert (p.case_type, p.case_score, p.payment, p.special_review) == (
        case_type, D(score), D(payment), review)
    assert p.mean_cost == D("3000.00") and p.mean_basis == "level 3, last year"


def test_hospital_coefficient_and_same_level_mean():
    cat = catalogue()
    # H2 (level 2, coefficient 0.85), group A: no level-2 case last year → all-levels mean 3,000
    p = price_dip_case(cat, policy(), dc("c", 2024, "I21.000", "3000", hospital="H2", level=None))
    # points = 41.0526 × 0.85 = 34.89471 → 34.8947; payment = 41.0526 × 50 × 0.85 = 1,744.7355
    assert (p.coefficient, p.points, p.payment) == (D("0.85"), D("34.8947"), D("1744.74"))
    assert p.mean_basis == "all levels, last year"
    # group B at level 2 uses the level-2 mean 12,000: cost 24,500 → ratio 2.0417 > 2 → very high
    q = price_dip_case(cat, policy(), dc("d", 2024, "I21.1", "24500", procs=("36.0601",),
                                         hospital="H2", level=2))
    assert (q.case_type, q.mean_cost) == (DipCaseType.VERY_HIGH, D("12000.00"))
    # unknown level: no coefficient, not priced
    u = price_dip_case(cat, policy(), dc("u", 2024, "I21.000", "3000", hospital="H9", level=None))
    assert (u.case_type, u.payment, u.priced) == (DipCaseType.NO_COEFFICIENT, None, False)
    # LOS ≥ 60: out of scope, paid by item and sent to special review
    o = price_dip_case(cat, policy(), dc("o", 2024, "I21.000", "99000", los=61))
    assert (o.case_type, o.payment, o.special_review) == (DipCaseType.OUT_OF_SCOPE, D("99000"), True)


def test_primary_care_group_paid_alike_at_every_level():
    cat = catalogue(primary_care={"I21.0/conservative"})
    assert cat.groups["I21.0/conservative"].primary_care and cat.report.primary_care_groups == 1
    prices = [price_dip_case(cat, policy(), dc(h, 2024, "I21.000", "3000", hospital=h, level=None))
              for h in ("H3", "H2", "H1")]
    # coefficient 1 at every level: 41.0526 × 50 × 1 = 2,052.63 everywhere
    assert {(p.coefficient, p.payment) for p in prices} == {(D("1"), D("2052.63"))}


# --- point values and clearing ------------------------------------------------------------------

def test_point_values():
    # budget: (1·100,000 + 2·120,000 + 7·150,000) / (1·1,000 + 2·1,100 + 7·1,200)
    #       = 1,390,000 / 11,600 = 119.8275862… → 119.827586
    assert budget_point_value({2021: D(100000), 2022: D(120000), 2023: D(150000)},
                              {2021: D(1000), 2022: D(1100), 2023: D(1200)},
                              {2021: 1, 2022: 2, 2023: 7}) == D("119.827586")
    # settlement: (900,000 / 0.75) / 10,000 = 120
    assert settlement_point_value(D(900000), D("0.75"), D(10000)) == D("120.000000")
    assert settlement_budget(D("900.00"), D("0.75")) == D("1200.00")
    # the catalogue's own history: costs 2021 1,000 · 2022 2,000 · 2023 25,000; base scores
    # 41.0526 · 41.0526 · (41.0526 + 2 × 173.6842) = 388.4210
    # (1,000 + 4,000 + 175,000) / (41.0526 + 82.1052 + 2,718.947) = 180,000 / 2,842.1048
    #   = 63.3333436… → 63.333344 (≈ M / 100 = 63.3333: the scores are M_g / M × 100)
    assert catalogue_budget_point_value(catalogue(), HISTORY) == D("63.333344")


def test_dip_errors_are_invalid_with_stable_codes():
    # callers (the DIP commands, the pricer's routes) get `shared.errors.Invalid` (422)
    with pytest.raises(CatalogueError, match="no cases left") as e:
        build_catalogue([dc("x", 2030, "I21.000", "1")], region="R1", year=2024)
    assert (e.value.code, e.value.status) == ("NO_CASES_IN_SCOPE", 422)
    with pytest.raises(CatalogueError) as e:
        load_catalogue(b'{"format": "drgdip.dip-catalogue/1"}')
    assert e.value.code == "INVALID_CATALOGUE" and e.value.details
    assert load_catalogue(orjson.dumps(catalogue().to_document())) == catalogue()
    with pytest.raises(PolicyError) as p:
        parse_dip_policy(policy().model_dump_json().replace('"version":1', '"version":0'))
    assert (p.value.code, p.value.field) == ("INVALID_POLICY", "version")
    with pytest.raises(DipPricingError) as q:
        price_dip_case(catalogue(), policy(points=DipPoints()), dc("n", 2024, "I21.000", "1"))
    assert q.value.code == "NO_POINT_VALUE"
    with pytest.raises(DipPricingError):
        settlement_point_value(D(1), D(1), D(0))

def test_clearing_spends_the_budget_through_the_drg_engine():
    cat = catalogue()
    pol = policy(settlement=Settlement(reserve_share=D("0")))
    prices = [price_dip_case(cat, pol, dc("1", 2024, "I21.000", "3000")),  # H3: 41.0526 points
              # H2 group B, level-2 mean 12,000, ratio 0.92: 173.6842 × 0.85 = 147.6316 points
              price_dip_case(cat, pol, dc("2", 2024, "I21.1", "11000", procs=("36.0601",),
                                          hospital="H2", level=2))]
    assert prices[1].points == D("147.6316") and prices[1].payment == D("7381.58")
    budget = settlement_budget(D("900.00"), D("0.75"))  # 1,200.00
    c = clear_dip_year(pol, cat, "2024", prices, budget)
    # Σ points 188.6842; point value 1,200 / 188.6842 = 6.3598329… → 6.359833
    assert c.point_value == D("6.359833") == settlement_point_value(D("900"), D("0.75"), D("188.6842"))
    # exact fen shares 26,108.768 (H3) and 93,891.232 (H2): floors leave 1 fen → H3 (0.768)
    h2, h3 = c.hospitals
    assert (h3.drg_amount, h2.drg_amount) == (D("261.09"), D("938.91"))
    assert c.total_drg_amount == budget


def test_compare_drg_and_dip_for_the_same_cases():
    cat = catalogue()
    drg = price_many(make_policy(), [drg_case(case_id="c1"), drg_case(case_id="c2", drg="ZZ19"),
                                     drg_case(case_id="c3")])
    dip = price_dip_many(cat, policy(), [dc("c1", 2024, "I21.000", "3000"),
                                         dc("c2", 2024, "I21.000", "12000"),
                                         dc("c4", 2024, "I21.000", "3000")])
    cmp = compare(drg, dip)
    # c1: DRG AB13 10,000 × 1.5 = 15,000.00 vs DIP 2,052.63; c2: DRG no weight → by item 12,000
    # vs DIP ratio 4 → 41.0526 × 3 = 123.1578 × 50 = 6,157.89
    assert (cmp.total.cases, cmp.total.drg_payment, cmp.total.dip_payment) == (
        2, D("27000.00"), D("8210.52"))
    assert cmp.total.difference == D("-18789.48") and cmp.total.drg_unpriced == 1
    assert [r.key for r in cmp.by_drg] == ["AB13", "ZZ19"]
    assert [(r.key, r.cases) for r in cmp.by_dip_group] == [("I21.0/conservative", 2)]
    assert (cmp.only_drg, cmp.only_dip) == (("c3",), ("c4",))
    assert cmp.to_dict()["hospitals"][0]["difference"] == "-18789.48"


# --- property: DIP clearing spends the budget exactly -------------------------------------------

_PROPERTY_CATALOGUE = catalogue()
_dip_cases = st.lists(
    st.tuples(
        st.sampled_from(["H1", "H2", "H3", "H4"]),  # H4: no level → unpriced
        st.sampled_from(["I21.000", "I21.100", "J18.000", "K35.800", ""]),
        st.sets(st.sampled_from(["36.0601", "88.0101", "99.0401"]), max_size=2),
        st.integers(min_value=0, max_value=20_000_000),  # cost in fen
        st.integers(min_value=0, max_value=90),  # LOS
    ),
    min_size=1, max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(cases=_dip_cases, budget_fen=st.integers(min_value=0, max_value=10**12),
       reserve=st.sampled_from(["0", "0.05", "0.1"]))
def test_dip_clearing_spends_the_budget_exactly(cases, budget_fen, reserve):
    pol = policy(settlement=Settlement(reserve_share=D(reserve)))
    prices = price_dip_many(_PROPERTY_CATALOGUE, pol, [
        dc(str(i), 2024, dx, str(D(cost) / 100), procs=tuple(sorted(procs)), hospital=h,
           level=None, los=los)
        for i, (h, dx, procs, cost, los) in enumerate(cases)])
    assume(sum((p.points for p in prices), D(0)) > 0)
    budget = D(budget_fen) / 100
    c = clear_dip_year(pol, _PROPERTY_CATALOGUE, "2024", prices, budget)
    assert c.total_drg_amount + c.reserve == budget
    if reserve == "0":
        assert c.total_drg_amount == budget
    assert all(h.drg_amount >= 0 and h.cleared >= 0 for h in c.hospitals)
