"""Versioned things valid for a region and a period (policies, catalogues): which are in force.

Pure: the domain packages take an `InForce` look-up; `shared.db.Versions` reads the stored
versions into one."""

from __future__ import annotations

from datetime import date
from typing import Generic, TypeVar

T = TypeVar("T")


class InForce(Generic[T]):
    """Items by region and validity, read once per batch: which are in force on a day."""

    def __init__(self, entries: list[tuple[str, date, date | None, int, T]]) -> None:
        """`entries`: (region, valid from, valid to or None, version, item)."""
        self._by_region: dict[str, list[tuple[date, date | None, int, T]]] = {}
        # latest start, then highest version, first
        for region, start, end, version, item in sorted(entries, key=lambda e: (e[1], e[3]), reverse=True):
            self._by_region.setdefault(region, []).append((start, end, version, item))

    def all_on(self, region: str, day: date | None) -> list[T]:
        """Every item of `region` in force on `day`, the latest start (then version) first."""
        if day is None:
            return []
        return [item for start, end, _v, item in self._by_region.get(region, ())
                if start <= day and (end is None or end >= day)]

    def on(self, region: str, day: date | None) -> T | None:
        """The item in force: the latest start, then the highest version, wins."""
        found = self.all_on(region, day)
        return found[0] if found else None
