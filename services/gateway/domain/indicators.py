"""The bureau's indicators (docs/domain.md §12) as aggregates kept while events arrive.

Pure. A case contributes counts and sums to one aggregate cell, keyed by (region, month,
hospital, hospital level, department, scheme, group); its contribution is stored with its view,
so when the view changes (a stage result, a new list version, a withdrawal) the cell gets the
new contribution minus the old one (`delta`). The indicators are formulas over summed cells
(`indicators`), so a quarter or a year is the sum of its months, and the cost and time
consumption indices need nothing but per-group sums (`consumption_indices`).

Which cases count: a case counts once it is priced (the priced stage carries the hospital's
level and the group's figures) and is not withdrawn. Its region is where it was treated (the
hospital's region; an off-site case is the treating region's), its month the discharge month.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson

from shared.money import FEN

ZERO = Decimal(0)
WEIGHT = Decimal("0.0001")
GROUPED_STATUSES = frozenset({"SUCCESS", "QY"})  # the grouper's statuses of a grouped case
TRANSFERRED, LEFT_AGAINST_ADVICE = 2, 4  # 离院方式 (dscg_way): 医嘱转院, 非医嘱离院
READMISSION_DAYS = (15, 31)
DEFAULT_NEAR_THRESHOLD_BAND = Decimal("0.10")

# The key of a cell, in this order; "" (0 for the level) when not known.
KEY = ("region", "month", "hospital_code", "hospital_level", "dept", "scheme_id", "drg")
# Counts (integers) and sums (money; weights to 4 places) a case adds to its cell.
COUNTS = ("cases", "grouped", "weighted", "los_cases", "paid", "high_outliers", "low_outliers",
          "special_review", "special_cases", "flagged", "readmissions_15", "readmissions_31",
          "near_high", "near_low", "transfers_out", "left_against_advice", "los_sum")
FEE_ITEMS = tuple(f"{n:02d}" for n in range(1, 15))  # 医疗收费项目 med_chrgitm 01–14
FEES = tuple(f"fee_{code}_sum" for code in FEE_ITEMS)  # the cases' fees per item (the bulletin's spending)
MONEY = ("cost_sum", "own_pay_sum", "paid_cost_sum", "payment_sum", "fund_payment_sum", *FEES)
SUMS = (*COUNTS, "weight_sum", *MONEY)

Key = tuple[str, str, str, int, str, str, str]


@dataclass(frozen=True)
class Contribution:
    """What one case adds to its cell: the cell's key, its sums and the monitoring rules that
    flagged it (each rule once)."""

    key: Key
    sums: Mapping[str, Any]
    rules: tuple[str, ...] = ()

    def to_json(self) -> str:
        """Its JSON (the sums that are not zero, in name order: equal contributions, equal text)."""
        return orjson.dumps({"key": list(self.key), "sums": {k: str(v) if isinstance(v, Decimal) else v
                                                             for k, v in self.sums.items() if v},
                             "rules": list(self.rules)}, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str | None) -> Contribution | None:
        if not text:
            return None
        d = orjson.loads(text)
        k = d["key"]
        return cls((k[0], k[1], k[2], int(k[3]), k[4], k[5], k[6]),
                   {n: _number(n, v) for n, v in d["sums"].items()}, tuple(d.get("rules") or ()))


# The facts of a case's list version (`CaseFacts`) its contribution reads, kept with its view so
# that the cells can be rebuilt from the read model alone (`rebuild`).
FACT_FIELDS = ("hospital_code", "region", "treatment_region", "discharge_date", "total_cost", "own_pay",
               "discharge_way", "planned_readmission", "withdrawn", "fees")


def indicator_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """What of a case's facts the contribution reads (no person key, no diagnoses)."""
    get = facts.get
    return {k: v for k in FACT_FIELDS if (v := get(k)) is not None}


_COUNTS = frozenset(COUNTS)


def _number(name: str, value: Any) -> Any:
    return int(value) if name in _COUNTS else Decimal(value)


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value) if type(value) is str else Decimal(str(value))


