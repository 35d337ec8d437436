"""Settlement timeliness (结算及时性, docs/domain.md §8 and §12), the working-day calendar the
bureau imports, the year's budget and the prepayment (预付金) publication. Pure.

Timeliness: a hospital declares (申报) a month; the month is pre-settled for it when the first
monthly statement covering that hospital and month is created. The working days between the two
(after the declaration's day, up to and including the pre-settlement's, `shared.periods`) are
held against the policy's `settlement.settlement_working_days` (20). Days are counted in China
Standard Time (the bureau's calendar), whatever time zone the timestamps were stored in.

Calendar document (`drgdip calendar import FILE`, `POST /calendar`), one year per document:

    {"format": "drgdip.calendar/1", "year": 2025, "source": "…",
     "holidays": [{"name": "春节", "from": "2025-01-28", "to": "2025-02-04"}, …],
     "workdays": [{"name": "春节调休", "date": "2025-01-26"}, …]}

`holidays` are days off that would otherwise be working days (weekend days inside a holiday
may be listed too: they are days off either way); `workdays` are weekend days worked instead
(调休). An entry is one `date`, or `from` … `to` inclusive; every day must be in `year`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared.errors import Invalid
from shared.money import FEN
from shared.periods import cst_day, working_days_between

CALENDAR_FORMAT = "drgdip.calendar/1"
HOLIDAY, WORKDAY = "holiday", "workday"
DEFAULT_SETTLEMENT_WORKING_DAYS = 20  # §8, when no policy is in force for the month
_MONTH = re.compile(r"^(19|20)\d{2}-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^(19|20)\d{2}$")


class CalendarError(Invalid):
    default_code = "INVALID_CALENDAR"


def check_month(period: str, field: str = "period") -> str:
    if not isinstance(period, str) or not _MONTH.match(period):
        raise Invalid(f"{period!r} is not a YYYY-MM month", code="INVALID_FIELD", field=field)
    return period


def check_year(year: str, field: str = "year") -> str:
    if not isinstance(year, str) or not _YEAR.match(year):
        raise Invalid(f"{year!r} is not a YYYY year", code="INVALID_FIELD", field=field)
    return year


# ---------------------------------------------------------------- the calendar

@dataclass(frozen=True)
class CalendarDay:
    day: date
    kind: str  # holiday | workday
    name: str


@dataclass(frozen=True)
class Calendar:
    """The days off and the make-up working days of the years imported."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    @classmethod
    def of(cls, days: Iterable[CalendarDay]) -> Calendar:
        days = list(days)
        return cls(frozenset(d.day for d in days if d.kind == HOLIDAY),
                   frozenset(d.day for d in days if d.kind == WORKDAY))

    def working_days(self, start: date, end: date) -> int:
        return working_days_between(start, end, self.holidays, self.workdays)


def _day(text: Any, field: str) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise CalendarError(f"{text!r} is not a date (YYYY-MM-DD)", field=field) from None


def parse_calendar(doc: Any) -> tuple[int, list[CalendarDay]]:
    """The year and its days of a calendar document (module docstring); raises `CalendarError`
    naming the field at fault."""
    if not isinstance(doc, dict):
        raise CalendarError("a calendar is a JSON object", field=None)
    if doc.get("format", CALENDAR_FORMAT) != CALENDAR_FORMAT:
        raise CalendarError(f"format must be {CALENDAR_FORMAT}", field="format")
    year = doc.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not 1900 <= year <= 2099:
        raise CalendarError("year must be a year (1900-2099)", field="year")
    out: dict[date, CalendarDay] = {}
    for kind, key in ((HOLIDAY, "holidays"), (WORKDAY, "workdays")):
        entries = doc.get(key, [])
        if not isinstance(entries, list):
            raise CalendarError(f"{key} must be a list", field=key)
        for i, e in enumerate(entries):
            where = f"{key}[{i}]"
            if not isinstance(e, dict):
                raise CalendarError("an entry is an object with date, or from and to", field=where)
            name = str(e.get("name") or "")[:64]
            if "date" in e:
                first = last = _day(e["date"], f"{where}.date")
            else:
                first, last = _day(e.get("from"), f"{where}.from"), _day(e.get("to", e.get("from")), f"{where}.to")
            if last < first:
                raise CalendarError("to is before from", field=f"{where}.to")
            day = first
            while day <= last:
                if day.year != year:
                    raise CalendarError(f"{day} is not in {year}", field=where)
                if kind == WORKDAY and day.weekday() < 5:
                    raise CalendarError(f"{day} is a weekday: a make-up working day is a Saturday or Sunday",
                                        field=where)
                if day in out and out[day].kind != kind:
                    raise CalendarError(f"{day} is both a holiday and a working day", field=where)
                out[day] = CalendarDay(day, kind, name)
                day += timedelta(days=1)
    return year, sorted(out.values(), key=lambda d: d.day)


# ---------------------------------------------------------------- timeliness

WITHIN, LATE, PENDING, OVERDUE, NOT_DECLARED = "within", "late", "pending", "overdue", "not_declared"


