"""SchemeRegistry selection by region and date; diff of Quanzhou 2023 against CHS-DRG 1.1."""

from __future__ import annotations

from datetime import date

import pytest
from grouper_testkit import oracle_cases, scheme_path

from services.grouper.domain import RegistryError, SchemeRegistry, diff_schemes, load_scheme


@pytest.fixture(scope="module")
def national():
    return load_scheme(scheme_path("chs-drg-1.1"))


@pytest.fixture(scope="module")
def quanzhou():
    return load_scheme(scheme_path("quanzhou-2023"))


@pytest.fixture(scope="module")
def v10():
    return load_scheme(scheme_path("chs-drg-1.0"))


def test_registry_selects_by_region_and_date(national, quanzhou, v10):
    reg = SchemeRegistry()
    reg.add(v10, "350500", date(2021, 1, 1), date(2022, 12, 31))
    reg.add(quanzhou, "350500", date(2023, 1, 1))
    reg.add(national, "610900", date(2022, 1, 1))
    assert reg.scheme_for("350500", date(2022, 12, 31)) is v10
    assert reg.scheme_for("350500", date(2023, 1, 1)) is quanzhou
    assert reg.scheme_for("350500", date(2030, 6, 1)) is quanzhou
    assert reg.scheme_for("610900", date(2023, 5, 5)) is national
    assert reg.regions() == ["350500", "610900"]
    with pytest.raises(RegistryError, match="no grouping scheme in force in region '350500' on 2020-12-31"):
        reg.scheme_for("350500", date(2020, 12, 31))
    with pytest.raises(RegistryError, match="no grouping scheme registered for region '110000'"):
        reg.scheme_for("110000", date(2023, 1, 1))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2022, 12, 31), None),  # touches the last day of the first period
        (date(2020, 1, 1), date(2021, 1, 1)),
        (date(2021, 6, 1), date(2021, 7, 1)),
        (date(2019, 1, 1), None),
    ],
)
def test_registry_rejects_overlaps(national, v10, start, end):
    reg = SchemeRegistry()
    reg.add(v10, "350500", date(2021, 1, 1), date(2022, 12, 31))
    with pytest.raises(RegistryError, match="overlaps"):
        reg.add(national, "350500", start, end)
    # Other regions are independent.
    reg.add(national, "350600", start, end)


def test_registry_rejects_reversed_period(national):
    with pytest.raises(RegistryError, match="before valid_from"):
        SchemeRegistry().add(national, "350500", date(2023, 1, 2), date(2023, 1, 1))


def test_diff_quanzhou_vs_national(national, quanzhou):
    d = diff_schemes(national, quanzhou)
    assert "AA1" in d.adrgs_removed and "RA4" in d.adrgs_removed
    assert len(d.adrgs_removed) == 14 and not d.adrgs_added
    assert "RB15" in d.drgs_removed and len(d.drgs_removed) == 16
    assert d.mdc_order_changed
    assert ("MDCO", 18, 7) in d.mdc_moves()
    assert d.tables["cc"].changed == {"J68.200": ("115", "105")}
    assert set(d.tables) == {"cc", "diagnosis_map"}
    assert d.tables["diagnosis_map"].changed == {"B06.801+J17.1*": (" B06.801+J17.1*", "")}
    assert d.evaluation["missing_numbers"] == ("null", "zero")
    assert d.evaluation["validation"][1] == ("sex_present", "diagnoses_present")
    # Same condition, list contents changed: the codes are reported.
    bj1 = d.rule_change("BJ1")
    assert [(c.added, c.removed) for c in bj1.list_changes] == [(("83.9800x001",), ())]
    assert d.rule_change("OR1").after == "any_sec_dx_in(OR1.dx2)"
    assert d.rule_change("MDCO") is not None
    # Rules whose lists were renamed but hold the same codes are not reported:
    # OR1.dx2 vs OR1.dx is a different condition, but e.g. the 3 MDCB codes are content.
    changed = {r.code for r in d.rule_changes}
    assert "AG1" not in changed and "GZ1" not in changed
    assert d.to_dict()["mdc_order_changed"] is True


def test_renamed_identical_list_is_not_a_rule_change(tmp_path):
    from grouper_testkit import minimal_scheme_data, write_scheme

    a = load_scheme(write_scheme(tmp_path / "a"))
    data = minimal_scheme_data()
    data["lists"]["A21.diag"] = data["lists"].pop("A21.dx")
    data["adrg"]["adrgs"][1]["rule"] = {"pdx_in": "A21.diag"}
    b = load_scheme(write_scheme(tmp_path / "b", data))
    d = diff_schemes(a, b)
    assert d.rule_changes == []
    assert d.lists_added == ["A21.diag"] and d.lists_removed == ["A21.dx"]


def test_diff_counts_moves(national, quanzhou):
    cases = oracle_cases("chs-drg-1.1")[:2000]
    d = diff_schemes(national, quanzhou, cases)
    assert d.cases == 2000
    moved = 0
    for c in cases:
        a, b = national.group(c), quanzhou.group(c)
        moved += (a.drg, a.status) != (b.drg, b.status)
    assert d.moved_cases == moved > 0
    assert all(n > 0 for n in d.moves.values())
