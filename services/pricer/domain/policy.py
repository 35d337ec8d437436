"""Pricing policy as versioned data: every number §6–§8 of docs/domain.md treats as a parameter.

A `Policy` applies to one region and one period (`valid_from`..`valid_to`). It is loaded from a
JSON document; a new version of the rules is a new document (new `version`), never an edit, so a
computed price can always name the policy id, version and weights version that produced it
(docs/domain.md §13).

JSON format (`format` = "drgdip.pricing-policy/1"; see `policy.example.json`)
-----------------------------------------------------------------------------
Numbers that are money, weights, ratios or point values are written as **decimal strings**
("12252.70"), never JSON floats (a float is rejected with the field path). Integers are
accepted where a count or level is meant. Unknown keys are rejected (a typo must not silently
fall back to a default).

====================================  ==========================================================
key                                   meaning (default)
====================================  ==========================================================
format                                "drgdip.pricing-policy/1"
policy_id, version                    identity; version is an integer ≥ 1, bumped on each change
region                                the region whose bureau issues it (treatment location)
valid_from, valid_to                  "YYYY-MM-DD"; valid_to optional (open-ended), inclusive
method                                "rate" (费率法) or "points" (点数法), §7
scheme_id                             the grouping scheme the DRG codes belong to
weights.version, weights.table        the weights table's own id; {DRG: RW}, 4 decimals (§6)
rates                                 {insurance type: {level: yuan per RW}}; insurance type is
                                      "employee" | "resident" (hi_type "310" / "390" accepted) or
                                      "default"; level is "1" | "2" | "3" or "default" (used for a
                                      level not listed). Required for the rate method. If the
                                      rates already differ by level, set level coefficients to 1.
hospitals.level_coefficients          {level: coefficient} ({"3": 1.0, "2": 0.85, "1": 0.7})
hospitals.levels                      {hospital code: level}, used when a case carries no level
hospitals.coefficients                {hospital code: coefficient}, overrides the level's one
group_mean_costs                      {DRG: region mean cost, yuan}, for outlier typing (§7)
overall_mean_cost                     mean cost of all cases (yuan); needed by the point method
                                      (high-outlier and add-on points)
outliers.high_tiers                   [{"rw_up_to": "1", "multiple": "3"}, {"rw_up_to": "2",
                                      "multiple": "2"}, {"rw_up_to": null, "multiple": "1.5"}]:
                                      k_high for RW ≤ rw_up_to, ascending, last one open-ended
outliers.low_ratio                    low outlier if cost < low_ratio × mean ("0.4")
outliers.high_extra_coefficient       share of the cost above k_high × mean paid ("0.9")
outliers.low_payment                  rate method: "by_item" (pay the actual cost) or "ratio"
                                      (standard × cost / mean). The point method always uses
                                      base points × cost / mean (§7)
scope.min_los                         LOS ≤ this is out of DRG scope, paid by item (2; 0 = no
                                      lower bound)
scope.max_los                         LOS ≥ this is out of DRG scope → special review (60)
scope.out_of_scope_payment            "by_item" (the actual cost) or "per_diem" (rate × LOS)
scope.per_diem_rate                   yuan per bed-day, required for "per_diem"
add_ons.innovative_drugs.mode         "by_item": amount × pay_ratio in yuan on top, outside the
                                      point budget; "points": converted to points
                                      (amount × pay_ratio / overall mean × scale) that share in
                                      the budget (under the rate method both pay the same yuan)
add_ons.innovative_drugs.pay_ratio    ("1")
settlement.pre_settlement_share       monthly pre-settlement share ("0.95"), §8
settlement.surplus_keep_cap           max surplus kept, as a share of the hospital's DRG payment;
                                      null = keep it all (null)
settlement.overspend_bands            [{"up_to": "0.10", "fund_share": "0.5"}]: overspend as a
                                      share of the DRG payment, banded; the fund shares
                                      fund_share of the part in each band; beyond the last band
                                      the hospital bears it ("up_to": null = no limit)
settlement.reserve_share              reserve (调剂金) withheld from the budget ("0.05")
settlement.quality_deposit_share      quality deposit (质量保证金) withheld from each monthly
                                      pre-settlement, as a share of what it pays ("0.05");
                                      returned at annual clearing by the yearly performance
                                      score (绩效评价), in full without an adopted evaluation
settlement.settlement_working_days    working days from a hospital's monthly declaration (申报)
                                      to its pre-settlement (20), §8: the timeliness indicator
points.scale                          base points = RW × scale (100; 1000 also used)
points.provisional_point_value        yuan per point for monthly pre-settlement and pricing,
                                      6 decimals; required for the point method
notes                                 free text (what changed in this version and why)
====================================  ==========================================================

Out-of-scope cases (per-diem stays, LOS ≤ scope.min_los and LOS ≥ scope.max_los) are not priced by DRG: they are paid
by item or per bed-day as set here, and flagged for special review (特例单议, §10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import Conflict, Invalid, detail
from shared.money import Money, PointValue, Ratio, Weight, to_point_value

POLICY_FORMAT: Literal["drgdip.pricing-policy/1"] = "drgdip.pricing-policy/1"
LEVELS = (1, 2, 3)

# Insurance types as hospitals send them (hi_type) or as words.
INSURANCE_TYPES = {"310": "employee", "employee": "employee", "职工": "employee",
                   "390": "resident", "resident": "resident", "居民": "resident"}


def insurance_kind(code: str | None) -> str | None:
    """'employee' / 'resident' from a hi_type code (310/390), an English or a Chinese word."""
    if code is None:
        return None
    return INSURANCE_TYPES.get(str(code).strip())


class PolicyError(Invalid):
    """A policy document is invalid (422 `INVALID_POLICY`). `str(e)` starts with the first field
    path ("a.b: ..."); `details` has one entry per bad field."""

    default_code = "INVALID_POLICY"

    def __init__(self, errors: list[tuple[str, str]], *, code: str | None = None) -> None:
        self.errors = errors
        code = code or self.default_code
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in errors), code=code,
                         field=self.path or None,
                         details=[detail(path, code, msg) for path, msg in errors])

    @property
    def path(self) -> str:
        return self.errors[0][0] if self.errors else ""

    @classmethod
    def from_validation(cls, e: ValidationError) -> PolicyError:
        """Every field pydantic found at fault in a policy document (DRG or DIP)."""
        errors = []
        for err in e.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            path = _path(err["loc"])
            # model-level checks put their own field path (relative to the model) in front
            # of the message
            head, sep, rest = msg.partition(": ")
            if sep and " " not in head:
                path, msg = (f"{path}.{head}" if err["loc"] else head), rest
            errors.append((path, msg))
        return cls(errors)


class PolicyConflict(Conflict):
    """The policy version is stored with another content, or is older than the stored one
    (409 `POLICY_VERSION_CONFLICT`)."""

    default_code = "POLICY_VERSION_CONFLICT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field,
                         details=[detail(field, self.default_code, message)])


def check_new_version(kind: str, policy_id: str, version: int, latest: int | None,
                      stored_same: bool | None) -> bool:
    """Whether `version` of a policy is to be stored, given the latest stored version and, when
    this version is stored already, whether with the same content: False for the same content
    (re-importing is a no-op); `PolicyConflict` for another content, or a version older than
    the latest stored one."""
    if stored_same is not None:
        if stored_same:
            return False
        raise PolicyConflict("version", f"{kind} {policy_id} version {version} is already stored "
                                        "with another content: bump the version")
    if latest is not None and latest > version:
        raise PolicyConflict("version", f"{kind} {policy_id} is at version {latest}: "
                                        "a new version must be higher")
    return True


class PolicyOverlap(Conflict):
    """Another policy of the same kind is stored for the same region and an overlapping period
    (409 `POLICY_OVERLAP`): only one of them could ever be used."""

    default_code = "POLICY_OVERLAP"


def check_no_overlap(kind: str, policy_id: str, region: str, valid_from: date,
                     valid_to: date | None,
                     stored: Sequence[tuple[str, int, str, date, date | None]]) -> None:
    """Refuse a policy whose region and period overlap a stored policy of another id
    (`stored`: (policy_id, version, region, valid_from, valid_to) of every stored version of the
    kind); a new version of the same policy id replaces its predecessor and may overlap it."""
    end = valid_to or date.max
    clashes = [(pid, v, start, until) for pid, v, r, start, until in stored
               if pid != policy_id and r == region and start <= end and valid_from <= (until or date.max)]
    if not clashes:
        return
    pid, v, start, until = clashes[0]
    message = (f"{kind} {policy_id} ({region}, {valid_from}–{valid_to or 'open'}) overlaps {pid} "
               f"v{v} ({start}–{until or 'open'}) of the same region: only one policy can be in "
               f"force on a day; import a new version of {pid}, or end it first (valid_to)")
    raise PolicyOverlap(message, field="valid_from",
                        details=[detail("valid_from", PolicyOverlap.default_code, message)])


Level = Annotated[int, Field(ge=1, le=3)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections -----------------------------------------------------------------------------------

class WeightsTable(_Model):
    """The DRG relative weights (§6) with the id of the calibration that produced them."""

    version: str = Field(min_length=1)
    table: dict[str, Weight] = Field(min_length=1)


class Hospitals(_Model):
    """Hospital levels and coefficients (§7: tertiary 1.0 / secondary 0.85 / primary 0.7)."""

    level_coefficients: dict[Level, Ratio] = Field(
        default_factory=lambda: {3: Decimal("1.0"), 2: Decimal("0.85"), 1: Decimal("0.7")}
    )
    levels: dict[str, Level] = Field(default_factory=dict)
    coefficients: dict[str, Ratio] = Field(default_factory=dict)

    def level_of(self, hospital_code: str, case_level: int | None) -> int | None:
        """The case's own level if given, else the level registered for the hospital."""
        return case_level if case_level is not None else self.levels.get(hospital_code)

    def coefficient_for(self, hospital_code: str, level: int | None) -> Decimal | None:
        """A hospital's own coefficient if set, else its level's coefficient."""
        own = self.coefficients.get(hospital_code)
        if own is not None:
            return own
        return self.level_coefficients.get(level) if level is not None else None


