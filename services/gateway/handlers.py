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
    indicator cells get what the changed cases add and take away, in the same transaction.

    Only what the fold needs of the stored cases is read; a case's stored stage results are read
    only when its new contribution needs them (a review alone updates the stored contribution)."""
    refs = await asyncio.to_thread(lambda: [readmodel.case_ref(env) for env in envs])  # malformed: dead-lettered
    await repository.add_timeline(conn, envs, refs)
    stored = await repository.load_cases(conn, {env.case_id for env in envs})
    filed = await asyncio.to_thread(readmodel.file_events, stored, envs, refs)  # CPU work: off the loop
    wanted = _stored_results_wanted(stored, filed)
    results = await repository.load_results(conn, wanted) if wanted else {}
    contributions, delta = await asyncio.to_thread(_contributions, stored, filed, results, band)
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


def _counts(f: readmodel.Filed) -> bool:
    return not f.withdrawn and "priced" in f.reached


def _reviewed_only(f: readmodel.Filed, old: str | None) -> bool:
    """Only the review of a counted case changed: its stored contribution is updated."""
    return not f.reset and old is not None and f.results.keys() <= {"reviewed"}


def _stored_results_wanted(stored: Mapping[str, readmodel.Stored],
                           filed: Mapping[str, readmodel.Filed]) -> dict[str, set[str]]:
    """The stored stage results each changed case's new contribution reads (those the batch did
    not set); none of a case that counts nowhere or whose review alone changed."""
    wanted: dict[str, set[str]] = {}
    for cid, f in filed.items():
        s = stored.get(cid)
        if _counts(f) and not _reviewed_only(f, s.indicator if s else None):
            missing = f.reached - f.results.keys()
            if missing:
                wanted[cid] = missing
    return wanted


def _contributions(stored: Mapping[str, readmodel.Stored], filed: Mapping[str, readmodel.Filed],
                   results: Mapping[str, Mapping[str, Any]], band: Decimal,
                   ) -> tuple[dict[str, str | None], indicators.Delta]:
    """Each changed case's new contribution (JSON) and the cells' delta from the stored ones. The
    facts are those of the case's current list version (every event of a version carries them)."""
    new: dict[str, str | None] = {}
    changes = []
    for cid, f in filed.items():
        s = stored.get(cid)
        old = s.indicator if s is not None else None
        c: indicators.Contribution | None = None
        if _counts(f):
            if _reviewed_only(f, old):
                c = indicators.with_review(indicators.Contribution.from_json(old),  # type: ignore[arg-type]
                                           f.results["reviewed"], f.facts)
            else:
                view = {"withdrawn": f.withdrawn, **results.get(cid, {}), **f.results}
                c = indicators.contribution(view, f.facts, band)
        text = c.to_json() if c is not None else None
        new[cid] = text
        if text != old:
            changes.append((indicators.Contribution.from_json(old), c))
    return new, indicators.delta(changes)
