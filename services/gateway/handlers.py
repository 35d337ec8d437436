"""The gateway's event consumer: the four stage events folded into the read model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.gateway import repository
from services.gateway.domain import readmodel
from shared.events import Envelope


async def on_stage_events(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
    """Fold stage events into the read model: one timeline row each, one case row per case."""
    refs = await asyncio.to_thread(lambda: [readmodel.case_ref(env) for env in envs])  # malformed: dead-lettered
    await repository.add_timeline(conn, envs, refs)
    stored = await repository.load_views(conn, {env.case_id for env in envs})
    filed = await asyncio.to_thread(readmodel.file_events, stored, envs, refs)  # CPU work: off the loop
    await repository.save_views(conn, filed, stored)
    return []
