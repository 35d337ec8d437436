"""The grouper's composition: its tables, outbox, routes, schemes and the events it consumes."""

from __future__ import annotations

from functools import partial

from services.grouper import handlers, repository
from services.grouper.config import GrouperSettings
from services.grouper.domain.errors import SchemeError
from services.grouper.endpoints import router
from shared.events import CASE_RECEIVED
from shared.messaging import Outbox
from shared.runtime import Context, Stage
from shared.settings import SettingError


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, GrouperSettings) else GrouperSettings()
    grouper = handlers.GrouperService(settings)

    async def on_start() -> None:
        async with ctx.engine.connect() as conn:
            try:
                await grouper.load_schemes(conn)
            except SchemeError as e:
                if grouper.book.schemes or settings.schemes_dir is not None:
                    raise SettingError("DRGDIP_SCHEMES_DIR", str(e)) from e
                raise SettingError("DRGDIP_SCHEMES_DIR", "no grouping scheme: give a folder of schemes "
                                   "(--schemes-dir, e.g. ../shared/schemes) or register one with "
                                   "`drgdip scheme import`") from e

    return Stage(repository.NAME, repository.metadata, Outbox(repository.NAME, repository.metadata),
                 router=router, subscriptions=[((CASE_RECEIVED,), partial(handlers.on_case_received, grouper))],
                 on_start=on_start, service=grouper)
