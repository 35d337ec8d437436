"""Ingest's tables and every query on them. Takes the caller's connection; never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.domain.intake import (
    Changes,
    Key,
    Latest,
    Outcome,
    Received,
    Stored,
    case_id_for,
)
from services.ingest.domain.national import Problem
from shared.db import ROW_ID, insert_many, latest_per_case, update_many

NAME = "ingest"
metadata = MetaData()
# a received list's state: written when it is stored (pending) and once more when it is
# decided. Narrow on purpose: the bytes it arrived as are in `verbatim`, written once, so
# deciding a list rewrites (and on PostgreSQL copies) a row of ~100 bytes, not the list.
raw_table = Table(
    "ingest_raw", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", String(12), nullable=False),  # pending | accepted | duplicate | rejected
    Column("hospital_code", String(32), nullable=True),
    Column("discharge_date", Date, nullable=True),
    Column("problems", Text, nullable=True),
    Column("case_id", String(100), nullable=True),
    Column("list_version", Integer, nullable=True),
    Column("job_id", String(32), nullable=True),
    Column("job_line", Integer, nullable=True),  # the list's line in its import job's upload
    Column("declared_on", Date, nullable=True),  # the list's own 申报时间 (dcla_time), for 时效性
    # partial: a list is indexed here only while it waits to be decided (the sweep's and the
    # backlog's reads), and by hospital only once decided (the quality scores' read)
    Index("ix_ingest_raw_pending", "id", postgresql_where=text("status = 'pending'"),
          sqlite_where=text("status = 'pending'")),
    Index("ix_ingest_raw_hospital", "hospital_code", "discharge_date",
          postgresql_where=text("hospital_code IS NOT NULL"), sqlite_where=text("hospital_code IS NOT NULL")),
    # with the time: when a job's last list arrived is the end of the index (the sweep asks it
    # of every open job; by job id alone it read each of the job's rows)
    Index("ix_ingest_raw_job", "job_id", "received_at"),
)
# what arrived, verbatim: one row per `ingest_raw` row (same id), inserted with it in the same
# transaction and never updated. The bytes are compressed with lz4 on PostgreSQL servers that
# have it (migrations ingest_0005/0007): pglz, the default, was the largest single cost of
# storing a list.
verbatim = Table(
    "ingest_verbatim", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=False),  # its ingest_raw row's id
    Column("format", String(8), nullable=False),
    Column("caller_hospital", String(32), nullable=True),
    Column("correlation_id", String(64), nullable=False),
    Column("raw", LargeBinary, nullable=False),
)
lists = Table(
    "ingest_lists", metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("hospital_code", String(32), nullable=False),
    Column("setl_id", String(64), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("status", String(12), nullable=False),  # active | withdrawn
    Column("raw_id", BigInteger, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("event", Text, nullable=False),  # the case-received payload of this version
    Column("warnings", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("hospital_code", "setl_id", "list_version", name="uq_ingest_lists_version"),
    Index("ix_ingest_lists_case", "case_id"),
)
jobs = Table(
    "ingest_jobs", metadata,
    Column("job_id", String(32), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("caller_hospital", String(32), nullable=True),
    Column("format", String(8), nullable=False),
    Column("summary", Text, nullable=True),
)

# the newest version of each case id among a batch's (one cached statement: the ids expand)
_LATEST_BY_CASE_IDS = latest_per_case(
    lists, "list_version", where=lists.c.case_id.in_(bindparam("case_ids", expanding=True)))
_LOOKUP_CHUNK = 500
_LAST_ROWID = text("SELECT last_insert_rowid()")
_NEW_IDS = text("SELECT nextval(pg_get_serial_sequence('ingest_raw', 'id')) FROM generate_series(1, :n)")


def _problems_json(problems: Sequence[Problem]) -> str:
    return orjson.dumps([p.as_dict() for p in problems]).decode()


async def store_raw(conn: AsyncConnection, items: Sequence[Received]) -> list[int]:
    """Store received lists verbatim (status pending; the bytes and their state in one
    transaction, the caller's); their ids, in the order of `items`."""
    now = datetime.now(UTC)
    n = len(items)
    if not n:
        return []
    if conn.dialect.name == "sqlite":
        # from its first INSERT the transaction is the one writer, and each row takes the
        # largest id + 1: the batch's ids are the consecutive ones up to the last
        await insert_many(conn, raw_table, [
            {"received_at": now, "status": "pending", "job_id": i.job_id, "job_line": i.job_line} for i in items])
        last = int(await conn.scalar(_LAST_ROWID) or 0)
        ids = list(range(last - n + 1, last + 1))
    else:
        # the ids taken first (ascending, in the order of `items`), then both tables written
        # with one array per column, without a VALUES list of the batch's rows to parse
        ids = sorted((await conn.scalars(_NEW_IDS, {"n": n})).all())
        await insert_many(conn, raw_table, [
            {"id": rid, "received_at": now, "status": "pending", "job_id": i.job_id, "job_line": i.job_line}
            for rid, i in zip(ids, items, strict=True)])
    await insert_many(conn, verbatim, [
        {"id": i, "format": r.format, "caller_hospital": r.caller_hospital,
         "correlation_id": r.correlation_id, "raw": r.raw} for i, r in zip(ids, items, strict=True)])
    return ids


async def pending_ids(conn: AsyncConnection, received_before: datetime, after_id: int, limit: int) -> list[int]:
    """The ids (above `after_id`) of up to `limit` lists stored before `received_before` and not
    yet decided, oldest first."""
    return list((await conn.scalars(
        select(raw_table.c.id).where(raw_table.c.status == "pending", raw_table.c.id > after_id,
                                     raw_table.c.received_at < received_before)
        .order_by(raw_table.c.id).limit(limit))).all())


async def lock_pending(conn: AsyncConnection, ids: Sequence[int], *, skip_locked: bool = False) -> list[Stored]:
    """Of these stored lists, the ones still pending, locked until the transaction ends (on
    PostgreSQL; SQLite's one writer holds the whole database). Whoever decides a list takes it
    here first, so two deciders (a request and the sweep, or two replicas) never both decide it:
    the second finds it decided. `skip_locked`: leave the ones another transaction holds."""
    if not ids:
        return []
    q = (select(verbatim).join(raw_table, raw_table.c.id == verbatim.c.id)
         .where(raw_table.c.id.in_(list(ids)), raw_table.c.status == "pending")
         .order_by(raw_table.c.id).with_for_update(skip_locked=skip_locked, of=raw_table))
    return [Stored(r.id, r.format, r.raw, r.caller_hospital, r.correlation_id)
            for r in (await conn.execute(q)).all()]


async def lock_pending_ids(conn: AsyncConnection, ids: Sequence[int], *, skip_locked: bool = False) -> set[int]:
    """`lock_pending` for lists whose stored rows the caller holds already: only their ids
    (the verbatim bytes are not read back)."""
    if not ids:
        return set()
    q = (select(raw_table.c.id).where(raw_table.c.id.in_(list(ids)), raw_table.c.status == "pending")
         .order_by(raw_table.c.id).with_for_update(skip_locked=skip_locked))
    return set((await conn.scalars(q)).all())


async def outcomes(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, Outcome]:
    """The outcomes of lists already decided, as their stored rows say."""
    if not ids:
        return {}
    rows = (await conn.execute(select(raw_table.c.id, raw_table.c.status, raw_table.c.case_id,
                                      raw_table.c.list_version, raw_table.c.problems)
                               .where(raw_table.c.id.in_(list(ids))))).all()
    return {r.id: Outcome(r.id, r.status, r.case_id, r.list_version,
                          tuple(Problem(**p) for p in orjson.loads(r.problems or "[]"))) for r in rows}


async def unfinished_jobs(conn: AsyncConnection, idle_before: datetime) -> list[str]:
    """Import jobs never closed whose last list (or start) is older than `idle_before` and that
    have no list left pending, locked (skipping the ones another transaction holds)."""
    last = (select(func.max(raw_table.c.received_at)).where(raw_table.c.job_id == jobs.c.job_id)
            .scalar_subquery())
    still_pending = (select(raw_table.c.id).where(raw_table.c.job_id == jobs.c.job_id,
                                                  raw_table.c.status == "pending").exists())
    q = (select(jobs.c.job_id)
         .where(jobs.c.finished_at.is_(None), jobs.c.created_at < idle_before,
                func.coalesce(last, jobs.c.created_at) < idle_before, ~still_pending)
         .order_by(jobs.c.created_at).with_for_update(skip_locked=True, of=jobs))
    return list((await conn.scalars(q)).all())


async def job_counts(conn: AsyncConnection, job_id: str) -> dict[str, int]:
    """How many of a job's stored lists ended in each status."""
    rows = (await conn.execute(select(raw_table.c.status, func.count()).where(raw_table.c.job_id == job_id)
                               .group_by(raw_table.c.status))).all()
    return {r[0]: int(r[1]) for r in rows}


async def job(conn: AsyncConnection, job_id: str) -> Any | None:
    """An import job's row (None: no such job)."""
    return (await conn.execute(select(jobs).where(jobs.c.job_id == job_id))).first()


async def job_lines(conn: AsyncConnection, job_id: str, offset: int, limit: int) -> list[Any]:
    """The lines an import job stored (verbatim, each with its line in the upload), in the order
    they arrived: line, status, case id, list version and problems."""
    return list((await conn.execute(
        select(raw_table.c.job_line, raw_table.c.status, raw_table.c.case_id, raw_table.c.list_version,
               raw_table.c.problems)
        .where(raw_table.c.job_id == job_id).order_by(raw_table.c.id).offset(offset).limit(limit))).all())


async def pending_count(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """How many lists are stored but not decided yet, and when the oldest of them arrived."""
    n, oldest = (await conn.execute(
        select(func.count(), func.min(raw_table.c.received_at)).where(raw_table.c.status == "pending"))).one()
    return int(n or 0), oldest


def _latest(r: Any) -> Latest:
    return Latest(r.hospital_code, r.setl_id, r.list_version, r.status, r.content_sha256, r.event)


async def latest_versions(conn: AsyncConnection, keys: Iterable[Key]) -> dict[Key, Latest]:
    """The newest stored version of each of these lists (absent: never received)."""
    wanted = set(keys)
    # by the indexed case id; a case id names its key, but the hospital-setl_id split of an id
    # is ambiguous ("A-B"+"C" and "A"+"B-C"), so the rows are matched on the key
    case_ids = sorted({case_id_for(*key) for key in wanted})
    latest: dict[Key, Latest] = {}
    shared_ids: set[str] = set()
    for start in range(0, len(case_ids), _LOOKUP_CHUNK):
        chunk = case_ids[start:start + _LOOKUP_CHUNK]
        for r in (await conn.execute(_LATEST_BY_CASE_IDS, {"case_ids": chunk})).all():
            key = (r.hospital_code, r.setl_id)
            if key in wanted:
                latest[key] = _latest(r)
            shared_ids.add(r.case_id)
    # a key whose case id's newest version is another key's: its own newest, one by one (rare)
    for key in sorted(k for k in wanted - latest.keys() if case_id_for(*k) in shared_ids):
        row = (await conn.execute(latest_per_case(
            lists, "list_version", key="setl_id",
            where=and_(lists.c.hospital_code == key[0], lists.c.setl_id == key[1])))).first()
        if row is not None:
            latest[key] = _latest(row)
    return latest


async def save(conn: AsyncConnection, changes: Changes) -> None:
    """Store what a batch of decisions changed: one statement per table and kind of write."""
    now = datetime.now(UTC)
    await update_many(conn, raw_table, "id", [
        {"id": r.id, "status": r.status, "problems": _problems_json(r.problems) if r.problems else None,
         "hospital_code": r.hospital_code, "discharge_date": r.discharge_date, "case_id": r.case_id,
         "list_version": r.list_version, "declared_on": r.declared_on} for r in changes.raw])
    await insert_many(conn, lists, [
        {"case_id": v.envelope.case_id, "hospital_code": v.key[0], "setl_id": v.key[1],
         "list_version": v.list_version, "status": v.status,
         "raw_id": v.raw_id, "content_sha256": v.content_sha256, "event": v.event,
         "warnings": _problems_json(v.warnings), "received_at": now} for v in changes.versions])


async def start_job(conn: AsyncConnection, job_id: str, caller_hospital: str | None, fmt: str) -> None:
    await conn.execute(insert(jobs).values(job_id=job_id, created_at=datetime.now(UTC),
                                           caller_hospital=caller_hospital, format=fmt))


async def finish_job(conn: AsyncConnection, job_id: str, summary: dict[str, Any]) -> None:
    await conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(
        finished_at=datetime.now(UTC), summary=orjson.dumps(summary).decode()))


async def versions(conn: AsyncConnection, case_id: str) -> Sequence[Any]:
    """Every stored version of a case, oldest first, with the bytes it arrived as."""
    return (await conn.execute(
        select(lists.c.list_version, lists.c.status, lists.c.hospital_code, lists.c.received_at,
               lists.c.warnings, verbatim.c.format, verbatim.c.raw)
        .join(verbatim, verbatim.c.id == lists.c.raw_id)
        .where(lists.c.case_id == case_id).order_by(lists.c.list_version))).all()


async def decided_lists(conn: AsyncConnection, hospital: str | None) -> Sequence[Any]:
    """(hospital_code, discharge_date, declared_on, received_at, problems) of every decided list
    that names its hospital (what quality scores count), of one hospital or all."""
    q = select(raw_table.c.hospital_code, raw_table.c.discharge_date, raw_table.c.declared_on,
               raw_table.c.received_at, raw_table.c.problems).where(raw_table.c.status.in_(("accepted", "rejected", "duplicate")),
                                           raw_table.c.hospital_code.is_not(None))
    if hospital:
        q = q.where(raw_table.c.hospital_code == hospital)
    return (await conn.execute(q)).all()


async def count_lists(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(lists)) or 0)
