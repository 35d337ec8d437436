"""National settlement-list messages: the shared examples parse, tolerant reading, strict
where it matters, one exception type for any JSON input, money never float."""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import SHARED

from services.ingest.domain.national import (
    CaseFields,
    HsaEnvelope,
    ListRejected,
    Problem,
    SettlementList,
    StatusChangeInput,
    case_fields,
    failure_reply,
    parse_message,
    parse_native,
    parse_settlement_list,
    success_reply,
    to_money,
)

HSA = SHARED / "testdata" / "hsa"


def example(name: str) -> dict[str, Any]:
    return json.loads((HSA / f"{name}.json").read_text(encoding="utf-8"))


# name → (principal diagnosis, procedures main first), read off the example messages
EXPECTED = {
    "4101-01": ("I72.302", ("38.0900x003", "54.1101", "83.6501", "57.9900x001")),
    "4101-03": ("C01.x01", ("20.4900x008",)),
    "4101-05": ("Q53.000", ("64.5x00",)),
    "4101A-02": ("I49.800x010", ("37.9600x001",)),
    "4101A-04": ("I50.900x016", ("77.6900x032", "16.6100", "39.7900x077", "39.5900x009",
                                 "80.5100x028")),
    "4101A-06": ("R44.300", ("86.8304", "48.7604")),
}


def rejected(fn: Any, *args: Any) -> list[Problem]:
    with pytest.raises(ListRejected) as info:
        fn(*args)
    return info.value.problems


def fields_of(problems: list[Problem]) -> dict[str, str]:
    return {p.field: p.code for p in problems}


# ----------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_lists_parse_with_their_diagnoses_and_procedures(name: str) -> None:
    doc = example(name)
    msg = parse_message(doc["infno"], doc)
    assert isinstance(msg.input, SettlementList)
    cf = case_fields(msg.input, header=msg)
    principal, procedures = EXPECTED[name]
    assert cf.diagnoses[0] == principal
    assert len(cf.diagnoses) == len(doc["input"]["diseinfo"])
    assert cf.procedures == procedures
    assert cf.hospital_code == doc["fixmedins_code"]
    assert cf.setl_id == doc["input"]["setlinfo"]["setl_id"]
    assert cf.region == "230100"
    # the same input node parses on its own too
    assert parse_settlement_list(doc["input"]) == msg.input


def test_4101_example_case_fields() -> None:
    cf = case_fields(parse_settlement_list(example("4101-01")["input"]))
    assert cf.sex == 2 and cf.age == 60 and cf.age_days is None and cf.birth_weight is None
    assert cf.dept == "A03" and cf.los == 6 and cf.leaving_type == 9
    assert (cf.admission_date, cf.discharge_date) == (date(2025, 11, 9), date(2025, 11, 15))
    assert cf.total_cost == Decimal("13927.62")
    assert cf.patient_share == Decimal("2785.52") + Decimal("1392.77")
    assert sum(cf.fees.values()) == cf.total_cost and len(cf.fees) == 14
    assert cf.fees["06"] == Decimal("2977.87")
    assert cf.insurance_type == "390"
    assert cf.planned_readmission is False  # "1" = 无 in the national code table


def test_4101a_has_no_money() -> None:
    cf = case_fields(parse_settlement_list(example("4101A-02")["input"]))
    assert cf.total_cost is None and cf.fees == {} and cf.patient_share is None


def test_4102_status_change_parses() -> None:
    doc = example("4102-01")
    msg = parse_message("4102", doc)
    assert isinstance(msg.input, StatusChangeInput)
    [change] = msg.input.data.stastinfo
    assert (change.psn_no, change.setl_id, change.stas_type) == (
        "P752162086440549", "S835052410345024", "0")


def test_4102_rejects_unknown_status_and_empty_list() -> None:
    doc = example("4102-01")
    doc["input"]["data"]["stastinfo"][0]["stas_type"] = "7"
    assert fields_of(rejected(parse_message, "4102", doc)) == {
        "data.stastinfo[0].stas_type": "NAT-STATUS"}
    doc["input"]["data"]["stastinfo"] = []
    assert fields_of(rejected(parse_message, "4102", doc)) == {"data.stastinfo": "NAT-REQUIRED"}


