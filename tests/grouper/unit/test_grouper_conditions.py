"""Each rule condition, the combinators, the evaluation options and the MDC/ADRG/DRG
algorithm on tiny synthetic schemes."""

from __future__ import annotations

import pytest
from grouper_testkit import case, minimal_scheme_data, rule_scheme_data, write_scheme

from services.grouper.domain import CONDITIONS, GroupStatus, condition, load_scheme
from services.grouper.domain.rules import LIST


def matches(tmp_path, rule, cases, lists=None, evaluation=None) -> list[bool]:
    """Load a one-ADRG scheme with `rule` and report, per case, whether it grouped."""
    scheme = load_scheme(write_scheme(tmp_path / "s", rule_scheme_data(rule, lists, evaluation)))
    out = []
    for c in cases:
        r = scheme.group(c)
        assert r.status in (GroupStatus.SUCCESS, GroupStatus.FAIL), r
        traced = scheme.group(c, trace=True)
        assert traced == r
        out.append(r.drg == "X119")
    return out


def test_true_and_empty_all(tmp_path):
    assert matches(tmp_path, True, [case()]) == [True]
    assert matches(tmp_path, {"all": []}, [case()]) == [True]


def test_pdx_in(tmp_path):
    rule = {"pdx_in": "L"}
    cases = [case(diagnoses=["D1", "D2"]), case(diagnoses=["D2", "D1"]), case(diagnoses=[" D1"])]
    assert matches(tmp_path, rule, cases, {"L": ["D1"]}) == [True, False, False]


def test_any_dx_in(tmp_path):
    cases = [case(diagnoses=["D2", "D1"]), case(diagnoses=["D1"]), case(diagnoses=["D2"])]
    assert matches(tmp_path, {"any_dx_in": "L"}, cases, {"L": ["D1"]}) == [True, True, False]


def test_any_sec_dx_in_ignores_principal_but_counts_its_repeat(tmp_path):
    cases = [
        case(diagnoses=["D1"]),  # only the principal is in L
        case(diagnoses=["D2", "D1"]),  # a secondary is in L
        case(diagnoses=["D1", "D1"]),  # the principal repeated as a secondary
        case(diagnoses=["D1", "D2"]),
    ]
    assert matches(tmp_path, {"any_sec_dx_in": "L"}, cases, {"L": ["D1"]}) == [
        False,
        True,
        True,
        False,
    ]


def test_main_px_in(tmp_path):
    cases = [case(procedures=["P1", "P2"]), case(procedures=["P2", "P1"]), case(procedures=[])]
    assert matches(tmp_path, {"main_px_in": "L"}, cases, {"L": ["P1"]}) == [True, False, False]


def test_any_px_in(tmp_path):
    cases = [case(procedures=["P2", "P1"]), case(procedures=["P2"]), case(procedures=[])]
    assert matches(tmp_path, {"any_px_in": "L"}, cases, {"L": ["P1"]}) == [True, False, False]


def test_any_dx_prefix_is_a_plain_prefix(tmp_path):
    cases = [
        case(diagnoses=["D1", "Z37.000"]),
        case(diagnoses=["Z37."]),  # not a dictionary code, still matches
        case(diagnoses=["D1", "z37.000"]),  # case-sensitive
        case(diagnoses=["D1", " Z37.000"]),  # no trimming
    ]
    assert matches(tmp_path, {"any_dx_prefix": "Z37."}, cases) == [True, True, False, False]


def test_sex_eq_and_age_years_eq(tmp_path):
    cases = [case(sex=2, age=0, age_days=100), case(sex=1, age=0, age_days=100), case(sex=2, age=3)]
    rule = {"all": [{"sex_eq": 2}, {"age_years_eq": 0}]}
    assert matches(tmp_path, rule, cases) == [True, False, False]


def test_age_days_le(tmp_path):
    cases = [
        case(age=0, age_days=28, birth_weight=3000),
        case(age=0, age_days=29),
        case(age=5, age_days=None),
    ]
    assert matches(tmp_path, {"age_days_le": 28}, cases) == [True, False, False]


