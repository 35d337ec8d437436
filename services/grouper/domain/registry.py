"""Several schemes side by side: which scheme is in force for a region on a date.

Domain §4: a case is grouped by the rule pack in force at its discharge date, and cities run
local schemes next to the national one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .errors import RegistryError
from .scheme import Scheme


@dataclass(frozen=True)
class RegistryEntry:
    """`scheme` is in force in `region` from `valid_from` to `valid_to`, both inclusive;
    `valid_to=None` means open-ended."""

    scheme: Scheme
    region: str
    valid_from: date
    valid_to: date | None = None

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def overlaps(self, other: RegistryEntry) -> bool:
        a_end = self.valid_to or date.max
        b_end = other.valid_to or date.max
        return self.valid_from <= b_end and other.valid_from <= a_end


class SchemeRegistry:
    """Holds loaded schemes per region with validity periods."""

    def __init__(self, entries: list[RegistryEntry] | None = None):
        self._entries: dict[str, list[RegistryEntry]] = {}
        for e in entries or ():
            self.add(e.scheme, e.region, e.valid_from, e.valid_to)

    def add(
        self, scheme: Scheme, region: str, valid_from: date, valid_to: date | None = None
    ) -> RegistryEntry:
        """Register a scheme for a region; rejects a period overlapping another one."""
        if valid_to is not None and valid_to < valid_from:
            raise RegistryError(
                f"{scheme.id} in {region}: valid_to {valid_to} is before valid_from {valid_from}",
                code="INVALID_PERIOD", status=422,
            )
        entry = RegistryEntry(scheme, region, valid_from, valid_to)
        for other in self._entries.get(region, ()):
            if entry.overlaps(other):
                raise RegistryError(
                    f"{scheme.id} in {region} ({_period(entry)}) overlaps "
                    f"{other.scheme.id} ({_period(other)})",
                    code="OVERLAPPING_PERIODS", status=409,
                )
        self._entries.setdefault(region, []).append(entry)
        self._entries[region].sort(key=lambda e: e.valid_from)
        return entry

    def entries(self, region: str | None = None) -> list[RegistryEntry]:
        if region is not None:
            return list(self._entries.get(region, ()))
        return [e for r in sorted(self._entries) for e in self._entries[r]]

    def regions(self) -> list[str]:
        return sorted(self._entries)

    def scheme_for(self, region: str, discharge_date: date) -> Scheme:
        """The scheme in force in `region` on `discharge_date`."""
        entries = self._entries.get(region)
        if not entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"no grouping scheme registered for region {region!r} (known: {known})")
        for e in entries:
            if e.covers(discharge_date):
                return e.scheme
        periods = "; ".join(f"{e.scheme.id} {_period(e)}" for e in entries)
        raise RegistryError(
            f"no grouping scheme in force in region {region!r} on {discharge_date} ({periods})"
        )


def _period(e: RegistryEntry) -> str:
    return f"{e.valid_from}..{e.valid_to or 'open'}"
