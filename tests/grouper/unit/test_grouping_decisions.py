"""The pure part of the live stage: grouping versions, no scheme in force, catalogue documents
and the grouper's domain errors."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from grouper_testkit import oracle_cases, scheme_path

from services.grouper.domain import (
    NO_SCHEME,
    RegistryError,
    SchemeError,
    SchemeRegistry,
    ToGroup,
    catalogue_registration,
    group_cases,
    load_scheme,
)
from shared.dip import CatalogueError
from shared.errors import DomainError


def _item(case_id: str, c: dict, list_version: int = 1) -> ToGroup:
    return ToGroup.from_json(case_id, f"corr-{case_id}", orjson.dumps({
        "facts": {"hospital_code": "H1", "setl_id": case_id, "list_version": list_version,
                  "psn_key": "p", "discharge_date": "2024-03-01"},
        "sex": c.get("sex"), "age": c.get("age"), "age_days": c.get("age_days"),
        "birth_weight": c.get("birth_weight"), "diagnoses": c["diagnoses"],
        "procedures": c.get("procedures", [])}).decode())


def test_each_list_version_gets_the_next_grouping_version_and_the_reference_drg() -> None:
    scheme = load_scheme(scheme_path("chs-drg-1.1"))
    cases = [c for c in oracle_cases("chs-drg-1.1") if c["expected"]["status"] == "SUCCESS"][:3]
    items = [_item("a", cases[0]), _item("a", cases[1]), _item("a", cases[2], list_version=2)]
    out = group_cases(items, scheme_for=lambda _f: scheme, catalogue_on=lambda _r, _d: None,
                      code_mode="raw", latest={("a", 1): 4})
    assert [g.event.grouping_version for g in out] == [5, 6, 1]
    assert [g.event.drg for g in out] == [c["expected"]["drg"] for c in cases]
    # nothing of the trace is stored without a DIP catalogue: it is recomputed when asked
    assert all(g.event.scheme_id == "chs-drg-1.1" and g.trace is None and g.event.dip is None for g in out)
    assert out[0].correlation_id == "corr-a"


def test_no_scheme_in_force_is_a_result_not_an_error() -> None:
    c = oracle_cases("chs-drg-1.1")[0]
    [g] = group_cases([_item("b", c)], scheme_for=lambda _f: None, catalogue_on=lambda _r, _d: None,
                      code_mode="raw", latest={})
    assert (g.event.status, g.event.drg, g.event.scheme_id, g.trace) == (NO_SCHEME, "0000", "-", None)


@pytest.mark.parametrize("document", [b"{not json", b"[1, 2]", b'{"catalogue_id": 3}'])
def test_a_document_that_is_not_a_catalogue_is_invalid_catalogue_on_the_body(document: bytes) -> None:
    with pytest.raises(CatalogueError) as e:
        catalogue_registration(document, "350500", date(2024, 1, 1))
    assert (e.value.code, e.value.status, e.value.field) == ("INVALID_CATALOGUE", 422, "body")
    assert e.value.message.startswith("body: ") and len(e.value.message) > len("body: ")


def test_scheme_and_registry_errors_are_domain_errors_with_stable_codes(tmp_path) -> None:
    with pytest.raises(SchemeError) as e:
        load_scheme(tmp_path)
    assert isinstance(e.value, DomainError) and e.value.code == "INVALID_SCHEME" and e.value.status == 422
    with pytest.raises(RegistryError) as r:
        SchemeRegistry().scheme_for("350500", date(2024, 1, 1))
    assert r.value.code == "NO_SCHEME_IN_FORCE" and r.value.status == 404
