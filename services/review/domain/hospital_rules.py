"""Review's hospital-level monitoring rules (智能监控, docs/domain.md §11, indicators §12): per
hospital and period (a month or a quarter), over many cases, compared with the hospital's own
history and with its peers. Parameters and defaults: `parameters.py`.

- HOSPITAL_UPCODING (高套, hospital level): the MCC/CC share or the CMI jumped against the
  hospital's own history and is above the peers' (same level, same region) 90th percentile.
- REFUSING_SEVERE (推诿): the share of high-RW cases fell while the share leaving by transfer out
  (离院方式 2) or against advice (非医嘱离院, 4) rose.
- UNDER_SERVICE (服务不足): the low-outlier share rose together with the 31-day readmissions.

The history is pooled (Σ counts / Σ cases over the previous periods of the same kind), so a
quiet month weighs what its cases weigh. A change counts only when it is large (the rule's
relative and absolute thresholds) AND unlikely to be chance at the hospital's volume: a one-sided
two-proportion z-test of the period's share against the pooled history (and, for upcoding, against
the pooled peers), or for the CMI a two-sample z-test of the mean RW, at the rule's
`significance` level. A hospital with 40 cases a quarter moves by 20 % by chance; with 400 it
does not. A flag's evidence holds every number compared (z and one-sided p included) and the
parameters they were compared with, so a reviewer judges it without a query.

Pure: the rules take each hospital's figures per period (`Counts`), which the repository sums in
the database (`periods_needed`: the period and its history); `count_periods` sums a list of
cases the same way (the reference the database's sums are tested against).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from statistics import NormalDist

from services.review.domain.parameters import (
    HospitalUpcoding,
    RefusingSevere,
    RuleParameters,
    UnderService,
)
from shared.errors import Invalid

HOSPITAL_UPCODING = "HOSPITAL_UPCODING"
REFUSING_SEVERE = "REFUSING_SEVERE"
UNDER_SERVICE = "UNDER_SERVICE"
HOSPITAL_RULES = (HOSPITAL_UPCODING, REFUSING_SEVERE, UNDER_SERVICE)
LOW_OUTLIER = "low_outlier"
_RATIO = Decimal("0.0001")
_PERIOD = re.compile(r"^(\d{4})(?:-(0[1-9]|1[0-2])|Q([1-4]))$")


def _r(d: Decimal) -> str:
    return str(d.quantize(_RATIO, rounding=ROUND_HALF_UP))


class PeriodError(Invalid):
    default_code = "INVALID_PERIOD"


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month ("2024-03") or quarter ("2024Q1") of discharge dates."""

    year: int
    months: int  # 1: a month, 3: a quarter
    first_month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        m = _PERIOD.match(text or "")
        if not m or not 1900 <= int(m[1]) <= 2099:
            raise PeriodError(f"{text!r} is not a month (YYYY-MM) or a quarter (YYYYQn)", field="period")
        if m[2]:
            return cls(int(m[1]), 1, int(m[2]))
        return cls(int(m[1]), 3, 3 * int(m[3]) - 2)

    @classmethod
    def month_of(cls, day: date) -> Period:
        return cls(day.year, 1, day.month)

    @property
    def kind(self) -> str:
        return "month" if self.months == 1 else "quarter"

    @property
    def label(self) -> str:
        if self.months == 1:
            return f"{self.year}-{self.first_month:02d}"
        return f"{self.year}Q{(self.first_month + 2) // 3}"

    @property
    def start(self) -> date:
        return date(self.year, self.first_month, 1)

    @property
    def end(self) -> date:
        """The first day after the period."""
        return self.shifted(1).start

    def shifted(self, n: int) -> Period:
        """The period `n` periods of the same kind later (earlier when negative)."""
        index = self.year * 12 + self.first_month - 1 + n * self.months
        return Period(index // 12, self.months, index % 12 + 1)

    def quarter(self) -> Period:
        return Period(self.year, 3, (self.first_month - 1) // 3 * 3 + 1)

    def closes_quarter(self) -> bool:
        return self.months == 1 and self.first_month % 3 == 0

    def __contains__(self, day: date) -> bool:
        return self.start <= day < self.end

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class CaseFigure:
    """What the hospital-level rules read of one priced case (the latest price of its list)."""

    case_id: str
    hospital_code: str
    discharge_date: date
    admission_date: date | None = None
    psn_key: str = ""
    hospital_level: int | None = None
    drg: str = ""
    weight: Decimal | None = None  # RW (DRG) as priced
    case_type: str | None = None  # normal | high_outlier | low_outlier | …
    discharge_way: int | None = None  # 离院方式
    planned: bool = False  # its list says a readmission within 31 days is planned


@dataclass
class Counts:
    """One hospital's figures for one period."""

    cases: int = 0
    mcc_cc: int = 0  # DRGs ending in 1 (MCC) or 3 (CC)
    weighted: int = 0  # cases with an RW
    weight: Decimal = Decimal(0)
    weight_sq: Decimal = Decimal(0)  # Σ RW²: the CMI's variance
    high_rw: int = 0
    left: dict[int, int] = field(default_factory=dict)  # by discharge way
    low_outliers: int = 0
    readmissions: int = 0
    level: int | None = None

    def add(self, other: Counts) -> Counts:
        left = dict(self.left)
        for k, v in other.left.items():
            left[k] = left.get(k, 0) + v
        levels = [lv for lv in (self.level, other.level) if lv is not None]
        return Counts(self.cases + other.cases, self.mcc_cc + other.mcc_cc, self.weighted + other.weighted,
                      self.weight + other.weight, self.weight_sq + other.weight_sq,
                      self.high_rw + other.high_rw, left,
                      self.low_outliers + other.low_outliers, self.readmissions + other.readmissions,
                      max(levels) if levels else None)

    def share(self, part: int, of: int | None = None) -> Decimal | None:
        whole = self.cases if of is None else of
        return Decimal(part) / Decimal(whole) if whole else None

    @property
    def cmi(self) -> Decimal | None:
        return self.weight / self.weighted if self.weighted else None

    def left_by(self, ways: Iterable[int]) -> int:
        return sum(self.left.get(w, 0) for w in ways)


def periods_needed(period: Period, params: RuleParameters) -> list[Period]:
    """The period and the history periods before it the rules compare it with, newest first."""
    deepest = max(params.hospital_upcoding.history_periods, params.refusing_severe.history_periods,
                  params.under_service.history_periods)
    return [period.shifted(-n) for n in range(deepest + 1)]


def history_start(period: Period, params: RuleParameters) -> date:
    """The first discharge day the rules need: the oldest history period, less the readmission
    window (a readmission's earlier stay may be older than the period)."""
    return periods_needed(period, params)[-1].start - timedelta(days=params.under_service.readmission_days)


def _readmissions(cases: Sequence[CaseFigure], days: int) -> set[str]:
    """Cases admitted within `days` days of the same person's discharge from the same hospital,
    neither list saying the readmission was planned."""
    by_person: dict[tuple[str, str], list[CaseFigure]] = {}
    for c in cases:
        if c.psn_key:
            by_person.setdefault((c.psn_key, c.hospital_code), []).append(c)
    out: set[str] = set()
    for stays in by_person.values():
        if len(stays) < 2:
            continue
        stays.sort(key=lambda c: (c.discharge_date, c.case_id))
        for later in stays:
            if later.admission_date is None or later.planned:
                continue
            for earlier in stays:
                if earlier is later or earlier.planned:
                    continue
                gap = (later.admission_date - earlier.discharge_date).days
                if 0 <= gap <= days and earlier.discharge_date <= later.discharge_date:
                    out.add(later.case_id)
                    break
    return out


def count_periods(cases: Sequence[CaseFigure], periods: Sequence[Period],
                  params: RuleParameters) -> dict[Period, dict[str, Counts]]:
    """Each period's figures per hospital."""
    readmitted = _readmissions(cases, params.under_service.readmission_days)
    high = params.refusing_severe.high_rw
    out: dict[Period, dict[str, Counts]] = {p: {} for p in periods}
    for c in cases:
        for p in periods:
            if c.discharge_date not in p:
                continue
            k = out[p].setdefault(c.hospital_code, Counts())
            k.cases += 1
            if c.hospital_level is not None:
                k.level = c.hospital_level if k.level is None else max(k.level, c.hospital_level)
            if len(c.drg) == 4 and c.drg[3] in "13":
                k.mcc_cc += 1
            if c.weight is not None:
                k.weighted += 1
                k.weight += c.weight
                k.weight_sq += c.weight * c.weight
                k.high_rw += c.weight >= high
            if c.discharge_way is not None:
                k.left[c.discharge_way] = k.left.get(c.discharge_way, 0) + 1
            k.low_outliers += c.case_type == LOW_OUTLIER
            k.readmissions += c.case_id in readmitted
    return out


@dataclass(frozen=True)
class HospitalFlag:
    """A hospital-level rule that fired for a hospital and period, with its evidence."""

    hospital_code: str
    period: str
    rule: str
    severity: str
    message: str
    evidence: dict


def percentile(values: Sequence[Decimal], pct: Decimal) -> Decimal:
    """The `pct`-th percentile, linear between the closest ranks (numpy's default)."""
    v = sorted(values)
    rank = pct / 100 * (len(v) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


_NORMAL = NormalDist()


def z_proportions(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """The two-proportion z statistic of x1/n1 − x2/n2 (pooled under no difference); None when
    a side has no cases; 0 when both shares are 0 or both 1 (no variation, no difference)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    diff = x1 / n1 - x2 / n2
    if var <= 0:
        return 0.0
    return diff / math.sqrt(var)


def z_means(a: Counts, b: Counts) -> float | None:
    """The two-sample (Welch) z statistic of the mean RW (CMI) of `a` − that of `b`; None with
    fewer than 2 weighted cases on a side; ±inf when neither side varies but the means differ."""
    if a.weighted < 2 or b.weighted < 2:
        return None

    def mean_var(k: Counts) -> tuple[float, float]:
        n, total, sq = k.weighted, float(k.weight), float(k.weight_sq)
        return total / n, max(sq - total * total / n, 0.0) / (n - 1)

    (m1, v1), (m2, v2) = mean_var(a), mean_var(b)
    se = math.sqrt(v1 / a.weighted + v2 / b.weighted)
    if se == 0:
        return 0.0 if m1 == m2 else math.copysign(math.inf, m1 - m2)
    return (m1 - m2) / se


def p_above(z: float | None) -> float | None:
    """The one-sided p-value of a rise (a fall: `p_above(-z)`)."""
    return None if z is None else 1 - _NORMAL.cdf(z)


def _test(z: float | None, alpha: Decimal) -> tuple[bool, dict[str, str | None]]:
    """Whether a rise with statistic `z` is significant at `alpha` (one-sided), and its evidence."""
    p = p_above(z)
    ok = alpha >= 1 or (p is not None and p < float(alpha))
    return ok, {"z": None if z is None else f"{z:.2f}", "p": None if p is None else f"{p:.4f}"}


@dataclass(frozen=True)
class _Judged:
    """A hospital's period with its pooled history, ready for the rules."""

    hospital: str
    now: Counts
    before: Counts
    history: list[str]  # the history periods with cases


def _judged(by_period: dict[Period, dict[str, Counts]], period: Period, hospital: str,
            rule: RefusingSevere | UnderService | HospitalUpcoding) -> _Judged | None:
    now = by_period[period].get(hospital)
    if now is None or now.cases < rule.min_cases:
        return None
    before, history = Counts(), []
    for n in range(1, rule.history_periods + 1):
        past = by_period.get(period.shifted(-n), {}).get(hospital)
        if past is not None and past.cases:
            before = before.add(past)
            history.append(period.shifted(-n).label)
    if len(history) < rule.min_history_periods or before.cases < rule.min_cases:
        return None
    return _Judged(hospital, now, before, sorted(history))


def _rose(now: Decimal | None, before: Decimal | None, rise: Decimal, points: Decimal) -> bool:
    if now is None or before is None:
        return False
    return now >= before * (1 + rise) and now - before >= points and now > before


def _base(j: _Judged, period: Period, rule: RefusingSevere | UnderService | HospitalUpcoding) -> dict:
    return {"period": period.label, "cases": j.now.cases, "history_periods": j.history,
            "history_cases": j.before.cases, "min_cases": rule.min_cases,
            "significance": str(rule.significance)}


def _pair(now: Decimal | None, before: Decimal | None) -> dict[str, str | None]:
    return {"period": None if now is None else _r(now), "history": None if before is None else _r(before)}


def _pooled(counts: Iterable[Counts]) -> Counts:
    out = Counts()
    for c in counts:
        out = out.add(c)
    return out


def hospital_upcoding(by_period: dict[Period, dict[str, Counts]], period: Period,
                      p: HospitalUpcoding) -> list[HospitalFlag]:
    if not p.enabled:
        return []
    current = by_period[period]
    out = []
    for hospital in sorted(current):
        j = _judged(by_period, period, hospital, p)
        if j is None:
            continue
        peers = [c for h, c in current.items()
                 if h != hospital and c.level is not None and c.level == j.now.level and c.cases >= p.min_cases]
        if len(peers) < p.min_peers:
            continue
        pooled = _pooled(peers)
        metrics: dict[str, dict] = {}
        fired = []
        for name, value, jump, z_of in (
                ("mcc_cc_share", lambda c: c.share(c.mcc_cc), p.share_jump,
                 lambda a, b: z_proportions(a.mcc_cc, a.cases, b.mcc_cc, b.cases)),
                ("cmi", lambda c: c.cmi, p.cmi_jump, z_means)):
            get: Callable[[Counts], Decimal | None] = value
            now, before = get(j.now), get(j.before)
            peer_values = [v for c in peers if (v := get(c)) is not None]
            if now is None or not before or len(peer_values) < p.min_peers:
                continue
            rise = now / before - 1
            bar = percentile(peer_values, p.peer_percentile)
            vs_history, history_test = _test(z_of(j.now, j.before), p.significance)
            vs_peers, peers_test = _test(z_of(j.now, pooled), p.significance)
            peers_value = get(pooled)
            metrics[name] = _pair(now, before) | {
                "rise": _r(rise), "min_rise": str(jump), "peers": len(peer_values), "peer_percentile": _r(bar),
                "peers_pooled": None if peers_value is None else _r(peers_value),
                "test_history": history_test, "test_peers": peers_test}
            if rise >= jump and now > bar and vs_history and vs_peers:
                fired.append(name)
        if not fired:
            continue
        what = " and ".join({"mcc_cc_share": "MCC/CC share", "cmi": "CMI"}[f] for f in fired)
        out.append(HospitalFlag(
            hospital, period.label, HOSPITAL_UPCODING, p.severity.value,
            f"{what} rose against the hospital's own history and is above the "
            f"{p.peer_percentile}th percentile of level-{j.now.level} peers in {period.label} "
            f"(both significant at {p.significance})",
            _base(j, period, p) | {"fired": fired, "level": j.now.level, "mcc_cc_cases": j.now.mcc_cc,
                                   "percentile": str(p.peer_percentile), **metrics}))
    return out


def refusing_severe(by_period: dict[Period, dict[str, Counts]], period: Period,
                    p: RefusingSevere) -> list[HospitalFlag]:
    if not p.enabled:
        return []
    out = []
    for hospital in sorted(by_period[period]):
        j = _judged(by_period, period, hospital, p)
        if j is None:
            continue
        hi_now, hi_before = j.now.share(j.now.high_rw, j.now.weighted), j.before.share(j.before.high_rw,
                                                                                       j.before.weighted)
        out_now, out_before = j.now.share(j.now.left_by(p.discharge_ways)), j.before.share(
            j.before.left_by(p.discharge_ways))
        if hi_now is None or not hi_before or hi_now > hi_before * (1 - p.drop):
            continue
        if not _rose(out_now, out_before, p.rise, p.min_points):
            continue
        ways = p.discharge_ways
        fell, fell_test = _test(z_proportions(j.before.high_rw, j.before.weighted, j.now.high_rw, j.now.weighted),
                                p.significance)
        left, left_test = _test(z_proportions(j.now.left_by(ways), j.now.cases, j.before.left_by(ways),
                                              j.before.cases), p.significance)
        if not (fell and left):
            continue
        by_way = {str(w): _pair(j.now.share(j.now.left.get(w, 0)), j.before.share(j.before.left.get(w, 0)))
                  for w in p.discharge_ways}
        out.append(HospitalFlag(
            hospital, period.label, REFUSING_SEVERE, p.severity.value,
            f"high-RW share (RW ≥ {p.high_rw}) fell from {_r(hi_before)} to {_r(hi_now)} while the "
            f"share leaving by discharge way {'/'.join(map(str, p.discharge_ways))} rose from "
            f"{_r(out_before or Decimal(0))} to {_r(out_now or Decimal(0))} in {period.label}",
            _base(j, period, p) | {
                "high_rw_share": _pair(hi_now, hi_before), "high_rw_cases": j.now.high_rw,
                "high_rw": str(p.high_rw), "max_share_after_drop": _r(hi_before * (1 - p.drop)),
                "drop": str(p.drop), "left_share": _pair(out_now, out_before), "left_by_way": by_way,
                "discharge_ways": list(p.discharge_ways), "rise": str(p.rise),
                "min_points": str(p.min_points), "test_high_rw_fall": fell_test, "test_left_rise": left_test}))
    return out


def under_service(by_period: dict[Period, dict[str, Counts]], period: Period,
                  p: UnderService) -> list[HospitalFlag]:
    if not p.enabled:
        return []
    out = []
    for hospital in sorted(by_period[period]):
        j = _judged(by_period, period, hospital, p)
        if j is None:
            continue
        low_now, low_before = j.now.share(j.now.low_outliers), j.before.share(j.before.low_outliers)
        re_now, re_before = j.now.share(j.now.readmissions), j.before.share(j.before.readmissions)
        if not (_rose(low_now, low_before, p.rise, p.min_points) and _rose(re_now, re_before, p.rise, p.min_points)):
            continue
        low_up, low_test = _test(z_proportions(j.now.low_outliers, j.now.cases, j.before.low_outliers,
                                               j.before.cases), p.significance)
        re_up, re_test = _test(z_proportions(j.now.readmissions, j.now.cases, j.before.readmissions,
                                             j.before.cases), p.significance)
        if not (low_up and re_up):
            continue
        assert low_now is not None and re_now is not None and low_before is not None and re_before is not None
        out.append(HospitalFlag(
            hospital, period.label, UNDER_SERVICE, p.severity.value,
            f"low-outlier share rose from {_r(low_before)} to {_r(low_now)} together with "
            f"{p.readmission_days}-day readmissions from {_r(re_before)} to {_r(re_now)} in {period.label}",
            _base(j, period, p) | {
                "low_outlier_share": _pair(low_now, low_before), "low_outliers": j.now.low_outliers,
                "readmission_share": _pair(re_now, re_before), "readmissions": j.now.readmissions,
                "readmission_days": p.readmission_days, "rise": str(p.rise),
                "min_points": str(p.min_points), "test_low_outlier_rise": low_test,
                "test_readmission_rise": re_test}))
    return out


def judge(by_period: dict[Period, dict[str, Counts]], period: Period, params: RuleParameters) -> list[HospitalFlag]:
    """Every hospital-level flag of `period`, by rule then hospital, from each hospital's figures
    per period (`by_period` holds `periods_needed(period, params)`)."""
    by_period = {q: by_period.get(q, {}) for q in periods_needed(period, params)} | by_period
    return (hospital_upcoding(by_period, period, params.hospital_upcoding)
            + refusing_severe(by_period, period, params.refusing_severe)
            + under_service(by_period, period, params.under_service))


def hospital_flags(cases: Sequence[CaseFigure], period: Period, params: RuleParameters) -> list[HospitalFlag]:
    """Every hospital-level flag of `period`, by rule then hospital. `cases`: the region's cases
    discharged from `history_start(period, params)` to the period's end."""
    return judge(count_periods(cases, periods_needed(period, params), params), period, params)