def test_birth_weight_bands_exclude_null_and_zero(tmp_path):
    nb = {"age": 0, "age_days": 3}
    cases = [
        case(**nb, birth_weight=1499),
        case(**nb, birth_weight=1500),
        case(**nb, birth_weight=0),  # 0 means "not recorded": no band
        case(age=0, age_days=40, birth_weight=None),
        case(**nb, birth_weight=-5),
    ]
    assert matches(tmp_path, {"birth_weight_lt": 1500}, cases) == [True, False, False, False, True]
    assert matches(tmp_path, {"birth_weight_ge": 1500}, cases) == [False, True, False, False, False]
    # Quanzhou writes Java's weight>0 guard as birth_weight_ge 1, which drops negatives.
    band = {"all": [{"birth_weight_ge": 1}, {"birth_weight_lt": 1500}]}
    assert matches(tmp_path, band, cases) == [True, False, False, False, False]


def test_dx_regions_ge_counts_distinct_regions(tmp_path):
    lists = {"R1": ["D1", "D2"], "R2": ["D3"], "R3": ["M1"]}
    rule = {"dx_regions_ge": {"min": 2, "regions": ["R1", "R2", "R3"]}}
    cases = [
        case(diagnoses=["D1", "D3"]),
        case(diagnoses=["D1", "D2"]),  # two codes, one region
        case(diagnoses=["D3", "M1", "D2"]),
        case(diagnoses=["C1", "D1"]),
    ]
    assert matches(tmp_path, rule, cases, lists) == [True, False, True, False]


def test_not_any_all(tmp_path):
    lists = {"L": ["P1"], "K": ["D1"]}
    rule = {"any": [{"not": {"any_px_in": "L"}}, {"all": [{"pdx_in": "K"}, {"sex_eq": 2}]}]}
    cases = [
        case(procedures=[]),
        case(procedures=["P1"], sex=1),
        case(procedures=["P1"], sex=2),
        case(procedures=["P1"], sex=2, diagnoses=["D2"]),
    ]
    assert matches(tmp_path, rule, cases, lists) == [True, False, True, False]


# ----------------------------------------------------------------- CC / MCC with exclusion


@pytest.fixture
def mini(tmp_path):
    return load_scheme(write_scheme(tmp_path / "mini"))


@pytest.mark.parametrize(
    ("diagnoses", "drg"),
    [
        (["D1"], "A115"),  # no secondaries
        (["D1", "M2"], "A111"),  # MCC of another table counts
        (["D1", "M1"], "A115"),  # MCC of the principal's table t1 is excluded
        (["D1", "C1"], "A115"),  # CC of t1 excluded as well
        (["D2", "M1"], "A111"),  # D2 has no exclusion table: everything counts
        (["D2", "C1"], "A113"),  # a CC gives the "with CC" DRG
        (["D1", "C1", "M1", "M2"], "A111"),
        (["M1", "M1"], "FAIL"),  # M1 is not an MDCA principal
        (["D2", "D2"], "A115"),
    ],
)
def test_cc_mcc_split_with_exclusion(mini, diagnoses, drg):
    r = mini.group(case(diagnoses=diagnoses, procedures=["P1"]))
    assert (r.drg if r.status is GroupStatus.SUCCESS else r.status.value) == drg


# ----------------------------------------------------------------- algorithm


def test_mdc_fall_through_to_next_mdc(tmp_path):
    data = minimal_scheme_data()
    # D3 enters both MDCs; MDCA's ADRGs do not cover it, so MDCB takes it.
    data["lists"]["MA.dx"].append("D3")
    scheme = load_scheme(write_scheme(tmp_path / "s", data))
    r = scheme.group(case(diagnoses=["D3"]), trace=True)
    assert (r.mdc, r.adrg, r.drg) == ("MDCB", "B11", "B119")
    assert [(s.mdc, s.outcome) for s in r.trace.mdcs] == [
        ("MDCA", "fell_through"),
        ("MDCB", "chosen"),
    ]
    assert any("转入下一个 MDC" in line for line in r.trace.render())


