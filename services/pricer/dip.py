"""DIP (按病种分值付费): catalogue, grouping, scores, pricing, clearing (docs/domain.md §5–§8).

Pure: standard library and pydantic, plus the DRG pricer's own helpers (money rounding, the
calibration's quantiles/IQR fences/1:2:7 means, the settlement engine). DIP and DRG are two
ways to price the same cases, so they share every formula they have in common.

Treatment typing (§5: 保守治疗 / 诊断性操作 / 治疗性操作 / 相关手术)
----------------------------------------------------------------------
A procedure code (ICD-9-CM-3, national clinical edition, e.g. ``88.0101``) is typed by a
`TreatmentTable`, first match wins:

1. ``or_procedures`` (optional, e.g. the grouping scheme's ``or_procedures.tsv``): a listed
   code is a **surgery** (相关手术).
2. ``prefix_types``: the longest prefix of the code found in the table gives the type. The
   default table (`DEFAULT_PREFIX_TYPES`) follows the ICD-9-CM-3 chapters:
   chapter 16 (87–99) "miscellaneous diagnostic and therapeutic procedures": 87–91 imaging,
   examinations and microscopy → diagnostic; 92.0–92.1 nuclear-medicine scans → diagnostic;
   92 (radiotherapy) → therapeutic; 93 therapy/rehabilitation → therapeutic; 94.0–94.1
   psychological evaluation → diagnostic, 94 → therapeutic; 95 eye/ear examinations →
   diagnostic; 96–99 non-operative intubation, appliances, removals, other → therapeutic.
   In the surgery chapters (00–86) the "diagnostic procedures on <organ>" subcategories
   (01.1, 45.1, 45.2, 80.2 arthroscopy, …; `_DIAGNOSTIC_SUBCATEGORIES`) → diagnostic, and
   00.1 (pharmaceuticals) → therapeutic.
3. Any other code of chapters 00–86 is a **surgery** when no OR list is given, and a
   **therapeutic** (non-OR) procedure when one is (it was not on the list).
4. Anything else (unknown format) → therapeutic.

A code without a dot after its 2-digit chapter (``880101``) is read as ``88.0101``. A case's
treatment type is its highest-ranking procedure (surgery > therapeutic > diagnostic);
**conservative** (保守治疗) when it has no procedure.

Groups (§5)
-----------
* Diagnosis **subcategory** = the normalised code (stripped, upper-case) up to and including
  the first character after the dot: ``I21.000x001`` → ``I21.0``, ``A17.000+G01*`` → ``A17.0``.
  A code written without the dot (``I210``) → ``I21.0``; a bare category (``I21``) stays
  ``I21``. Diagnosis **category** = the first 3 characters (``I21``).
* Treatment key = the case's procedure codes, normalised, de-duplicated and **sorted**
  (the main/other order does not matter); empty = conservative.
* **Core** group (核心病种): a (subcategory, treatment key) combination with ≥ ``min_cases``
  in-scope cases over the data years. Code ``I21.0/conservative`` or
  ``I21.0/36.0601+88.5501`` (procedures joined by "+").
* **Comprehensive** group (综合病种): every other combination, pooled by diagnosis category ×
  treatment type. Code ``I21/comprehensive-surgery`` (``-conservative``, ``-diagnostic``,
  ``-therapeutic``).
* **Fallback** comprehensive groups ``*/comprehensive-<type>``, one per treatment type, always
  in the catalogue: a case whose category × type pool had no history lands there. Its cost
  basis is every in-scope case of that treatment type (core or not); with no such case its
  score is the scale (the overall mean), noted. So `assign` gives every case exactly one
  group that has a score.
Codes are derived from the keys only (no counters), so they are stable across rebuilds.

Scores (§6)
-----------
Scope exclusions (one reason per case, counted): ``other_region``, ``outside_years``,
``withdrawn``, ``per_diem``, ``los_short`` (LOS ≤ 2), ``los_long`` (LOS ≥ 60), ``no_diagnosis``.
Core/comprehensive membership is decided on the in-scope cases (before cost trimming).
Cost trimming per group as the DRG calibration (`calibration.py` step 2): keep costs in
[Q1 − 0.5·IQR, Q3 + 1.5·IQR], type-7 quartiles, groups below ``trim_min_cases`` not trimmed.

    M_g     = Σ_y w_y · mean_{g,y} / Σ_{y: n_{g,y}>0} w_y      (1:2:7 oldest→newest)
    M       = the same over all kept cases (each case once)
    score_g = M_g / M × scale                                   (scale 100 or 1000; 4 decimals)
    CV_g    = sample sd / mean of the kept costs of g (pooled)
Means are stored to the fen, scores and coefficients to 4 decimals; each is computed from the
exact (unrounded) means.

Auxiliary coefficients (§5 辅助目录), per group and dimension, over the group's kept cases:

* **severity**: CCI of the *secondary* diagnoses with `CHARLSON_TABLE` (Charlson 1987 weights
  on the Quan 2005 ICD-10 codes, matched by the longest code prefix; each condition family
  counts once at its highest weight: diabetes 1 vs with complications 2, mild liver 1 vs
  moderate/severe 3, malignancy 2 vs metastatic 6). Grades by CCI: 0 → "0", 1–2 → "1",
  3–4 → "2", ≥ 5 → "3" (`AuxiliaryRules.severity_bands`).
* **age**: "child" if age < 14, "elderly" if age ≥ 65, else "adult"; no age → "unknown".

    coefficient_s = M_s / M_g                (M as above, over the sub-type's kept cases)
    reduction     = 1 − Σ_s Σ_i (x_i − x̄_s)² / Σ_i (x_i − x̄_g)²

A dimension is **applied** to a group only when reduction ≥ ``min_variance_reduction``
(default 0.10); sub-types with fewer than ``min_subtype_cases`` kept cases keep 1. A case's
auxiliary coefficient is the product over the applied dimensions.

Pricing (§7 DIP)
----------------
    base score  = to_points(score_g × auxiliary)
    mean        = the group's mean cost at the case's hospital level in the newest data year
                  ("last year"; kept cases); else all levels that year; else M_g.
                  Primary-care groups (基层病种) always use the all-levels mean.
    ratio       = cost / mean
    very low  (ratio < 0.5): case score = base × ratio
    very high (ratio > 2):   case score = base × (ratio − 2 + 1); ratio > 5 also flags special
                             review (特例单议, §10)
    normal:                  case score = base                    (all to 4 decimals)
    coefficient = the hospital's (or its level's) coefficient; 1 for primary-care groups
    points      = to_points(case score × coefficient)
    payment     = to_fen(case score × point value × coefficient)
Out-of-scope cases (per-diem stays, LOS ≥ scope.max_los) are paid by item or per bed-day
as the DRG pricer does, and flagged for special review.

Point values (§7), 6 decimals:
    budget point value     = Σ_y w_y · C_y / Σ_y w_y · S_y   (C_y total in-scope cost of year y,
                             S_y Σ base scores of its cases)
    settlement point value = (fund available / reimbursement ratio) / Σ points

Clearing (§8): DIP prices become `pricing.Price` rows (very low → low outlier, very high → high
outlier) and go through the DRG engine unchanged: `settlement.hospital_totals` and
`settlement.annual_clearing` under a point-method `Policy` made from the DIP policy
(`settlement_policy`). With budget B = fund available / reimbursement ratio, the point budget
B − reserve is split by largest remainder, so Σ hospital amounts + reserve = B to the fen.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator

from services.pricer.calibration import (
    CalibrationParams,
    coefficient_of_variation,
    quantile,
    reduction_in_variance,
    scope_exclusion,
    weighted_year_mean,
)
from services.pricer.policy import (
    Hospitals,
    Money,
    PointSettings,
    PointValue,
    Policy,
    Ratio,
    Scope,
    Settlement,
    WeightsTable,
    to_fen,
    to_point_value,
    to_points,
    to_weight,
)
from services.pricer.pricing import Amount, CaseType, Price
from services.pricer.settlement import (
    Clearing,
    HospitalTotals,
    HospitalYear,
    Statement,
    annual_clearing,
    hospital_totals,
    monthly_presettlement,
)

ZERO = Decimal("0")
ONE = Decimal("1")
CATALOGUE_FORMAT: Literal["drgdip.dip-catalogue/1"] = "drgdip.dip-catalogue/1"
DIP_POLICY_FORMAT: Literal["drgdip.dip-policy/1"] = "drgdip.dip-policy/1"
FALLBACK_CATEGORY = "*"
Score = Annotated[Ratio, AfterValidator(to_points)]
Coefficient = Annotated[Ratio, AfterValidator(to_weight)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- treatment typing ---------------------------------------------------------------------------

class TreatmentType(StrEnum):
    CONSERVATIVE = "conservative"  # 保守治疗
    DIAGNOSTIC = "diagnostic"  # 诊断性操作
    THERAPEUTIC = "therapeutic"  # 治疗性操作
    SURGERY = "surgery"  # 相关手术


_RANK = {TreatmentType.CONSERVATIVE: 0, TreatmentType.DIAGNOSTIC: 1,
         TreatmentType.THERAPEUTIC: 2, TreatmentType.SURGERY: 3}

# ICD-9-CM-3 "diagnostic procedures on <organ>" subcategories of the surgery chapters.
_DIAGNOSTIC_SUBCATEGORIES = (
    "00.2", "01.1", "03.3", "04.1", "05.1", "06.1", "07.1", "08.1", "09.1", "10.2", "11.2",
    "12.2", "14.1", "15.0", "16.2", "18.1", "20.3", "21.2", "22.1", "24.1", "25.0", "26.1",
    "27.2", "28.1", "29.1", "31.4", "33.2", "34.2", "37.2", "38.2", "40.1", "41.3", "42.2",
    "44.1", "45.1", "45.2", "48.2", "49.2", "50.1", "51.1", "52.1", "54.2", "55.2", "56.3",
    "57.3", "58.2", "59.2", "60.1", "61.1", "62.1", "63.0", "64.1", "65.1", "66.1", "67.1",
    "68.1", "70.2", "71.1", "76.1", "77.4", "78.8", "80.2", "83.2", "85.1", "86.1",
)
_D, _T = TreatmentType.DIAGNOSTIC, TreatmentType.THERAPEUTIC
DEFAULT_PREFIX_TYPES: dict[str, TreatmentType] = {
    "87": _D, "88": _D, "89": _D, "90": _D, "91": _D,
    "92": _T, "92.0": _D, "92.1": _D,
    "93": _T, "94": _T, "94.0": _D, "94.1": _D, "95": _D,
    "96": _T, "97": _T, "98": _T, "99": _T,
    "00.1": _T,
    **{sub: _D for sub in _DIAGNOSTIC_SUBCATEGORIES},
}


def normalise_procedure(code: str) -> str:
    """Stripped, upper-case, with the dot after the 2-digit chapter (``880101`` → ``88.0101``)."""
    c = code.strip().upper()
    if len(c) > 2 and c[:2].isdigit() and c[2] != ".":
        c = f"{c[:2]}.{c[2:]}"
    return c


class TreatmentTable(_Model):
    """How procedure codes are typed (see the module docstring); stored in the catalogue."""

    prefix_types: dict[str, TreatmentType] = Field(default_factory=lambda: dict(DEFAULT_PREFIX_TYPES))
    or_procedures: frozenset[str] | None = None

    def classify(self, code: str) -> TreatmentType:
        """The treatment type of one procedure code."""
        c = normalise_procedure(code)
        if self.or_procedures is not None and c in self.or_procedures:
            return TreatmentType.SURGERY
        for n in range(len(c), 0, -1):
            hit = self.prefix_types.get(c[:n])
            if hit is not None:
                return hit
        if c[:2].isdigit() and int(c[:2]) <= 86:
            return TreatmentType.SURGERY if self.or_procedures is None else TreatmentType.THERAPEUTIC
        return TreatmentType.THERAPEUTIC

    def treatment_type(self, procedures: Iterable[str]) -> TreatmentType:
        """A case's type: its highest-ranking procedure, conservative when it has none."""
        return max((self.classify(p) for p in procedures), key=_RANK.__getitem__,
                   default=TreatmentType.CONSERVATIVE)