@dataclass(frozen=True)
class Timeliness:
    """One hospital's month: when declared, when first pre-settled, the working days between."""

    hospital_code: str
    period: str
    declared_at: datetime | None
    presettled_at: datetime | None
    working_days: int | None  # declaration → pre-settlement, or → today while pending
    limit: int
    status: str  # within | late | pending | overdue (pending past the limit) | not_declared

    @property
    def within_rule(self) -> bool | None:
        """Settled within the limit (None while pending or without a declaration)."""
        return None if self.status not in (WITHIN, LATE) else self.status == WITHIN

    def to_dict(self) -> dict[str, Any]:
        return {"hospital_code": self.hospital_code, "period": self.period,
                "declared_at": self.declared_at, "presettled_at": self.presettled_at,
                "working_days": self.working_days, "limit": self.limit,
                "within_rule": self.within_rule, "status": self.status}


def timeliness(hospital: str, period: str, declared_at: datetime | None, presettled_at: datetime | None,
               today: date, calendar: Calendar, limit: int) -> Timeliness:
    """A hospital's month against the rule (§8): settled within `limit` working days of the
    declaration, late beyond; while not settled, pending (the working days so far), overdue once
    they pass the limit. A month pre-settled without a declaration is `not_declared`."""
    if declared_at is None:
        return Timeliness(hospital, period, None, presettled_at, None, limit, NOT_DECLARED)
    start = cst_day(declared_at)
    if presettled_at is None:
        days = calendar.working_days(start, today)
        return Timeliness(hospital, period, declared_at, None, days, limit, OVERDUE if days > limit else PENDING)
    days = calendar.working_days(start, cst_day(presettled_at))
    return Timeliness(hospital, period, declared_at, presettled_at, days, limit, WITHIN if days <= limit else LATE)


def timeliness_report(period: str, declared: Mapping[str, datetime], presettled: Mapping[str, datetime],
                      today: date, calendar: Calendar, limit: int) -> dict[str, Any]:
    """Every hospital that declared the month or was pre-settled for it, with the counts per
    status and the late, overdue and pending ones listed apart."""
    rows = [timeliness(h, period, declared.get(h), presettled.get(h), today, calendar, limit)
            for h in sorted(set(declared) | set(presettled))]
    counts = {s: sum(r.status == s for r in rows) for s in (WITHIN, LATE, PENDING, OVERDUE, NOT_DECLARED)}
    settled = counts[WITHIN] + counts[LATE]
    return {"period": period, "limit": limit, "hospitals": len(rows), "counts": counts,
            "timely_rate": _ratio(Decimal(counts[WITHIN]), Decimal(settled)),
            "rows": [r.to_dict() for r in rows],
            "late": [r.hospital_code for r in rows if r.status in (LATE, OVERDUE)],
            "pending": [r.hospital_code for r in rows if r.status in (PENDING, OVERDUE)]}


# ---------------------------------------------------------------- budget and prepayments

def _ratio(num: Decimal, den: Decimal, places: int = 4) -> str | None:
    if not den:
        return None
    return str((num / den).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def check_budget(amount: Decimal, point_value: Decimal | None) -> tuple[Decimal, Decimal | None]:
    """A year's budget is a positive amount in yuan to the fen; its budget point value (预算点值),
    when given, positive with at most 6 decimals."""
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(FEN):
        raise Invalid("a positive amount in yuan with at most 2 decimals", code="INVALID_FIELD", field="amount")
    if point_value is not None and (not point_value.is_finite() or point_value <= 0
                                    or point_value != point_value.quantize(Decimal("0.000001"))):
        raise Invalid("a positive point value with at most 6 decimals", code="INVALID_FIELD", field="point_value")
    return amount, point_value


def budget_execution(months: list[dict[str, Any]], budget: Decimal | None, budget_point_value: Decimal | None,
                     current_point_value: Decimal | None) -> dict[str, Any]:
    """Paid against the budget (§12): each month's pre-settled amount with the year's cumulative
    total, and both as a share of the budget; the current point value (the clearing's final one,
    else the latest provisional) against the budget point value."""
    running = Decimal(0)
    for m in months:
        running += m["presettled"]
        m["presettled_cumulative"] = running
        m["budget_share"] = None if budget is None else _ratio(m["presettled"], budget)
        m["budget_share_cumulative"] = None if budget is None else _ratio(running, budget)
    return {"budget": budget, "paid": running,
            "remaining": None if budget is None else budget - running,
            "execution_rate": None if budget is None else _ratio(running, budget),
            "budget_point_value": budget_point_value, "current_point_value": current_point_value,
            "point_value_ratio": None if budget_point_value is None or current_point_value is None
            else _ratio(current_point_value, budget_point_value)}


def prepayments(granted: Mapping[str, Decimal], netted: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """The year's prepayments (预付金, §8) per hospital: granted, netted at the annual clearing
    (its latest version) and what is still outstanding; a hospital with neither is left out."""
    zero = Decimal(0)
    return [{"hospital_code": h, "granted": granted.get(h, zero), "netted": netted.get(h, zero),
             "outstanding": granted.get(h, zero) - netted.get(h, zero)}
            for h in sorted(set(granted) | set(netted)) if granted.get(h) or netted.get(h)]
