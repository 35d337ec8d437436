"""Factories for the pricer's tests (unit, integration, and DIP across services): a small DRG
policy with round numbers, cases, and a DIP policy.

The policy (rate method unless overridden):
    weights   AB11 2.5000, AB13 1.5000, AB15 0.8000
    rates     employee 10000.00 per RW, resident 8000.00 per RW (all levels)
    levels    H3 → 3 (coefficient 1.0), H2 → 2 (0.85), H1 → 1 (0.7)
    means     AB11 20000.00, AB13 12000.00, AB15 6000.00; overall 10000.00
    outliers  §7 defaults: k_high 3× (RW ≤ 1) / 2× (≤ 2) / 1.5×, low 0.4, extra 0.9
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from services.pricer.domain.dip_pricing import DipPoints, DipPolicy
from services.pricer.domain.policy import Hospitals, Policy, parse_policy
from services.pricer.domain.pricing import CaseToPrice

BASE_DOC: dict[str, Any] = {
    "policy_id": "test-2024",
    "version": 1,
    "region": "R1",
    "valid_from": "2024-01-01",
    "valid_to": "2024-12-31",
    "method": "rate",
    "scheme_id": "chs-drg-1.1",
    "weights": {"version": "w-test-1", "table": {"AB11": "2.5", "AB13": "1.5", "AB15": "0.8"}},
    "rates": {"employee": {"default": "10000.00"}, "resident": {"default": "8000.00"}},
    "hospitals": {"levels": {"H3": 3, "H2": 2, "H1": 1}},
    "group_mean_costs": {"AB11": "20000", "AB13": "12000", "AB15": "6000"},
    "overall_mean_cost": "10000",
}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def policy_doc(**over: Any) -> dict[str, Any]:
    return deep_merge(BASE_DOC, over)


def make_policy(**over: Any) -> Policy:
    return parse_policy(policy_doc(**over))


def points_policy(**over: Any) -> Policy:
    """Point method, scale 100, provisional point value 95 yuan per point."""
    return make_policy(**deep_merge(
        {"method": "points", "points": {"scale": 100, "provisional_point_value": "95"}}, over))


def case(**kw: Any) -> CaseToPrice:
    fields: dict[str, Any] = {
        "case_id": "c1", "hospital_code": "H3", "region": "R1", "insurance_type": "employee",
        "drg": "AB13", "group_status": "SUCCESS", "los": 8, "total_cost": "12000",
    }
    fields.update(kw)
    return CaseToPrice.model_validate(fields)


def d(text: str) -> Decimal:
    return Decimal(text)


def dip_policy(**kw: Any) -> DipPolicy:
    """A DIP policy for region R1 (levels H1–H3), provisional point value 50 yuan."""
    fields: dict[str, Any] = dict(
        policy_id="dip-test", version=1, region="R1", valid_from="2024-01-01",
        hospitals=Hospitals(levels={"H3": 3, "H2": 2, "H1": 1}),
        points=DipPoints(provisional_point_value=Decimal("50")))
    return DipPolicy(**{**fields, **kw})
