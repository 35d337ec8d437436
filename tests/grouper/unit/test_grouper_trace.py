"""Traces name the codes and tables behind a decision; cases are found in the oracle data."""

from __future__ import annotations

import pytest
from grouper_testkit import oracle_cases, scheme_path

from services.grouper.domain import GroupStatus, load_scheme


@pytest.fixture(scope="module")
def scheme():
    return load_scheme(scheme_path("chs-drg-1.1"))


@pytest.fixture(scope="module")
def cases():
    return oracle_cases("chs-drg-1.1")


def _first(scheme, cases, predicate, code_mode="raw"):
    for c in cases:
        r = scheme.group(c, code_mode=code_mode, trace=True)
        if predicate(r):
            return c, r
    pytest.fail("no such case in the oracle data")


def test_with_cc_case_names_the_cc_code(scheme, cases):
    # A "with CC" DRG (…3) reached through a CC only (no counted MCC).
    c, r = _first(
        scheme, cases, lambda r: r.drg.endswith("3") and r.trace.cc and not r.trace.cc.has_mcc
    )
    cc_codes = r.trace.cc.counted("CC")
    assert cc_codes
    code = cc_codes[0]
    text = "\n".join(r.trace.render())
    assert code in text
    assert scheme.diagnosis_names[code] in text
    assert f"该编码的排除表 {scheme.cc[code]}" in text
    step = next(s for s in r.trace.drg_steps if s.drg == r.drg)
    assert step.matched and any(code in e.matched for e in step.evidence)
    d = r.to_dict()["trace"]
    assert d["cc"]["has_cc"] is True and d["drg_steps"][-1]["drg"] == r.drg


def test_with_mcc_case_names_the_mcc_code(scheme, cases):
    c, r = _first(scheme, cases, lambda r: r.drg.endswith("1") and r.trace.cc is not None)
    code = r.trace.cc.counted("MCC")[0]
    assert code in "\n".join(r.trace.render())


def test_excluded_cc_names_the_exclusion_table(scheme, cases):
    # Lands in the "without CC" DRG although a secondary is on the MCC/CC list: excluded.
    c, r = _first(
        scheme,
        cases,
        lambda r: r.drg.endswith("5") and r.trace.cc and any(f.excluded for f in r.trace.cc.findings),
    )
    finding = next(f for f in r.trace.cc.findings if f.excluded)
    table = r.trace.cc.principal_table
    assert finding.table == table == scheme.cc_exclusion[c["diagnoses"][0]]
    text = "\n".join(r.trace.render())
    assert f"被主诊断的排除表 {table} 排除" in text
    assert finding.code in text


def test_fall_through_and_chosen_adrg_evidence(scheme, cases):
    c, r = _first(
        scheme, cases, lambda r: len(r.trace.mdcs) > 1 and r.trace.mdcs[0].mdc == "MDCA"
    )
    assert r.trace.mdcs[0].outcome == "fell_through"
    assert r.trace.mdcs[-1].outcome == "chosen"
    ev = r.trace.adrg_evidence
    assert ev and all(e.matched for e in ev if not e.negated)
    text = r.trace.render()
    assert any(line.startswith("进入 MDCA") for line in text)
    assert any("入组 ADRG" in line and r.adrg in line for line in text)


def test_failed_validation_check_is_named(scheme, cases):
    c, r = _first(scheme, cases, lambda r: r.status is GroupStatus.CHECK_FAILED)
    assert r.trace.failed_check in r.trace.validation
    assert any(r.trace.failed_check in line for line in r.trace.render())


def test_fail_says_why(scheme, cases):
    c, r = _first(scheme, cases, lambda r: r.status is GroupStatus.FAIL)
    assert r.trace.failure
    assert any(line.startswith("未能入组") for line in r.trace.render())


def test_mapped_mode_translation_is_traced(scheme, cases):
    c, r = _first(
        scheme,
        cases,
        lambda r: r.status is GroupStatus.SUCCESS and any(t.target for t in r.trace.translations),
        code_mode="mapped",
    )
    t = next(t for t in r.trace.translations if t.target)
    assert t.source != t.target
    assert any(line.startswith("编码转换") and t.target in line for line in r.trace.render())
    _, r2 = _first(
        scheme, cases, lambda r: r.status is GroupStatus.ZD_NOT_MAPPING, code_mode="mapped"
    )
    assert any(line.startswith("编码转换失败") for line in r2.trace.render())


def test_untraced_result_has_no_trace_key(scheme, cases):
    r = scheme.group(cases[0])
    assert r.trace is None and set(r.to_dict()) == {"mdc", "adrg", "drg", "status"}
