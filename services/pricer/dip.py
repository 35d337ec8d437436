"""DIP (按病种分值付费): catalogue, grouping, scores, pricing, clearing (docs/domain.md §5–§8).

Pure: standard library and pydantic, plus the DRG pricer's own helpers (money rounding, the
calibration's quantiles/IQR fences/1:2:7 means, the settlement engine). DIP and DRG are two
ways to price the same cases, so they share every formula they have in common.

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.pricer.domain.calibration import (
    CalibrationParams,
    coefficient_of_variation,
    quantile,
    reduction_in_variance,
    scope_exclusion,
    weighted_year_mean,
)
from services.pricer.domain.policy import (
    Hospitals,
    PointSettings,
    Policy,
    Scope,
    Settlement,
    WeightsTable,
)
from services.pricer.domain.pricing import CaseType, Price
from services.pricer.domain.settlement import (
    Clearing,
    HospitalTotals,
    HospitalYear,
    Statement,
    annual_clearing,
    hospital_totals,
    monthly_presettlement,
)
from shared.dip import (
    DEFAULT_TREATMENT_TABLE,
    FALLBACK_CATEGORY,
    AuxiliaryRules,
    AuxiliaryTable,
    Catalogue,
    CatalogueGroup,
    CatalogueReport,
    DipAssignment,
    DipCase,
    TreatmentTable,
    TreatmentType,
    assign,
    comprehensive_code,
    core_code,
    diagnosis_category,
    diagnosis_subcategory,
    treatment_key,
)
from shared.money import ONE, ZERO, PointValue, Ratio, to_fen, to_point_value, to_points, to_weight

DIP_POLICY_FORMAT: Literal["drgdip.dip-policy/1"] = "drgdip.dip-policy/1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
