"""The DIP catalogue contract (docs/domain.md §5): what the grouper and the pricer both read.

A catalogue is data a bureau registers per region and period (`Catalogue`, format
"drgdip.dip-catalogue/1"); `assign` gives a case (`DipCase`) its one DIP group. The grouper
assigns the group and carries it on `case-grouped` (`shared.events.DipGrouping`); the pricer
builds catalogues from history and prices DIP cases. Pure: standard library and pydantic.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import Invalid, validation_details
from shared.money import ZERO, Amount, Coefficient, Money, Ratio, Score

if TYPE_CHECKING:  # shared.events carries `DipGrouping`; this module reads its CaseReceived
    from shared.events import CaseReceived

CATALOGUE_FORMAT: Literal["drgdip.dip-catalogue/1"] = "drgdip.dip-catalogue/1"
FALLBACK_CATEGORY = "*"


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


def dip_case_from_received(case_id: str, received: CaseReceived,
                           levels: Mapping[str, int]) -> DipCase:
    """A DipCase from a `case-received` payload (facts, diagnoses, procedures, …).

    The region is the treatment region when the list says it was elsewhere; the insured
    region (`facts.region`) is not where care was given, so it is not used (None = ours)."""
    f = received.facts
    if f.discharge_date is None:
        raise ValueError("a DIP case needs its discharge date")
    diagnoses = received.diagnoses
    return DipCase(
        case_id=case_id, year=f.discharge_date.year, region=f.treatment_region,
        hospital_code=f.hospital_code, hospital_level=levels.get(f.hospital_code),
        principal_diagnosis=diagnoses[0] if diagnoses else "",
        secondary_diagnoses=tuple(diagnoses[1:]), procedures=tuple(received.procedures),
        total_cost=f.total_cost or ZERO, patient_share=f.patient_share or ZERO,
        los=received.los, age=received.age, insurance_type=f.insurance_type,
        withdrawn=f.withdrawn, discharge_date=f.discharge_date,
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


class CatalogueError(Invalid):
    """A catalogue document is invalid, or a catalogue cannot be built (422)."""

    default_code = "INVALID_CATALOGUE"


def load_catalogue(document: bytes | str, field: str = "catalogue") -> Catalogue:
    """A catalogue from its JSON document (`Catalogue.to_document`); raises `CatalogueError`
    whose message is the parser's (its first line names what is wrong)."""
    try:
        return Catalogue.from_document(orjson.loads(document))
    except ValidationError as e:
        raise CatalogueError(str(e), field=field, details=validation_details(e.errors())) from None
    except (ValueError, TypeError) as e:  # not JSON (orjson's error is a ValueError), not an object
        raise CatalogueError(str(e), field=field) from None


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


class DipGrouping(BaseModel):
    """A case's DIP group as the grouper assigned it, carried on `case-grouped`: the catalogue
    version, the group and its trace, and the DIP inputs the pricer prices it from."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    catalogue_id: str
    catalogue_version: int
    group: str
    kind: Literal["core", "comprehensive"]
    treatment_type: TreatmentType
    trace: tuple[str, ...] = ()
    case: DipCase

    @classmethod
    def of(cls, catalogue: Catalogue, case: DipCase) -> DipGrouping:
        a = assign(catalogue, case)
        return cls(catalogue_id=catalogue.catalogue_id, catalogue_version=catalogue.version,
                   group=a.code, kind=a.kind, treatment_type=a.treatment_type, trace=a.trace,
                   case=case)