# ----------------------------------------------------------------------------- native form


def native_of_4101_01() -> dict[str, Any]:
    """The flat form (the CSV import layout) of example 4101-01, written by hand."""
    items = example("4101-01")["input"]["iteminfo"]
    return {
        "hospital_code": "H23010000001", "setl_id": "S835052410345024",
        "psn_no": "P752162086440549", "region": "230100", "sex": 2, "age": 60,
        "dept": "A03", "los": 6, "leaving_type": 9,
        "admission_date": "2025-11-09", "discharge_date": "2025-11-15",
        "diagnoses": ["I72.302"],
        "procedures": ["38.0900x003", "54.1101", "83.6501", "57.9900x001"],
        "total_cost": "13927.62", "insurance_type": "390",
        "fees": {i["med_chrgitm"]: i["amt"] for i in items},
        "patient_share": "2785.52", "own_pay": "1392.77", "planned_readmission": False,
    }


def test_native_and_national_forms_give_identical_case_fields() -> None:
    native = native_of_4101_01()
    doc = example("4101-01")
    msg = parse_message("4101", doc)
    assert isinstance(msg.input, SettlementList)
    from_national = case_fields(msg.input, header=msg)
    from_native = case_fields(parse_native(native))
    assert from_native == from_national


def test_native_problems_use_native_names() -> None:
    native = native_of_4101_01()
    native.update(setl_id="", total_cost="1.234", admission_date="someday")
    native["diagnoses"] = ["I72.302", 7.5, ""]
    native["fees"]["03"] = "-1"
    assert fields_of(rejected(parse_native, native)) == {
        "setl_id": "NAT-REQUIRED", "total_cost": "NAT-MONEY", "admission_date": "NAT-DATE",
        "diagnoses[2]": "NAT-REQUIRED", "fees.03": "NAT-MONEY"}
    # a float code is not an error in itself (codes may arrive as numbers)


# ----------------------------------------------------------------------------- tolerance


def test_tolerant_reading_numbers_blanks_extensions() -> None:
    doc = example("4101-01")
    s = doc["input"]["setlinfo"]
    s.update(age=60, act_ipt_days=6.0, medfee_sumamt=13927.62, psn_selfpay="2785.520",
             gend=2, certno="  ", brdy="", acct_pay=None, jl_ext_flag={"a": [1, 2]})
    doc["input"]["icuinfo"] = ""
    doc["input"]["payinfo"] = {"fund_pay_type": "310100", "fund_payamt": 9749.33}
    doc["input"]["xj_extra_node"] = [{"k": "v"}]
    doc["zj_header_ext"] = "x"
    msg = parse_message("4101", doc)
    assert isinstance(msg.input, SettlementList)
    setl = msg.input.setlinfo
    assert setl.age == 60 and setl.act_ipt_days == 6 and setl.gend == "2"
    assert setl.medfee_sumamt == Decimal("13927.62") and isinstance(setl.medfee_sumamt, Decimal)
    assert setl.psn_selfpay == Decimal("2785.52")
    assert setl.certno is None and setl.brdy is None and setl.acct_pay is None
    assert setl.model_extra == {"jl_ext_flag": {"a": [1, 2]}}
    assert msg.input.model_extra == {"xj_extra_node": [{"k": "v"}]}
    assert msg.model_extra == {"zj_header_ext": "x"}
    assert msg.input.icuinfo == []
    assert msg.input.payinfo[0].fund_payamt == "9749.33"  # read as money, kept as its text


