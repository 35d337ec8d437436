"""Ingest's composition: its tables, outbox, routes, and the sweep that finishes work left undone
(at start, then every `sweep_interval_s`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest import repository
from services.ingest.config import IngestSettings
from services.ingest.domain.qc import DictionaryError, load_dictionaries
from services.ingest.endpoints import router
from services.ingest.handlers import Intake
from shared.messaging import Outbox
from shared.observability import age_seconds
from shared.runtime import Context, Stage
from shared.settings import SettingError


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, IngestSettings) else IngestSettings()
    outbox = Outbox(repository.NAME, repository.metadata)
    try:
        dictionaries = load_dictionaries(settings.dictionary_scheme) if settings.dictionary_scheme else None
    except DictionaryError as e:
        raise SettingError("DRGDIP_DICTIONARY_SCHEME", str(e)) from e
    intake = Intake(ctx.engine, outbox, settings, dictionaries)

    sweeper: list[asyncio.Task] = []

    async def start() -> None:
        await intake.sweep()  # what a crash left undone, before new work comes in
        sweeper.append(asyncio.create_task(intake.sweep_forever(), name="ingest-sweep"))

    async def stop() -> None:
        for task in sweeper:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        sweeper.clear()

    async def health(conn: AsyncConnection) -> dict[str, Any]:
        # lists a crash or a database outage left undecided (and those deciding right now)
        n, oldest = await repository.pending_count(conn)
        return {"pending_lists": n, "oldest_pending_age_seconds": round(age_seconds(oldest), 3)}

    return Stage(repository.NAME, repository.metadata, outbox, router=router, on_start=start,
                 on_stop=stop, service=intake, health=health)