_FEE_SUMS = tuple((code, f"fee_{code}_sum") for code in FEE_ITEMS)  # (item, its sum's name)


def _load(text: Any) -> dict[str, Any]:
    if type(text) is dict:  # a result the batch set (as decoded)
        return text
    if not text:
        return {}
    doc = orjson.loads(text) if isinstance(text, str | bytes) else text
    return doc if isinstance(doc, dict) else {}


def contribution(view: Mapping[str, Any], facts: Mapping[str, Any],
                 band: Decimal = DEFAULT_NEAR_THRESHOLD_BAND) -> Contribution | None:
    """A case's contribution from its read-model view (each stage's stored JSON) and the facts
    its list version carries (`CaseFacts` as JSON); None when it counts nowhere (not priced yet,
    withdrawn).

    `band` is the 临界区: a case is near a threshold when its cost (without innovative drugs, as
    typed by the pricer) is above the high-outlier threshold by at most `band` of it (the extra
    payment starts there), or above the low-outlier threshold by at most `band` (it escapes the
    low-outlier payment there)."""
    if view.get("withdrawn") or not view.get("priced"):
        return None
    priced, grouped = _load(view["priced"]), _load(view.get("grouped"))
    received, reviewed = _load(view.get("received")), _load(view.get("reviewed"))
    if priced.get("withdrawn") or facts.get("withdrawn"):
        return None
    status = grouped.get("status")
    is_grouped = status in GROUPED_STATUSES if status is not None else priced.get("status") not in (
        "NOT_GROUPED", None)
    discharge = str(facts.get("discharge_date") or "")
    region = str(facts.get("treatment_region") or facts.get("region") or "")
    key: Key = (region, discharge[:7], str(facts.get("hospital_code") or ""),
                int(priced.get("hospital_level") or 0), str(received.get("dept") or ""),
                str(grouped.get("scheme_id") or "") if is_grouped else "",
                str(priced.get("drg") or "") if is_grouped else "")
    cost = _dec(facts.get("total_cost")) or ZERO
    breakdown = priced.get("breakdown") or {}
    payment, weight, los = _dec(priced.get("payment")), _dec(priced.get("weight")), received.get("los")
    case_type = priced.get("case_type")
    discharge_way = facts.get("discharge_way")
    s: dict[str, Any] = {
        "cases": 1, "grouped": int(is_grouped), "cost_sum": cost,
        "own_pay_sum": _dec(facts.get("own_pay")) or ZERO,
        "weighted": int(weight is not None), "weight_sum": weight or ZERO,
        "los_cases": int(isinstance(los, int)), "los_sum": los if isinstance(los, int) else 0,
        "paid": int(payment is not None), "payment_sum": payment or ZERO,
        "paid_cost_sum": cost if payment is not None else ZERO,
        "fund_payment_sum": _dec(priced.get("fund_payment")) or ZERO,
        "high_outliers": int(case_type == "high_outlier"), "low_outliers": int(case_type == "low_outlier"),
        "special_review": int(bool(breakdown.get("special_review"))),
        "special_cases": int(breakdown.get("special_case") is not None),
        "transfers_out": int(discharge_way == TRANSFERRED),
        "left_against_advice": int(discharge_way == LEFT_AGAINST_ADVICE),
    }
    fees = facts.get("fees") or {}
    for code, name in _FEE_SUMS:
        fee = fees.get(code)
        s[name] = ZERO if fee is None else _dec(fee) or ZERO
    outlier_cost = _dec(breakdown.get("outlier_cost"))
    s["near_high"] = int(_just_above(outlier_cost, _dec(breakdown.get("high_threshold")), band))
    s["near_low"] = int(_just_above(outlier_cost, _dec(breakdown.get("low_threshold")), band))
    review, rules = _review_sums(reviewed, facts)
    s.update(review)
    return Contribution(key, s, rules)


