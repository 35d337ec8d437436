"""Regrouping stored cases under another scheme version (e.g. when a region moves to a new one).

Each regrouped case gets a new grouping version and a new `case-grouped` event (through the
outbox, so the running grouper publishes it and the pricer re-prices). The result is a
migration table: how many cases moved from which DRG to which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import orjson
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.grouper.core import Scheme
from services.grouper.service import ToGroup, cases, catalogue_book, group_and_store, results
from shared.messaging import Outbox


@dataclass
class Migration:
    scheme_id: str
    cases: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def moved(self) -> int:
        return sum(n for (a, b), n in self.moves.items() if a != b)


async def regroup(engine: AsyncEngine, outbox: Outbox, scheme: Scheme, *, code_mode: str = "raw",
                  date_from: date | None = None, date_to: date | None = None, batch: int = 500,
                  progress: Callable[[int, int], None] | None = None) -> Migration:
    """Regroup the latest list version of every stored case discharged in [date_from, date_to]."""
    latest = (select(cases.c.case_id, func.max(cases.c.list_version).label("v"))
              .group_by(cases.c.case_id).subquery())
    q = select(cases).join(latest, and_(cases.c.case_id == latest.c.case_id,
                                        cases.c.list_version == latest.c.v))
    if date_from is not None:
        q = q.where(cases.c.discharge_date >= date_from)
    if date_to is not None:
        q = q.where(cases.c.discharge_date <= date_to)
    async with engine.connect() as conn:
        rows = (await conn.execute(q.order_by(cases.c.case_id))).all()
    migration = Migration(scheme.id)
    catalogues = catalogue_book()
    r = results.c
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        async with engine.begin() as conn:
            before: dict[tuple[str, int], str] = {}
            for row in (await conn.execute(
                    select(r.case_id, r.list_version, r.drg)
                    .where(r.case_id.in_([x.case_id for x in chunk])).order_by(r.grouping_version))).all():
                before[(row.case_id, row.list_version)] = row.drg  # the latest grouping wins
            # the DIP group rides along as in the live stage, so a DIP period stays DIP
            events = await group_and_store(
                conn, [ToGroup.from_json(x.case_id, x.correlation_id, orjson.loads(x.payload)) for x in chunk],
                scheme_for=lambda _facts: scheme, code_mode=code_mode,
                catalogues=await catalogues.in_force(conn))
            for row, ev in zip(chunk, events, strict=True):
                migration.moves[(before.get((row.case_id, row.list_version), "-"), ev.payload["drg"])] += 1
            migration.cases += len(chunk)
            await outbox.add(conn, events)
        if progress:
            progress(migration.cases, len(rows))
    return migration
