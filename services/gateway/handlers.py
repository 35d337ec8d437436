"""The gateway's event consumer: the four stage events folded into the read model and its
indicator cells."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.gateway import repository
from services.gateway.domain import indicators, readmodel
from shared.events import Envelope, PeriodSettled


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


async def on_period_settled(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
    """After a monthly pre-settlement, issue the month's feedback to each hospital settled: built
    from the indicator aggregates and the statement the event carries, stored as a new version
    (a re-run of the settlement issues it again). The list quality comes from ingest, which the
    consumer does not call (it holds its transaction): the stored feedback leaves that section to
    the report built on demand, and says so."""
    from services.gateway import reporting  # the routes' module: the builders are shared with them

    for e in envs:
        s: PeriodSettled = e.typed_payload()
        for hospital in s.hospitals:
            figures = await reporting.feedback_figures(conn, hospital, s.period)
            meta = {"结算单版本": s.version, "政策": s.policy_id, "签发": "预结算后自动生成"}
            report = reporting.feedback_report(hospital, s.period, figures, None, s.statements.get(hospital), meta)
            await repository.save_report(conn, "feedback", hospital, s.period, orjson.dumps(report.to_dict()).decode(),
                                         f"settlement:{s.policy_id}:v{s.version}")
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