def test_hospital_code_taken_from_envelope_when_blank_and_must_agree() -> None:
    doc = example("4101-03")
    doc["input"]["setlinfo"]["fixmedins_code"] = ""
    msg = parse_message("4101", doc)
    assert isinstance(msg.input, SettlementList)
    assert msg.input.setlinfo.fixmedins_code == "H23010000003"
    doc["input"]["setlinfo"]["fixmedins_code"] = "H99999999999"
    assert fields_of(rejected(parse_message, "4101", doc)) == {
        "setlinfo.fixmedins_code": "NAT-HOSPITAL-MISMATCH"}


def test_interface_number_checked() -> None:
    doc = example("4101-01")
    assert fields_of(rejected(parse_message, "4101A", doc)) == {"infno": "NAT-INFNO"}
    assert fields_of(rejected(parse_message, "9999", doc)) == {"infno": "NAT-INFNO"}
    assert fields_of(rejected(parse_message, "4101", [doc])) == {"message": "NAT-NOT-OBJECT"}


def test_strict_fields_all_reported_with_paths() -> None:
    doc = example("4101-01")["input"]
    s = doc["setlinfo"]
    del s["psn_no"]
    s.update(setl_id="  ", adm_time="2025-11-31 14:00:00", medfee_sumamt="100.005",
             age="sixty", nwb_bir_wt="-5")
    doc["diseinfo"].append({"diag_code": "", "maindiag_flag": "0"})
    doc["diseinfo"].append({"diag_code": "J18.900"})
    doc["diseinfo"].append("I10.x00")
    doc["iteminfo"][3]["amt"] = "1e3"
    doc["oprninfo"] = "garbage"
    assert fields_of(rejected(parse_settlement_list, doc)) == {
        "setlinfo.psn_no": "NAT-REQUIRED",
        "setlinfo.setl_id": "NAT-REQUIRED",
        "setlinfo.adm_time": "NAT-DATE",
        "setlinfo.medfee_sumamt": "NAT-MONEY",
        "setlinfo.age": "NAT-INT",
        "setlinfo.nwb_bir_wt": "NAT-RANGE",
        "diseinfo[1].diag_code": "NAT-REQUIRED",
        "diseinfo[3]": "NAT-NOT-OBJECT",
        "iteminfo[3].amt": "NAT-MONEY",
        "oprninfo": "NAT-NOT-ARRAY",
    }


def test_at_least_one_diagnosis() -> None:
    doc = example("4101A-02")["input"]
    empties: tuple[object, ...] = ([], "", None)
    for empty in empties:
        doc["diseinfo"] = empty
        assert fields_of(rejected(parse_settlement_list, doc)) == {
            "diseinfo": "NAT-NO-DIAGNOSIS"}


@pytest.mark.parametrize("raw, expected", [
    ("12", Decimal("12.00")), ("12.5", Decimal("12.50")), ("12.500", Decimal("12.50")),
    (12, Decimal("12.00")), (0.1, Decimal("0.10")), (13927.62, Decimal("13927.62")),
    ("", None), (None, None), (" 7.07 ", Decimal("7.07")),
])
def test_money_accepted(raw: object, expected: Decimal | None) -> None:
    assert to_money(raw) == expected
    assert not isinstance(to_money(raw), float)


@pytest.mark.parametrize("raw", ["12.345", "-1", "1e3", "NaN", "Infinity", "1_000", True,
                                 [1], {"a": 1}, "1" * 13, 1e300, float("nan")])
def test_money_rejected(raw: object) -> None:
    doc = example("4101-01")["input"]
    doc["setlinfo"]["psn_ownpay"] = raw
    assert fields_of(rejected(parse_settlement_list, doc)) == {"setlinfo.psn_ownpay": "NAT-MONEY"}


@given(st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2,
                   allow_nan=False, allow_infinity=False))
def test_money_is_exact_decimal(value: Decimal) -> None:
    parsed = to_money(str(value))
    assert isinstance(parsed, Decimal) and parsed == value


