"""The gateway's event consumer: the four stage events folded into the read model and its
indicator cells; `rebuild_indicators`: the cells recomputed from the read model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
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
    kept = _contributions_kept(stored, filed)
    wanted = _stored_results_wanted(stored, filed, kept)
    results = await repository.load_results(conn, wanted) if wanted else {}
    contributions, facts, delta = await asyncio.to_thread(_contributions, stored, filed, results, band, kept)
    await repository.save_views(conn, filed, stored, contributions, facts)
    await repository.add_to_indicators(conn, delta)
    await repository.add_to_case_counts(conn, [(f.hospital_code, s.status if (s := stored.get(cid)) else None, f.status)
                                               for cid, f in filed.items()])
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


def _contributions_kept(stored: Mapping[str, readmodel.Stored], filed: Mapping[str, readmodel.Filed]) -> set[str]:
    """The counted cases whose grouping alone changed and leaves their stored contribution as it
    is (`indicators.grouping_unchanged`: a regrouping into the same scheme, grouped as before):
    nothing is computed or read for them."""
    kept: set[str] = set()
    for cid, f in filed.items():
        if not f.reset and f.results.keys() <= {"grouped"} and _counts(f):
            old = stored[cid].indicator
            if old is not None and indicators.grouping_unchanged(old, f.results["grouped"]):
                kept.add(cid)
    return kept


def _stored_results_wanted(stored: Mapping[str, readmodel.Stored], filed: Mapping[str, readmodel.Filed],
                           kept: Collection[str] = ()) -> dict[str, set[str]]:
    """The stored stage results each changed case's new contribution reads (those the batch did
    not set); none of a case that counts nowhere, whose review alone changed or whose
    contribution is kept."""
    wanted: dict[str, set[str]] = {}
    for cid, f in filed.items():
        s = stored.get(cid)
        if _counts(f) and cid not in kept and not _reviewed_only(f, s.indicator if s else None):
            missing = f.reached - f.results.keys()
            if missing:
                wanted[cid] = missing
    return wanted


def _contributions(stored: Mapping[str, readmodel.Stored], filed: Mapping[str, readmodel.Filed],
                   results: Mapping[str, Mapping[str, Any]], band: Decimal, kept: Collection[str] = (),
                   ) -> tuple[dict[str, str | None], dict[str, str], indicators.Delta]:
    """Each changed case's new contribution (JSON), the facts it was computed from (JSON, kept
    for `drgdip indicators rebuild`) and the cells' delta from the stored ones. The facts are
    those of the case's current list version (every event of a version carries them); they are
    given only when the stored ones are not those: a new case, a newer list version, or a case
    stored without facts. A list version's facts never change: ingest publishes each version
    once (a changed list or a withdrawal is a new version), and the other stages carry the facts
    of the version they hold as it was received (a regroup, re-pricing or special-case re-pricing
    too), so a later event of the version carries the same facts. A case in `kept` keeps its
    stored contribution (`_contributions_kept`)."""
    new: dict[str, str | None] = {}
    facts: dict[str, str] = {}
    changes: list[tuple[indicators.Contribution | None, indicators.Contribution | None]] = []
    for cid, f in filed.items():
        s = stored.get(cid)
        old = s.indicator if s is not None else None
        if f.facts and (f.reset or not s.facts_kept):  # type: ignore[union-attr]  # (not reset: stored)
            facts[cid] = orjson.dumps(indicators.indicator_facts(f.facts)).decode()
        if cid in kept:
            new[cid] = old
            continue
        if _counts(f) and _reviewed_only(f, old):
            # the review's sums and rules replaced in the stored text: the rest is the same
            new[cid], before, after = indicators.review_changed(old, f.results["reviewed"], f.facts)  # type: ignore[arg-type]
            if before != after:
                changes.append((before, after))
            continue
        c: indicators.Contribution | None = None
        if _counts(f):
            view = {"withdrawn": f.withdrawn, **results.get(cid, {}), **f.results}
            c = indicators.contribution(view, f.facts, band)
        text = c.to_json() if c is not None else None
        new[cid] = text
        if text != old:
            changes.append((indicators.Contribution.from_json(old), c))
    return new, facts, indicators.delta(changes)


async def rebuild_indicators(conn: AsyncConnection, band: Decimal, batch: int = 5_000,
                             on_progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Every case's contribution recomputed from its view and kept facts with the live folding's
    functions (`indicators.rebuild`), read in batches of `batch` cases by id, and every cell
    replaced by their sum, in the caller's one transaction (idempotent: a second run changes
    nothing). Counts what it did."""
    counts = {"cases": 0, "recomputed": 0, "changed": 0, "without_facts": 0, "not_counted": 0}
    total, after = indicators.Delta(), ""
    while rows := await repository.cases_after(conn, after, batch):
        after = rows[-1].case_id
        inputs = [({"list_version": r.list_version, "status": r.status, "withdrawn": r.status == "withdrawn",
                    **{s: getattr(r, s) for s in readmodel.ORDER}},
                   orjson.loads(r.facts) if r.facts else None, indicators.Contribution.from_json(r.indicator))
                  for r in rows]
        part, contributions = await asyncio.to_thread(indicators.rebuild, inputs, band)
        total.merge(part)
        changed: dict[str, str | None] = {}
        for r, (_view, facts, _stored), c in zip(rows, inputs, contributions, strict=True):
            counts["recomputed" if facts is not None else "without_facts"] += 1
            counts["not_counted"] += c is None
            text = c.to_json() if c is not None else None
            if text != r.indicator:  # as stored (a contribution read back drops its zero sums)
                changed[r.case_id] = text
        counts["cases"] += len(rows)
        counts["changed"] += len(changed)
        await repository.set_contributions(conn, changed)
        if on_progress is not None:
            on_progress(len(rows))
    await repository.replace_indicators(conn, total)
    return counts | {"cells": len(total.changed_cells())}