def _review_sums(reviewed: Mapping[str, Any], facts: Mapping[str, Any]) -> tuple[dict[str, int], tuple[str, ...]]:
    """What a case's review adds to its cell: flagged, the readmission counts, and the rules."""
    flags = reviewed.get("flags") or []
    rules = tuple(sorted({str(f.get("rule")) for f in flags if isinstance(f, dict) and f.get("rule")}))
    s = {"flagged": int(bool(flags))}
    days = reviewed.get("readmission_days")
    unplanned = isinstance(days, int) and not facts.get("planned_readmission")
    for limit in READMISSION_DAYS:
        s[f"readmissions_{limit}"] = int(unplanned and 0 <= days <= limit)  # type: ignore[operator]
    return s, rules


def with_review(c: Contribution, reviewed: Mapping[str, Any], facts: Mapping[str, Any]) -> Contribution:
    """A counted case's contribution once its review changed (nothing else: same list version,
    same other stage results): what `contribution` gives for the new view, without reading the
    other stages' results again."""
    review, rules = _review_sums(reviewed, facts)
    return Contribution(c.key, {**c.sums, **review}, rules)


REVIEW_SUMS = ("flagged", *(f"readmissions_{limit}" for limit in READMISSION_DAYS))  # what `_review_sums` sets


def review_changed(old: str, reviewed: Mapping[str, Any], facts: Mapping[str, Any],
                   ) -> tuple[str, Contribution, Contribution]:
    """`with_review` on a stored contribution's JSON, without reading back its other sums: the
    new JSON (what `with_review(Contribution.from_json(old), ...).to_json()` gives: the review's
    sums and rules replaced in the stored text) and the review's part of the old and of the new
    contribution (the same key; their difference is the cell's change, the other sums being
    the same in both)."""
    d = orjson.loads(old)
    k, sums = d["key"], d["sums"]
    key: Key = (k[0], k[1], k[2], int(k[3]), k[4], k[5], k[6])
    review, rules = _review_sums(reviewed, facts)
    old_rules = tuple(d.get("rules") or ())
    zeros = _any_zero(sums.values())
    if old_rules == rules and "rules" in d and not zeros and all(
            int(sums.get(n) or 0) == v for n, v in review.items()):
        same = Contribution(key, review, rules)  # the review's part, before as after
        return old, same, same  # as to_json would write it again
    before = Contribution(key, {n: int(sums.get(n) or 0) for n in REVIEW_SUMS}, old_rules)
    after = Contribution(key, review, rules)
    if zeros:  # a text to_json did not write (zero sums kept): written again without them
        for name, value in review.items():
            sums[name] = value
        d["sums"] = {n: v for n, v in sums.items() if not _is_zero(v)}
    else:  # the other sums are not zero: the review's set, or dropped when zero
        for name, value in review.items():
            if value:
                sums[name] = value
            else:
                sums.pop(name, None)
    d["rules"] = list(rules)
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode(), before, after


def grouping_unchanged(old: str, grouped: Mapping[str, Any]) -> bool:
    """Whether a counted case's new grouping result leaves its stored contribution (JSON, as
    to_json writes it) as it is: the contribution reads of the grouping only whether the case is
    grouped (its status) and, when it is, its scheme; the rest comes from the other stages and
    the facts, which a grouping result alone does not change. False when that cannot be told
    from the stored text (no status in the result, a text to_json did not write): the whole
    contribution is computed again then."""
    status = grouped.get("status")
    if status is None:
        return False
    d = orjson.loads(old)
    sums = d["sums"]
    if "rules" not in d or _any_zero(sums.values()):
        return False
    is_grouped = status in GROUPED_STATUSES
    return int(sums.get("grouped") or 0) == int(is_grouped) and (
        not is_grouped or d["key"][5] == str(grouped.get("scheme_id") or ""))


def _any_zero(values: Iterable[Any]) -> bool:
    """Whether any of these stored sums is 0 (`_is_zero`), in one loop."""
    for value in values:
        if type(value) is str:
            if not value.strip("-+0."):
                return True
        elif not value:
            return True
    return False


