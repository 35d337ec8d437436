"""Policy documents: the example file, defaults, look-ups, and errors that name the field path."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from pricer_testkit import BASE_DOC, make_policy, policy_doc

from services.pricer.domain.policy import PolicyError, load_policy, parse_policy
from shared.errors import Invalid

EXAMPLE = Path(__file__).resolve().parents[3] / "services" / "pricer" / "policy.example.json"


def test_example_file_loads_and_round_trips():
    p = load_policy(EXAMPLE)
    assert p.method == "rate" and p.weights.version == "350500-2024-w1"
    # hi_type 390 was accepted as a key and stored as "resident"
    assert p.rate_for("390", 3) == Decimal("9649.24")
    assert p.rate_for("310", 2) == Decimal("11800.00")
    assert p.rate_for("职工", 1) == Decimal("11200.00")
    again = parse_policy(orjson.dumps(p.to_document(), option=orjson.OPT_NON_STR_KEYS))
    assert again == p


def test_defaults_are_the_domain_parameters():
    p = make_policy()
    assert p.hospitals.level_coefficients == {3: Decimal("1.0"), 2: Decimal("0.85"), 1: Decimal("0.7")}
    assert [p.high_multiple(Decimal(x)) for x in ("0.5", "1", "1.0001", "2", "2.5")] == [
        3, 3, 2, 2, Decimal("1.5")]
    assert p.outliers.low_ratio == Decimal("0.4")
    assert p.outliers.high_extra_coefficient == Decimal("0.9")
    assert p.settlement.pre_settlement_share == Decimal("0.95")
    assert p.settlement.reserve_share == Decimal("0.05")
    assert p.settlement.overspend_bands[0].up_to == Decimal("0.10")
    assert p.settlement.overspend_bands[0].fund_share == Decimal("0.5")
    assert p.scope.max_los == 60 and p.points.scale == 100
    assert p.weights.table["AB11"] == Decimal("2.5000")  # weights kept to 4 places


def test_hospital_coefficient_overrides_level_and_case_level_wins_over_registry():
    p = make_policy(hospitals={"coefficients": {"H2": "0.9"}})
    assert p.coefficient_for("H2", p.level_of("H2", None)) == Decimal("0.9")
    assert p.level_of("H2", 1) == 1
    assert p.coefficient_for("HX", 1) == Decimal("0.7")
    assert p.coefficient_for("HX", None) is None


def test_rate_levels_and_default_insurance_type():
    doc = policy_doc()
    doc["rates"] = {"310": {"3": "12000", "default": "11000"}, "default": {"default": "9000"}}
    p = parse_policy(doc)
    assert p.rate_for("employee", 3) == Decimal("12000.00")
    assert p.rate_for("employee", 2) == Decimal("11000.00")
    assert p.rate_for(None, 3) == Decimal("9000.00")
    assert p.rate_for("resident", 1) == Decimal("9000.00")


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"weights": {"version": "w", "table": {"AB11": 2.5}}}, "weights.table.AB11"),
        ({"outliers": {"low_ratio": "-0.4"}}, "outliers.low_ratio"),
        ({"settlement": {"reserve_share": "1.5"}}, "settlement.reserve_share"),
        ({"rates": {"999": {"default": "1"}}}, "rates"),
        ({"rates": {"employee": {"4": "1"}}}, "rates.employee.4"),
        ({"hospitals": {"levels": {"H9": 5}}}, "hospitals.levels.H9"),
        ({"outliers": {"high_tiers": [{"rw_up_to": "2", "multiple": "2"}]}}, "outliers.high_tiers"),
        ({"scope": {"out_of_scope_payment": "per_diem"}}, "scope"),
        ({"method": "banana"}, "method"),
        ({"valid_to": "2023-01-01"}, "valid_to"),
        ({"method": "points"}, "points.provisional_point_value"),
        ({"weight": {}}, "weight"),  # unknown key: a typo must not fall back to a default
    ],
)
def test_errors_name_the_field_path(override, path):
    with pytest.raises(PolicyError) as e:
        parse_policy(policy_doc(**override))
    assert e.value.path == path, str(e.value)
    assert str(e.value).startswith(path + ":")


def test_missing_fields_and_bad_json():
    doc = {k: v for k, v in BASE_DOC.items() if k != "weights"}
    with pytest.raises(PolicyError) as e:
        parse_policy(doc)
    assert e.value.path == "weights"
    with pytest.raises(PolicyError, match="not valid JSON"):
        parse_policy(b"{nope")


def test_policy_error_is_invalid_input():
    # the pricer service and `drgdip policy import` catch it; callers may treat it as bad input
    assert issubclass(PolicyError, Invalid) and PolicyError([("a", "b")]).status == 422


def test_covers_region_and_period():
    p = make_policy()
    from datetime import date

    assert p.covers("R1", date(2024, 6, 1))
    assert not p.covers("R1", date(2025, 1, 1))
    assert not p.covers("R2", date(2024, 6, 1))
