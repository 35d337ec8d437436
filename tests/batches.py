"""Test support for the batch properties of the stages: stays as hypothesis draws, their events,
and a stage handler run on a fresh SQLite database in given batches (the consumer applies a
fetched batch at once, or one event at a time when a batch fails: both must agree)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import select

from shared.db import create_engine
from shared.events import CaseFacts, Envelope

DAY0 = date(2024, 3, 1)

# one stay: (person 0-2, hospital 0-1, admitted on day 0-40, length 0-6 days, list version 1-2)
stays = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 40), st.integers(0, 6),
                           st.integers(1, 2)), min_size=1, max_size=14)
cuts = st.lists(st.integers(1, 5), min_size=1, max_size=14)


def facts(person: int, hospital: int, day: int, length: int, version: int) -> CaseFacts:
    adm = DAY0 + timedelta(days=day)
    return CaseFacts(hospital_code=f"H{hospital}", setl_id=f"S{person}{hospital}{day}", list_version=version,
                     psn_key=f"P{person}", admission_date=adm, discharge_date=adm + timedelta(days=length))


def case_id(person: int, hospital: int, day: int) -> str:
    return f"C{person}-{hospital}-{day}"


def chunks(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    out: list[list[Any]] = []
    i = 0
    while i < len(items):
        n = sizes[len(out) % len(sizes)]
        out.append(items[i:i + n])
        i += n
    return out


async def run(db: Path, metadata: Any, handler: Any, batches: Sequence[Sequence[Envelope]]) -> list[Envelope]:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    out: list[Envelope] = []
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        for batch in batches:
            async with engine.begin() as conn:
                out.extend(await handler(conn, batch))
        return out
    finally:
        await engine.dispose()


async def rows(db: Path, table: Any, *exclude: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(table))).all()
    finally:
        await engine.dispose()
    return {r.case_id: {k: v for k, v in r._asdict().items() if k not in exclude} for r in rows}
