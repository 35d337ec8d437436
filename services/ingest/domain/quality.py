"""Settlement-list quality scores (质控评分) per hospital and month.

What for: the bureau scores each hospital's lists (domain.md §3 "Quality control") on

* timeliness (时效性): share of lists uploaded within `deadline_days` calendar days after
  discharge. domain.md gives no number; the default 30 follows the common rule that a list
  is uploaded within 30 days of the discharge settlement. Both days are the list's own: its
  discharge (`dscg_time`) and its declaration (申报时间 `dcla_time`, else the message's
  `inf_time`), so imported history is scored as it was uploaded; only a list that carries
  neither counts the day ingest received it. Days are counted in China Standard Time
  (domain.md §13): an aware `uploaded_at` is converted, a naive one is CST.
* completeness (完整度): share of required fields present, summed over the month's lists
  (each list brings `required_fields`; each QC-REQ / NAT-REQUIRED problem is one missing);
* pass rate (合格率): share of lists with no blocking error (severity "error");
* accuracy (准确性): share of lists without an accuracy error (dictionary, logic, format:
  every error that is not a missing field). Warnings never lower a score; they are counted.

Pure: dataclasses in, dataclasses out; ratios are Decimal with 4 places (ROUND_HALF_UP).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

import orjson

from services.ingest.domain.national import Problem
from services.ingest.domain.qc import RULES, required_field_count
from shared.periods import CST

DEFAULT_DEADLINE_DAYS = 30
RATIO_PLACES = Decimal("0.0001")

# Problem codes that mean "a required field is missing" (completeness); other errors count
# against accuracy.
MISSING_CODES: frozenset[str] = frozenset(
    {code for code, rule in RULES.items() if rule.category == "completeness"} | {"NAT-REQUIRED"}
)


class ListRecord(NamedTuple):
    """One uploaded list as quality scoring sees it (a plain 5-tuple works too)."""

    hospital: str
    month: str  # the period the list counts in, "YYYY-MM"
    discharge_date: date
    uploaded_at: datetime
    problems: Sequence[Problem]
    required_fields: int = required_field_count("4101")


@dataclass(frozen=True)
class QualityScore:
    """A hospital's scores for one month: the counts and the ratios made from them."""

    hospital: str
    month: str
    lists: int
    timely: int
    required_fields: int
    missing_fields: int
    passed: int
    accurate: int
    warnings: int
    timeliness: Decimal
    completeness: Decimal
    pass_rate: Decimal
    accuracy: Decimal


def stored_records(rows: Iterable[tuple[str, date | None, date | None, datetime, str | None]],
                   month: str | None = None) -> list[ListRecord]:
    """Decided lists as ingest stores them (hospital, discharge date, declared day, received
    at, problems as JSON) as records to score: uploaded on the declared day when the list gives
    one (a naive datetime: CST), else when received; a list without a discharge date is not
    scored; `month` ("YYYY-MM") keeps that month's lists only."""
    records = []
    for hospital, discharge, declared, received_at, problems in rows:
        if discharge is None:
            continue
        m = f"{discharge:%Y-%m}"
        if month and m != month:
            continue
        found = [Problem(**p) for p in orjson.loads(problems)] if problems else []
        uploaded = datetime.combine(declared, time()) if declared is not None else received_at
        records.append(ListRecord(hospital, m, discharge, uploaded, found))
    return records


def ratio(part: int, whole: int) -> Decimal:
    """part / whole to 4 places; an empty base counts as fully met (nothing was wrong)."""
    if whole <= 0:
        return Decimal("1.0000")
    return (Decimal(part) / Decimal(whole)).quantize(RATIO_PLACES, rounding=ROUND_HALF_UP)


def upload_day(uploaded_at: datetime) -> date:
    """The CST calendar day of an upload."""
    if uploaded_at.tzinfo is None:
        return uploaded_at.date()
    return uploaded_at.astimezone(CST).date()


def is_timely(discharge_date: date, uploaded_at: datetime,
              deadline_days: int = DEFAULT_DEADLINE_DAYS) -> bool:
    """Uploaded no later than `deadline_days` calendar days after the discharge day."""
    return (upload_day(uploaded_at) - discharge_date).days <= deadline_days


def score_quality(records: Iterable[ListRecord | tuple[object, ...]], *,
                  deadline_days: int = DEFAULT_DEADLINE_DAYS) -> list[QualityScore]:
    """Scores per (hospital, month), sorted by hospital then month."""
    groups: dict[tuple[str, str], list[ListRecord]] = defaultdict(list)
    for r in records:
        rec = r if isinstance(r, ListRecord) else ListRecord(*r)  # type: ignore[arg-type]
        groups[(rec.hospital, rec.month)].append(rec)
    return [_score(h, m, recs, deadline_days) for (h, m), recs in sorted(groups.items())]


def _score(hospital: str, month: str, recs: list[ListRecord], deadline_days: int) -> QualityScore:
    timely = sum(is_timely(r.discharge_date, r.uploaded_at, deadline_days) for r in recs)
    required = sum(r.required_fields for r in recs)
    # A list cannot miss more fields than it has: clamp so completeness stays in [0, 1].
    missing = sum(min(r.required_fields, sum(p.code in MISSING_CODES for p in r.problems))
                  for r in recs)
    passed = sum(not any(p.severity == "error" for p in r.problems) for r in recs)
    accurate = sum(not any(p.severity == "error" and p.code not in MISSING_CODES
                           for p in r.problems) for r in recs)
    warnings = sum(p.severity == "warning" for r in recs for p in r.problems)
    n = len(recs)
    return QualityScore(
        hospital=hospital, month=month, lists=n, timely=timely, required_fields=required,
        missing_fields=missing, passed=passed, accurate=accurate, warnings=warnings,
        timeliness=ratio(timely, n), completeness=ratio(required - missing, required),
        pass_rate=ratio(passed, n), accuracy=ratio(accurate, n),
    )
