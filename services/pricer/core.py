"""Pricer's domain core: the DRG payment standard of a case (docs/domain.md §7, rate method).

payment standard = rate × RW × hospital coefficient, in yuan, rounded half-up to the fen.
Every number comes from a `PricingPolicy` that applies to one region and one period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

FEN = Decimal("0.01")
WEIGHT_PLACES = Decimal("0.0001")

# Insurance types as hospitals send them (hi_type) or as words.
INSURANCE_TYPES = {"310": "employee", "employee": "employee", "职工": "employee",
                   "390": "resident", "resident": "resident", "居民": "resident"}


class PolicyError(ValueError):
    """A pricing policy document is invalid; the message names the field."""


@dataclass(frozen=True)
class PricingPolicy:
    policy_id: str
    region: str
    valid_from: date
    valid_to: date | None
    rates: dict[str, Decimal]  # insurance type -> yuan per RW
    default_rate: Decimal
    weights: dict[str, Decimal]  # DRG code -> RW
    hospital_coefficients: dict[str, Decimal] = field(default_factory=dict)
    default_coefficient: Decimal = Decimal("1")

    def covers(self, region: str, day: date | None) -> bool:
        if region != self.region or day is None:
            return False
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PricingPolicy:
        def dec(path: str, value: Any, places: Decimal | None = None) -> Decimal:
            if isinstance(value, float) or isinstance(value, bool):
                raise PolicyError(f"{path}: write amounts as decimal strings, not JSON numbers")
            try:
                d = Decimal(str(value))
            except Exception:
                raise PolicyError(f"{path}: {value!r} is not a decimal number") from None
            if not d.is_finite() or d < 0:
                raise PolicyError(f"{path}: must be a non-negative number")
            return d.quantize(places) if places else d

        def day(path: str, value: Any) -> date:
            try:
                return date.fromisoformat(str(value))
            except ValueError:
                raise PolicyError(f"{path}: {value!r} is not a YYYY-MM-DD date") from None

        for key in ("policy_id", "region", "valid_from", "default_rate", "weights"):
            if key not in doc:
                raise PolicyError(f"{key}: required")
        if not isinstance(doc["weights"], dict):
            raise PolicyError("weights: must be an object DRG code -> weight")
        return cls(
            policy_id=str(doc["policy_id"]),
            region=str(doc["region"]),
            valid_from=day("valid_from", doc["valid_from"]),
            valid_to=day("valid_to", doc["valid_to"]) if doc.get("valid_to") else None,
            rates={INSURANCE_TYPES.get(k, k): dec(f"rates.{k}", v) for k, v in doc.get("rates", {}).items()},
            default_rate=dec("default_rate", doc["default_rate"]),
            weights={k: dec(f"weights.{k}", v, WEIGHT_PLACES) for k, v in doc["weights"].items()},
            hospital_coefficients={k: dec(f"hospital_coefficients.{k}", v)
                                   for k, v in doc.get("hospital_coefficients", {}).items()},
            default_coefficient=dec("default_coefficient", doc.get("default_coefficient", "1")),
        )


@dataclass(frozen=True)
class Price:
    status: str  # PRICED | NOT_GROUPED | NO_WEIGHT | NO_POLICY
    policy_id: str | None = None
    weight: Decimal | None = None
    base_rate: Decimal | None = None
    coefficient: Decimal | None = None
    payment_standard: Decimal | None = None


def choose_policy(policies: list[PricingPolicy], region: str, discharge: date | None) -> PricingPolicy | None:
    matching = [p for p in policies if p.covers(region, discharge)]
    return max(matching, key=lambda p: p.valid_from) if matching else None


def price_case(policy: PricingPolicy | None, *, drg: str, group_status: str, hospital_code: str,
               insurance_type: str | None) -> Price:
    """The DRG payment standard of one grouped case."""
    if group_status not in ("SUCCESS", "QY"):
        return Price("NOT_GROUPED")
    if policy is None:
        return Price("NO_POLICY")
    weight = policy.weights.get(drg)
    if weight is None:
        return Price("NO_WEIGHT", policy.policy_id)
    rate = policy.rates.get(INSURANCE_TYPES.get(insurance_type or "", ""), policy.default_rate)
    coefficient = policy.hospital_coefficients.get(hospital_code, policy.default_coefficient)
    standard = (rate * weight * coefficient).quantize(FEN, rounding=ROUND_HALF_UP)
    return Price("PRICED", policy.policy_id, weight, rate, coefficient, standard)
