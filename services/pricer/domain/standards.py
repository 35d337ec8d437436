"""A group's payment standard per hospital level under one policy version (§7, §12): what the
cross-region / cross-version comparison reads. Pure.

Rate method: standard = rate × RW × level coefficient (the default insurance's rate of the
level); point method: standard = RW × scale × level coefficient × provisional point value; to
the fen, as pricing computes a normal case's standard. Per level, never per doctor (§12).
"""

from __future__ import annotations

from typing import Any

from services.pricer.domain.policy import Policy
from shared.errors import NotFound
from shared.money import to_fen, to_points


def group_standards(policy: Policy, drg: str) -> dict[str, Any]:
    """The group's weight and its standard for each level the policy has a coefficient for;
    404 `GROUP_NOT_IN_POLICY` when the policy has no weight for it."""
    rw = policy.weights.table.get(drg)
    if rw is None:
        raise NotFound(f"{policy.policy_id} v{policy.version} has no weight for {drg!r}",
                       code="GROUP_NOT_IN_POLICY", field="drg")
    rows = []
    for level, coefficient in sorted(policy.hospitals.level_coefficients.items()):
        if policy.method == "rate":
            rate = policy.rate_for(None, level)
            standard = None if rate is None else to_fen(rate * rw * coefficient)
            base: dict[str, Any] = {"rate": None if rate is None else str(rate)}
        else:
            pv = policy.points.provisional_point_value
            standard = None if pv is None else to_fen(to_points(rw * policy.points.scale) * coefficient * pv)
            base = {"point_value": None if pv is None else str(pv)}
        rows.append({"level": level, "coefficient": str(coefficient), **base,
                     "standard": None if standard is None else str(standard)})
    return {"policy_id": policy.policy_id, "version": policy.version, "region": policy.region,
            "method": policy.method, "scheme_id": policy.scheme_id, "drg": drg, "weight": str(rw),
            "valid_from": policy.valid_from.isoformat(),
            "valid_to": None if policy.valid_to is None else policy.valid_to.isoformat(), "standards": rows}