class HighTier(_Model):
    rw_up_to: Weight | None
    multiple: Ratio


def _default_tiers() -> list[HighTier]:
    return [
        HighTier(rw_up_to=Decimal("1"), multiple=Decimal("3")),
        HighTier(rw_up_to=Decimal("2"), multiple=Decimal("2")),
        HighTier(rw_up_to=None, multiple=Decimal("1.5")),
    ]


class Outliers(_Model):
    """Outlier typing and payment (§7, [common] defaults)."""

    high_tiers: list[HighTier] = Field(default_factory=_default_tiers, min_length=1)
    low_ratio: Ratio = Decimal("0.4")
    high_extra_coefficient: Ratio = Decimal("0.9")
    low_payment: Literal["by_item", "ratio"] = "by_item"

    @field_validator("high_tiers")
    @classmethod
    def _tiers_ascending(cls, tiers: list[HighTier]) -> list[HighTier]:
        bounds = [t.rw_up_to for t in tiers]
        if bounds[-1] is not None:
            raise ValueError("the last tier must be open-ended (rw_up_to: null)")
        closed = [b for b in bounds[:-1] if b is not None]
        if len(closed) != len(bounds) - 1 or closed != sorted(set(closed)):
            raise ValueError("rw_up_to must rise strictly, only the last tier may be null")
        return tiers


