"""Versioned things valid for a region and a period (policies, catalogues): which are in force."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Generic, TypeVar

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

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


class Versions(Generic[T]):
    """The stored versions of documents valid per region and period (one table), each parsed
    once: a stored version never changes, so its parsed form is kept for the process."""

    def __init__(self, table: Table, id_column: str, parse: Callable[[Any], T]) -> None:
        """`table` has `version`, `region`, `valid_from`, `valid_to` and the `id_column`;
        `parse` makes the document from a whole row."""
        self.table, self.id, self.parse = table, table.c[id_column], parse
        self._parsed: dict[tuple[str, int], T] = {}

    async def get(self, conn: AsyncConnection, doc_id: str, version: int) -> T:
        key = (doc_id, version)
        if key not in self._parsed:
            row = (await conn.execute(select(self.table).where(
                self.id == doc_id, self.table.c.version == version).limit(1))).first()
            if row is None:
                raise KeyError(key)
            self._parsed[key] = self.parse(row)
        return self._parsed[key]

    async def in_force(self, conn: AsyncConnection) -> InForce[T]:
        """Every stored version by region and period (one small query, e.g. per batch of cases)."""
        c = self.table.c
        rows = (await conn.execute(select(self.id, c.version, c.region, c.valid_from, c.valid_to))).all()
        return InForce([(r.region, r.valid_from, r.valid_to, r.version, await self.get(conn, r[0], r.version))
                        for r in rows])

    async def latest(self, conn: AsyncConnection, doc_id: str) -> T | None:
        version = await conn.scalar(select(func.max(self.table.c.version)).where(self.id == doc_id))
        return None if version is None else await self.get(conn, doc_id, version)
