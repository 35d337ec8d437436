"""Review's composition: its tables, outbox, routes and the events it consumes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import handlers, repository
from services.review.endpoints import router
from shared.events import CASE_PRICED, PERIOD_SETTLED, Envelope
from shared.messaging import Outbox
from shared.runtime import Context, Stage


def build(ctx: Context) -> Stage:
    rules = handlers.Rules()

    async def on_case_priced(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
        return await handlers.on_case_priced(conn, envs, rules)

    async def on_period_settled(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
        return await handlers.on_period_settled(conn, envs, rules)

    return Stage(repository.NAME, repository.metadata, Outbox(repository.NAME, repository.metadata),
                 router=router, subscriptions=[((CASE_PRICED,), on_case_priced),
                                               ((PERIOD_SETTLED,), on_period_settled)],
                 service=rules)
