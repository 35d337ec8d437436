"""The monitoring rules' parameters (docs/domain.md §11): one document per region and period,
versioned like pricing policies. Every number has a documented default; a document names only
what it changes, and is stored resolved (with the defaults of the day filled in), so a stored
version keeps its meaning when the shipped defaults change.

Document (`drgdip review rules import FILE --region R --from D [--to D]`)::

    {"format": "drgdip.review-rules/1",
     "rules": {"SPLIT_ADMISSION": {"days": 15, ...}, "COST_SHIFTING": {"factor": "2.0"}, ...}}

Parameters by rule code (defaults; severities are high | medium | low):

SPLIT_ADMISSION (分解住院)      severity high; days 15 (DRG cases: same ADRG); dip_days 31
    (DIP cases: same DIP category, `dip_match` "category" = the principal diagnosis' 3-character
    category, or "group" = the same DIP group); `planned_on` "either": a readmission is planned
    when the earlier stay's list says a readmission within 31 days was planned
    (days_rinp_flag_31 = 2, its national meaning) or the readmission's own list does ("earlier",
    "later": only that list); stays for chemotherapy, radiotherapy or dialysis are never split
    admissions: `excluded_diagnoses` (principal diagnosis prefixes: Z51.0 radiotherapy, Z51.1
    and Z51.2 chemotherapy, Z49 dialysis) and `excluded_procedures` (any procedure's prefix:
    99.25 chemotherapy infusion, 99.28 immunotherapy, 92.2 and 92.3 radiotherapy, 39.95
    haemodialysis, 54.98 peritoneal dialysis).
UPCODING_SECONDARY (高套)       severity medium; `cost_ratio` 1: the case's cost is below
    cost_ratio × the mean cost of the group it would have without the one secondary diagnosis
    that lifts it into its CC/MCC group. `compare_with` "level": that mean is the lower group's
    mean at hospitals of the case's level in the region (review's running figures of the DRG-priced
    cases, as §7 compares DIP cases with the same-level mean), once the region has
    `min_level_cases` 30 of them; before, the lower group's regional mean (the policy's) × the
    hospital's coefficient as priced (its level's, e.g. 0.85 at secondary hospitals); "region":
    the regional mean alone, whatever the level.
LOW_STANDARD_ADMISSION (低标入院) severity medium; `max_los` 2 days; DRG: cost below
    `cost_ratio` 0.4 × the group mean; DIP: graded by cost / mean, `dip_grades`
    < 0.3 high, < 0.5 medium, < 0.7 low.
PRIMARY_CARE_AT_TERTIARY        severity low; `groups` [] (DRG, ADRG or DIP group codes of the
    region's primary-care groups, 基层病组); `use_catalogue_flag` true: the DIP catalogue's
    primary-care groups count too; `levels` [3]: the hospital levels it applies to.
COST_SHIFTING (转移费用)        severity medium; the case's self-pay (自费) share of its cost is
    above `factor` 2 × its group's regional share (Σ 自费 / Σ cost of the region's other cases of
    the group), at least `min_case_share` 0.10, once the group has `min_cases` 30 cases; while it
    has fewer, `adrg_fallback` true: its ADRG's regional share (every group of the ADRG, by the
    same method), once the ADRG has `min_cases`; false: the case is not judged.

Hospital-level rules (per hospital and period, month or quarter; `hospital_rules.py`). A period
is compared with the hospital's own `history_periods` 4 periods of the same kind before it (the
previous 4 months, or 4 quarters; pooled: Σ counts / Σ cases; at least `min_history_periods` 2
with cases), and the hospital is judged only with `min_cases` 30 cases in the period (and in
its history). A change counts only when it is also significant: a one-sided z-test at
`significance` 0.05 (two-proportion for a share, pooled; two-sample of the mean RW for the CMI)
finds it unlikely to be chance at the hospital's volume (1 switches the test off):

HOSPITAL_UPCODING (高套, hospital) severity medium; the MCC/CC share (DRGs ending in 1 or 3) or
    the CMI (Σ RW / cases) rose by at least `share_jump` 0.20 / `cmi_jump` 0.10 (relative) over
    its own history AND is above the `peer_percentile` 90th percentile of the period's other
    hospitals of the same level in the region (at least `min_peers` 3 with `min_cases`); both
    the rise over its history and its excess over the peers' pooled figure significant.
REFUSING_SEVERE (推诿)          severity high; the share of high-RW cases (RW ≥ `high_rw` 2.0)
    fell by at least `drop` 0.20 (relative) while the share leaving by `discharge_ways` [2, 4]
    (2 医嘱转院 transfer out, 4 非医嘱离院 against advice) rose by at least `rise` 0.20
    (relative) and `min_points` 0.01 (absolute); the fall and the rise both significant.
UNDER_SERVICE (服务不足)         severity medium; the low-outlier (低倍率) share and the share of
    31-day readmissions (same person, same hospital, admitted within `readmission_days` 31 days
    of a discharge, not planned) both rose by at least `rise` 0.20 (relative) and `min_points`
    0.01 (absolute), both rises significant.

Every rule has `enabled` (default true). Two sections are not rules:

The flag workflow (FLAG_WORKFLOW, `workflow.py`): a hospital answers (申诉) a flag within
`answer_working_days` 10 working days after the day it was raised (China Standard Time);
working days are Monday to Friday except `holidays` (dates, YYYY-MM-DD, e.g. the public holidays)
plus `workdays` (weekend days worked instead, 调休); both lists default to empty. The version in
force for the flag's region on the day it was raised applies.

SPECIAL_CASES (特例单议, docs/domain.md §10; services/review/domain/special_cases.py)
    `drg_cap_share` 0.05 and `dip_cap_share` 0.005: the region's applications per quarter are
    at most 5 % of its DRG discharges plus 5 ‰ of its DIP discharges (rounded down);
    `hospital_floor` 1: each hospital with complex cases may file at least this many, the rest
    of the cap is shared by complex-case load; `long_stay_days` 60; `cost_multiple` 5 (the
    case's cost above 5 × its group mean, or above the high-outlier threshold); `icu_hours` 24
    and `ventilation_hours` 96 (or a procedure starting with one of `ventilation_procedures`,
    96.7 invasive ventilation); `innovative_fee_items` ["08", "09", "11"] (materials, western
    and patent drugs) make at least `innovative_fee_share` 0.2 of the cost, with evidence;
    `min_surgical_chapters` 2 (procedures of two or more ICD-9-CM-3 surgical chapters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import Invalid

FORMAT = "drgdip.review-rules/1"


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    severity: Severity = Severity.MEDIUM


class SplitAdmission(_Rule):
    severity: Severity = Severity.HIGH
    days: int = Field(15, ge=0, le=366)
    dip_days: int = Field(31, ge=0, le=366)
    dip_match: Literal["category", "group"] = "category"
    planned_on: Literal["earlier", "later", "either"] = "either"
    excluded_diagnoses: tuple[str, ...] = ("Z51.0", "Z51.1", "Z51.2", "Z49")
    excluded_procedures: tuple[str, ...] = ("99.25", "99.28", "92.2", "92.3", "39.95", "54.98")


class Upcoding(_Rule):
    cost_ratio: Decimal = Field(Decimal(1), gt=0)
    compare_with: Literal["level", "region"] = "level"
    min_level_cases: int = Field(30, ge=1)


class Grade(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    below: Decimal = Field(gt=0)
    severity: Severity


class LowStandardAdmission(_Rule):
    max_los: int = Field(2, ge=0)
    cost_ratio: Decimal = Field(Decimal("0.4"), gt=0)
    dip_grades: tuple[Grade, ...] = (Grade(below=Decimal("0.3"), severity=Severity.HIGH),
                                     Grade(below=Decimal("0.5"), severity=Severity.MEDIUM),
                                     Grade(below=Decimal("0.7"), severity=Severity.LOW))

    @field_validator("dip_grades")
    @classmethod
    def _ascending(cls, v: tuple[Grade, ...]) -> tuple[Grade, ...]:
        return tuple(sorted(v, key=lambda g: g.below))


class PrimaryCareAtTertiary(_Rule):
    severity: Severity = Severity.LOW
    groups: tuple[str, ...] = ()
    use_catalogue_flag: bool = True
    levels: tuple[int, ...] = (3,)


class CostShifting(_Rule):
    factor: Decimal = Field(Decimal(2), gt=0)
    min_case_share: Decimal = Field(Decimal("0.10"), ge=0, le=1)
    min_cases: int = Field(30, ge=1)
    adrg_fallback: bool = True


class _HospitalRule(_Rule):
    min_cases: int = Field(30, ge=1)
    history_periods: int = Field(4, ge=1, le=24)
    min_history_periods: int = Field(2, ge=1, le=24)
    significance: Decimal = Field(Decimal("0.05"), gt=0, le=1)


class HospitalUpcoding(_HospitalRule):
    share_jump: Decimal = Field(Decimal("0.20"), ge=0)
    cmi_jump: Decimal = Field(Decimal("0.10"), ge=0)
    peer_percentile: Decimal = Field(Decimal(90), ge=0, le=100)
    min_peers: int = Field(3, ge=1)


class RefusingSevere(_HospitalRule):
    severity: Severity = Severity.HIGH
    high_rw: Decimal = Field(Decimal(2), gt=0)
    drop: Decimal = Field(Decimal("0.20"), ge=0, lt=1)
    rise: Decimal = Field(Decimal("0.20"), ge=0)
    min_points: Decimal = Field(Decimal("0.01"), ge=0, le=1)
    discharge_ways: tuple[int, ...] = (2, 4)


class UnderService(_HospitalRule):
    rise: Decimal = Field(Decimal("0.20"), ge=0)
    min_points: Decimal = Field(Decimal("0.01"), ge=0, le=1)
    readmission_days: int = Field(31, ge=0, le=366)


class FlagWorkflow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    answer_working_days: int = Field(10, ge=0, le=250)
    holidays: tuple[date, ...] = ()
    workdays: tuple[date, ...] = ()


class SpecialCases(BaseModel):
    """The special-case review's eligibility and cap (see SPECIAL_CASES above)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    drg_cap_share: Decimal = Field(Decimal("0.05"), ge=0, le=1)
    dip_cap_share: Decimal = Field(Decimal("0.005"), ge=0, le=1)
    hospital_floor: int = Field(1, ge=0, le=10_000)
    long_stay_days: int = Field(60, ge=1, le=3650)
    cost_multiple: Decimal = Field(Decimal(5), gt=0)
    icu_hours: int = Field(24, ge=0)
    ventilation_hours: int = Field(96, ge=0)
    ventilation_procedures: tuple[str, ...] = ("96.7",)
    innovative_fee_items: tuple[str, ...] = ("08", "09", "11")
    innovative_fee_share: Decimal = Field(Decimal("0.2"), ge=0, le=1)
    min_surgical_chapters: int = Field(2, ge=2, le=20)