DEFAULT_TREATMENT_TABLE = TreatmentTable()


# --- diagnosis keys and group codes -------------------------------------------------------------

def diagnosis_category(code: str) -> str:
    """ICD-10 category: the first 3 characters (``I21.000x001`` → ``I21``)."""
    return code.strip().upper()[:3]


def diagnosis_subcategory(code: str) -> str:
    """ICD-10 subcategory: up to and including the first character after the dot (``I21.0``)."""
    c = code.strip().upper()
    if len(c) >= 5 and c[3] == "." and c[4].isalnum():
        return c[:5]
    if len(c) >= 4 and c[3].isalnum():
        return f"{c[:3]}.{c[3]}"
    return c[:3]


def treatment_key(procedures: Iterable[str]) -> tuple[str, ...]:
    """The procedure combination: normalised, de-duplicated, sorted."""
    return tuple(sorted({normalise_procedure(p) for p in procedures if p.strip()}))


def core_code(subcategory: str, procedures: Sequence[str]) -> str:
    """``I21.0/conservative`` or ``I21.0/36.0601+88.5501``."""
    return f"{subcategory}/{'+'.join(procedures) or TreatmentType.CONSERVATIVE.value}"


def comprehensive_code(category: str, treatment: TreatmentType) -> str:
    """``I21/comprehensive-surgery``; category ``*`` for the fallback groups."""
    return f"{category}/comprehensive-{treatment.value}"


