"""DIP catalogue building and scores (按病种分值付费, docs/domain.md §5–§7): from a
region's history to a versioned `shared.dip.Catalogue`, and what a case scores under one.

Pure: standard library, pydantic and orjson, plus the DRG calibration's helpers (quantiles,
IQR fences, 1:2:7 year-weighted means, scope exclusions) and the money rounding of
`shared.money`. The catalogue document, treatment typing and group assignment are the contract
in `shared/dip.py`; pricing, settlement and the DRG/DIP comparison are in `dip_pricing.py`.

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

A case's base score (§7 DIP): base score = to_points(score_g × auxiliary).

Budget point value (§7), 6 decimals:
    budget point value = Σ_y w_y · C_y / Σ_y w_y · S_y   (C_y total in-scope cost of year y,
                         S_y Σ base scores of its cases)

Errors for callers are `CatalogueError` (422, `shared.errors.Invalid`) with a stable code.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.pricer.domain.calibration import (
    CalibrationParams,
    coefficient_of_variation,
    quantile,
    reduction_in_variance,
    scope_exclusion,
    weighted_year_mean,
)
from shared.dip import (
    DEFAULT_TREATMENT_TABLE,
    FALLBACK_CATEGORY,
    AuxiliaryRules,
    AuxiliaryTable,
    Catalogue,
    CatalogueError,
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
from shared.money import ONE, ZERO, to_fen, to_point_value, to_points, to_weight

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
        raise CatalogueError("min_cases and scale must be at least 1", code="INVALID_PARAMETER",
                             field="min_cases" if min_cases < 1 else "scale")
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
        raise CatalogueError("no cases left to build a catalogue on after the exclusions",
                             code="NO_CASES_IN_SCOPE")
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



# --- a case's score under a catalogue -------------------------------------------------------------

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



# --- budget point value ---------------------------------------------------------------------------

def budget_point_value(costs_by_year: Mapping[int, Decimal], scores_by_year: Mapping[int, Decimal],
                       year_weights: Mapping[int, int]) -> Decimal:
    """预算点值 = Σ_y w_y · C_y / Σ_y w_y · S_y (§7 DIP), 6 decimals."""
    num = sum((w * costs_by_year.get(y, ZERO) for y, w in year_weights.items()), ZERO)
    den = sum((w * scores_by_year.get(y, ZERO) for y, w in year_weights.items()), ZERO)
    if den <= 0:
        raise CatalogueError("Σ weighted scores must be positive", code="NO_SCORES")
    return to_point_value(num / den)


@dataclass(frozen=True)
class BudgetPointValue:
    """The budget point value of a catalogue over history, with every input (§7 DIP)."""

    catalogue: str  # version label
    year_weights: dict[int, int]  # data year → weight
    costs: dict[int, Decimal]  # C_y: total cost of the year's in-scope cases
    scores: dict[int, Decimal]  # S_y: Σ base scores of those cases
    cases: dict[int, int]  # in-scope cases per year
    excluded: dict[str, int]  # cases left out, per reason
    point_value: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {"catalogue": self.catalogue, "budget_point_value": str(self.point_value),
                "years": [{"year": y, "weight": w, "cases": self.cases.get(y, 0),
                           "cost": str(self.costs.get(y, ZERO)),
                           "scores": str(self.scores.get(y, ZERO))}
                          for y, w in self.year_weights.items()],
                "excluded": dict(self.excluded)}

    def text(self) -> str:
        lines = [f"catalogue {self.catalogue}: budget point value = Σ w·C / Σ w·S (§7 DIP)"]
        lines += [f"  {y}  weight {w}  cases {self.cases.get(y, 0):>7}  cost C {self.costs.get(y, ZERO)}"
                  f"  scores S {self.scores.get(y, ZERO)}" for y, w in self.year_weights.items()]
        excluded = ", ".join(f"{k} {n}" for k, n in sorted(self.excluded.items()) if n)
        lines.append(f"  excluded: {excluded or 'none'}")
        lines.append(f"budget point value: {self.point_value}")
        return "\n".join(lines)


def budget_point_value_of(catalogue: Catalogue, history: Iterable[DipCase],
                          year_weights: Mapping[int, int] | None = None) -> BudgetPointValue:
    """The budget point value over `history` (in-scope cases: the scope exclusions of the
    catalogue build, §6) with its inputs; the years and weights default to the catalogue's data
    years and year weights."""
    p = CalibrationParams(region=catalogue.region, year=catalogue.year,
                          year_weights=catalogue.year_weights)
    weights = dict(year_weights) if year_weights is not None else dict(
        zip(p.data_years, p.year_weights, strict=True))
    years = sorted(weights)
    # the exclusions count the years given, not the catalogue's
    p = CalibrationParams(region=catalogue.region, year=years[-1] + 1,
                          year_weights=tuple(weights.get(y, 0) for y in range(years[0], years[-1] + 1)))
    costs: dict[int, Decimal] = defaultdict(lambda: ZERO)
    scores: dict[int, Decimal] = defaultdict(lambda: ZERO)
    cases: Counter[int] = Counter()
    excluded: Counter[str] = Counter()
    for c in history:
        reason = _exclusion(c, p)
        if reason is None and c.year not in weights:
            reason = "outside_years"
        if reason is not None:
            excluded[reason] += 1
            continue
        costs[c.year] += c.total_cost
        scores[c.year] += base_score(catalogue, c)[2]
        cases[c.year] += 1
    return BudgetPointValue(catalogue.version_label, weights, dict(costs), dict(scores),
                            dict(cases), dict(excluded), budget_point_value(costs, scores, weights))


def catalogue_budget_point_value(catalogue: Catalogue, history: Iterable[DipCase]) -> Decimal:
    """The budget point value of the catalogue's own data years (in-scope cases, base scores)."""
    return budget_point_value_of(catalogue, history).point_value
