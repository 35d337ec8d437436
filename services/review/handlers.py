"""Review's event consumer: every priced case is reviewed and announced as `case-flagged`.

Every reviewed case gets a `case-flagged` event (with an empty flag list when nothing was
found), so the read model knows the case went through review. When a case turns out to be the
earlier stay of one already reviewed, the later case is flagged again in a new review version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review.domain.review import PricedStay, review_cases
from shared.events import CaseFlagged, CasePriced, Envelope


async def on_case_priced(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
    """Review a batch of priced cases (reads and writes each table once per batch)."""
    priced = await asyncio.to_thread(lambda: [_stay(e, e.typed_payload()) for e in envs])
    known = await repository.load_known(conn, {p.facts.psn_key for p in priced},
                                        {p.case_id for p in priced})
    # reviewing a batch is CPU work: off the event loop, which keeps serving meanwhile
    changed, announcements = await asyncio.to_thread(review_cases, known, priced)
    await repository.save(conn, changed, known)
    return await asyncio.to_thread(lambda: [
        Envelope.new(CaseFlagged(facts=a.facts, drg=a.drg, flags=list(a.flags)), case_id=a.case_id,
                     correlation_id=a.correlation_id, producer=repository.NAME)
        for a in announcements])


def _stay(e: Envelope, p: CasePriced) -> PricedStay:
    return PricedStay(e.case_id, p.facts, p.drg, e.correlation_id)