class Scope(_Model):
    """What is out of DRG scope and how it is paid (§7, §10, §14)."""

    min_los: int = Field(default=2, ge=0)
    max_los: int = Field(default=60, ge=1)
    out_of_scope_payment: Literal["by_item", "per_diem"] = "by_item"
    per_diem_rate: Money | None = None

    @model_validator(mode="after")
    def _per_diem_needs_rate(self) -> Scope:
        if self.out_of_scope_payment == "per_diem" and self.per_diem_rate is None:
            raise ValueError("per_diem_rate is required when out_of_scope_payment is per_diem")
        if self.min_los >= self.max_los - 1:
            raise ValueError("min_los: must leave a LOS in scope (min_los < max_los − 1)")
        return self

    def out_of_scope(self, los: int | None, per_diem: bool) -> str | None:
        """Why a stay is out of DRG/DIP scope (§7 Scope), or None: a per-diem stay,
        LOS ≤ min_los (0 switches the lower bound off) or LOS ≥ max_los. An unknown LOS is
        in scope."""
        if per_diem:
            return "per-diem stay"
        if self.short_stay(los, per_diem):
            return f"LOS {los} ≤ {self.min_los}"
        if los is not None and los >= self.max_los:
            return f"LOS {los} ≥ {self.max_los}"
        return None

    def short_stay(self, los: int | None, per_diem: bool) -> bool:
        """A stay under the lower LOS bound: out of scope, but no special-review case (§10 names
        long stays, not short ones)."""
        return not per_diem and los is not None and 0 < self.min_los and los <= self.min_los


class InnovativeDrugs(_Model):
    mode: Literal["by_item", "points"] = "by_item"
    pay_ratio: Ratio = Decimal("1")


class AddOns(_Model):
    """Paid on top of the DRG payment (§7 exclusions and add-ons [seed: Jilin])."""

    innovative_drugs: InnovativeDrugs = Field(default_factory=InnovativeDrugs)


class OverspendBand(_Model):
    up_to: Ratio | None
    fund_share: Ratio

    @field_validator("fund_share")
    @classmethod
    def _share_le_one(cls, v: Decimal) -> Decimal:
        if v > 1:
            raise ValueError("must be between 0 and 1")
        return v