# --- auxiliary sub-types: Charlson comorbidity index and age bands ------------------------------

def _span(letter: str, first: int, last: int) -> list[str]:
    return [f"{letter}{n:02d}" for n in range(first, last + 1)]


def _charlson_table() -> dict[str, tuple[str, int]]:
    """ICD-10 prefix → (condition family, Charlson weight); Quan 2005 codes, Charlson 1987 weights."""
    rows: list[tuple[str, int, list[str]]] = [
        ("myocardial_infarction", 1, ["I21", "I22", "I25.2"]),
        ("heart_failure", 1, ["I50", "I42", "I43", "I11.0", "I13.0", "I13.2"]),
        ("peripheral_vascular", 1, ["I70", "I71", "I73.9", "I79.0", "K55.1", "Z95.8"]),
        ("cerebrovascular", 1, ["G45", "G46", "H34.0", *_span("I", 60, 69)]),
        ("dementia", 1, ["F00", "F01", "F02", "F03", "F05.1", "G30", "G31.1"]),
        ("chronic_pulmonary", 1, [*_span("J", 40, 47), *_span("J", 60, 67)]),
        ("rheumatic", 1, ["M05", "M06", "M31.5", "M32", "M33", "M34", "M35.1", "M35.3"]),
        ("peptic_ulcer", 1, ["K25", "K26", "K27", "K28"]),
        ("liver", 1, ["B18", "K70", "K73", "K74", "K76.0", "K76.8", "K76.9"]),
        ("liver", 3, ["I85", "K70.4", "K72.1", "K72.9", "K76.5", "K76.6", "K76.7"]),
        ("diabetes", 1, ["E10", "E11", "E12", "E13", "E14"]),
        ("diabetes", 2, [f"E1{k}.{s}" for k in range(5) for s in (2, 3, 4, 5, 7)]),
        ("hemiplegia", 2, ["G81", "G82", "G04.1", "G80.1", "G80.2", "G83"]),
        ("renal", 2, ["N03", "N05", "N18", "N19", "N25.0", "I12.0", "I13.1", "Z49", "Z94.0",
                      "Z99.2"]),
        ("cancer", 2, [*_span("C", 0, 26), *_span("C", 30, 34), *_span("C", 37, 41), "C43",
                       *_span("C", 45, 58), *_span("C", 60, 76), *_span("C", 81, 85), "C88",
                       *_span("C", 90, 97)]),
        ("cancer", 6, _span("C", 77, 80)),
        ("hiv", 6, ["B20", "B21", "B22", "B24"]),
    ]
    return {prefix: (family, weight) for family, weight, prefixes in rows for prefix in prefixes}


CHARLSON_TABLE: dict[str, tuple[str, int]] = _charlson_table()


class AuxiliaryRules(_Model):
    """Sub-typing and the variance test of the auxiliary catalogues (§5); stored in the catalogue."""

    charlson: dict[str, tuple[str, int]] = Field(default_factory=lambda: dict(CHARLSON_TABLE))
    severity_bands: tuple[tuple[int, str], ...] = ((0, "0"), (1, "1"), (3, "2"), (5, "3"))
    child_below: int = 14
    elderly_from: int = 65
    min_variance_reduction: Ratio = Decimal("0.10")
    min_subtype_cases: int = Field(default=5, ge=1)
    dimensions: tuple[Literal["severity", "age"], ...] = ("severity", "age")

    def charlson_index(self, secondary_diagnoses: Iterable[str]) -> int:
        """CCI: Σ over condition families of the highest weight found (longest prefix match)."""
        best: dict[str, int] = {}
        for code in secondary_diagnoses:
            c = code.strip().upper()
            for n in range(len(c), 2, -1):
                hit = self.charlson.get(c[:n])
                if hit is not None:
                    family, weight = hit
                    best[family] = max(best.get(family, 0), weight)
                    break
        return sum(best.values())

    def severity_grade(self, secondary_diagnoses: Iterable[str]) -> str:
        cci = self.charlson_index(secondary_diagnoses)
        grade = self.severity_bands[0][1]
        for lower, label in self.severity_bands:
            if cci >= lower:
                grade = label
        return grade

    def age_band(self, age: int | None) -> str:
        if age is None:
            return "unknown"
        return "child" if age < self.child_below else "elderly" if age >= self.elderly_from else "adult"

    def subtype(self, dimension: str, case: DipCase) -> str:
        if dimension == "severity":
            return self.severity_grade(case.secondary_diagnoses)
        return self.age_band(case.age)


# --- cases --------------------------------------------------------------------------------------