def _is_zero(value: Any) -> bool:
    """A stored sum that is 0 (to_json leaves those out): 0, or a decimal's text such as "0.00"."""
    return not value or (isinstance(value, str) and not value.strip("-+0."))


def _just_above(cost: Decimal | None, threshold: Decimal | None, band: Decimal) -> bool:
    if cost is None or threshold is None or threshold <= 0:
        return False
    return threshold < cost <= threshold * (1 + band)


# ---------------------------------------------------------------- deltas

@dataclass
class Delta:
    """What a batch adds to each cell (negative where cases left it) and to each (cell, rule)."""

    cells: dict[Key, dict[str, Any]] = field(default_factory=dict)
    rules: dict[tuple[Key, str], int] = field(default_factory=dict)

    def add(self, c: Contribution, sign: int) -> None:
        cell = self.cells.get(c.key)  # the sums that change only; the rest are 0
        if cell is None:  # a cell the batch has not changed yet (nearly always): its sums as they are
            self.cells[c.key] = {n: v for n, v in c.sums.items() if v} if sign == 1 else {
                n: sign * v for n, v in c.sums.items() if v}
        else:
            for name, value in c.sums.items():
                if value:
                    cell[name] = cell.get(name, 0) + sign * value
        for rule in c.rules:
            self.rules[(c.key, rule)] = self.rules.get((c.key, rule), 0) + sign

    def merge(self, other: Delta) -> None:
        """Add another delta's changes to this one."""
        for key, sums in other.cells.items():
            add_sums(self.cells.setdefault(key, empty_sums()), sums)
        for rule, n in other.rules.items():
            self.rules[rule] = self.rules.get(rule, 0) + n

    def changed_cells(self) -> dict[Key, dict[str, Any]]:
        """The cells whose sums change (a case moved out and back in changes nothing), with
        every sum (0 where it does not change)."""
        return {k: empty_sums() | v for k, v in self.cells.items() if any(v.values())}

    def changed_rules(self) -> dict[tuple[Key, str], int]:
        return {k: v for k, v in self.rules.items() if v}


def rebuild(cases: Iterable[tuple[Mapping[str, Any], Mapping[str, Any] | None, Contribution | None]],
            band: Decimal = DEFAULT_NEAR_THRESHOLD_BAND) -> tuple[Delta, list[Contribution | None]]:
    """The cells from scratch: each case's contribution recomputed from its view and its kept
    facts, or (no facts kept: folded before they were) its stored contribution as it is. Gives
    the cells (as a delta over empty ones) and each case's contribution, in order."""
    d, out = Delta(), []
    for view, facts, stored in cases:
        c = contribution(view, facts, band) if facts is not None else stored
        if c is not None:
            d.add(c, 1)
        out.append(c)
    return d, out


def delta(changes: Iterable[tuple[Contribution | None, Contribution | None]]) -> Delta:
    """The cells' changes from (old, new) contributions of changed cases: the old taken out, the
    new put in."""
    d = Delta()
    for old, new in changes:
        if old == new:
            continue
        if old is not None:
            d.add(old, -1)
        if new is not None:
            d.add(new, 1)
    return d


# ---------------------------------------------------------------- the formulas (§12)

def ratio(num: Decimal | int, den: Decimal | int, places: int = 4) -> str | None:
    """num / den as a string with `places` decimals (half up); None when den is 0."""
    if not den:
        return None
    q = Decimal(1).scaleb(-places)
    return str((Decimal(num) / Decimal(den)).quantize(q, rounding=ROUND_HALF_UP))


def _money(value: Decimal) -> str:
    return str(Decimal(value).quantize(FEN, rounding=ROUND_HALF_UP))


def empty_sums() -> dict[str, Any]:
    return {n: 0 for n in COUNTS} | {n: ZERO for n in SUMS if n not in COUNTS}