class Settlement(_Model):
    """Pre-settlement, clearing bands and reserve (§8)."""

    pre_settlement_share: Ratio = Decimal("0.95")
    surplus_keep_cap: Ratio | None = None
    overspend_bands: list[OverspendBand] = Field(
        default_factory=lambda: [OverspendBand(up_to=Decimal("0.10"), fund_share=Decimal("0.5"))]
    )
    reserve_share: Ratio = Decimal("0.05")
    quality_deposit_share: Ratio = Decimal("0.05")
    # §8: a month is pre-settled within 20 working days of the hospital's declaration
    settlement_working_days: int = Field(20, ge=1, le=250)

    @field_validator("pre_settlement_share", "reserve_share", "quality_deposit_share")
    @classmethod
    def _share_le_one(cls, v: Decimal) -> Decimal:
        if v > 1:
            raise ValueError("must be between 0 and 1")
        return v

    @field_validator("overspend_bands")
    @classmethod
    def _bands_ascending(cls, bands: list[OverspendBand]) -> list[OverspendBand]:
        bounds = [b.up_to for b in bands]
        if None in bounds[:-1]:
            raise ValueError("only the last band may be open-ended (up_to: null)")
        closed = [b for b in bounds if b is not None]
        if closed != sorted(set(closed)) or (closed and closed[0] == 0):
            raise ValueError("up_to must be positive and rise strictly")
        return bands


class PointSettings(_Model):
    scale: int = Field(default=100, ge=1)
    provisional_point_value: PointValue | None = None


# --- the policy ---------------------------------------------------------------------------------

def _normalise_rates(value: Any) -> Any:
    # hi_type codes and words are accepted as keys, stored as employee / resident / default.
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, per_level in value.items():
        kind = "default" if key == "default" else insurance_kind(key)
        if kind is None:
            raise ValueError(f"unknown insurance type {key!r} (employee/310, resident/390, default)")
        if kind in out:
            raise ValueError(f"insurance type {kind!r} given twice")
        out[kind] = per_level
    return out


RateLevel = Literal["1", "2", "3", "default"]