def test_no_mdc_gives_fail_codes(mini):
    r = mini.group(case(diagnoses=["ZZZ"]))
    assert r.to_dict() == {"mdc": "0000", "adrg": "00", "drg": "0000", "status": "FAIL"}


def test_adrg_is_result_when_no_drg_rule_holds(tmp_path):
    data = minimal_scheme_data()
    data["drg"]["drgs"][2]["rule"] = {"has_cc": True}  # A115 no longer unconditional
    scheme = load_scheme(write_scheme(tmp_path / "s", data))
    r = scheme.group(case(diagnoses=["D1"], procedures=["P1"]))
    assert (r.adrg, r.drg, r.status) == ("A11", "A11", GroupStatus.SUCCESS)
    assert scheme.group(case(diagnoses=["D1"], procedures=["P1"]), trace=True).trace.drg_is_adrg


@pytest.mark.parametrize(("position", "expected"), [(0, "AQY"), (1, "A115"), (2, "A115")])
def test_enabled_ambiguous_step(tmp_path, position, expected):
    data = minimal_scheme_data()
    data["mdc"]["mdcs"][0]["ambiguous"].update(enabled=True, position=position)
    scheme = load_scheme(write_scheme(tmp_path / "s", data))
    r = scheme.group(case(diagnoses=["D1"], procedures=["P1"]))
    assert r.drg == expected
    if expected == "AQY":
        assert r.to_dict() == {"mdc": "MDCA", "adrg": "QY", "drg": "AQY", "status": "QY"}
        assert scheme.group(case(diagnoses=["D1"], procedures=["P1"]), trace=True) == r
    # D2 with OR procedure P2: A21 matches it unless the QY step comes before A21.
    r2 = scheme.group(case(diagnoses=["D2"], procedures=["P2"]))
    assert r2.drg == ("AQY" if position <= 1 else "A219")
    # D1 with P2 matches no ADRG, so the QY step wins wherever it is.
    assert scheme.group(case(diagnoses=["D1"], procedures=["P2"])).drg == "AQY"


# ----------------------------------------------------------------- validation and modes


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"sex": 3}, "CHECK_FAILED"),
        ({"sex": None}, "CHECK_FAILED"),
        ({"age": None}, "CHECK_FAILED"),
        ({"age": 0, "age_days": None}, "CHECK_FAILED"),
        ({"age": 0, "age_days": 28, "birth_weight": None}, "CHECK_FAILED"),
        ({"age": 0, "age_days": 28, "birth_weight": 0}, "SUCCESS"),
        ({"age": 0, "age_days": 29, "birth_weight": None}, "SUCCESS"),
        ({"diagnoses": []}, "CHECK_FAILED"),
        ({"diagnoses": None}, "CHECK_FAILED"),
        ({"procedures": None}, "SUCCESS"),
    ],
)
def test_default_validation(mini, fields, status):
    # D2 groups to A219 whenever the case passes validation.
    assert mini.group(case(**{"diagnoses": ["D2"], **fields})).status.value == status


@pytest.mark.parametrize(
    "fields",
    [
        {"sex": "1"},
        {"sex": "abc"},
        {"sex": True},
        {"age": 4.0},
        {"age_days": "3"},
        {"birth_weight": [1]},
        {"diagnoses": "D1"},
        {"diagnoses": ["D1", 5]},
        {"procedures": {"P1": 1}},
        {"procedures": [None]},
    ],
)
def test_wrongly_typed_input_is_check_failed(mini, fields):
    for mode in ("raw", "mapped"):
        r = mini.group(case(**fields), code_mode=mode, trace=True)
        assert r.status is GroupStatus.CHECK_FAILED
        assert r.trace.input_problem


@pytest.mark.parametrize("bad", [None, 42, "case", ["D1"]])
def test_non_mapping_case(mini, bad):
    assert mini.group(bad).status is GroupStatus.CHECK_FAILED


