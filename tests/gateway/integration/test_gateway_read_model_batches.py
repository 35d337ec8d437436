"""The gateway applies a fetched batch of stage events at once; its read model must be the one of
applying the same events one at a time (the consumer falls back to that when a batch fails):
list versions and stage order depend on earlier events."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson
from batches import case_id, chunks, cuts, facts, rows, run, stays
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.gateway import handlers, repository
from services.gateway.domain import indicators
from services.gateway.domain.readmodel import ORDER
from shared.db import create_engine
from shared.events import CaseFlag, CaseFlagged, CaseGrouped, CasePriced, CaseReceived, Envelope


def _stage_events(raw: list[tuple[int, int, int, int, int]], order: list[int]) -> list[Envelope]:
    """Each stay's four stage events, interleaved across stays by `order`."""
    per_case: list[list[Envelope]] = []
    first: dict[tuple[str, int], Any] = {}
    for s in raw:
        cid = case_id(*s[:3])
        f = first.setdefault((cid, s[4]), facts(*s))  # a list version has one set of facts
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
        await run(tmp / "one.db", repository.metadata, handlers.on_stage_events, [[e] for e in events])
        await run(tmp / "many.db", repository.metadata, handlers.on_stage_events, chunks(events, sizes))
        one = await views(tmp / "one.db", "updated_at")
        assert one == await views(tmp / "many.db", "updated_at")
        assert {r["status"] for r in one.values()} <= {"received", "grouped", "priced", "reviewed"}

    asyncio.run(both())


def _varied_events(raw: list[tuple[int, int, int, int, int]], order: list[int]) -> list[Envelope]:
    """Stage events whose results move the indicators: priced figures, flags by rule, readmission
    days, a withdrawal of the second list version of some stays; interleaved by `order`. A stay
    drawn again with the same case and list version carries that version's facts again (ingest
    publishes a version once: its events, a regroup's or a re-pricing's, carry the same facts)."""
    per_case: list[list[Envelope]] = []
    lengths: dict[tuple[int, int, int, int], int] = {}
    for person, hospital, day, length, version in raw:
        f = facts(person, hospital, day, lengths.setdefault((person, hospital, day, version), length), version)
        if version == 2 and day % 3 == 0:
            f = f.model_copy(update={"withdrawn": True})
        f = f.model_copy(update={"total_cost": Decimal(1000 + 37 * day), "region": "R",
                                 "fees": {"01": Decimal(10 + day), "03": Decimal(version)} if day % 2 else {}})
        flags = [CaseFlag(rule=f"R{(day + i) % 3}", message="m") for i in range(length % 3)]
        payloads = [CaseReceived(facts=f, sex=1, age=40, diagnoses=["J18.900"], dept=f"D{day % 2}", los=length),
                    CaseGrouped(facts=f, scheme_id="s", mdc="MDCE", adrg="ES2", drg=f"ES2{1 + day % 3}",
                                status="SUCCESS" if day % 5 else "0000"),
                    CasePriced(facts=f, drg=f"ES2{1 + day % 3}", status="PRICED", weight=Decimal("1.1"),
                               payment=Decimal(900 + day), hospital_level=3, case_type="normal"),
                    CaseFlagged(facts=f, drg="ES23", flags=flags, readmission_days=day % 40 or None)]
        per_case.append([Envelope.new(p, case_id=case_id(person, hospital, day), correlation_id="c",
                                      producer="test") for p in payloads])
    out: list[Envelope] = []
    i = 0
    while any(per_case):
        queue = per_case[order[i % len(order)] % len(per_case)]
        out.append((queue if queue else next(q for q in per_case if q)).pop(0))
        i += 1
    return out


@settings(max_examples=30, deadline=None)
@given(stays, st.lists(st.integers(0, 13), min_size=1, max_size=20), cuts)
def test_indicator_cells_are_the_recomputed_contributions_of_the_stored_cases(
        tmp_path_factory: Any, raw: list, order: list, sizes: list) -> None:
    """However the events arrive and are batched (a review alone updates the stored contribution
    without reading the other results), every stored contribution is the one recomputed from the
    stored results, the stored facts are those of the case's current list version, and the cells
    are their sum; `drgdip indicators rebuild` from the stored facts gives the same cells."""
    events = _varied_events(raw, order)
    db = tmp_path_factory.mktemp("gateway") / "g.db"

    async def check() -> None:
        await run(db, repository.metadata, handlers.on_stage_events, chunks(events, sizes))
        stored = await views(db)
        expected = indicators.Delta()
        for cid, r in stored.items():
            view = {s: r[s] for s in ORDER} | {"withdrawn": r["status"] == "withdrawn"}
            facts_now = next(e.payload["facts"] for e in reversed(events)
                             if e.case_id == cid and e.payload["facts"]["list_version"] == r["list_version"])
            c = indicators.contribution(view, facts_now)
            assert r["indicator"] == (c.to_json() if c is not None else None), cid
            assert r["facts"] == orjson.dumps(indicators.indicator_facts(facts_now)).decode(), cid
            if c is not None:
                expected.add(c, 1)
        await _assert_cells(db, expected)
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        try:
            async with engine.begin() as conn:
                counts = await handlers.rebuild_indicators(conn, indicators.DEFAULT_NEAR_THRESHOLD_BAND, batch=3)
        finally:
            await engine.dispose()
        assert counts["cases"] == len(stored) and counts["changed"] == 0 and counts["without_facts"] == 0
        await _assert_cells(db, expected)

    asyncio.run(check())


async def _assert_cells(db: Any, expected: indicators.Delta) -> None:
    """The stored cells and rule counts are the expected ones (cells with nothing in them aside)."""
    cells = await rows_of(db, repository.indicator_cells)
    got = {tuple(r[k] for k in indicators.KEY): {n: r[n] for n in indicators.SUMS} for r in cells
           if any(r[n] for n in indicators.SUMS)}
    assert got == expected.changed_cells()
    rules = await rows_of(db, repository.indicator_rules)
    assert {(tuple(r[k] for k in indicators.KEY), r["rule"]): r["flagged"] for r in rules if r["flagged"]} \
        == expected.changed_rules()


async def views(db: Any, *exclude: str) -> dict[str, dict[str, Any]]:
    """Each stored case's row with its stage results (one column per stage, None where none is
    held)."""
    out = await rows(db, repository.cases, *exclude)
    for r in out.values():
        r.update(dict.fromkeys(ORDER))
    for r in await rows_of(db, repository.case_results):
        out[r["case_id"]][r["stage"]] = r["result"]
    return out


async def rows_of(db: Any, table: Any) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            return [r._asdict() for r in (await conn.execute(select(table))).all()]
    finally:
        await engine.dispose()
