"""DIP on a synthetic region end to end (§5–§8): the generator's settlement lists, parsed with
the ingest service's national parser, typed with the grouper's scheme OR list, catalogued,
priced and cleared by the pricer's DIP domain. (Moved from tests/pricer/test_dip.py.)"""

from __future__ import annotations

from decimal import Decimal

import pytest
from paths import SHARED
from pricer_testkit import dip_policy as policy

from drgdip.dip_cli import dip_case_from_list
from services.pricer.domain.dip_catalogue import build_catalogue, catalogue_budget_point_value
from services.pricer.domain.dip_pricing import (
    DipPoints,
    clear_dip_year,
    price_dip_many,
    settlement_budget,
)
from services.pricer.domain.policy import Hospitals, Settlement
from shared.dip import DipCase, TreatmentTable, assign

D = Decimal
SCHEME = SHARED / "schemes" / "chs-drg-1.1"




@pytest.fixture(scope="module")
def region_cases() -> list[DipCase]:
    if not SCHEME.is_dir():
        pytest.skip(f"scheme not found at {SCHEME}")
    from drgdip.generate import generate_region
    from services.ingest.domain.national import ListRejected

    out = []
    for lst in generate_region(SCHEME, hospitals=12, cases=6000, seed=7):
        try:
            out.append(dip_case_from_list(lst))
        except ListRejected:  # the generator's deliberately broken lists
            continue
    return out


def test_synthetic_region(region_cases):
    from services.grouper.domain import load_scheme

    table = TreatmentTable(or_procedures=frozenset(load_scheme(SCHEME).or_procedures))
    # With min_cases 15 only about 12 % of these 6,000 synthetic cases fall in core groups: a
    # core group needs 15 stays of one diagnosis–treatment combination, which a region of this
    # size rarely has (about half are core from 60,000 cases). min_cases 2 makes most core here.
    at_15 = build_catalogue(region_cases, region="R", year=2025, treatment=table)
    assert at_15.report.core_case_share < D("0.15")
    cat = build_catalogue(region_cases, region="R", year=2025, min_cases=2, treatment=table)
    assert cat.report.core_case_share > D("0.5")
    assert cat.report.cases_by_kind["core"] + cat.report.cases_by_kind["comprehensive"] == \
        cat.report.cases_in_scope

    # every case gets exactly one group, and it is in the catalogue with a score
    assignments = [assign(cat, c) for c in region_cases]
    assert len(assignments) == len(region_cases)
    assert all(a.code in cat.groups and cat.groups[a.code].kind == a.kind for a in assignments)

    pv = catalogue_budget_point_value(cat, region_cases)
    pol = policy(region="R", hospitals=Hospitals(), points=DipPoints(provisional_point_value=pv),
                 settlement=Settlement(reserve_share=D("0")))
    latest = [c for c in region_cases if c.year == 2024]
    prices = price_dip_many(cat, pol, latest)
    assert all(p.priced for p in prices)
    budget = settlement_budget(sum((c.total_cost for c in latest), D(0)) * D("0.7"), D("0.75"))
    clearing = clear_dip_year(pol, cat, "2024", prices, budget)
    assert clearing.total_drg_amount == budget
    assert all(h.drg_amount >= 0 for h in clearing.hospitals)

@pytest.mark.slow
def test_a_region_sized_history_puts_most_cases_in_core_groups():
    """90,000 stays over three years (a small city): with the default threshold of 15 cases,
    most stays fall in core groups, and every stay gets exactly one group."""
    if not SCHEME.is_dir():
        pytest.skip(f"scheme not found at {SCHEME}")
    from drgdip.generate import generate_region
    from services.grouper.domain import load_scheme
    from services.ingest.domain.national import ListRejected

    cases = []
    for lst in generate_region(SCHEME, hospitals=20, cases=90_000, seed=3):
        try:
            cases.append(dip_case_from_list(lst))
        except ListRejected:  # the generator's deliberately broken lists
            continue
    table = TreatmentTable(or_procedures=frozenset(load_scheme(SCHEME).or_procedures))
    cat = build_catalogue(cases, region="R", year=2025, treatment=table)  # min_cases 15
    assert cat.report.core_case_share > D("0.5")
    assert all(assign(cat, c).code in cat.groups for c in cases)
