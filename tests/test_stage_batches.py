"""A stage applies a fetched batch of events at once; the result must be the one of applying the
same events one at a time (the consumer falls back to that when a batch fails). Checked here for
review (readmissions across stays of one person, in either arrival order); the gateway's read
model is checked in tests/gateway/integration/test_gateway_read_model_batches.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.review import handlers as review_handlers
from services.review import repository as review
from shared.db import create_engine
from shared.events import CaseFacts, CaseFlagged, CasePriced, Envelope

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


def _priced(raw: list[tuple[int, int, int, int, int]]) -> list[Envelope]:
    return [Envelope.new(CasePriced(facts=_facts(*s), drg="GB21", status="PRICED"),
                         case_id=_case_id(*s[:3]), correlation_id="c", producer="test") for s in raw]


@settings(max_examples=40, deadline=None)  # each example runs two databases
@given(stays, cuts)
def test_review_in_batches_flags_what_review_one_by_one_flags(tmp_path_factory: Any, raw: list, sizes: list) -> None:
    events = _priced(raw)
    tmp = tmp_path_factory.mktemp("review")

    async def both() -> None:
        one = await _run(tmp / "one.db", review.metadata, review_handlers.on_case_priced, [[e] for e in events])
        many = await _run(tmp / "many.db", review.metadata, review_handlers.on_case_priced, _chunks(events, sizes))
        assert await _rows(tmp / "one.db", review.results, "reviewed_at") == \
            await _rows(tmp / "many.db", review.results, "reviewed_at")
        assert await _rows(tmp / "one.db", review.stays) == await _rows(tmp / "many.db", review.stays)

        def announced(out: list[Envelope]) -> list[tuple[str, list]]:
            return [(e.case_id, CaseFlagged.model_validate(e.payload).flags) for e in out]

        assert announced(one) == announced(many)

    asyncio.run(both())


def test_a_readmission_is_flagged_when_both_stays_arrive_in_one_batch(tmp_path: Path) -> None:
    later, earlier = _priced([(0, 0, 10, 2, 1), (0, 0, 0, 5, 1)])  # later stay first

    async def run() -> None:
        out = await _run(tmp_path / "r.db", review.metadata, review_handlers.on_case_priced, [[later, earlier]])
        flags = (await _rows(tmp_path / "r.db", review.results))[later.case_id]
        assert [f["related_case_id"] for f in orjson.loads(flags["flags"])] == [earlier.case_id]
        assert flags["review_version"] == 2  # reviewed clean first, then flagged when the earlier came
        assert [e.case_id for e in out] == [later.case_id, earlier.case_id, later.case_id]

    asyncio.run(run())
