"""Calibrate DRG relative weights and the base rate from grouped history (docs/domain.md §6, §7).

Steps, in order (each documented in the report: 剔除病案数据方案 [seed: Deyang]):

1. **Scope exclusions**, one reason per case, first match wins, each counted:
   `other_region` (the row names another region), `not_grouped` (status not SUCCESS/QY or no DRG),
   `outside_years` (not one of the data years), `withdrawn` (withdrawn list),
   `per_diem` (bed-day stays), `los_short` (LOS ≤ 2), `los_long` (LOS ≥ 60). The LOS limits and
   every other number here are `CalibrationParams`.
2. **Cost trimming per group** (`cost_outlier`): pooled over the data years, keep costs in
   [Q1 − 0.5·IQR, Q3 + 1.5·IQR] (inclusive). Quartiles by linear interpolation between order
   statistics (Hyndman–Fan type 7, the default of numpy/R and `statistics.quantiles(...,
   method="inclusive")`): for sorted x_0..x_{n−1}, Q(p) = x_j + (h − j)(x_{j+1} − x_j) with
   h = (n − 1)p, j = ⌊h⌋. Groups with fewer than `trim_min_cases` cases are not trimmed.
3. **Year weighting**: the weights apply to `year`; the data years are the len(year_weights)
   years before it, weighted oldest→newest (default 1:2:7, §6). A group's mean cost is the
   weighted mean of its yearly means over the years in which it has cases:
       M_g = Σ_y w_y · mean_{g,y} / Σ_{y: n_{g,y} > 0} w_y
   and the overall mean M is the same over all kept cases.
4. **RW_g = M_g / M** (§6), 4 decimals.
5. **Sparse groups** (极少病案组): fewer than `sparse_min_cases` kept cases. Fix `adrg_mean`:
   RW = (M of all kept cases of the group's ADRG, same weighting) / M; `expert`: the weight from
   `expert_weights` (kept as computed, with a note, when none was given); `none`: report only.
6. **Weight inversion** (权重倒挂): within an ADRG, a DRG ending in 1 (MCC) weighing less than the
   one ending in 3 (CC) or 5 (none), or 3 less than 5. Reported, not changed: fixing an
   inversion is the expert panel's call.
7. **CV** per group = sample standard deviation / mean of its kept costs (pooled, unweighted);
   **RIV** = 1 − Σ_g Σ_i (x_i − x̄_g)² / Σ_i (x_i − x̄)² over all kept cases (pooled, unweighted).
8. **Base rate from the budget** (§7): r = budget / Σ_g (expected cases_g × RW_g), to the fen.
   Expected cases default to each group's cases in the newest data year after the scope
   exclusions (trimmed cost outliers are still cases to pay); the bureau can give them
   instead (`expected_cases`, read by `parse_expected_cases`): a group it does not list
   counts 0.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from services.pricer.domain.pricing import GROUPED_STATUSES
from shared.errors import Invalid
from shared.money import ZERO, Amount, to_fen, to_weight

EXCLUSION_RULES: dict[str, str] = {
    "other_region": "the case belongs to another region",
    "not_grouped": "not grouped (status not SUCCESS/QY, or no DRG)",
    "outside_years": "discharged outside the data years",
    "withdrawn": "the settlement list was withdrawn",
    "per_diem": "paid per bed-day (out of DRG scope)",
    "los_short": "LOS ≤ {los_short_max} days",
    "los_long": "LOS ≥ {los_long_min} days",
    "cost_outlier": "cost outside [Q1 − {iqr_low}·IQR, Q3 + {iqr_high}·IQR] of its group",
}


class HistoricalCase(BaseModel):
    """One grouped historical discharge (a line of `drgdip calibrate --input`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    case_id: str = Field(default="", validation_alias=AliasChoices("case_id", "id"))
    year: int
    region: str | None = None
    hospital_code: str | None = None
    drg: str
    adrg: str = ""
    group_status: str = Field(default="SUCCESS", validation_alias=AliasChoices("group_status", "status"))
    cost: Amount = Field(validation_alias=AliasChoices("cost", "total_cost"))
    los: int | None = None
    per_diem: bool = False
    withdrawn: bool = False

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        # year from the discharge date when not given; ADRG = the DRG's first three characters
        if isinstance(data, dict):
            data = dict(data)
            if data.get("year") is None and data.get("discharge_date"):
                data["year"] = date.fromisoformat(str(data["discharge_date"])[:10]).year
            if not data.get("adrg") and data.get("drg"):
                data["adrg"] = str(data["drg"])[:3]
        return data


@dataclass(frozen=True)
class CalibrationParams:
    """Every number of the calibration; defaults are §6's."""

    region: str
    year: int  # the year the weights apply to; data = the years before it
    budget: Decimal | None = None
    year_weights: tuple[int, ...] = (1, 2, 7)  # oldest → newest
    los_short_max: int = 2  # LOS ≤ this is excluded
    los_long_min: int = 60  # LOS ≥ this is excluded
    iqr_low: Decimal = Decimal("0.5")
    iqr_high: Decimal = Decimal("1.5")
    trim_min_cases: int = 4
    sparse_min_cases: int = 5
    sparse_fix: Literal["adrg_mean", "expert", "none"] = "adrg_mean"
    expert_weights: Mapping[str, Decimal] = field(default_factory=dict)
    expected_cases: Mapping[str, int] | None = None
    weights_version: str | None = None

    @property
    def data_years(self) -> tuple[int, ...]:
        n = len(self.year_weights)
        return tuple(range(self.year - n, self.year))

    @property
    def version(self) -> str:
        return self.weights_version or f"{self.region}-{self.year}-calibrated"

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region, "year": self.year,
            "budget": None if self.budget is None else str(self.budget),
            "data_years": list(self.data_years), "year_weights": list(self.year_weights),
            "los_short_max": self.los_short_max, "los_long_min": self.los_long_min,
            "iqr_low": str(self.iqr_low), "iqr_high": str(self.iqr_high),
            "trim_min_cases": self.trim_min_cases, "sparse_min_cases": self.sparse_min_cases,
            "sparse_fix": self.sparse_fix, "weights_version": self.version,
            "expected_cases": ("given" if self.expected_cases is not None
                               else f"cases of {self.data_years[-1]}"),
        }


