"""Review service: runs the monitoring rules on every priced case, announces `case-flagged`.

Every reviewed case gets a `case-flagged` event (with an empty flag list when nothing was found),
so the read model knows the case went through review. When a case turns out to be the earlier
stay of one already reviewed, the later case is flagged again in a new review version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review.core import Flag, Stay, is_readmission, readmission_flags
from shared.db import insert_many, update_many
from shared.events import CASE_PRICED, CaseFacts, CaseFlag, CaseFlagged, CasePriced, Envelope
from shared.messaging import Outbox
from shared.runtime import Context, Stage

NAME = "review"
READMISSION_DAYS = 15  # docs/domain.md §11 default; becomes a per-region policy parameter
metadata = MetaData()
stays = Table(
    "review_stays", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("psn_key", String(64), nullable=False),
    Column("hospital_code", String(32), nullable=False),
    Column("admission_date", Date, nullable=True),
    Column("discharge_date", Date, nullable=True),
    Column("drg", String(8), nullable=False),
    Column("facts", Text, nullable=False),  # the stay's CaseFacts, to re-announce it later
)
results = Table(
    "review_results", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("list_version", Integer, nullable=False),
    Column("review_version", Integer, nullable=False),
    Column("flags", Text, nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
)


def _stay(row) -> Stay:  # type: ignore[no-untyped-def]
    return Stay(row.case_id, row.psn_key, row.hospital_code, row.admission_date, row.discharge_date)


def _flags_json(flags: list[Flag]) -> str:
    return orjson.dumps([f.__dict__ for f in flags]).decode()


def _event(case_id: str, facts: CaseFacts, drg: str, flags: list[Flag], correlation_id: str) -> Envelope:
    payload = CaseFlagged(facts=facts, drg=drg, flags=[CaseFlag(**f.__dict__) for f in flags])
    return Envelope.new(payload, case_id=case_id, correlation_id=correlation_id, producer=NAME)


@dataclass
class _Known:
    """A stay as review knows it: its row in `review_stays` and its latest review, if any."""

    stay: Stay
    drg: str
    facts: str  # CaseFacts JSON, to re-announce the stay
    list_version: int | None = None
    review_version: int = 0
    flags: list[Flag] = field(default_factory=list)


async def review_batch(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
    """Review priced cases in order, as if one at a time: each sees the person's stays stored
    before and the batch's earlier ones. Reads and writes each table once per batch."""
    priced: list[tuple[Envelope, CasePriced]] = [(e, e.typed_payload()) for e in envs]
    batch_ids = {e.case_id for e, _p in priced}
    known: dict[str, _Known] = {}
    for r in (await conn.execute(select(stays).where(or_(
            stays.c.psn_key.in_({p.facts.psn_key for _e, p in priced}), stays.c.case_id.in_(batch_ids))))).all():
        known[r.case_id] = _Known(_stay(r), r.drg, r.facts)
    stored_stays = set(known)
    reviewed: set[str] = set()  # a stay and its review are written together
    for r in (await conn.execute(select(results).where(results.c.case_id.in_(stored_stays)))).all():
        k = known[r.case_id]
        k.list_version, k.review_version = r.list_version, r.review_version
        k.flags = [Flag(**d) for d in orjson.loads(r.flags)]
        reviewed.add(r.case_id)
    by_person: dict[str, dict[str, _Known]] = {}
    for k in known.values():
        by_person.setdefault(k.stay.psn_key, {})[k.stay.case_id] = k
    changed: dict[str, _Known] = {}
    out: list[Envelope] = []
    for env, p in priced:
        f = p.facts
        stay = Stay(env.case_id, f.psn_key, f.hospital_code, f.admission_date, f.discharge_date)
        mine = by_person.setdefault(f.psn_key, {})
        previous = known.get(env.case_id)
        if previous is not None and previous.stay.psn_key != f.psn_key:  # a corrected person number
            by_person.get(previous.stay.psn_key, {}).pop(env.case_id, None)
        others = [k.stay for cid, k in mine.items() if cid != env.case_id]
        # a withdrawn list is not a stay to flag (it stays in history as a version)
        flags = [] if f.withdrawn else readmission_flags(stay, others, READMISSION_DAYS)
        k = _Known(stay, p.drg, f.model_dump_json(), f.list_version,
                   (previous.review_version if previous else 0) + 1, flags)
        known[env.case_id] = mine[env.case_id] = changed[env.case_id] = k
        out.append(_event(env.case_id, f, p.drg, flags, env.correlation_id))
        # this stay may be the earlier one of a later stay reviewed before it arrived
        for later in others:
            if not is_readmission(stay, later, READMISSION_DAYS):
                continue
            lk = mine[later.case_id]
            if any(fl.related_case_id == stay.case_id for fl in lk.flags):
                continue
            lk.flags = lk.flags + readmission_flags(later, [stay], READMISSION_DAYS)
            lk.review_version += 1
            lk.list_version = lk.list_version or 1
            changed[later.case_id] = lk
            out.append(_event(later.case_id, CaseFacts.model_validate_json(lk.facts), lk.drg,
                              lk.flags, env.correlation_id))
    await _save(conn, changed, stored_stays, reviewed)
    return out


async def _save(conn: AsyncConnection, changed: dict[str, _Known], stored_stays: set[str],
                stored_results: set[str]) -> None:
    now = datetime.now(UTC)
    new_stays: list[dict] = []
    old_stays: list[dict] = []
    new_results: list[dict] = []
    old_results: list[dict] = []
    for cid, k in changed.items():
        s = dict(case_id=cid, psn_key=k.stay.psn_key, hospital_code=k.stay.hospital_code,
                 admission_date=k.stay.admission_date, discharge_date=k.stay.discharge_date,
                 drg=k.drg, facts=k.facts)
        (old_stays if cid in stored_stays else new_stays).append(s)
        r = dict(case_id=cid, list_version=k.list_version, review_version=k.review_version,
                 flags=_flags_json(k.flags), reviewed_at=now)
        (old_results if cid in stored_results else new_results).append(r)
    await insert_many(conn, stays, new_stays)
    await update_many(conn, stays, "case_id", old_stays)
    await insert_many(conn, results, new_results)
    await update_many(conn, results, "case_id", old_results)


def build(ctx: Context) -> Stage:
    return Stage(NAME, metadata, Outbox(NAME, metadata), subscriptions=[((CASE_PRICED,), review_batch)])
