"""Review's tables and every query on them. Takes the caller's connection; never commits."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime

import orjson
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review.domain.review import Reviewed
from services.review.domain.rules import Stay
from shared.db import insert_many, update_many
from shared.events import CaseFacts, CaseFlag

NAME = "review"
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
    Index("ix_review_stays_person", "psn_key", "hospital_code"),
)
results = Table(
    "review_results", metadata,
    Column("case_id", String(100), primary_key=True),
    Column("list_version", Integer, nullable=False),
    Column("review_version", Integer, nullable=False),
    Column("flags", Text, nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
)


class Known(dict[str, Reviewed]):
    """The stored stays (by case id) of a batch's people and cases; `reviewed`: those with a
    stored review (a stay and its review are written together)."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: set[str] = set()
        self.reviewed: set[str] = set()


async def load_known(conn: AsyncConnection, psn_keys: Collection[str], case_ids: Collection[str]) -> Known:
    """The stays of these people and these cases, with their latest reviews."""
    known = Known()
    for r in (await conn.execute(select(stays).where(or_(
            stays.c.psn_key.in_(psn_keys), stays.c.case_id.in_(case_ids))))).all():
        known[r.case_id] = Reviewed(Stay(r.case_id, r.psn_key, r.hospital_code, r.admission_date,
                                         r.discharge_date), r.drg, CaseFacts.model_validate_json(r.facts))
    known.stored = set(known)
    for r in (await conn.execute(select(results).where(results.c.case_id.in_(known.stored)))).all():
        k = known[r.case_id]
        k.list_version, k.review_version = r.list_version, r.review_version
        k.flags = [CaseFlag.model_validate(d) for d in orjson.loads(r.flags)]
        known.reviewed.add(r.case_id)
    return known


def _flags_json(flags: list[CaseFlag]) -> str:
    return orjson.dumps([f.model_dump() for f in flags]).decode()


async def save(conn: AsyncConnection, changed: Mapping[str, Reviewed], known: Known) -> None:
    """Store the changed stays and their reviews: one statement per table and kind of write."""
    now = datetime.now(UTC)
    new_stays: list[dict] = []
    old_stays: list[dict] = []
    new_results: list[dict] = []
    old_results: list[dict] = []
    for cid, k in changed.items():
        s = dict(case_id=cid, psn_key=k.stay.psn_key, hospital_code=k.stay.hospital_code,
                 admission_date=k.stay.admission_date, discharge_date=k.stay.discharge_date,
                 drg=k.drg, facts=k.facts.model_dump_json())
        (old_stays if cid in known.stored else new_stays).append(s)
        r = dict(case_id=cid, list_version=k.list_version, review_version=k.review_version,
                 flags=_flags_json(k.flags), reviewed_at=now)
        (old_results if cid in known.reviewed else new_results).append(r)
    await insert_many(conn, stays, new_stays)
    await update_many(conn, stays, "case_id", old_stays)
    await insert_many(conn, results, new_results)
    await update_many(conn, results, "case_id", old_results)


async def count_flagged(conn: AsyncConnection) -> int:
    """Cases whose latest review raised at least one flag."""
    return int(await conn.scalar(select(func.count()).select_from(results)
                                 .where(results.c.flags != "[]")) or 0)