def test_evaluation_validation_list_and_missing_numbers_zero(tmp_path):
    evaluation = {"validation": ["sex_present", "diagnoses_present"], "missing_numbers": "zero"}
    rule = {"all": [{"age_years_eq": 0}, {"age_days_le": 28}]}
    cases = [
        case(sex=9, age=None, age_days=None),  # sex 9 passes sex_present; nulls become 0
        case(sex=None),
    ]
    scheme = load_scheme(write_scheme(tmp_path / "s", rule_scheme_data(rule, None, evaluation)))
    assert scheme.group(cases[0]).drg == "X119"
    assert scheme.group(cases[1]).status is GroupStatus.CHECK_FAILED
    # birth_weight null → 0, which satisfies no weight band.
    s2 = load_scheme(
        write_scheme(tmp_path / "s2", rule_scheme_data({"birth_weight_lt": 9999}, None, evaluation))
    )
    assert s2.group(case(age=0, age_days=1, birth_weight=None)).status is GroupStatus.FAIL


def test_default_missing_numbers_keeps_null(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path / "s", rule_scheme_data({"age_days_le": 28})))
    assert scheme.group(case(age=40, age_days=None)).status is GroupStatus.FAIL


def test_mapped_mode_translates_one_step(mini):
    # X1 -> D2 (an MDCA principal); X2 -> X1 is not repeated, X1 is no MDC principal.
    assert mini.group(case(diagnoses=["X1"]), code_mode="mapped").drg == "A219"
    assert mini.group(case(diagnoses=["X2"]), code_mode="mapped").status is GroupStatus.FAIL
    # Raw mode uses codes as given.
    assert mini.group(case(diagnoses=["X1"])).status is GroupStatus.FAIL
    assert mini.group(case(diagnoses=["D1"], procedures=["Q1"]), code_mode="mapped").drg == "A115"


def test_mapped_mode_checks_all_diagnoses_before_procedures(mini):
    c = case(diagnoses=["D1", "NOPE"], procedures=["NOPE"])
    assert mini.group(c, code_mode="mapped").status is GroupStatus.ZD_NOT_MAPPING
    c = case(diagnoses=["D1"], procedures=["P1", "NOPE"])
    r = mini.group(c, code_mode="mapped", trace=True)
    assert r.status is GroupStatus.SS_NOT_MAPPING
    assert r.trace.translations[-1].source == "NOPE" and r.trace.translations[-1].target is None
    # Translation runs before validation: a bad sex with an unmapped code is not mapped.
    c = case(sex=7, diagnoses=["NOPE"])
    assert mini.group(c, code_mode="mapped").status is GroupStatus.ZD_NOT_MAPPING


@pytest.mark.parametrize(("option", "expected"), [("drop", "A219"), ("keep", "FAIL")])
def test_mapped_empty_codes(tmp_path, option, expected):
    data = minimal_scheme_data()
    data["diagnosis_map"].append(("E1", ""))
    data["mdc"]["evaluation"] = {"mapped_empty_codes": option}
    scheme = load_scheme(write_scheme(tmp_path / "s", data))
    # E1 is the principal; dropped, D2 becomes the principal; kept, "" stays principal.
    r = scheme.group(case(diagnoses=["E1", "D2"]), code_mode="mapped")
    assert (r.drg if r.status is GroupStatus.SUCCESS else r.status.value) == expected
    only_empty = scheme.group(case(diagnoses=["E1"]), code_mode="mapped").status
    assert only_empty is (GroupStatus.CHECK_FAILED if option == "drop" else GroupStatus.FAIL)


# ----------------------------------------------------------------- extensibility


def test_new_condition_is_one_function_and_a_registration(tmp_path):
    @condition("pdx_not_in", LIST, evidence=lambda codes, c: (c.pdx,))
    def _pdx_not_in(codes, env):
        return lambda c: c.pdx not in codes

    try:
        cases = [case(diagnoses=["D1"]), case(diagnoses=["D2"])]
        assert matches(tmp_path, {"pdx_not_in": "L"}, cases, {"L": ["D1"]}) == [False, True]
    finally:
        del CONDITIONS["pdx_not_in"]


def test_condition_names_cannot_be_registered_twice():
    with pytest.raises(ValueError):
        condition("pdx_in", LIST)(lambda codes, env: None)