class RuleParameters(BaseModel):
    """Every rule's parameters, by rule code, the flag workflow's and the special-case review's."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    split_admission: SplitAdmission = Field(SplitAdmission(), alias="SPLIT_ADMISSION")
    upcoding_secondary: Upcoding = Field(Upcoding(), alias="UPCODING_SECONDARY")
    low_standard_admission: LowStandardAdmission = Field(LowStandardAdmission(),
                                                          alias="LOW_STANDARD_ADMISSION")
    primary_care_at_tertiary: PrimaryCareAtTertiary = Field(PrimaryCareAtTertiary(),
                                                             alias="PRIMARY_CARE_AT_TERTIARY")
    cost_shifting: CostShifting = Field(CostShifting(), alias="COST_SHIFTING")
    hospital_upcoding: HospitalUpcoding = Field(HospitalUpcoding(), alias="HOSPITAL_UPCODING")
    refusing_severe: RefusingSevere = Field(RefusingSevere(), alias="REFUSING_SEVERE")
    under_service: UnderService = Field(UnderService(), alias="UNDER_SERVICE")
    flag_workflow: FlagWorkflow = Field(FlagWorkflow(), alias="FLAG_WORKFLOW")
    special_cases: SpecialCases = Field(SpecialCases(), alias="SPECIAL_CASES")

    def to_document(self) -> dict[str, Any]:
        """The resolved document (every parameter), JSON-ready."""
        return {"format": FORMAT, "rules": self.model_dump(mode="json", by_alias=True)}


@dataclass(frozen=True)
class RuleSet:
    """The parameters in force for a region and period: a stored version, or the defaults."""

    region: str
    version: int  # 0: the shipped defaults
    params: RuleParameters

    @property
    def label(self) -> str:
        return "default" if self.version == 0 else f"{self.region} v{self.version}"


DEFAULTS = RuleSet("default", 0, RuleParameters())


class RulesError(Invalid):
    """An invalid review-rules document (422 `INVALID_REVIEW_RULES`, naming the field)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, code="INVALID_REVIEW_RULES", field=field)


def parse_rules(document: bytes) -> RuleParameters:
    """A review-rules document read and checked; unknown rules or parameters are refused."""
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError as e:
        raise RulesError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RulesError("the document must be a JSON object")
    if doc.get("format") != FORMAT:
        raise RulesError(f"format must be {FORMAT!r}", field="format")
    unknown = set(doc) - {"format", "rules"}
    if unknown:
        raise RulesError(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    try:
        return RuleParameters.model_validate(doc.get("rules") or {})
    except ValidationError as e:
        err = e.errors()[0]
        where = "rules." + ".".join(str(p) for p in err["loc"])
        raise RulesError(f"{where}: {err['msg']}", field=where) from None
