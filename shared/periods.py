"""Versioned things valid for a region and a period (policies, catalogues): which are in force;
working days by a calendar of holidays and make-up working days; the calendar day of an instant
in China Standard Time, the time of every date the bureau and the hospitals read.

Pure: the domain packages take an `InForce` look-up; `shared.db.Versions` reads the stored
versions into one."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Generic, TypeVar

T = TypeVar("T")

CST = timezone(timedelta(hours=8), "CST")  # China Standard Time: no daylight saving time


def cst_day(at: datetime) -> date:
    """The China Standard Time calendar day of an instant (a naive one is UTC, as stored)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(CST).date()


class InForce(Generic[T]):
    """Items by region and validity, read once per batch: which are in force on a day."""

    def __init__(self, entries: list[tuple[str, date, date | None, int, T]]) -> None:
        """`entries`: (region, valid from, valid to or None, version, item)."""
        self._by_region: dict[str, list[tuple[date, date | None, int, T]]] = {}
        # latest start, then highest version, first
        for region, start, end, version, item in sorted(entries, key=lambda e: (e[1], e[3]), reverse=True):
            self._by_region.setdefault(region, []).append((start, end, version, item))

    def _in_force(self, region: str, day: date | None) -> Iterator[T]:
        if day is not None:
            for start, end, _v, item in self._by_region.get(region, ()):
                if start <= day and (end is None or end >= day):
                    yield item

    def all_on(self, region: str, day: date | None) -> list[T]:
        """Every item of `region` in force on `day`, the latest start (then version) first."""
        return list(self._in_force(region, day))

    def on(self, region: str, day: date | None) -> T | None:
        """The item in force: the latest start, then the highest version, wins."""
        return next(self._in_force(region, day), None)


# --- working days (public holidays and make-up working days, 调休, as data) -------------------------

def is_working_day(day: date, holidays: Collection[date] = (), workdays: Collection[date] = ()) -> bool:
    """Monday to Friday, less the `holidays`, plus the `workdays` (weekend days worked instead)."""
    if day in workdays:
        return True
    return day.weekday() < 5 and day not in holidays


def add_working_days(day: date, n: int, holidays: Collection[date] = (), workdays: Collection[date] = ()) -> date:
    """The `n`-th working day after `day` (`day` itself when n is 0)."""
    while n > 0:
        day += timedelta(days=1)
        n -= is_working_day(day, holidays, workdays)
    return day


def working_days_between(start: date, end: date, holidays: Collection[date] = (),
                         workdays: Collection[date] = ()) -> int:
    """Working days after `start` up to and including `end` (0 when `end` is not after `start`):
    the days a settlement took from its declaration (§8: within 20 working days)."""
    n, day = 0, start
    while day < end:
        day += timedelta(days=1)
        n += is_working_day(day, holidays, workdays)
    return n
