"""The gateway applies a fetched batch of stage events at once; its read model must be the one of
applying the same events one at a time (the consumer falls back to that when a batch fails):
list versions and stage order depend on earlier events."""

from __future__ import annotations

import asyncio
from typing import Any

from batches import case_id, chunks, cuts, facts, rows, run, stays
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway import handlers, repository
from shared.events import CaseFlagged, CaseGrouped, CasePriced, CaseReceived, Envelope


def _stage_events(raw: list[tuple[int, int, int, int, int]], order: list[int]) -> list[Envelope]:
    """Each stay's four stage events, interleaved across stays by `order`."""
    per_case: list[list[Envelope]] = []
    for s in raw:
        f, cid = facts(*s), case_id(*s[:3])
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
        one = await rows(tmp / "one.db", repository.cases, "updated_at")
        assert one == await rows(tmp / "many.db", repository.cases, "updated_at")
        assert {r["status"] for r in one.values()} <= {"received", "grouped", "priced", "reviewed"}

    asyncio.run(both())
