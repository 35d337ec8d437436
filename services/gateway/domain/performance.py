"""Hospital performance evaluation (绩效评价, docs/domain.md §12, §14) and the quality deposit
(质量保证金) it sets. Pure.

Each hospital's score for a quarter or a year is the sum of component points. A component has
a value (a share or a ratio, from the indicator aggregates, ingest's list quality and review's
confirmed flags), a weight (its full points) and a band: `full` (the value at or beyond which
it gets every point) and `zero` (at or beyond which it gets none), linear in between, so
the same rule serves "higher is better" (full > zero) and "lower is better" (full < zero):

    points = weight × clamp((value − zero) / (full − zero), 0, 1), to 2 decimals (half up)

A component without a value (no lists, no peers) gets no points and its weight is left out:

    score = Σ points / Σ weights of the measured components × 100, to 2 decimals

The components (`COMPONENTS`): list quality (合格率 of the lists ingest decided), 入组率, CMI
against the peers of its level (the hospital's CMI / the CMI of all hospitals of the level in
the region), the high- plus low-outlier share, the special-case share, confirmed flags per case,
the 31-day unplanned readmission rate and the self-pay (自费) share of the cost.

Quality deposit: the yearly score sets the share of the year's withheld deposit returned at
annual clearing: all of it at or above `deposit_full_score`, none below `deposit_zero_score`,
linear in between (to 4 decimals, half up); the pricer computes the amount (to the fen).

The weights, bands and deposit scores are parameters (`Parameters`), stored per region as
versions valid from a year; `DEFAULT` holds when none is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared.errors import Invalid

POINTS = Decimal("0.01")
SHARE = Decimal("0.0001")
HUNDRED = Decimal(100)

# component -> (Chinese label, weight, full, zero)
COMPONENTS: dict[str, tuple[str, str, str, str]] = {
    "qc_pass_rate": ("结算清单合格率", "20", "1.00", "0.90"),
    "grouping_rate": ("入组率", "15", "0.99", "0.90"),
    "cmi_vs_peers": ("CMI/同级CMI", "10", "1.00", "0.80"),
    "outlier_share": ("高低倍率病例占比", "10", "0.05", "0.20"),
    "special_case_share": ("特例单议占比", "5", "0.05", "0.10"),
    "confirmed_flag_rate": ("确认违规病例率", "20", "0", "0.05"),
    "readmission_rate_31": ("31日再入院率", "10", "0.02", "0.10"),
    "self_pay_ratio": ("自费比例", "10", "0.05", "0.15"),
}


@dataclass(frozen=True)
class Band:
    weight: Decimal
    full: Decimal
    zero: Decimal

    def points(self, value: Decimal) -> Decimal:
        if self.full == self.zero:
            fraction = Decimal(1) if value == self.full else Decimal(0)
        else:
            fraction = min(max((value - self.zero) / (self.full - self.zero), Decimal(0)), Decimal(1))
        points = (self.weight * fraction).quantize(POINTS, rounding=ROUND_HALF_UP)
        return abs(points) if points == 0 else points  # a value on the band's zero: 0.00, never -0.00


@dataclass(frozen=True)
class Parameters:
    """The evaluation's weights and bands, and the deposit rule."""

    bands: Mapping[str, Band]
    deposit_full_score: Decimal = Decimal(90)
    deposit_zero_score: Decimal = Decimal(60)

    def to_dict(self) -> dict[str, Any]:
        return {"components": {k: {"weight": str(b.weight), "full": str(b.full), "zero": str(b.zero)}
                               for k, b in self.bands.items()},
                "deposit_full_score": str(self.deposit_full_score),
                "deposit_zero_score": str(self.deposit_zero_score)}


DEFAULT = Parameters({k: Band(Decimal(w), Decimal(f), Decimal(z)) for k, (_, w, f, z) in COMPONENTS.items()})


def parse_parameters(doc: Any) -> Parameters:
    """Parameters from a document ({"components": {name: {weight, full, zero}}, "deposit_full_score",
    "deposit_zero_score"}); a component left out keeps its default; 422 naming the field."""
    if not isinstance(doc, Mapping):
        raise Invalid("parameters must be a JSON object", code="INVALID_FIELD", field="parameters")
    bands = dict(DEFAULT.bands)
    comps = doc.get("components") or {}
    if not isinstance(comps, Mapping):
        raise Invalid("components must be an object", code="INVALID_FIELD", field="components")
    for name, c in comps.items():
        if name not in COMPONENTS:
            raise Invalid(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}", code="INVALID_FIELD",
                          field=f"components.{name}")
        if not isinstance(c, Mapping):
            raise Invalid("a component is {weight, full, zero}", code="INVALID_FIELD", field=f"components.{name}")
        base = bands[name]
        bands[name] = Band(*(_decimal(c.get(k, getattr(base, k)), f"components.{name}.{k}")
                             for k in ("weight", "full", "zero")))
        if bands[name].weight < 0:
            raise Invalid("a weight is not negative", code="INVALID_FIELD", field=f"components.{name}.weight")
    full = _decimal(doc.get("deposit_full_score", DEFAULT.deposit_full_score), "deposit_full_score")
    zero = _decimal(doc.get("deposit_zero_score", DEFAULT.deposit_zero_score), "deposit_zero_score")
    if not 0 <= zero <= full <= HUNDRED:
        raise Invalid("0 ≤ deposit_zero_score ≤ deposit_full_score ≤ 100", code="INVALID_FIELD",
                      field="deposit_zero_score")
    if sum((b.weight for b in bands.values()), Decimal(0)) == 0:
        raise Invalid("at least one component has a weight", code="INVALID_FIELD", field="components")
    return Parameters(bands, full, zero)