class Policy(_Model):
    """One region's pricing rules for one period; see the module docstring for the JSON."""

    format: Literal["drgdip.pricing-policy/1"] = POLICY_FORMAT
    policy_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    region: str = Field(min_length=1)
    valid_from: date
    valid_to: date | None = None
    method: Literal["rate", "points"]
    scheme_id: str = Field(min_length=1)
    weights: WeightsTable
    rates: Annotated[
        dict[Literal["employee", "resident", "default"], dict[RateLevel, Money]],
        BeforeValidator(_normalise_rates),
    ] = Field(default_factory=dict)
    hospitals: Hospitals = Field(default_factory=Hospitals)
    group_mean_costs: dict[str, Money] = Field(default_factory=dict)
    overall_mean_cost: Money | None = None
    outliers: Outliers = Field(default_factory=Outliers)
    scope: Scope = Field(default_factory=Scope)
    add_ons: AddOns = Field(default_factory=AddOns)
    settlement: Settlement = Field(default_factory=Settlement)
    points: PointSettings = Field(default_factory=PointSettings)
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to: must not be before valid_from")
        if self.method == "rate" and not self.rates:
            raise ValueError("rates: required for the rate method")
        if self.method == "points":
            if self.points.provisional_point_value is None:
                raise ValueError("points.provisional_point_value: required for the point method")
            if self.overall_mean_cost is None or self.overall_mean_cost == 0:
                raise ValueError("overall_mean_cost: required (> 0) for the point method")
        return self

    # -- look-ups used by pricing (§7) --

    def covers(self, region: str, day: date | None) -> bool:
        """Whether this policy applies to a case treated in `region` on `day`."""
        if region != self.region or day is None:
            return False
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def level_of(self, hospital_code: str, case_level: int | None) -> int | None:
        return self.hospitals.level_of(hospital_code, case_level)

    def coefficient_for(self, hospital_code: str, level: int | None) -> Decimal | None:
        return self.hospitals.coefficient_for(hospital_code, level)

    def rate_for(self, insurance_type: str | None, level: int | None) -> Decimal | None:
        """Yuan per RW for an insurance type and level ('default' entries fill the gaps)."""
        rates = cast(Mapping[str, Mapping[str, Decimal]], self.rates)
        per_level = rates.get(insurance_kind(insurance_type) or "")
        if per_level is None:
            per_level = rates.get("default")
        if per_level is None:
            return None
        rate = per_level.get(str(level)) if level is not None else None
        return rate if rate is not None else per_level.get("default")

    def high_multiple(self, rw: Decimal) -> Decimal:
        """k_high for a group of weight `rw` (§7: RW ≤ 1: 3×, 1 < RW ≤ 2: 2×, RW > 2: 1.5×)."""
        for tier in self.outliers.high_tiers:
            if tier.rw_up_to is None or rw <= tier.rw_up_to:
                return tier.multiple
        raise AssertionError("the last tier is open-ended")  # guaranteed by validation

    def with_point_value(self, point_value: Decimal) -> Policy:
        """A copy with another provisional point value (what-if; the version is unchanged)."""
        points = self.points.model_copy(update={"provisional_point_value": to_point_value(point_value)})
        return self.model_copy(update={"points": points})

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready document (decimals as strings); `parse_policy` reads it back."""
        return self.model_dump(mode="json")


def _path(loc: tuple[int | str, ...]) -> str:
    # pydantic marks a bad dict key with a trailing "[key]": the key itself is the path
    return ".".join(str(p) for p in loc if p != "[key]") or "(document)"


def parse_policy(document: Mapping[str, Any] | bytes | str) -> Policy:
    """Validate a policy document; raises `PolicyError` naming every bad field path."""
    if isinstance(document, bytes | str):
        try:
            document = orjson.loads(document)
        except orjson.JSONDecodeError as e:
            raise PolicyError([("(document)", f"not valid JSON: {e}")]) from None
    if not isinstance(document, Mapping):
        raise PolicyError([("(document)", "a policy must be a JSON object")])
    try:
        return Policy.model_validate(dict(document))
    except ValidationError as e:
        raise PolicyError.from_validation(e) from None


def policy_from_calibration(
    fragment: Mapping[str, Any], *, method: Literal["rate", "points"] = "rate",
    policy_id: str | None = None, version: int = 1, scheme_id: str = "chs-drg-1.1",
    rate: Decimal | None = None, point_value: Decimal | None = None,
    levels: Mapping[str, int] | None = None, template: Policy | None = None,
    valid_from: date | None = None, valid_to: date | None = None,
) -> Policy:
    """A policy from calibration output (`CalibrationReport.weights_document()`: weights, group
    and overall mean costs, base rate, region, year), valid for the calibration's year.

    Rate method: one rate for every insurance type and level, `rate` or the calibration's base
    rate; point method: `point_value` is the provisional point value. The other sections
    (hospitals, outliers, scope, add-ons, settlement, points scale) come from `template` when
    given, else their defaults; `levels` ({hospital code: level}) are added to the hospitals'.
    Raises `PolicyError` naming the field at fault.
    """
    missing = [k for k in ("weights", "group_mean_costs", "overall_mean_cost", "region", "year")
               if k not in fragment]
    if missing:
        raise PolicyError([(k, "missing from the calibration output (weights-R-Y.json of "
                               "`drgdip calibrate`)") for k in missing])
    year = fragment["year"]
    if not isinstance(year, int):
        raise PolicyError([("year", "must be a year")])
    doc: dict[str, Any] = template.to_document() if template is not None else {}
    doc.update(
        format=POLICY_FORMAT, policy_id=policy_id or f"{fragment['region']}-{year}-drg-{method}",
        version=version, region=fragment["region"],
        valid_from=(valid_from or date(year, 1, 1)).isoformat(),
        valid_to=(valid_to or date(year, 12, 31)).isoformat(), method=method,
        scheme_id=scheme_id, weights=fragment["weights"],
        group_mean_costs=fragment["group_mean_costs"],
        overall_mean_cost=fragment["overall_mean_cost"],
        notes=f"from calibration {fragment['weights'].get('version', '?')}"
        if isinstance(fragment["weights"], Mapping) else "from calibration")
    if method == "rate":
        chosen = rate if rate is not None else fragment.get("base_rate")
        if chosen is None:
            raise PolicyError([("rates", "the calibration has no base rate (calibrate with "
                                         "--budget) and no rate was given (--rate)")])
        doc["rates"] = {"default": {"default": str(chosen)}}
    else:
        if point_value is None:
            raise PolicyError([("points.provisional_point_value",
                                "required for the point method (--point-value)")])
        doc["points"] = {**doc.get("points", {}), "provisional_point_value": str(point_value)}
    if levels:
        hospitals = dict(doc.get("hospitals", {}))
        hospitals["levels"] = {**hospitals.get("levels", {}), **levels}
        doc["hospitals"] = hospitals
    return parse_policy(doc)


def load_policy(path: Path) -> Policy:
    """Read and validate a policy JSON file."""
    return parse_policy(path.read_bytes())
