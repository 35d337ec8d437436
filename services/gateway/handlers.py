"""The gateway's event consumer: the four stage events folded into the read model and its
indicator cells."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.gateway import repository
from services.gateway.domain import indicators, readmodel
from shared.events import Envelope


async def on_stage_events(conn: AsyncConnection, envs: Sequence[Envelope],
                          band: Decimal = indicators.DEFAULT_NEAR_THRESHOLD_BAND) -> list[Envelope]:
    """Fold stage events into the read model: one timeline row each, one case row per case; the
    indicator cells get what the changed cases add and take away, in the same transaction."""
    refs = await asyncio.to_thread(lambda: [readmodel.case_ref(env) for env in envs])  # malformed: dead-lettered
    await repository.add_timeline(conn, envs, refs)
    stored = await repository.load_views(conn, {env.case_id for env in envs})
    filed = await asyncio.to_thread(readmodel.file_events, stored, envs, refs)  # CPU work: off the loop
    contributions, delta = await asyncio.to_thread(_contributions, stored, filed, envs, refs, band)
    await repository.save_views(conn, filed, stored, contributions)
    await repository.add_to_indicators(conn, delta)
    return []


def _contributions(stored: Mapping[str, dict[str, Any]], filed: Mapping[str, readmodel.Filed],
                   envs: Sequence[Envelope], refs: Sequence[readmodel.CaseRef],
                   band: Decimal) -> tuple[dict[str, str | None], indicators.Delta]:
    """Each changed case's new contribution (JSON) and the cells' delta from the stored ones. The
    facts are those of the case's current list version (every event of a version carries them)."""
    facts: dict[str, dict[str, Any]] = {}
    for env, ref in zip(envs, refs, strict=True):
        f = filed.get(env.case_id)
        if f is not None and ref.list_version == f.view["list_version"]:
            facts[env.case_id] = env.payload.get("facts") or {}
    new: dict[str, str | None] = {}
    changes = []
    for cid, f in filed.items():
        c = indicators.contribution(f.view, facts.get(cid, {}), band)
        old = indicators.Contribution.from_json((stored.get(cid) or {}).get("indicator"))
        new[cid] = c.to_json() if c is not None else None
        changes.append((old, c))
    return new, indicators.delta(changes)