class DipCase(BaseModel):
    """One discharge as DIP needs it: for the catalogue (history) and for pricing."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    case_id: str = Field(default="", validation_alias=AliasChoices("case_id", "id"))
    year: int
    region: str | None = None
    hospital_code: str = ""
    hospital_level: int | None = Field(default=None, ge=1, le=3)
    principal_diagnosis: str = ""
    secondary_diagnoses: tuple[str, ...] = ()
    procedures: tuple[str, ...] = ()
    total_cost: Amount
    patient_share: Amount = ZERO
    los: int | None = Field(default=None, ge=0)
    age: int | None = Field(default=None, ge=0)
    per_diem: bool = False
    withdrawn: bool = False
    insurance_type: str | None = None
    discharge_date: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _year_from_date(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("year") is None and data.get("discharge_date"):
            data = {**data, "year": date.fromisoformat(str(data["discharge_date"])[:10]).year}
        return data


def dip_case_from_payload(case_id: str, payload: Mapping[str, Any],
                          levels: Mapping[str, int]) -> DipCase:
    """A DipCase from a stored `case-received` payload (facts, diagnoses, procedures, …).

    The region is the treatment region when the list says it was elsewhere; the insured
    region (`facts.region`) is not where care was given, so it is not used (None = ours)."""
    f = payload["facts"]
    diagnoses = list(payload.get("diagnoses") or [])
    return DipCase(
        case_id=case_id, year=date.fromisoformat(f["discharge_date"]).year,
        region=f.get("treatment_region"), hospital_code=f["hospital_code"],
        hospital_level=levels.get(f["hospital_code"]),
        principal_diagnosis=diagnoses[0] if diagnoses else "",
        secondary_diagnoses=tuple(diagnoses[1:]), procedures=tuple(payload.get("procedures") or ()),
        total_cost=f.get("total_cost") or "0", patient_share=f.get("patient_share") or "0",
        los=payload.get("los"), age=payload.get("age"), insurance_type=f.get("insurance_type"),
        withdrawn=bool(f.get("withdrawn")), discharge_date=f["discharge_date"],
    )


def dip_case_from_list(doc: Mapping[str, Any], *, region: str | None = None) -> DipCase:
    """A DipCase from a national settlement list (4101 `input`); raises `ListRejected`.

    ``region`` is the treatment region (the bureau's own); the list's ``insuplc`` is the
    insured place, which differs for off-site patients, so it is not used as the region.
    """
    from services.ingest.national import case_fields, parse_settlement_list

    sl = parse_settlement_list(doc)
    f = case_fields(sl)
    level = sl.setlinfo.hi_setl_lv
    return DipCase(
        case_id=f.setl_id, year=f.discharge_date.year, region=region,
        hospital_code=f.hospital_code,
        hospital_level=int(level) if level in ("1", "2", "3") else None,
        principal_diagnosis=f.diagnoses[0] if f.diagnoses else "",
        secondary_diagnoses=f.diagnoses[1:], procedures=f.procedures,
        total_cost=f.total_cost or ZERO, patient_share=f.patient_share or ZERO, los=f.los,
        age=f.age, insurance_type=f.insurance_type, discharge_date=f.discharge_date,
    )


# --- the catalogue ------------------------------------------------------------------------------

class AuxiliaryTable(_Model):
    """One auxiliary dimension of one group: the split, its variance test, its coefficients."""

    dimension: Literal["severity", "age"]
    variance_reduction: Coefficient
    applied: bool
    cases: dict[str, int]
    coefficients: dict[str, Coefficient] = Field(default_factory=dict)


class CatalogueGroup(_Model):
    """A DIP group (病种) with its score and the figures it came from."""

    code: str
    kind: Literal["core", "comprehensive"]
    diagnosis: str  # subcategory (core), category or "*" (comprehensive)
    procedures: tuple[str, ...] = ()  # core groups: the treatment key
    treatment_type: TreatmentType
    fallback: bool = False
    primary_care: bool = False
    cases: int  # in scope, before trimming
    kept: int
    cases_by_year: dict[int, int]
    mean_cost: Money  # M_g (year-weighted, kept cases)
    score: Score
    cv: Coefficient | None = None
    level_mean_costs: dict[str, Money] = Field(default_factory=dict)  # "1"/"2"/"3"/"all", last year
    auxiliary: tuple[AuxiliaryTable, ...] = ()
    note: str = ""


class CatalogueReport(_Model):
    cases_in: int
    cases_in_scope: int
    exclusions: dict[str, int]
    trimmed: int
    groups_by_kind: dict[str, int]  # core / comprehensive / fallback
    cases_by_kind: dict[str, int]  # in-scope cases: core / comprehensive
    core_case_share: Coefficient
    riv: Coefficient | None
    primary_care_groups: int
    primary_care_unknown: tuple[str, ...] = ()
    auxiliary_applied: dict[str, int] = Field(default_factory=dict)


class Catalogue(_Model):
    """A versioned DIP catalogue built from a region's history (§5, §6, §13)."""

    format: Literal["drgdip.dip-catalogue/1"] = CATALOGUE_FORMAT
    catalogue_id: str
    version: int = Field(ge=1)
    region: str
    year: int  # the year the scores apply to
    data_years: tuple[int, ...]
    year_weights: tuple[int, ...]
    min_cases: int
    scale: int
    overall_mean_cost: Money
    treatment: TreatmentTable = Field(default_factory=TreatmentTable)
    auxiliary_rules: AuxiliaryRules = Field(default_factory=AuxiliaryRules)
    groups: dict[str, CatalogueGroup]
    report: CatalogueReport

    @property
    def version_label(self) -> str:
        return f"{self.catalogue_id}/v{self.version}"

    @property
    def scores(self) -> dict[str, Decimal]:
        return {code: g.score for code, g in self.groups.items()}

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready document (decimals as strings); `from_document` reads it back."""
        return self.model_dump(mode="json")

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Catalogue:
        return cls.model_validate(dict(document))

    def report_rows(self) -> list[dict[str, str]]:
        """One row per group: kind, cases, mean cost, score, CV, applied auxiliary dimensions."""
        return [{
            "code": g.code, "kind": g.kind, "treatment_type": g.treatment_type.value,
            "primary_care": "yes" if g.primary_care else "no", "cases": str(g.cases),
            "kept": str(g.kept), "mean_cost": str(g.mean_cost), "score": str(g.score),
            "cv": "" if g.cv is None else str(g.cv),
            "auxiliary": ";".join(a.dimension for a in g.auxiliary if a.applied),
        } for g in self.groups.values()]


_EXCLUSIONS = ("other_region", "outside_years", "withdrawn", "per_diem", "los_short",
               "los_long", "no_diagnosis")


def _exclusion(case: DipCase, p: CalibrationParams) -> str | None:
    # the DRG exclusions minus "not_grouped" (every case has a DIP group), plus "no_diagnosis"
    return scope_exclusion(p, region=case.region, year=case.year, withdrawn=case.withdrawn,
                           per_diem=case.per_diem, los=case.los) or (
        "no_diagnosis" if not case.principal_diagnosis.strip() else None)


def _trim(cases: Sequence[DipCase], p: CalibrationParams) -> list[DipCase]:
    """Keep costs inside the IQR fences (calibration step 2; small groups untouched)."""
    if len(cases) < p.trim_min_cases:
        return list(cases)
    costs = sorted(c.total_cost for c in cases)
    q1, q3 = quantile(costs, Decimal("0.25")), quantile(costs, Decimal("0.75"))
    low, high = q1 - p.iqr_low * (q3 - q1), q3 + p.iqr_high * (q3 - q1)
    return [c for c in cases if low <= c.total_cost <= high]


def _by_year(cases: Iterable[DipCase]) -> dict[int, list[Decimal]]:
    out: dict[int, list[Decimal]] = defaultdict(list)
    for c in cases:
        out[c.year].append(c.total_cost)
    return out


def _auxiliary(kept: Sequence[DipCase], group_mean: Decimal, rules: AuxiliaryRules,
               year_weight: Mapping[int, int]) -> tuple[AuxiliaryTable, ...]:
    out = []
    for dimension in rules.dimensions:
        subtypes: dict[str, list[DipCase]] = defaultdict(list)
        for c in kept:
            subtypes[rules.subtype(dimension, c)].append(c)
        costs = [c.total_cost for c in kept]
        # variance reduction of the split = RIV of the sub-types inside the group
        riv = reduction_in_variance({s: [c.total_cost for c in cs] for s, cs in subtypes.items()})
        reduction = riv if riv is not None and len(costs) >= 2 else ZERO
        applied = len(subtypes) > 1 and reduction >= rules.min_variance_reduction and group_mean > 0
        coefficients = {}
        if applied:
            coefficients = {
                s: to_weight(weighted_year_mean(_by_year(cs), year_weight) / group_mean)
                for s, cs in sorted(subtypes.items()) if len(cs) >= rules.min_subtype_cases
            }
            applied = bool(coefficients)
        out.append(AuxiliaryTable(
            dimension=dimension, variance_reduction=max(reduction, ZERO), applied=applied,
            cases={s: len(cs) for s, cs in sorted(subtypes.items())}, coefficients=coefficients))
    return tuple(out)


def build_catalogue(
    cases: Iterable[DipCase], *, region: str, year: int, min_cases: int = 15,
    year_weights: tuple[int, ...] = (1, 2, 7), scale: int = 100,
    primary_care: Iterable[str] = (), treatment: TreatmentTable = DEFAULT_TREATMENT_TABLE,
    auxiliary: AuxiliaryRules | None = None, trimming: CalibrationParams | None = None,
    catalogue_id: str | None = None, version: int = 1,
) -> Catalogue:
    """Build the DIP catalogue and scores from history (§5, §6; see the module docstring).

    Data years are the ``len(year_weights)`` years before ``year``, weighted oldest→newest.
    ``primary_care`` lists group codes (`core_code` / `comprehensive_code`) marked 基层病种.
    ``trimming`` supplies the LOS limits and IQR fences (its region/year/weights are ignored).
    """
    if min_cases < 1 or scale < 1:
        raise ValueError("min_cases and scale must be at least 1")
    rules = auxiliary or AuxiliaryRules()
    base = trimming or CalibrationParams(region=region, year=year)
    p = CalibrationParams(region=region, year=year, year_weights=year_weights,
                          los_short_max=base.los_short_max, los_long_min=base.los_long_min,
                          iqr_low=base.iqr_low, iqr_high=base.iqr_high,
                          trim_min_cases=base.trim_min_cases)
    year_weight = dict(zip(p.data_years, p.year_weights, strict=True))
    newest = p.data_years[-1]

    # scope exclusions, then the combination counts that decide core vs comprehensive
    exclusions: Counter[str] = Counter({k: 0 for k in _EXCLUSIONS})
    in_scope: list[DipCase] = []
    cases_in = 0
    for c in cases:
        cases_in += 1
        reason = _exclusion(c, p)
        if reason is None:
            in_scope.append(c)
        else:
            exclusions[reason] += 1
    if not in_scope:
        raise ValueError("no cases left to build a catalogue on after the exclusions")
    keys = {id(c): (diagnosis_subcategory(c.principal_diagnosis), treatment_key(c.procedures))
            for c in in_scope}
    counts = Counter(keys.values())
    members: dict[str, list[DipCase]] = defaultdict(list)
    meta: dict[str, dict[str, Any]] = {}
    by_type: dict[TreatmentType, list[DipCase]] = defaultdict(list)
    for c in in_scope:
        sub, procs = keys[id(c)]
        ttype = treatment.treatment_type(procs)
        by_type[ttype].append(c)
        if counts[(sub, procs)] >= min_cases:
            code = core_code(sub, procs)
            meta.setdefault(code, dict(kind="core", diagnosis=sub, procedures=procs,
                                       treatment_type=ttype))
        else:
            cat = diagnosis_category(c.principal_diagnosis)
            code = comprehensive_code(cat, ttype)
            meta.setdefault(code, dict(kind="comprehensive", diagnosis=cat, treatment_type=ttype))
        members[code].append(c)

    kept = {code: _trim(group, p) for code, group in members.items()}
    everything = [c for group in kept.values() for c in group]
    overall = weighted_year_mean(_by_year(everything), year_weight)
    primary = set(primary_care)

    def entry(code: str, group: Sequence[DipCase], kept_cases: list[DipCase],
              **info: Any) -> CatalogueGroup:
        note = ""
        if kept_cases:
            mean = weighted_year_mean(_by_year(kept_cases), year_weight)
        else:
            mean, note = overall, "no history: scored at the overall mean"
        last = [c for c in kept_cases if c.year == newest]
        levels: dict[str, list[Decimal]] = defaultdict(list)
        for c in last:
            levels["all"].append(c.total_cost)
            if c.hospital_level is not None:
                levels[str(c.hospital_level)].append(c.total_cost)
        return CatalogueGroup(
            code=code, primary_care=code in primary, cases=len(group), kept=len(kept_cases),
            cases_by_year=dict(sorted(Counter(c.year for c in group).items())),
            mean_cost=to_fen(mean), score=mean / overall * scale,
            cv=coefficient_of_variation([c.total_cost for c in kept_cases]),
            level_mean_costs={lv: to_fen(statistics.mean(v)) for lv, v in sorted(levels.items())},
            auxiliary=_auxiliary(kept_cases, mean, rules, year_weight) if kept_cases else (),
            note=note, **info)

    groups = {code: entry(code, members[code], kept[code], **meta[code])
              for code in sorted(members)}
    for ttype in TreatmentType:
        # fallback pools: every in-scope case of the treatment type (see the docstring)
        pool = by_type.get(ttype, [])
        code = comprehensive_code(FALLBACK_CATEGORY, ttype)
        groups[code] = entry(code, pool, _trim(pool, p), kind="comprehensive",
                             diagnosis=FALLBACK_CATEGORY, treatment_type=ttype, fallback=True)

    core_cases = sum(len(members[c]) for c, m in meta.items() if m["kind"] == "core")
    report = CatalogueReport(
        cases_in=cases_in, cases_in_scope=len(in_scope), exclusions=dict(exclusions),
        trimmed=len(in_scope) - len(everything),
        groups_by_kind={
            "core": sum(1 for m in meta.values() if m["kind"] == "core"),
            "comprehensive": sum(1 for m in meta.values() if m["kind"] == "comprehensive"),
            "fallback": len(TreatmentType)},
        cases_by_kind={"core": core_cases, "comprehensive": len(in_scope) - core_cases},
        core_case_share=Decimal(core_cases) / len(in_scope),
        riv=reduction_in_variance({code: [c.total_cost for c in g] for code, g in kept.items() if g}),
        primary_care_groups=sum(1 for g in groups.values() if g.primary_care),
        primary_care_unknown=tuple(sorted(primary - set(groups))),
        auxiliary_applied={d: sum(1 for g in groups.values() for a in g.auxiliary
                                  if a.dimension == d and a.applied) for d in rules.dimensions},
    )
    return Catalogue(
        catalogue_id=catalogue_id or f"{region}-{year}-dip", version=version, region=region,
        year=year, data_years=p.data_years, year_weights=p.year_weights, min_cases=min_cases,
        scale=scale, overall_mean_cost=to_fen(overall), treatment=treatment,
        auxiliary_rules=rules, groups=groups, report=report)


# --- grouping -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DipAssignment:
    """A case's DIP group and why (the trace names the catalogue entry or the pooling reason)."""

    code: str
    kind: Literal["core", "comprehensive"]
    subcategory: str
    procedures: tuple[str, ...]
    treatment_type: TreatmentType
    trace: tuple[str, ...]


def assign(catalogue: Catalogue, case: DipCase) -> DipAssignment:
    """The one DIP group of a case: core match, else its comprehensive pool, else the fallback."""
    sub = diagnosis_subcategory(case.principal_diagnosis)
    procs = treatment_key(case.procedures)
    ttype = catalogue.treatment.treatment_type(procs)
    label = catalogue.version_label
    code = core_code(sub, procs)
    hit = catalogue.groups.get(code)
    if hit is not None and hit.kind == "core":
        return DipAssignment(code, "core", sub, procs, ttype, (
            f"core group {code} of {label} matched ({hit.cases} cases ≥ {catalogue.min_cases})",))
    trace = [f"{code} is not a core group of {label} (fewer than {catalogue.min_cases} cases "
             f"in {catalogue.data_years[0]}–{catalogue.data_years[-1]}, or not seen)"]
    cat = diagnosis_category(case.principal_diagnosis)
    pooled = comprehensive_code(cat, ttype)
    if cat and pooled in catalogue.groups:
        trace.append(f"pooled into {pooled}: category {cat} × {ttype.value}")
        return DipAssignment(pooled, "comprehensive", sub, procs, ttype, tuple(trace))
    fallback = comprehensive_code(FALLBACK_CATEGORY, ttype)
    trace.append(f"no comprehensive group {pooled} in {label}: fallback {fallback}")
    return DipAssignment(fallback, "comprehensive", sub, procs, ttype, tuple(trace))


def auxiliary_coefficient(catalogue: Catalogue, group: CatalogueGroup, case: DipCase) -> Decimal:
    """Product of the applied auxiliary dimensions' coefficients (1 where none applies)."""
    out = ONE
    for table in group.auxiliary:
        if table.applied:
            out *= table.coefficients.get(catalogue.auxiliary_rules.subtype(table.dimension, case), ONE)
    return out


def base_score(catalogue: Catalogue, case: DipCase) -> tuple[DipAssignment, Decimal, Decimal]:
    """(assignment, auxiliary coefficient, base score = to_points(score_g × auxiliary))."""
    a = assign(catalogue, case)
    group = catalogue.groups[a.code]
    aux = auxiliary_coefficient(catalogue, group, case)
    return a, aux, to_points(group.score * aux)


# --- policy and pricing -------------------------------------------------------------------------

class Deviation(_Model):
    """Deviation-case thresholds (§7 DIP), as multiples of the same-level group mean."""

    very_low_ratio: Ratio = Decimal("0.5")
    very_high_ratio: Ratio = Decimal("2")
    special_review_ratio: Ratio = Decimal("5")


class DipPoints(_Model):
    provisional_point_value: PointValue | None = None  # for monthly pre-settlement and pricing
    reimbursement_ratio: Ratio | None = None  # for the settlement point value


class DipPolicy(_Model):
    """One region's DIP pricing rules for a period; the DRG policy's sections where they match."""

    format: Literal["drgdip.dip-policy/1"] = DIP_POLICY_FORMAT
    policy_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    region: str = Field(min_length=1)
    valid_from: date
    valid_to: date | None = None
    hospitals: Hospitals = Field(default_factory=Hospitals)
    deviation: Deviation = Field(default_factory=Deviation)
    scope: Scope = Field(default_factory=Scope)
    points: DipPoints = Field(default_factory=DipPoints)
    settlement: Settlement = Field(default_factory=Settlement)
    notes: str = ""

    def level_of(self, hospital_code: str, case_level: int | None) -> int | None:
        return self.hospitals.level_of(hospital_code, case_level)

    def coefficient_for(self, hospital_code: str, level: int | None) -> Decimal | None:
        return self.hospitals.coefficient_for(hospital_code, level)


class DipCaseType(StrEnum):
    NORMAL = "normal"
    VERY_LOW = "very_low"  # 费用极低
    VERY_HIGH = "very_high"  # 费用极高
    OUT_OF_SCOPE = "out_of_scope"
    NO_COEFFICIENT = "no_coefficient"  # unknown hospital level: not priced


_AS_DRG_TYPE = {DipCaseType.NORMAL: CaseType.NORMAL, DipCaseType.VERY_LOW: CaseType.LOW_OUTLIER,
                DipCaseType.VERY_HIGH: CaseType.HIGH_OUTLIER,
                DipCaseType.OUT_OF_SCOPE: CaseType.OUT_OF_SCOPE,
                DipCaseType.NO_COEFFICIENT: CaseType.NO_RATE}


@dataclass(frozen=True)
class DipPrice:
    """A DIP-priced case: every figure used, and which catalogue and policy produced it."""

    case_id: str
    hospital_code: str
    group: str
    kind: str
    case_type: DipCaseType
    catalogue_id: str
    catalogue_version: int
    policy_id: str
    policy_version: int
    total_cost: Decimal
    patient_share: Decimal
    hospital_level: int | None = None
    primary_care: bool = False
    group_score: Decimal | None = None
    auxiliary: Decimal = ONE
    base_score: Decimal = ZERO
    mean_cost: Decimal | None = None
    mean_basis: str = ""
    cost_ratio: Decimal | None = None
    case_score: Decimal = ZERO
    coefficient: Decimal | None = None
    points: Decimal = ZERO  # case score × coefficient: the hospital's share of the budget
    point_value: Decimal | None = None
    payment: Decimal | None = None
    special_review: bool = False
    trace: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def priced(self) -> bool:
        return self.payment is not None

    def to_price(self) -> Price:
        """The DRG pricer's `Price` shape, so settlement and reports treat both methods alike."""
        return Price(
            case_id=self.case_id, hospital_code=self.hospital_code, drg=self.group,
            case_type=_AS_DRG_TYPE[self.case_type], policy_id=self.policy_id,
            policy_version=self.policy_version,
            weights_version=f"{self.catalogue_id}/v{self.catalogue_version}", method="dip",
            total_cost=self.total_cost, patient_share=self.patient_share,
            hospital_level=self.hospital_level, coefficient=self.coefficient,
            group_mean_cost=self.mean_cost, outlier_cost=self.total_cost,
            base_points=self.base_score, points=self.points, point_value=self.point_value,
            payment=self.payment, special_review=self.special_review, notes=self.notes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            out[name] = (str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple)
                         else v)
        return out


def _group_mean(group: CatalogueGroup, level: int | None) -> tuple[Decimal, str]:
    """Same-level mean last year, else all levels last year, else M_g (§7 DIP)."""
    if not group.primary_care and level is not None and str(level) in group.level_mean_costs:
        return group.level_mean_costs[str(level)], f"level {level}, last year"
    if "all" in group.level_mean_costs:
        return group.level_mean_costs["all"], "all levels, last year"
    return group.mean_cost, "group mean (weighted years)"


def price_dip_case(catalogue: Catalogue, policy: DipPolicy, case: DipCase, *,
                   point_value: Decimal | None = None) -> DipPrice:
    """Price one case by DIP (§7; formulas in the module docstring)."""
    pv = point_value if point_value is not None else policy.points.provisional_point_value
    if pv is None:
        raise ValueError("no point value: pass one or set points.provisional_point_value")
    pv = to_point_value(pv)
    a, aux, base = base_score(catalogue, case)
    group = catalogue.groups[a.code]
    level = policy.level_of(case.hospital_code, case.hospital_level)
    head: dict[str, Any] = dict(
        case_id=case.case_id, hospital_code=case.hospital_code, group=a.code, kind=a.kind,
        catalogue_id=catalogue.catalogue_id, catalogue_version=catalogue.version,
        policy_id=policy.policy_id, policy_version=policy.version, total_cost=case.total_cost,
        patient_share=case.patient_share, hospital_level=level, primary_care=group.primary_care,
        group_score=group.score, auxiliary=aux, base_score=base, trace=a.trace, point_value=pv)

    if case.per_diem or (case.los is not None and case.los >= policy.scope.max_los):
        note = "per-diem stay" if case.per_diem else f"LOS {case.los} ≥ {policy.scope.max_los}"
        if policy.scope.out_of_scope_payment == "per_diem":
            assert policy.scope.per_diem_rate is not None  # guaranteed by validation
            payment = to_fen(policy.scope.per_diem_rate * (case.los or 0))
        else:
            payment = case.total_cost
        return DipPrice(case_type=DipCaseType.OUT_OF_SCOPE, payment=payment,
                        special_review=True, notes=(note,), **head)

    coefficient = ONE if group.primary_care else policy.coefficient_for(case.hospital_code, level)
    if coefficient is None:
        return DipPrice(case_type=DipCaseType.NO_COEFFICIENT,
                        notes=("no coefficient: unknown hospital level",), **head)

    mean, basis = _group_mean(group, level)
    d = policy.deviation
    case_type, ratio, score, review = DipCaseType.NORMAL, None, base, False
    if mean > 0:
        ratio = case.total_cost / mean
        if ratio < d.very_low_ratio:
            case_type, score = DipCaseType.VERY_LOW, to_points(base * ratio)
        elif ratio > d.very_high_ratio:
            case_type = DipCaseType.VERY_HIGH
            score = to_points(base * (ratio - d.very_high_ratio + 1))
            review = ratio > d.special_review_ratio
    notes = ("primary-care group: coefficient 1 at every level",) if group.primary_care else ()
    return DipPrice(
        case_type=case_type, mean_cost=mean, mean_basis=basis,
        cost_ratio=None if ratio is None else to_weight(ratio), case_score=score,
        coefficient=coefficient, points=to_points(score * coefficient),
        payment=to_fen(score * pv * coefficient), special_review=review, notes=notes, **head)


def price_dip_many(catalogue: Catalogue, policy: DipPolicy, cases: Iterable[DipCase], *,
                   point_value: Decimal | None = None) -> list[DipPrice]:
    return [price_dip_case(catalogue, policy, c, point_value=point_value) for c in cases]


# --- point values -------------------------------------------------------------------------------

def budget_point_value(costs_by_year: Mapping[int, Decimal], scores_by_year: Mapping[int, Decimal],
                       year_weights: Mapping[int, int]) -> Decimal:
    """预算点值 = Σ_y w_y · C_y / Σ_y w_y · S_y (§7 DIP), 6 decimals."""
    num = sum((w * costs_by_year.get(y, ZERO) for y, w in year_weights.items()), ZERO)
    den = sum((w * scores_by_year.get(y, ZERO) for y, w in year_weights.items()), ZERO)
    if den <= 0:
        raise ValueError("Σ weighted scores must be positive")
    return to_point_value(num / den)


def catalogue_budget_point_value(catalogue: Catalogue, history: Iterable[DipCase]) -> Decimal:
    """The budget point value of the catalogue's own data years (in-scope cases, base scores)."""
    p = CalibrationParams(region=catalogue.region, year=catalogue.year,
                          year_weights=catalogue.year_weights)
    costs: dict[int, Decimal] = defaultdict(lambda: ZERO)
    scores: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for c in history:
        if _exclusion(c, p) is None:
            costs[c.year] += c.total_cost
            scores[c.year] += base_score(catalogue, c)[2]
    return budget_point_value(costs, scores, dict(zip(p.data_years, p.year_weights, strict=True)))


def settlement_budget(fund_available: Decimal, reimbursement_ratio: Decimal) -> Decimal:
    """The cost budget the fund can pay for: fund available / reimbursement ratio, to the fen."""
    if reimbursement_ratio <= 0:
        raise ValueError("the reimbursement ratio must be positive")
    return to_fen(fund_available / reimbursement_ratio)


def settlement_point_value(fund_available: Decimal, reimbursement_ratio: Decimal,
                           total_points: Decimal) -> Decimal:
    """结算点值 = (fund available / reimbursement ratio) / Σ points (§7 DIP), 6 decimals."""
    if total_points <= 0:
        raise ValueError("Σ points must be positive")
    return to_point_value(fund_available / reimbursement_ratio / total_points)


# --- settlement: the DRG engine -----------------------------------------------------------------

def settlement_policy(policy: DipPolicy, catalogue: Catalogue, *,
                      point_value: Decimal | None = None) -> Policy:
    """A point-method `Policy` carrying the DIP policy's hospitals and settlement rules, so
    `settlement.py` clears DIP exactly as it clears DRG; the scores stand in for the weights."""
    pv = point_value if point_value is not None else policy.points.provisional_point_value
    return Policy(
        policy_id=policy.policy_id, version=policy.version, region=policy.region,
        valid_from=policy.valid_from, valid_to=policy.valid_to, method="points",
        scheme_id=catalogue.catalogue_id,
        weights=WeightsTable(version=catalogue.version_label, table=catalogue.scores),
        hospitals=policy.hospitals, overall_mean_cost=catalogue.overall_mean_cost,
        scope=policy.scope, settlement=policy.settlement,
        points=PointSettings(scale=catalogue.scale,
                             provisional_point_value=pv if pv is not None else ONE),
        notes=f"DIP settlement view of {policy.policy_id} v{policy.version}",
    )


def dip_hospital_totals(prices: Iterable[DipPrice]) -> dict[str, HospitalTotals]:
    """Per-hospital totals of DIP prices (`settlement.hospital_totals` over `to_price()`)."""
    return hospital_totals(p.to_price() for p in prices)


def presettle_dip_month(policy: DipPolicy, catalogue: Catalogue, period: str,
                        prices: Iterable[DipPrice], *, version: int = 1) -> list[Statement]:
    """Monthly pre-settlement (§8) of DIP prices at the provisional point value."""
    return monthly_presettlement(settlement_policy(policy, catalogue), period,
                                 dip_hospital_totals(prices).values(), version=version)


def clear_dip_year(policy: DipPolicy, catalogue: Catalogue, year: str,
                   prices: Iterable[DipPrice], budget: Decimal, *,
                   presettled: Mapping[str, Decimal] | None = None,
                   advances: Mapping[str, Decimal] | None = None, version: int = 1) -> Clearing:
    """Annual DIP clearing (§8) through `settlement.annual_clearing`: Σ A_h + reserve = budget.

    ``budget`` is the cost budget (`settlement_budget(fund, reimbursement ratio)`); the
    clearing's final point value is (budget − reserve) / Σ points.
    """
    totals = dip_hospital_totals(prices)
    rows = [HospitalYear(t, presettled=(presettled or {}).get(h, ZERO),
                         advances=(advances or {}).get(h, ZERO)) for h, t in totals.items()]
    return annual_clearing(settlement_policy(policy, catalogue), year, rows, budget,
                           version=version)


# --- DRG vs DIP ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ComparisonRow:
    """DRG vs DIP payment for the same cases; unpriced cases count at their cost (by item)."""

    key: str
    cases: int
    drg_payment: Decimal
    dip_payment: Decimal
    drg_unpriced: int = 0
    dip_unpriced: int = 0

    @property
    def difference(self) -> Decimal:
        """DIP − DRG (> 0: DIP pays more)."""
        return self.dip_payment - self.drg_payment

    def to_dict(self, key_name: str) -> dict[str, Any]:
        return {key_name: self.key, "cases": self.cases, "drg_payment": str(self.drg_payment),
                "dip_payment": str(self.dip_payment), "difference": str(self.difference),
                "drg_unpriced": self.drg_unpriced, "dip_unpriced": self.dip_unpriced}


@dataclass(frozen=True)
class Comparison:
    by_hospital: tuple[ComparisonRow, ...]
    by_dip_group: tuple[ComparisonRow, ...]
    by_drg: tuple[ComparisonRow, ...]
    total: ComparisonRow
    only_drg: tuple[str, ...]  # case ids priced by one method only
    only_dip: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total.to_dict("scope"),
                "hospitals": [r.to_dict("hospital_code") for r in self.by_hospital],
                "dip_groups": [r.to_dict("dip_group") for r in self.by_dip_group],
                "drgs": [r.to_dict("drg") for r in self.by_drg],
                "only_drg": list(self.only_drg), "only_dip": list(self.only_dip)}