def test_case_fields_needs_sex_and_dates() -> None:
    doc = example("4101-01")["input"]
    for name in ("gend", "adm_time", "dscg_time"):
        doc["setlinfo"][name] = ""
    doc["setlinfo"]["dscg_way"] = "X"
    assert fields_of(rejected(case_fields, parse_settlement_list(doc))) == {
        "setlinfo.gend": "NAT-REQUIRED", "setlinfo.adm_time": "NAT-REQUIRED",
        "setlinfo.dscg_time": "NAT-REQUIRED", "setlinfo.dscg_way": "NAT-INT"}


def test_principal_and_main_procedure_moved_first() -> None:
    doc = example("4101A-02")["input"]
    doc["diseinfo"][0]["maindiag_flag"] = "0"
    doc["diseinfo"][2]["maindiag_flag"] = "1"
    doc["diseinfo"].insert(0, {"diag_type": "2", "diag_code": "BNG010", "maindiag_flag": "1"})
    doc["oprninfo"] = [{"oprn_oprt_type": "2", "oprn_oprt_code": "A"},
                       {"oprn_oprt_type": "1", "oprn_oprt_code": "B"},
                       {"oprn_oprt_type": "2", "oprn_oprt_code": "C"}]
    cf = case_fields(parse_settlement_list(doc))
    assert cf.diagnoses == ("I10.x00", "I49.800x010", "D39.000")  # TCM diagnosis left out
    assert cf.procedures == ("B", "A", "C")


def test_region_falls_back_to_envelope_then_default() -> None:
    doc = example("4101A-04")
    doc["input"]["setlinfo"]["insuplc"] = ""
    doc["insuplc_admdvs"] = "220100"
    msg = parse_message("4101A", doc)
    assert isinstance(msg.input, SettlementList)
    assert case_fields(msg.input, header=msg).region == "220100"
    assert case_fields(msg.input).region == "default"


def test_planned_readmission_flag() -> None:
    doc = example("4101-05")["input"]
    doc["setlinfo"]["days_rinp_flag_31"] = "2"
    assert case_fields(parse_settlement_list(doc)).planned_readmission is True


def test_case_fields_is_frozen() -> None:
    cf = case_fields(parse_settlement_list(example("4101-05")["input"]))
    assert isinstance(cf, CaseFields)
    with pytest.raises(AttributeError):
        cf.sex = 1  # type: ignore[misc]


# ----------------------------------------------------------------------------- replies


def test_failure_reply_names_every_field() -> None:
    problems = [Problem("setlinfo.gend", "QC-VAL-001", "性别代码无效", "invalid sex"),
                Problem("diseinfo[2].diag_code", "QC-DICT-001", "诊断编码不在字典中", "unknown",
                        "error"),
                Problem("oprninfo[0].oprn_oprt_code", "QC-PX-001", "重复", "dup", "warning")]
    reply = failure_reply(problems)
    assert reply["infcode"] == -1
    for p in problems:
        assert p.field in reply["err_msg"] and p.message_zh in reply["err_msg"]
    assert [p["field"] for p in reply["output"]["problems"]] == [p.field for p in problems]
    json.dumps(reply, ensure_ascii=False)


def test_success_reply() -> None:
    assert success_reply("L1") == {"infcode": 0, "err_msg": "", "output": {"setl_list_id": "L1"}}
    warn = Problem("diseinfo[0].diag_code", "QC-DX-004", "症状", "symptom", "warning")
    assert success_reply("L1", [warn])["output"]["warnings"][0]["code"] == "QC-DX-004"


# ----------------------------------------------------------------------------- any JSON input

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["", " ", "2025-01-01", "12.34", "1", "0", "-1", "１２"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=25,
)


def _assert_contract(fn: Any, *args: Any) -> None:
    try:
        result = fn(*args)
    except ListRejected as e:
        assert e.problems
        for p in e.problems:
            assert p.field and p.code and p.message_zh and p.message_en
            assert p.severity in ("error", "warning")
    else:
        assert isinstance(result, SettlementList | HsaEnvelope)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_into_the_parsers(doc: object) -> None:
    _assert_contract(parse_settlement_list, doc)
    _assert_contract(parse_native, doc)
    for infno in ("4101", "4101A", "4102"):
        _assert_contract(parse_message, infno, doc)


