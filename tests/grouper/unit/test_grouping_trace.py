"""The grouping trace is not computed while grouping: recomputed from what is stored (the
received list, the scheme and code mode, the DIP part), it is the trace a traced grouping gives
at grouping time; the CC/MCC lift found without the trace is the one found with it."""

from __future__ import annotations

import orjson
import pytest
from grouper_testkit import oracle_cases, scheme_path
from paths import SHARED

from drgdip.dip_cli import dip_case_from_list
from drgdip.generate import generate_region
from services.grouper.domain import (
    ToGroup,
    cc_lift,
    dip_grouping,
    engine_input,
    group_case,
    grouping_trace,
    load_scheme,
)
from services.pricer.domain.dip_catalogue import build_catalogue
from shared.dip import Catalogue

REGION = "350500"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    history = [dip_case_from_list(doc, region=REGION) for doc in generate_region(
        SHARED / "schemes" / "chs-drg-1.1", hospitals=4, years=3, cases=300, seed=11, end_year=2023)]
    return build_catalogue(history, region=REGION, year=2024, min_cases=3)


def _item(case_id: str, c: dict) -> ToGroup:
    return ToGroup.from_json(case_id, f"corr-{case_id}", orjson.dumps({
        "facts": {"hospital_code": "H1", "setl_id": case_id, "psn_key": "p", "region": REGION,
                  "discharge_date": "2024-03-01"},
        "sex": c.get("sex"), "age": c.get("age"), "age_days": c.get("age_days"),
        "birth_weight": c.get("birth_weight"), "diagnoses": c["diagnoses"],
        "procedures": c.get("procedures", [])}).decode())


@pytest.mark.parametrize("code_mode", ["raw", "mapped"])
@pytest.mark.parametrize("with_dip", [False, True])
def test_the_recomputed_trace_is_the_trace_at_grouping_time(code_mode: str, with_dip: bool,
                                                             catalogue: Catalogue) -> None:
    scheme = load_scheme(scheme_path("chs-drg-1.1"))
    cases = oracle_cases("chs-drg-1.1")
    assert len({c["expected"]["status"] for c in cases}) > 1  # grouped and failed cases alike
    lifts = 0
    for i, c in enumerate(cases):
        item = _item(f"c{i}", c)
        cat = catalogue if with_dip else None
        g = group_case(item, scheme, cat, code_mode=code_mode, grouping_version=1)
        # what a traced grouping gives at grouping time (the trace the grouper used to store)
        traced = scheme.group(engine_input(item.payload), code_mode=code_mode, trace=True)
        assert traced.trace is not None
        expected = orjson.loads(traced.trace.to_json())
        if cat is not None:
            expected |= {"dip": dip_grouping(cat, item.case_id, item.payload)
                         .model_dump(mode="json", exclude={"case"})}
        assert grouping_trace(scheme, item.payload, code_mode, g.trace) == expected, c
        assert (g.event.mdc, g.event.adrg, g.event.drg, g.event.status) == (
            traced.mdc, traced.adrg, traced.drg, traced.status.value)
        assert g.event.cc_lift == cc_lift(scheme, engine_input(item.payload), traced, code_mode=code_mode)
        lifts += g.event.cc_lift is not None
    assert lifts > 0


def test_without_a_scheme_only_the_dip_part_is_stored(catalogue: Catalogue) -> None:
    item = _item("n", oracle_cases("chs-drg-1.1")[0])
    g = group_case(item, None, None, code_mode="raw", grouping_version=1)
    assert g.trace is None and grouping_trace(None, item.payload, "raw", g.trace) is None
    g = group_case(item, None, catalogue, code_mode="raw", grouping_version=1)
    assert set(grouping_trace(None, item.payload, "raw", g.trace) or {}) == {"dip"}