def _paid(p: Price) -> tuple[Decimal, bool]:
    total = p.total_payment
    return (p.total_cost, False) if total is None else (total, True)


def compare(drg_prices: Iterable[Price], dip_prices: Iterable[DipPrice | Price]) -> Comparison:
    """Per hospital, per DIP group and per DRG: DRG vs DIP payment for the same cases (by id)."""
    drg = {p.case_id: p for p in drg_prices}
    dip = {p.case_id: (p.to_price() if isinstance(p, DipPrice) else p) for p in dip_prices}
    both = sorted(drg.keys() & dip.keys())

    def rows(key_of: Any) -> list[ComparisonRow]:
        acc: dict[str, list[Any]] = {}
        for cid in both:
            a = acc.setdefault(key_of(cid), [0, ZERO, ZERO, 0, 0])
            (x, x_ok), (y, y_ok) = _paid(drg[cid]), _paid(dip[cid])
            a[0] += 1
            a[1] += x
            a[2] += y
            a[3] += not x_ok
            a[4] += not y_ok
        return [ComparisonRow(k, *v) for k, v in sorted(acc.items())]

    total = rows(lambda cid: "total")
    return Comparison(
        by_hospital=tuple(rows(lambda cid: drg[cid].hospital_code)),
        by_dip_group=tuple(rows(lambda cid: dip[cid].drg)),
        by_drg=tuple(rows(lambda cid: drg[cid].drg or "(none)")),
        total=total[0] if total else ComparisonRow("total", 0, ZERO, ZERO),
        only_drg=tuple(sorted(drg.keys() - dip.keys())),
        only_dip=tuple(sorted(dip.keys() - drg.keys())),
    )
