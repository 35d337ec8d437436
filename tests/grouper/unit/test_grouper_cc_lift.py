"""The secondary diagnosis that alone lifts a case into its CC/MCC group (review's 高套 rule reads
it from `case-grouped`): grouping again without it gives the lower DRG of the same ADRG."""

from __future__ import annotations

import pytest
from grouper_testkit import oracle_cases, scheme_path

from services.grouper.domain import cc_lift, load_scheme


@pytest.fixture(scope="module")
def scheme():
    return load_scheme(scheme_path("chs-drg-1.1"))


@pytest.fixture(scope="module")
def cases():
    return oracle_cases("chs-drg-1.1")[:4000]


def _first(scheme, cases, predicate):
    for c in cases:
        r = scheme.group(c, trace=True)
        if predicate(c, r):
            return c, r
    pytest.fail("no such case in the oracle data")


def test_one_mcc_lifting_the_case_names_it_and_the_group_without_it(scheme, cases):
    c, r = _first(scheme, cases, lambda c, r: r.drg.endswith("1") and r.trace.cc is not None
                  and len(set(r.trace.cc.counted("MCC"))) == 1 and not r.trace.cc.has_cc)
    lift = cc_lift(scheme, c, r, code_mode="raw")
    assert lift is not None
    code = r.trace.cc.counted("MCC")[0]
    assert lift.codes == [code] and lift.level == "MCC"
    without = scheme.group(c | {"diagnoses": [d for d in c["diagnoses"] if d != code]})
    assert lift.drg_without == without.drg and without.adrg == r.adrg and without.drg != r.drg


def test_one_cc_lifting_the_case_is_found_too(scheme, cases):
    c, r = _first(scheme, cases, lambda c, r: r.drg.endswith("3") and r.trace.cc is not None
                  and len(set(r.trace.cc.counted("CC"))) == 1 and not r.trace.cc.has_mcc)
    lift = cc_lift(scheme, c, r, code_mode="raw")
    assert lift is not None and lift.level == "CC" and lift.drg_without[:3] == r.adrg
    assert lift.drg_without.endswith("5")


def test_two_codes_at_the_level_lift_nothing_alone(scheme, cases):
    c, r = _first(scheme, cases, lambda c, r: r.drg.endswith("1") and r.trace.cc is not None
                  and len(set(r.trace.cc.counted("MCC"))) >= 2)
    assert cc_lift(scheme, c, r, code_mode="raw") is None


def test_a_group_without_cc_split_has_no_lift(scheme, cases):
    c, r = _first(scheme, cases, lambda c, r: r.grouped and r.drg[-1] in "59")
    assert cc_lift(scheme, c, r, code_mode="raw") is None


def test_the_live_grouping_carries_the_lift_on_its_event(scheme, cases):
    from services.grouper.domain import ToGroup, group_case
    from shared.events import CaseFacts, CaseReceived

    c, r = _first(scheme, cases, lambda c, r: cc_lift(scheme, c, r, code_mode="raw") is not None)
    received = CaseReceived(facts=CaseFacts(hospital_code="H1", setl_id="S1", psn_key="P"),
                            sex=c["sex"], age=c["age"], age_days=c["age_days"],
                            birth_weight=c["birth_weight"], diagnoses=c["diagnoses"],
                            procedures=c["procedures"])
    item = ToGroup.from_json("H1-S1", "corr", received.model_dump_json())
    event = group_case(item, scheme, None, code_mode="raw", grouping_version=1).event
    assert event.drg == r.drg and event.cc_lift == cc_lift(scheme, c, r, code_mode="raw")