_LIST_FIELDS = ["setl_id", "psn_no", "fixmedins_code", "gend", "age", "nwb_age", "brdy",
                "adm_time", "dscg_time", "act_ipt_days", "medfee_sumamt", "psn_selfpay",
                "dscg_way", "insuplc"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_LIST_FIELDS + ["diseinfo", "oprninfo", "iteminfo"]),
                          json_values), max_size=5),
       st.sampled_from(sorted(EXPECTED)))
def test_mutated_examples_parse_or_are_rejected(mutations: list[tuple[str, object]],
                                                name: str) -> None:
    base = _EXAMPLES[name]
    doc = copy.deepcopy(base)
    for key, value in mutations:
        if key in _LIST_FIELDS:
            doc["input"]["setlinfo"][key] = value
        else:
            doc["input"][key] = value
    _assert_contract(parse_message, doc["infno"], doc)
    try:
        msg = parse_message(doc["infno"], doc)
    except ListRejected:
        return
    assert isinstance(msg.input, SettlementList)
    try:
        cf = case_fields(msg.input, header=msg)
    except ListRejected as e:
        assert all(p.field for p in e.problems)
        return
    for value in (cf.total_cost, cf.patient_share, *cf.fees.values()):
        assert value is None or isinstance(value, Decimal)


_EXAMPLES = {name: example(name) for name in EXPECTED}


def test_a_rejected_list_is_an_api_error_naming_every_problem() -> None:
    from shared.errors import DomainError

    problems = rejected(parse_settlement_list, {"setlinfo": {"setl_id": "S1"}, "diseinfo": []})
    err = ListRejected(problems)
    assert isinstance(err, DomainError)
    assert (err.status, err.code, err.field) == (422, "LIST_REJECTED", problems[0].field)
    assert err.message == f"{problems[0].field}: {problems[0].message_en}"
    assert str(err) == "; ".join(f"{p.field}: {p.message_en}" for p in problems)
    assert [(d["field"], d["code"], d["message"], d["message_zh"], d["message_en"], d["severity"])
            for d in err.body()["error"]["details"]] == [
        (p.field, p.code, p.message_en, p.message_zh, p.message_en, p.severity) for p in problems]
    forbidden = ListRejected(problems[:1], forbidden=True)
    assert (forbidden.status, forbidden.code) == (403, "HOSPITAL_MISMATCH")


def test_icu_and_ventilation_hours_are_carried_for_special_case_review() -> None:
    from services.ingest.domain.national import duration_hours

    assert duration_hours("2/3/59") == 51 and duration_hours("0/0/120") == 2
    assert [duration_hours(v) for v in (None, "", "3 days", "1/2", "-1/0/0")] == [0] * 5
    doc = copy.deepcopy(example("4101-01")["input"])
    doc["setlinfo"]["vent_used_dura"] = "4/1/0"
    doc["icuinfo"] = [{"scs_cutd_sum_dura": "1/0/30"}, {"scs_cutd_sum_dura": "0/12/0"}]
    cf = case_fields(parse_settlement_list(doc))
    assert (cf.ventilation_hours, cf.icu_hours) == (97, 36)


def test_fee_categories_are_summed_as_decimals() -> None:
    """A category's amount is the sum of its lines from zero: 0.00 for a sent -0.00, each line
    added once, 2 places kept."""
    doc = example("4101-01")["input"]
    doc["iteminfo"] = [{"med_chrgitm": "01", "amt": "-0.00"}, {"med_chrgitm": "02", "amt": "1.10"},
                       {"med_chrgitm": "02", "amt": 2.2}, {"med_chrgitm": "03", "amt": "0.00"},
                       {"med_chrgitm": "04", "amt": 5}]
    fees = case_fields(parse_settlement_list(doc)).fees
    assert {k: str(v) for k, v in fees.items()} == {"01": "0.00", "02": "3.30", "03": "0.00", "04": "5.00"}
