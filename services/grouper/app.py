"""The grouper's composition: its tables, outbox, routes, schemes and the events it consumes."""

from __future__ import annotations

from functools import partial

from services.grouper import handlers, repository
from services.grouper.config import GrouperSettings
from services.grouper.endpoints import router
from shared.events import CASE_RECEIVED
from shared.messaging import Outbox
from shared.runtime import Context, Stage


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, GrouperSettings) else GrouperSettings()
    grouper = handlers.GrouperService(settings)

    async def on_start() -> None:
        async with ctx.engine.connect() as conn:
            await grouper.load_schemes(conn)

    return Stage(repository.NAME, repository.metadata, Outbox(repository.NAME, repository.metadata),
                 router=router, subscriptions=[((CASE_RECEIVED,), partial(handlers.on_case_received, grouper))],
                 on_start=on_start, service=grouper)
