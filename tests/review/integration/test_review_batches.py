"""A stage applies a fetched batch of events at once; the result must be the one of applying the
same events one at a time (the consumer falls back to that when a batch fails). Checked here for
review (readmissions across stays of one person, in either arrival order); the gateway's read
model is checked in tests/gateway/integration/test_gateway_read_model_batches.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from batches import case_id, chunks, cuts, facts, rows, run, stays
from hypothesis import given, settings

from services.review import handlers as review_handlers
from services.review import repository as review
from shared.events import CaseFlagged, CasePriced, Envelope


def _priced(raw: list[tuple[int, int, int, int, int]]) -> list[Envelope]:
    return [Envelope.new(CasePriced(facts=facts(*s), drg="GB21", status="PRICED"),
                         case_id=case_id(*s[:3]), correlation_id="c", producer="test") for s in raw]


@settings(max_examples=40, deadline=None)  # each example runs two databases
@given(stays, cuts)
def test_review_in_batches_flags_what_review_one_by_one_flags(tmp_path_factory: Any, raw: list, sizes: list) -> None:
    events = _priced(raw)
    tmp = tmp_path_factory.mktemp("review")

    async def both() -> None:
        one = await run(tmp / "one.db", review.metadata, review_handlers.on_case_priced, [[e] for e in events])
        many = await run(tmp / "many.db", review.metadata, review_handlers.on_case_priced, chunks(events, sizes))
        assert await rows(tmp / "one.db", review.results, "reviewed_at") == \
            await rows(tmp / "many.db", review.results, "reviewed_at")
        assert await rows(tmp / "one.db", review.stays) == await rows(tmp / "many.db", review.stays)

        def announced(out: list[Envelope]) -> list[tuple[str, list]]:
            return [(e.case_id, CaseFlagged.model_validate(e.payload).flags) for e in out]

        assert announced(one) == announced(many)

    asyncio.run(both())


def test_a_readmission_is_flagged_when_both_stays_arrive_in_one_batch(tmp_path: Path) -> None:
    later, earlier = _priced([(0, 0, 10, 2, 1), (0, 0, 0, 5, 1)])  # later stay first

    async def check() -> None:
        out = await run(tmp_path / "r.db", review.metadata, review_handlers.on_case_priced, [[later, earlier]])
        flags = (await rows(tmp_path / "r.db", review.results))[later.case_id]
        assert [f["related_case_id"] for f in orjson.loads(flags["flags"])] == [earlier.case_id]
        assert flags["review_version"] == 2  # reviewed clean first, then flagged when the earlier came
        assert [e.case_id for e in out] == [later.case_id, earlier.case_id, later.case_id]

    asyncio.run(check())
