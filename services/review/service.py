"""Review service: runs the monitoring rules on every priced case, announces `case-flagged`.

Every reviewed case gets a `case-flagged` event (with an empty flag list when nothing was found),
so the read model knows the case went through review. When a case turns out to be the earlier
stay of one already reviewed, the later case is flagged again in a new review version.
"""

from __future__ import annotations

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
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review.core import Flag, Stay, is_readmission, readmission_flags
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


def build(ctx: Context) -> Stage:
    outbox = Outbox(NAME, metadata)

    async def save(conn: AsyncConnection, case_id: str, list_version: int, flags: list[Flag]) -> int:
        prev = await conn.scalar(select(results.c.review_version).where(results.c.case_id == case_id))
        values = dict(list_version=list_version, flags=_flags_json(flags), reviewed_at=datetime.now(UTC))
        if prev is None:
            await conn.execute(insert(results).values(case_id=case_id, review_version=1, **values))
            return 1
        await conn.execute(update(results).where(results.c.case_id == case_id)
                           .values(review_version=prev + 1, **values))
        return prev + 1

    def event(case_id: str, facts: CaseFacts, drg: str, flags: list[Flag], correlation_id: str) -> Envelope:
        payload = CaseFlagged(facts=facts, drg=drg, flags=[CaseFlag(**f.__dict__) for f in flags])
        return Envelope.new(payload, case_id=case_id, correlation_id=correlation_id, producer=NAME)

    async def handle(conn: AsyncConnection, env: Envelope) -> list[Envelope]:
        p: CasePriced = env.typed_payload()
        f = p.facts
        stay = Stay(env.case_id, f.psn_key, f.hospital_code, f.admission_date, f.discharge_date)
        existing = await conn.scalar(select(stays.c.case_id).where(stays.c.case_id == env.case_id))
        row = dict(psn_key=stay.psn_key, hospital_code=stay.hospital_code, drg=p.drg,
                   admission_date=stay.admission_date, discharge_date=stay.discharge_date,
                   facts=f.model_dump_json())
        if existing is None:
            await conn.execute(insert(stays).values(case_id=stay.case_id, **row))
        else:
            await conn.execute(update(stays).where(stays.c.case_id == env.case_id).values(**row))
        other_rows = {r.case_id: r for r in (await conn.execute(
            select(stays).where(stays.c.psn_key == f.psn_key, stays.c.case_id != env.case_id))).all()}
        others = [_stay(r) for r in other_rows.values()]
        # a withdrawn list is not a stay to flag (it stays in history as a version)
        flags = [] if f.withdrawn else readmission_flags(stay, others, READMISSION_DAYS)
        await save(conn, env.case_id, f.list_version, flags)
        out = [event(env.case_id, f, p.drg, flags, env.correlation_id)]
        # this stay may be the earlier one of a later stay reviewed before it arrived
        for later in others:
            if is_readmission(stay, later, READMISSION_DAYS):
                found = (await conn.execute(
                    select(results).where(results.c.case_id == later.case_id))).first()
                old = [Flag(**d) for d in orjson.loads(found.flags)] if found else []
                if any(fl.related_case_id == stay.case_id for fl in old):
                    continue
                later_flags = old + readmission_flags(later, [stay], READMISSION_DAYS)
                await save(conn, later.case_id, found.list_version if found else 1, later_flags)
                later_row = other_rows[later.case_id]
                out.append(event(later.case_id, CaseFacts.model_validate_json(later_row.facts),
                                 later_row.drg, later_flags, env.correlation_id))
        return out

    return Stage(NAME, metadata, outbox, subscriptions=[((CASE_PRICED,), handle)])