def quantile(sorted_values: Sequence[Decimal], p: Decimal) -> Decimal:
    """Type-7 quantile (linear interpolation between order statistics) of sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    h = (len(sorted_values) - 1) * p
    j = int(h)
    if j + 1 >= len(sorted_values):
        return sorted_values[-1]
    return sorted_values[j] + (h - j) * (sorted_values[j + 1] - sorted_values[j])


def weighted_year_mean(costs_by_year: Mapping[int, Sequence[Decimal]],
                       weights: Mapping[int, int]) -> Decimal:
    """Σ_y w_y · mean_y / Σ w_y over the years that have costs (§6, 1:2:7)."""
    num, den = ZERO, 0
    for y, costs in costs_by_year.items():
        if costs:
            num += weights[y] * (sum(costs, ZERO) / len(costs))
            den += weights[y]
    if den == 0:
        raise ValueError("no costs in any weighted year")
    return num / den


@dataclass(frozen=True)
class GroupCalibration:
    drg: str
    adrg: str
    cases: int  # after the scope exclusions
    kept: int  # after trimming
    trimmed: int
    cases_by_year: dict[int, int]
    q1: Decimal | None
    q3: Decimal | None
    lower_fence: Decimal | None
    upper_fence: Decimal | None
    mean_cost: Decimal  # M_g, year-weighted, yuan
    computed_rw: Decimal  # M_g / M
    rw: Decimal  # after the sparse-group fix
    cv: Decimal | None
    sparse: bool
    fix: str  # "" | "adrg_mean" | "expert" | "expert_missing"
    expected_cases: int

    def to_row(self) -> dict[str, str]:
        def s(v: Any) -> str:
            return "" if v is None else str(v)
        return {
            "drg": self.drg, "adrg": self.adrg, "cases": s(self.cases), "kept": s(self.kept),
            "trimmed": s(self.trimmed),
            "cases_by_year": ";".join(f"{y}:{n}" for y, n in sorted(self.cases_by_year.items())),
            "q1": s(self.q1), "q3": s(self.q3), "lower_fence": s(self.lower_fence),
            "upper_fence": s(self.upper_fence), "mean_cost": s(self.mean_cost),
            "computed_rw": s(self.computed_rw), "rw": s(self.rw), "cv": s(self.cv),
            "sparse": "yes" if self.sparse else "no", "fix": self.fix,
            "expected_cases": s(self.expected_cases),
        }


@dataclass(frozen=True)
class Inversion:
    """A more severe split (…1 / …3) weighing less than a lighter one of the same ADRG."""

    adrg: str
    drg: str
    rw: Decimal
    lighter_drg: str
    lighter_rw: Decimal

    def to_dict(self) -> dict[str, str]:
        return {"adrg": self.adrg, "drg": self.drg, "rw": str(self.rw),
                "lighter_drg": self.lighter_drg, "lighter_rw": str(self.lighter_rw)}


@dataclass(frozen=True)
class CalibrationReport:
    """What a calibration did and produced: exclusions, per-group figures, weights, base rate."""

    params: CalibrationParams
    cases_in: int
    exclusions: dict[str, int]
    excluded: tuple[tuple[str, str], ...]  # (case_id, reason), for the audit trail
    overall_mean_cost: Decimal
    groups: tuple[GroupCalibration, ...]
    inversions: tuple[Inversion, ...]
    riv: Decimal | None
    expected_rw_sum: Decimal
    base_rate: Decimal | None

    @property
    def kept(self) -> int:
        return sum(g.kept for g in self.groups)

    @property
    def weights(self) -> dict[str, Decimal]:
        return {g.drg: g.rw for g in self.groups}

    def weights_document(self) -> dict[str, Any]:
        """A policy fragment: `weights` (with its version), group means, overall mean, rate."""
        return {
            "weights": {"version": self.params.version,
                        "table": {g.drg: str(g.rw) for g in self.groups}},
            "group_mean_costs": {g.drg: str(to_fen(g.mean_cost)) for g in self.groups},
            "overall_mean_cost": str(to_fen(self.overall_mean_cost)),
            "base_rate": None if self.base_rate is None else str(self.base_rate),
            "region": self.params.region, "year": self.params.year,
        }

    def exclusion_rules(self) -> dict[str, str]:
        p = self.params
        return {k: v.format(los_short_max=p.los_short_max, los_long_min=p.los_long_min,
                            iqr_low=p.iqr_low, iqr_high=p.iqr_high)
                for k, v in EXCLUSION_RULES.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "cases_in": self.cases_in, "cases_kept": self.kept,
            "exclusions": [{"reason": k, "rule": self.exclusion_rules()[k], "cases": n}
                           for k, n in self.exclusions.items()],
            "overall_mean_cost": str(to_fen(self.overall_mean_cost)),
            "riv": None if self.riv is None else str(self.riv),
            "expected_rw_sum": str(self.expected_rw_sum),
            "base_rate": None if self.base_rate is None else str(self.base_rate),
            "sparse_groups": [g.drg for g in self.groups if g.sparse],
            "inversions": [i.to_dict() for i in self.inversions],
            "groups": [g.to_row() for g in self.groups],
        }

    def csv_rows(self) -> list[dict[str, str]]:
        """One row per group."""
        return [g.to_row() for g in self.groups]

    def excluded_rows(self) -> list[dict[str, str]]:
        return [{"case_id": c, "reason": r} for c, r in self.excluded]

    def summary_text(self) -> str:
        p = self.params
        lines = [
            f"Calibration {p.version}: region {p.region}, weights for {p.year}",
            f"  data years {', '.join(map(str, p.data_years))} weighted "
            f"{':'.join(map(str, p.year_weights))} (oldest→newest)",
            f"  cases in {self.cases_in}, kept {self.kept}",
        ]
        rules = self.exclusion_rules()
        for reason, n in self.exclusions.items():
            lines.append(f"  excluded {n:>7}  {reason}: {rules[reason]}")
        lines += [
            f"  groups {len(self.groups)}, sparse (< {p.sparse_min_cases} cases) "
            f"{sum(g.sparse for g in self.groups)} fixed by {p.sparse_fix}",
            f"  weight inversions {len(self.inversions)}"
            + "".join(f"\n    {i.drg} {i.rw} < {i.lighter_drg} {i.lighter_rw}"
                      for i in self.inversions),
            f"  overall mean cost {to_fen(self.overall_mean_cost)} yuan, RIV "
            f"{'n/a' if self.riv is None else self.riv}",
            f"  Σ expected cases × RW = {self.expected_rw_sum} (expected cases: "
            + ("given by the bureau" if p.expected_cases is not None
               else f"the cases of {p.data_years[-1]}") + ")",
        ]
        if p.expected_cases is not None:
            unknown = sorted(set(p.expected_cases) - {g.drg for g in self.groups})
            if unknown:
                lines.append(f"  expected cases of DRGs without a weight (not counted): "
                             f"{', '.join(unknown)}")
        if self.base_rate is not None:
            lines.append(f"  base rate = {p.budget} / {self.expected_rw_sum} = "
                         f"{self.base_rate} yuan per RW")
        return "\n".join(lines)


def scope_exclusion(p: CalibrationParams, *, region: str | None, year: int, withdrawn: bool,
                    per_diem: bool, los: int | None) -> str | None:
    """The documented exclusions (剔除病案数据方案, §6) that DRG weights and DIP scores share."""
    if region is not None and region != p.region:
        return "other_region"
    if year not in p.data_years:
        return "outside_years"
    if withdrawn:
        return "withdrawn"
    if per_diem:
        return "per_diem"
    if los is not None and los <= p.los_short_max:
        return "los_short"
    if los is not None and los >= p.los_long_min:
        return "los_long"
    return None


def _exclusion(case: HistoricalCase, p: CalibrationParams) -> str | None:
    if case.region is not None and case.region != p.region:
        return "other_region"
    if case.group_status not in GROUPED_STATUSES or not case.drg:
        return "not_grouped"
    return scope_exclusion(p, region=None, year=case.year, withdrawn=case.withdrawn,
                           per_diem=case.per_diem, los=case.los)


def coefficient_of_variation(costs: Sequence[Decimal]) -> Decimal | None:
    if len(costs) < 2:
        return None
    mean = statistics.mean(costs)
    if mean == 0:
        return None
    return to_weight(statistics.stdev(costs) / mean)


def reduction_in_variance(groups: Mapping[str, Sequence[Decimal]]) -> Decimal | None:
    everything = [c for costs in groups.values() for c in costs]
    if len(everything) < 2:
        return None
    grand = sum(everything, ZERO) / len(everything)
    sst = sum(((c - grand) ** 2 for c in everything), ZERO)
    if sst == 0:
        return None
    ssw = ZERO
    for costs in groups.values():
        m = sum(costs, ZERO) / len(costs)
        ssw += sum(((c - m) ** 2 for c in costs), ZERO)
    return to_weight(1 - ssw / sst)


_SEVERITY = {"1": 0, "3": 1, "5": 2}  # CHS-DRG last digit: 1 MCC, 3 CC, 5 none (9: not split)


def find_inversions(weights: Mapping[str, Decimal], adrg_of: Mapping[str, str]) -> list[Inversion]:
    """Pairs in one ADRG where the more severe split weighs less (§6 权重倒挂)."""
    by_adrg: dict[str, list[str]] = defaultdict(list)
    for drg in weights:
        if drg[-1:] in _SEVERITY:
            by_adrg[adrg_of.get(drg, drg[:3])].append(drg)
    out = []
    for adrg, drgs in sorted(by_adrg.items()):
        drgs.sort(key=lambda d: _SEVERITY[d[-1]])
        for i, heavy in enumerate(drgs):
            for light in drgs[i + 1:]:
                if _SEVERITY[heavy[-1]] < _SEVERITY[light[-1]] and weights[heavy] < weights[light]:
                    out.append(Inversion(adrg, heavy, weights[heavy], light, weights[light]))
    return out


def calibrate(cases: Iterable[HistoricalCase], params: CalibrationParams) -> CalibrationReport:
    """Run §6 on grouped history; see the module docstring for every step."""
    p = params
    year_weight = dict(zip(p.data_years, p.year_weights, strict=True))
    newest = p.data_years[-1]
    exclusions: Counter[str] = Counter({k: 0 for k in EXCLUSION_RULES})
    excluded: list[tuple[str, str]] = []
    in_scope: dict[str, list[HistoricalCase]] = defaultdict(list)
    cases_in = 0
    for case in cases:
        cases_in += 1
        reason = _exclusion(case, p)
        if reason is None:
            in_scope[case.drg].append(case)
        else:
            exclusions[reason] += 1
            excluded.append((case.case_id, reason))

    # 2. per-group IQR trimming (pooled over the data years)
    kept: dict[str, list[HistoricalCase]] = {}
    fences: dict[str, tuple[Decimal, Decimal, Decimal, Decimal] | None] = {}
    for drg, group in sorted(in_scope.items()):
        if len(group) < p.trim_min_cases:
            kept[drg], fences[drg] = list(group), None
            continue
        costs = sorted(c.cost for c in group)
        q1, q3 = quantile(costs, Decimal("0.25")), quantile(costs, Decimal("0.75"))
        low, high = q1 - p.iqr_low * (q3 - q1), q3 + p.iqr_high * (q3 - q1)
        fences[drg] = (q1, q3, low, high)
        kept[drg] = []
        for c in group:
            if low <= c.cost <= high:
                kept[drg].append(c)
            else:
                exclusions["cost_outlier"] += 1
                excluded.append((c.case_id, "cost_outlier"))

    if not kept:
        raise ValueError("no cases left to calibrate on after the exclusions")

    def by_year(group: Iterable[HistoricalCase]) -> dict[int, list[Decimal]]:
        out: dict[int, list[Decimal]] = defaultdict(list)
        for c in group:
            out[c.year].append(c.cost)
        return out

    # 3–4. year-weighted means and RW
    overall = weighted_year_mean(by_year(c for g in kept.values() for c in g), year_weight)
    adrg_of = {drg: group[0].adrg for drg, group in in_scope.items()}
    adrg_cases: dict[str, list[HistoricalCase]] = defaultdict(list)
    for drg, group in kept.items():
        adrg_cases[adrg_of[drg]].extend(group)

    groups: list[GroupCalibration] = []
    for drg, group in kept.items():
        mean = weighted_year_mean(by_year(group), year_weight)
        computed = to_weight(mean / overall)
        sparse = len(group) < p.sparse_min_cases
        rw, fix = computed, ""
        if sparse and p.sparse_fix == "adrg_mean":
            # 5. borrow the ADRG's mean (all its splits together)
            rw = to_weight(weighted_year_mean(by_year(adrg_cases[adrg_of[drg]]), year_weight) / overall)
            fix = "adrg_mean"
        elif sparse and p.sparse_fix == "expert":
            expert = p.expert_weights.get(drg)
            rw, fix = (to_weight(expert), "expert") if expert is not None else (computed, "expert_missing")
        f = fences[drg]
        if p.expected_cases is not None:
            expected = p.expected_cases.get(drg, 0)
        else:
            expected = sum(1 for c in in_scope[drg] if c.year == newest)
        groups.append(GroupCalibration(
            drg=drg, adrg=adrg_of[drg], cases=len(in_scope[drg]), kept=len(group),
            trimmed=len(in_scope[drg]) - len(group),
            cases_by_year=dict(sorted(Counter(c.year for c in in_scope[drg]).items())),
            q1=None if f is None else f[0], q3=None if f is None else f[1],
            lower_fence=None if f is None else f[2], upper_fence=None if f is None else f[3],
            mean_cost=mean, computed_rw=computed, rw=rw,
            cv=coefficient_of_variation([c.cost for c in group]), sparse=sparse, fix=fix, expected_cases=expected,
        ))

    # 6–8
    weights = {g.drg: g.rw for g in groups}
    inversions = find_inversions(weights, adrg_of)
    riv = reduction_in_variance({drg: [c.cost for c in group] for drg, group in kept.items()})
    expected_rw_sum = sum((g.expected_cases * g.rw for g in groups), ZERO)
    base_rate = None
    if p.budget is not None and expected_rw_sum > 0:
        base_rate = base_rate_from_budget(p.budget, expected_rw_sum)
    return CalibrationReport(
        params=p, cases_in=cases_in, exclusions=dict(exclusions), excluded=tuple(excluded),
        overall_mean_cost=overall, groups=tuple(groups), inversions=tuple(inversions), riv=riv,
        expected_rw_sum=expected_rw_sum, base_rate=base_rate,
    )


class ExpectedCasesError(Invalid):
    """A bureau's expected-cases file is malformed (422 `INVALID_EXPECTED_CASES`); the field is
    the line at fault ("line 3")."""

    default_code = "INVALID_EXPECTED_CASES"


def parse_expected_cases(text: str) -> dict[str, int]:
    """Expected case volumes per DRG given by the bureau (a forecast, §7 rate method).

    Either a JSON object {DRG: cases}, or one `DRG,cases` per line (comma or tab; an optional
    header line whose count column is not a number, e.g. `drg,expected_cases`; blank lines and
    `#` comments ignored). Counts are whole numbers ≥ 0; a DRG given twice is an error.
    """
    if text.lstrip().startswith("{"):
        try:
            doc = orjson.loads(text)
        except ValueError as e:
            raise ExpectedCasesError(f"not valid JSON: {e}", field="(document)") from None
        rows = [(0, str(k), v) for k, v in doc.items()]
    else:
        rows = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            cells = [c.strip() for c in line.replace("\t", ",").split(",")]
            if len(cells) != 2 or not cells[0]:
                raise ExpectedCasesError(f"line {lineno}: expected `DRG,cases`, got {raw.strip()!r}",
                                         field=f"line {lineno}")
            if not rows and not cells[1].lstrip("-").isdigit():
                continue  # a header
            rows.append((lineno, cells[0], cells[1]))
    out: dict[str, int] = {}
    for lineno, drg, value in rows:
        where = f"line {lineno}" if lineno else drg
        try:
            n = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value))
        except ValueError:
            n = -1
        if n < 0 or isinstance(value, bool | float):
            raise ExpectedCasesError(f"{where}: the cases of {drg} must be a whole number ≥ 0, "
                                     f"got {value!r}", field=where)
        if drg in out:
            raise ExpectedCasesError(f"{where}: {drg} is given twice", field=where)
        out[drg] = n
    if not out:
        raise ExpectedCasesError("no DRG with expected cases", field="(document)")
    return out


def base_rate_from_budget(budget: Decimal, expected_rw_sum: Decimal) -> Decimal:
    """r = budget / Σ(expected cases × RW) (§7 rate method), yuan per RW to the fen."""
    if expected_rw_sum <= 0:
        raise ValueError("Σ expected cases × RW must be positive")
    return to_fen(budget / expected_rw_sum)
