"""The gateway applies a fetched batch of stage events at once; its read model must be the one of
applying the same events one at a time (the consumer falls back to that when a batch fails):
list versions and stage order depend on earlier events."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.gateway import handlers, repository
from shared.db import create_engine
from shared.events import CaseFacts, CaseFlagged, CaseGrouped, CasePriced, CaseReceived, Envelope

DAY0 = date(2024, 3, 1)

# one stay: (person 0-2, hospital 0-1, admitted on day 0-40, length 0-6 days, list version 1-2)
stays = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 40), st.integers(0, 6),
                           st.integers(1, 2)), min_size=1, max_size=14)
cuts = st.lists(st.integers(1, 5), min_size=1, max_size=14)


def _facts(person: int, hospital: int, day: int, length: int, version: int) -> CaseFacts:
    adm = DAY0 + timedelta(days=day)
    return CaseFacts(hospital_code=f"H{hospital}", setl_id=f"S{person}{hospital}{day}", list_version=version,
                     psn_key=f"P{person}", admission_date=adm, discharge_date=adm + timedelta(days=length))


def _case_id(person: int, hospital: int, day: int) -> str:
    return f"C{person}-{hospital}-{day}"


def _chunks(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    out, i = [], 0
    while i < len(items):
        n = sizes[len(out) % len(sizes)]
        out.append(items[i:i + n])
        i += n
    return out


async def _run(db: Path, metadata: Any, handler: Any, batches: Sequence[Sequence[Envelope]]) -> list[Envelope]:
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


async def _rows(db: Path, table: Any, *exclude: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(table))).all()
    finally:
        await engine.dispose()
    return {r.case_id: {k: v for k, v in r._asdict().items() if k not in exclude} for r in rows}


def _stage_events(raw: list[tuple[int, int, int, int, int]], order: list[int]) -> list[Envelope]:
    """Each stay's four stage events, interleaved across stays by `order`."""
    per_case: list[list[Envelope]] = []
    for s in raw:
        f, cid = _facts(*s), _case_id(*s[:3])
        payloads = [CaseReceived(facts=f, sex=1, age=40, diagnoses=["J18.900"]),
                    CaseGrouped(facts=f, scheme_id="s", mdc="MDCE", adrg="ES2", drg="ES23", status="SUCCESS"),
                    CasePriced(facts=f, drg="ES23", status="PRICED"),
                    CaseFlagged(facts=f, drg="ES23")]
        per_case.append([Envelope.new(p, case_id=cid, correlation_id="c", producer="test") for p in payloads])
    out: list[Envelope] = []
    i = 0
    while any(per_case):
        queue = per_case[order[i % len(order)] % len(per_case)]
        if queue:
            out.append(queue.pop(0))
        else:
            out.append(next(q for q in per_case if q).pop(0))
        i += 1
    return out


@settings(max_examples=40, deadline=None)  # each example runs two databases
@given(stays, st.lists(st.integers(0, 13), min_size=1, max_size=20), cuts)
def test_read_model_in_batches_is_the_read_model_one_by_one(tmp_path_factory: Any, raw: list, order: list,
                                                            sizes: list) -> None:
    events = _stage_events(raw, order)
    tmp = tmp_path_factory.mktemp("gateway")

    async def both() -> None:
        await _run(tmp / "one.db", repository.metadata, handlers.on_stage_events, [[e] for e in events])
        await _run(tmp / "many.db", repository.metadata, handlers.on_stage_events, _chunks(events, sizes))
        one = await _rows(tmp / "one.db", repository.cases, "updated_at")
        assert one == await _rows(tmp / "many.db", repository.cases, "updated_at")
        assert {r["status"] for r in one.values()} <= {"received", "grouped", "priced", "reviewed"}

    asyncio.run(both())
