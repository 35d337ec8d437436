"""QC rules: each rule passes a clean list and fails a broken one; every problem is reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import SHARED

from services.ingest.domain import qc
from services.ingest.domain.national import ListRejected, SettlementList, parse_settlement_list

HSA = SHARED / "testdata" / "hsa"
DICTS = qc.load_dictionaries(SHARED / "schemes" / "chs-drg-1.1")

Doc = dict[str, Any]


def example(name: str) -> Doc:
    doc: Doc = json.loads((HSA / f"{name}.json").read_text(encoding="utf-8"))["input"]
    return doc


WINDOW = qc.DateWindow(date(2026, 1, 1), earliest_year=2000, future_days=1)


def run(doc: Doc, kind: qc.ListKind = "4101") -> list[qc.Problem]:
    return qc.check(parse_settlement_list(doc), DICTS, kind=kind, window=WINDOW)


def codes(doc: Doc, kind: qc.ListKind = "4101") -> set[str]:
    return {p.code for p in run(doc, kind)}


def test_clean_examples_have_no_problems() -> None:
    assert run(example("4101-01")) == []
    assert run(example("4101-03")) == []
    assert run(example("4101A-04"), "4101A") == []


def test_example_problems() -> None:
    # 4101A-02: D39.000 (uterine tumour) on a male; 4101A-06: a symptom code as principal
    [sex] = run(example("4101A-02"), "4101A")
    assert (sex.code, sex.field, sex.severity) == ("QC-SEX-001", "diseinfo[1].diag_code", "error")
    [symptom] = run(example("4101A-06"), "4101A")
    assert (symptom.code, symptom.field, symptom.severity) == (
        "QC-DX-004", "diseinfo[0].diag_code", "warning")


def setl(**values: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        doc["setlinfo"].update(values)
    return apply


def dx(index: int, **values: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        while len(doc["diseinfo"]) <= index:
            doc["diseinfo"].append({"diag_type": "1", "diag_code": "I10.x00", "maindiag_flag": "0"})
        doc["diseinfo"][index].update(values)
    return apply


def px(index: int, **values: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        doc["oprninfo"][index].update(values)
    return apply


def both(*fns: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        for fn in fns:
            fn(doc)
    return apply


def fee(index: int, **values: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        doc["iteminfo"][index].update(values)
    return apply


def no_items(doc: Doc) -> None:
    doc["iteminfo"] = []


# code → (a change that makes 4101-01 fail it, its field path, a change that keeps it passing)
CASES: dict[str, tuple[Callable[[Doc], None], str, Callable[[Doc], None]]] = {
    "QC-REQ-001": (setl(medcasno=""), "setlinfo.medcasno", setl(certno="")),
    "QC-REQ-002": (no_items, "iteminfo", setl(acct_pay="0")),
    "QC-REQ-003": (fee(4, amt=""), "iteminfo[4].amt", fee(4, oth_amt="")),
    "QC-VAL-001": (setl(gend="3"), "setlinfo.gend", setl(gend="9")),
    "QC-VAL-002": (setl(dscg_way="6"), "setlinfo.dscg_way", setl(dscg_way="5")),
    "QC-DICT-001": (dx(0, diag_code="I72.399"), "diseinfo[0].diag_code",
                    dx(1, diag_code="J18.900")),
    "QC-DICT-002": (px(1, oprn_oprt_code="54.1199"), "oprninfo[1].oprn_oprt_code",
                    px(1, oprn_oprt_code="54.1100")),
    "QC-SEX-001": (dx(1, diag_code="N40.x00"), "diseinfo[1].diag_code",
                   both(setl(gend="1"), dx(1, diag_code="N40.x00"))),
    "QC-AGE-001": (dx(1, diag_code="P22.000"), "diseinfo[1].diag_code",
                   both(setl(age="0", nwb_age="10", nwb_bir_wt="3100"),
                        dx(1, diag_code="P22.000"))),
    "QC-NWB-001": (setl(age="0"), "setlinfo.nwb_age", setl(age="0", nwb_age="200")),
    "QC-NWB-002": (setl(age="0", nwb_age="28"), "setlinfo.nwb_bir_wt",
                   setl(age="0", nwb_age="29")),
    "QC-NWB-003": (setl(age="0", nwb_age="3", nwb_bir_wt="3"), "setlinfo.nwb_bir_wt",
                   setl(age="0", nwb_age="3", nwb_bir_wt="3000")),
    "QC-DATE-001": (setl(adm_time="2025-11-16 09:00:00", act_ipt_days="0"), "setlinfo.dscg_time",
                    setl(adm_time="2025-11-15 09:00:00", act_ipt_days="1")),
    "QC-DATE-002": (setl(act_ipt_days="7"), "setlinfo.act_ipt_days",
                    setl(adm_time="2025-11-15 08:00:00", act_ipt_days="0")),
    "QC-DATE-003": (setl(brdy="2025-11-10"), "setlinfo.brdy", setl(brdy="2025-11-09")),
    "QC-DATE-004": (setl(setl_begn_date="2025-11-16"), "setlinfo.setl_end_date",
                    setl(setl_begn_date="2025-11-15")),
    "QC-DATE-005": (setl(dcla_time="2026-01-03 09:00:00"), "setlinfo.dcla_time",
                    setl(dcla_time="2026-01-02 09:00:00")),
    "QC-DATE-006": (setl(setl_begn_date="1999-12-31"), "setlinfo.setl_begn_date",
                    setl(setl_begn_date="2000-01-01")),
    "QC-FEE-001": (fee(13, med_chrgitm="15"), "iteminfo[13].med_chrgitm", fee(13, med_chrgitm="14")),
    "QC-FEE-002": (setl(medfee_sumamt="13927.64"), "setlinfo.medfee_sumamt",
                   setl(medfee_sumamt="13927.63")),
    "QC-FEE-003": (fee(13, med_chrgitm="01"), "iteminfo[13].med_chrgitm", fee(13, amt="0")),
    "QC-DX-001": (dx(0, maindiag_flag="0"), "diseinfo",
                  both(dx(0, maindiag_flag="0"), dx(1, maindiag_flag="1"))),
    "QC-DX-002": (dx(1, diag_code="I72.302"), "diseinfo[1].diag_code", dx(1, diag_code="I10.x00")),
    "QC-DX-003": (dx(0, diag_code="W19.x00"), "diseinfo[0].diag_code", dx(1, diag_code="W19.x00")),
    "QC-DX-004": (dx(0, diag_code="R50.900"), "diseinfo[0].diag_code", dx(1, diag_code="R50.900")),
    "QC-PX-001": (px(2, oprn_oprt_code="54.1101"), "oprninfo[2].oprn_oprt_code",
                  px(2, oprn_oprt_code="83.6500")),
    "QC-PX-002": (px(1, oprn_oprt_type="1"), "oprninfo", px(1, oprn_oprt_type="2")),
}


def test_every_rule_has_a_case_and_a_function() -> None:
    assert set(CASES) == set(qc.RULES)
    documented = {line.split("|")[1].strip() for line in (qc.__doc__ or "").splitlines()
                  if line.startswith("| QC-")}
    assert documented == set(qc.RULES)
    assert all(f.__doc__ for f in qc.ALL_RULES)


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_fails_and_passes(code: str) -> None:
    breaks, path, keeps = CASES[code]
    broken, kept = example("4101-01"), example("4101-01")
    breaks(broken)
    keeps(kept)
    found = [p for p in run(broken) if p.code == code]
    assert [p.field for p in found] == [path]
    assert found[0].severity == qc.RULES[code].severity
    assert found[0].message_zh and found[0].message_en
    assert code not in codes(kept)


def test_required_fields_depend_on_kind() -> None:
    doc = example("4101A-02")
    assert "QC-REQ-001" not in codes(doc, "4101A")
    four101 = {p.field for p in run(doc, "4101") if p.code.startswith("QC-REQ")}
    assert four101 == {"setlinfo.medfee_sumamt", "setlinfo.psn_selfpay", "setlinfo.psn_ownpay",
                       "setlinfo.acct_pay", "setlinfo.psn_cashpay", "iteminfo"}
    doc["setlinfo"]["hi_paymtd"] = ""
    assert [p.field for p in run(doc, "4101A")] == ["setlinfo.hi_paymtd", "diseinfo[1].diag_code"]


def test_five_distinct_problems_all_reported() -> None:
    doc = example("4101-01")
    doc["setlinfo"].update(medcasno="", gend="1", act_ipt_days="9")
    doc["diseinfo"].append({"diag_type": "1", "diag_code": "O80.000", "maindiag_flag": "0"})
    doc["diseinfo"].append({"diag_type": "1", "diag_code": "Q99.999x999", "maindiag_flag": "0"})
    doc["iteminfo"][5]["med_chrgitm"] = "99"
    found = {(p.code, p.field) for p in run(doc)}
    assert {
        ("QC-REQ-001", "setlinfo.medcasno"),
        ("QC-SEX-001", "diseinfo[1].diag_code"),
        ("QC-DICT-001", "diseinfo[2].diag_code"),
        ("QC-DATE-002", "setlinfo.act_ipt_days"),
        ("QC-FEE-001", "iteminfo[5].med_chrgitm"),
    } <= found
    assert len({code for code, _ in found}) >= 5


def test_tcm_diagnoses_are_not_checked_as_icd10() -> None:
    doc = example("4101-01")
    doc["diseinfo"].append({"diag_type": "2", "diag_code": "BNG010", "maindiag_flag": "1"})
    assert run(doc) == []


def test_sex_table_is_configurable() -> None:
    doc = example("4101-01")  # a woman with I72.302
    table = (qc.SexRule(qc.CodeRange("I72", "I72"), qc.MALE, "测试"),)
    problems = qc.check(parse_settlement_list(doc), DICTS, sex_rules=table)
    assert [p.code for p in problems] == ["QC-SEX-001"]


def test_code_range() -> None:
    r = qc.CodeRange("D07.4", "D07.6")
    assert "D07.602" in r and "d07.4" in r and "D07.300" not in r and "D08" not in r
    assert "N51.800" in qc.CodeRange("N40", "N51") and "N52.000" not in qc.CodeRange("N40", "N51")


def test_kind_must_be_a_list_interface() -> None:
    sl: SettlementList = parse_settlement_list(example("4101-01"))
    with pytest.raises(ValueError):
        qc.check(sl, DICTS, kind="4102")  # type: ignore[arg-type]


def test_load_dictionaries(tmp_path: Path) -> None:
    (tmp_path / "diagnoses.tsv").write_text("code\tname\nA00.000\t霍乱\n B01 \tx\r\n",
                                            encoding="utf-8")
    (tmp_path / "procedures.tsv").write_text("code\tname\n00.0100\t超声\n", encoding="utf-8")
    d = qc.load_dictionaries(tmp_path)
    assert d.diagnoses == frozenset({"A00.000", " B01 "})  # verbatim cells
    assert d.procedures == frozenset({"00.0100"})
    (tmp_path / "procedures.tsv").write_text("code\tname\nbroken\n", encoding="utf-8")
    with pytest.raises(qc.DictionaryError) as info:
        qc.load_dictionaries(tmp_path)
    assert (info.value.status, info.value.code) == (422, "INVALID_DICTIONARY")


def test_shared_dictionaries_loaded() -> None:
    assert len(DICTS.diagnoses) == 33_304 and len(DICTS.procedures) == 13_686
    assert "A01.001+K77.0*" in DICTS.diagnoses


_SCALARS = st.none() | st.integers(-5, 40_000) | st.sampled_from(
    ["", "0", "1", "2", "9", "28", "29", "365", "2025-11-01", "2025-11-20 08:00:00", "1999-01-01",
     "0.00", "13927.62", "01", "14", "15", "I72.302", "O80.000", "P22.000", "W19.x00", "R50.900",
     "54.1101", "nope"])
_MUTABLE = ["gend", "age", "nwb_age", "nwb_bir_wt", "nwb_adm_wt", "brdy", "adm_time", "dscg_time",
            "act_ipt_days", "dscg_way", "medfee_sumamt", "setl_begn_date", "setl_end_date",
            "medcasno"]


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(_MUTABLE), _SCALARS), max_size=6),
       st.lists(st.tuples(st.sampled_from(["diag_code", "maindiag_flag", "diag_type"]), _SCALARS),
                max_size=4),
       st.sampled_from(["4101-01", "4101A-04", "4101A-06"]))
def test_check_never_raises(setl_changes: list[tuple[str, object]],
                            dx_changes: list[tuple[str, object]], name: str) -> None:
    doc = example(name)
    for key, value in setl_changes:
        doc["setlinfo"][key] = value
    for i, (key, value) in enumerate(dx_changes):
        doc["diseinfo"][i % len(doc["diseinfo"])][key] = value
    try:
        sl = parse_settlement_list(doc)
    except ListRejected:
        return
    for kind in ("4101", "4101A"):
        for p in qc.check(sl, DICTS, kind=kind):  # type: ignore[arg-type]
            assert p.field and p.code in qc.RULES and p.severity in ("error", "warning")
        assert_same_as_each_rule(sl, kind)  # type: ignore[arg-type]


def each_rule(sl: SettlementList, kind: qc.ListKind, rules: tuple[qc.Rule, ...],
              window: qc.DateWindow | None) -> list[qc.Problem]:
    """What running the rules one by one finds (`check` tells the usual list in one pass)."""
    ctx = qc.QcContext(DICTS, kind, qc.REQUIRED_FIELDS, qc.SEX_RULES, qc.AGE_RULES,
                       qc.PRINCIPAL_RULES, window)
    return [p for rule in rules for p in rule(sl, ctx)]


def assert_same_as_each_rule(sl: SettlementList, kind: qc.ListKind) -> None:
    without_dictionaries = tuple(r for r in qc.ALL_RULES
                                 if r not in (qc.diagnoses_in_dictionary, qc.procedures_in_dictionary))
    for rules in (qc.ALL_RULES, without_dictionaries, (qc.fee_categories_sum,)):
        for window in (WINDOW, qc.DateWindow(date(2025, 11, 16), earliest_year=2025), None):
            assert qc.check(sl, DICTS, kind=kind, rules=rules, window=window) == \
                each_rule(sl, kind, rules, window)


@pytest.mark.parametrize("code", sorted(CASES))
def test_check_finds_what_each_rule_finds(code: str) -> None:
    breaks, _path, keeps = CASES[code]
    for change in (breaks, keeps):
        for name, kind in (("4101-01", "4101"), ("4101-03", "4101"), ("4101A-04", "4101A")):
            doc = example(name)
            try:
                change(doc)
                sl = parse_settlement_list(doc)
            except (IndexError, KeyError, ListRejected):
                continue
            assert_same_as_each_rule(sl, kind)  # type: ignore[arg-type]
            assert_same_as_each_rule(sl, "4101A" if kind == "4101" else "4101")