def _decimal(value: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        raise Invalid(f"{name} must be a decimal string", code="INVALID_FIELD", field=name) from None
    if not d.is_finite():
        raise Invalid(f"{name} must be a finite decimal", code="INVALID_FIELD", field=name)
    return d


@dataclass(frozen=True)
class Inputs:
    """One hospital's figures for the period: counts from the aggregates, ingest and review."""

    hospital_code: str
    level: int
    cases: int
    grouped: int
    weight_sum: Decimal
    weighted: int
    outliers: int  # high + low
    special_cases: int
    readmissions_31: int
    cost_sum: Decimal
    own_pay_sum: Decimal
    lists: int = 0  # decided by ingest
    lists_passed: int = 0
    confirmed_flags: int = 0


def _ratio(num: Decimal | int, den: Decimal | int) -> Decimal | None:
    return None if not den else (Decimal(num) / Decimal(den)).quantize(SHARE, rounding=ROUND_HALF_UP)


def peer_cmi(hospitals: list[Inputs]) -> dict[int, Decimal | None]:
    """The CMI of all the hospitals of each level together (Σ RW / cases with a weight)."""
    acc: dict[int, tuple[Decimal, int]] = {}
    for h in hospitals:
        w, n = acc.get(h.level, (Decimal(0), 0))
        acc[h.level] = (w + h.weight_sum, n + h.weighted)
    return {level: _ratio(w, n) for level, (w, n) in acc.items()}


def values(h: Inputs, peers: Decimal | None) -> dict[str, Decimal | None]:
    """The components' values of one hospital (shares to 4 decimals)."""
    cmi = _ratio(h.weight_sum, h.weighted)
    return {
        "qc_pass_rate": _ratio(h.lists_passed, h.lists),
        "grouping_rate": _ratio(h.grouped, h.cases),
        "cmi_vs_peers": None if cmi is None or not peers else _ratio(cmi, peers),
        "outlier_share": _ratio(h.outliers, h.cases),
        "special_case_share": _ratio(h.special_cases, h.cases),
        "confirmed_flag_rate": _ratio(h.confirmed_flags, h.cases),
        "readmission_rate_31": _ratio(h.readmissions_31, h.cases),
        "self_pay_ratio": _ratio(h.own_pay_sum, h.cost_sum),
    }


@dataclass(frozen=True)
class Score:
    hospital_code: str
    level: int
    score: Decimal
    deposit_return_share: Decimal
    components: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"hospital_code": self.hospital_code, "level": self.level, "score": str(self.score),
                "deposit_return_share": str(self.deposit_return_share), "components": list(self.components)}


def deposit_return_share(score: Decimal, p: Parameters) -> Decimal:
    """The share of the withheld deposit returned for a yearly score (see the module docstring)."""
    if score >= p.deposit_full_score:
        return Decimal(1)
    if score < p.deposit_zero_score or p.deposit_full_score == p.deposit_zero_score:
        return Decimal(0)
    return ((score - p.deposit_zero_score) / (p.deposit_full_score - p.deposit_zero_score)).quantize(
        SHARE, rounding=ROUND_HALF_UP)


def evaluate(hospitals: list[Inputs], p: Parameters = DEFAULT) -> list[Score]:
    """Every hospital's score with each component's value and points, hospital code order."""
    peers = peer_cmi(hospitals)
    out = []
    for h in sorted(hospitals, key=lambda h: h.hospital_code):
        comps, earned, possible = [], Decimal(0), Decimal(0)
        for name, v in values(h, peers.get(h.level)).items():
            band = p.bands[name]
            pts = None if v is None else band.points(v)
            if pts is not None:
                earned += pts
                possible += band.weight
            comps.append({"component": name, "label": COMPONENTS[name][0], "value": None if v is None else str(v),
                          "weight": str(band.weight), "points": None if pts is None else str(pts)})
        score = (earned / possible * HUNDRED).quantize(POINTS, rounding=ROUND_HALF_UP) if possible else Decimal(0)
        out.append(Score(h.hospital_code, h.level, score, deposit_return_share(score, p), tuple(comps)))
    return out