def add_sums(into: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    for name in SUMS:
        into[name] += more.get(name) or 0
    return into


@dataclass(frozen=True)
class GroupSums:
    """One row's (or the region's) cases, cost and LOS in one group: the consumption indices'
    inputs."""

    cases: int
    cost_sum: Decimal
    los_cases: int
    los_sum: Decimal


def consumption_indices(own: Mapping[Any, GroupSums], region: Mapping[Any, GroupSums]) -> tuple[str | None, str | None]:
    """The cost and time consumption indices (§12) of a row against its region:
    Σ_g n_g × (row mean in g / region mean in g) / Σ n_g, with costs (LOS) per group; a group
    with no region mean (0) is left out of both sums."""
    num_cost = num_time = ZERO
    n_cost = n_time = 0
    for g, s in own.items():
        r = region.get(g)
        if r is None or s.cases == 0:
            continue
        if r.cases and r.cost_sum:
            num_cost += s.cases * ((s.cost_sum / s.cases) / (r.cost_sum / r.cases))
            n_cost += s.cases
        if s.los_cases and r.los_cases and r.los_sum:
            num_time += s.los_cases * ((s.los_sum / s.los_cases) / (r.los_sum / r.los_cases))
            n_time += s.los_cases
    return ratio(num_cost, n_cost), ratio(num_time, n_time)


# The indicator fields of a row (and of region_total), in the order of the exports.
FIELDS = ("cases", "grouped", "grouping_rate", "groups_covered", "scheme_groups", "coverage_rate", "cmi",
          "cost_index", "time_index", "average_los", "average_cost", "self_pay_ratio",
          "high_outliers", "high_outlier_share", "low_outliers", "low_outlier_share",
          "special_review", "special_cases", "special_case_share", "flagged", "flagged_share",
          "readmissions_15", "readmission_rate_15", "readmissions_31", "readmission_rate_31",
          "near_high", "near_low", "near_threshold_share", "transfers_out", "left_against_advice",
          "cost_sum", "own_pay_sum", "payment_sum", "fund_payment_sum", "paid_cost_sum", "surplus",
          "surplus_rate")


def indicators(s: Mapping[str, Any], *, groups_covered: int, scheme_groups: int | None,
               cost_index: str | None, time_index: str | None) -> dict[str, Any]:
    """The indicators of summed cells (§12). Ratios are strings with 4 decimals, averages of
    money and 盈亏 yuan with 2, average LOS with 2, CMI with 4; a ratio over nothing is None.

    - 入组率 grouping_rate = grouped / cases
    - 病组覆盖率 coverage_rate = groups with ≥ 1 case / the scheme's groups
    - CMI = Σ RW / cases with a weight (DRG-priced cases)
    - average cost = cost / cases; average LOS = Σ LOS / cases with a LOS
    - 自费 self_pay_ratio = own pay / cost
    - outlier, special-case (the panel's decisions), flagged, readmission and 临界区 shares over cases
    - 盈亏 surplus = DRG/DIP payment − the cost of the paid cases (what fee-for-service would have
      paid, §9); surplus_rate = surplus / that cost
    """
    cases = s["cases"]
    surplus = s["payment_sum"] - s["paid_cost_sum"]
    return {
        "cases": cases, "grouped": s["grouped"], "grouping_rate": ratio(s["grouped"], cases),
        "groups_covered": groups_covered, "scheme_groups": scheme_groups,
        "coverage_rate": ratio(groups_covered, scheme_groups or 0),
        "cmi": ratio(s["weight_sum"], s["weighted"]),
        "cost_index": cost_index, "time_index": time_index,
        "average_los": ratio(s["los_sum"], s["los_cases"], 2),
        "average_cost": ratio(s["cost_sum"], cases, 2),
        "self_pay_ratio": ratio(s["own_pay_sum"], s["cost_sum"]),
        "high_outliers": s["high_outliers"], "high_outlier_share": ratio(s["high_outliers"], cases),
        "low_outliers": s["low_outliers"], "low_outlier_share": ratio(s["low_outliers"], cases),
        "special_review": s["special_review"],
        "special_cases": s["special_cases"], "special_case_share": ratio(s["special_cases"], cases),
        "flagged": s["flagged"], "flagged_share": ratio(s["flagged"], cases),
        "readmissions_15": s["readmissions_15"], "readmission_rate_15": ratio(s["readmissions_15"], cases),
        "readmissions_31": s["readmissions_31"], "readmission_rate_31": ratio(s["readmissions_31"], cases),
        "near_high": s["near_high"], "near_low": s["near_low"],
        "near_threshold_share": ratio(s["near_high"] + s["near_low"], cases),
        "transfers_out": s["transfers_out"], "left_against_advice": s["left_against_advice"],
        "cost_sum": _money(s["cost_sum"]), "own_pay_sum": _money(s["own_pay_sum"]),
        "payment_sum": _money(s["payment_sum"]), "fund_payment_sum": _money(s["fund_payment_sum"]),
        "paid_cost_sum": _money(s["paid_cost_sum"]), "surplus": _money(surplus),
        "surplus_rate": ratio(surplus, s["paid_cost_sum"]),
    }


# ---------------------------------------------------------------- periods and breakdowns

BY = ("region", "hospital", "level", "department", "group", "month", "rule")
BY_COLUMN = {"region": "region", "hospital": "hospital_code", "level": "hospital_level",
             "department": "dept", "group": "drg", "month": "month"}


def months_of(period: str) -> list[str]:
    """The months (YYYY-MM) of a month, a quarter (YYYYQn) or a year (YYYY); raises ValueError."""
    p = period.strip().upper()
    if len(p) == 7 and p[4] == "-" and p[:4].isdigit() and p[5:].isdigit() and 1 <= int(p[5:]) <= 12:
        return [p]
    if len(p) == 6 and p[4] == "Q" and p[:4].isdigit() and p[5] in "1234":
        q = int(p[5])
        return [f"{p[:4]}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]
    if len(p) == 4 and p.isdigit():
        return [f"{p}-{m:02d}" for m in range(1, 13)]
    raise ValueError(f"period {period!r} is not YYYY-MM, YYYYQn or YYYY")


def _group_sums(s: Mapping[str, Any]) -> GroupSums:
    return GroupSums(int(s["cases"]), Decimal(s["cost_sum"]), int(s["los_cases"]), Decimal(s["los_sum"]))


def summarise(cells: Iterable[Mapping[str, Any]], region_cells: Iterable[Mapping[str, Any]],
              scheme_groups: Mapping[str, int] | None, by: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The indicator rows of summed cells (one per value of the `by` column, each cell carrying
    its scheme_id and drg) and the region's total (`region_cells`: the region's cells summed per
    scheme_id and drg). The region's per-group means are the consumption indices' yardstick.
    `scheme_groups`: each scheme's number of groups (None when unknown: no 覆盖率)."""
    region_by_group = {(c["scheme_id"], c["drg"]): _group_sums(c) for c in region_cells if c["drg"]}
    rows: dict[Any, tuple[dict[str, Any], dict[tuple[str, str], GroupSums]]] = {}
    for c in cells:
        key = c[BY_COLUMN[by]] if by else None
        sums, groups = rows.setdefault(key, (empty_sums(), {}))
        add_sums(sums, c)
        if c["drg"] and c["cases"]:
            g = groups.get((c["scheme_id"], c["drg"]))
            cs = _group_sums(c)
            groups[(c["scheme_id"], c["drg"])] = cs if g is None else GroupSums(
                g.cases + cs.cases, g.cost_sum + cs.cost_sum, g.los_cases + cs.los_cases, g.los_sum + cs.los_sum)

    def one(sums: dict[str, Any], groups: Mapping[tuple[str, str], GroupSums]) -> dict[str, Any]:
        cost, time = consumption_indices(groups, region_by_group)
        schemes = {scheme for scheme, _ in groups}
        known = None if scheme_groups is None or not schemes or any(s not in scheme_groups for s in schemes) \
            else sum(scheme_groups[s] for s in schemes)
        return indicators(sums, groups_covered=len(groups), scheme_groups=known, cost_index=cost, time_index=time)

    out = [{"key": k} | one(*v) for k, v in sorted(rows.items(), key=lambda kv: str(kv[0]))]
    total_sums, total_groups = empty_sums(), {}
    for c in region_cells:
        add_sums(total_sums, c)
        if c["drg"] and c["cases"]:
            total_groups[(c["scheme_id"], c["drg"])] = _group_sums(c)
    return out, one(total_sums, total_groups)


@dataclass(frozen=True)
class RowAggregate:
    """One row's cells summed by the database (the large periods' path: no per-group rows leave
    it): the sums, the groups with a case, their schemes, and the consumption indices' sums
    against the region's per-group means, Σ_g cost_g × (region cases_g / region cost_g) over
    Σ_g cases_g (LOS likewise; groups with no region mean left out, as `consumption_indices`
    does: n_g × (row mean_g / region mean_g) = cost_g × region cases_g / region cost_g)."""

    key: Any
    sums: Mapping[str, Any]
    groups_covered: int
    schemes: frozenset[str]
    cost_num: Decimal
    cost_cases: int
    time_num: Decimal
    time_cases: int


def from_aggregate(a: RowAggregate, scheme_groups: Mapping[str, int] | None) -> dict[str, Any]:
    """The indicators of one aggregated row: the same figures `summarise` gives from its cells."""
    known = None if scheme_groups is None or not a.schemes or any(s not in scheme_groups for s in a.schemes) \
        else sum(scheme_groups[s] for s in a.schemes)
    sums = add_sums(empty_sums(), a.sums)
    return indicators(sums, groups_covered=a.groups_covered, scheme_groups=known,
                      cost_index=ratio(a.cost_num, a.cost_cases), time_index=ratio(a.time_num, a.time_cases))


EMPTY_AGGREGATE = RowAggregate(None, {}, 0, frozenset(), ZERO, 0, ZERO, 0)


# ---------------------------------------------------------------- rollups

# The cells summed over fewer key columns, per period — each month's cells also count in their
# quarter (YYYYQn) and their year (YYYY) — so that a request reads about as many rows as it
# answers whatever the period. Kept by the same upserts as the cells (each a sum of cells: equal
# to summing the cells, to the fen). Each is keyed (period, *columns), in this order (a
# hospital's rows together: it is in one region); smallest first.
ROLLUPS: dict[str, tuple[str, ...]] = {
    "hospitals": ("hospital_code", "hospital_level", "region"),  # its totals, a level's, the region's
    "groups": ("region", "scheme_id", "drg"),  # the region's per group (the consumption indices' means)
    "depts": ("region", "dept", "scheme_id", "drg"),  # per department and group
    "hospital_groups": ("hospital_code", "hospital_level", "region", "scheme_id", "drg"),  # per hospital and group
}


def periods_of(month: str) -> tuple[str, ...]:
    """The periods a month's cells count in: the month, its quarter and its year ("2024-05" →
    "2024-05", "2024Q2", "2024"); a month not known ("") only in itself."""
    if len(month) != 7 or month[4] != "-" or not month[:4].isdigit() or not month[5:].isdigit():
        return (month,)
    return (month, f"{month[:4]}Q{(int(month[5:]) + 2) // 3}", month[:4])


def period_of(months: Sequence[str]) -> str | None:
    """The period whose months these are (as `months_of` gives them), None when they are not one."""
    for candidate in periods_of(months[0]) if months else ():
        try:
            if months_of(candidate) == list(months):
                return candidate
        except ValueError:
            return None
    return None


def rollup(cells: Mapping[Key, Mapping[str, Any]], columns: Sequence[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Cells (or a delta's changes) summed per (period, *columns), each month's cells in the
    month, its quarter and its year; rows that sum to nothing left out."""
    where = [KEY.index(c) for c in columns]
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, sums in cells.items():
        for period in periods_of(key[1]):
            add_sums(out.setdefault((period, *(key[i] for i in where)), empty_sums()), sums)
    return {k: v for k, v in out.items() if any(v.values())}
