"""Ingest service: stores every received list verbatim first, then checks it and announces it.

Two transactions per batch of lists: the first stores the raw bytes (status `pending`); the
second parses, runs quality control and, for an accepted list, writes its version and the
`case-received` event (outbox) together. A crash between the two leaves `pending` rows that
`Intake.recover` finishes at the next start, so nothing received is lost and nothing is
announced twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ingest import core, csvformat, qc, quality
from services.ingest import national as nat
from services.ingest.config import IngestSettings
from shared.db import insert_many, update_many
from shared.errors import DomainError
from shared.events import CaseReceived, Envelope
from shared.messaging import Outbox
from shared.runtime import Context, Stage

NAME = "ingest"
CHUNK = 500  # lists per transaction in bulk imports
_ID = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()
raw_table = Table(
    "ingest_raw", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("format", String(8), nullable=False),
    Column("caller_hospital", String(32), nullable=True),
    Column("raw", LargeBinary, nullable=False),
    Column("status", String(12), nullable=False),  # pending | accepted | duplicate | rejected
    Column("hospital_code", String(32), nullable=True),
    Column("discharge_date", Date, nullable=True),
    Column("problems", Text, nullable=True),
    Column("case_id", String(100), nullable=True),
    Column("list_version", Integer, nullable=True),
    Column("job_id", String(32), nullable=True),
    Column("correlation_id", String(64), nullable=False),
)
lists = Table(
    "ingest_lists", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
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


_BY_CASE_IDS = select(lists).where(lists.c.case_id.in_(bindparam("case_ids", expanding=True)))


@dataclass(frozen=True)
class Received:
    """Bytes as they arrived, with who sent them."""

    format: str
    raw: bytes
    caller_hospital: str | None = None
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    job_id: str | None = None


@dataclass(frozen=True)
class _Stored:
    """A received list as stored in transaction 1 (status pending)."""

    id: int
    format: str
    raw: bytes
    caller_hospital: str | None
    correlation_id: str


@dataclass(frozen=True)
class Outcome:
    raw_id: int
    status: str  # accepted | duplicate | withdrawn | rejected
    case_id: str | None = None
    list_version: int | None = None
    problems: tuple[nat.Problem, ...] = ()
    forbidden: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.case_id:
            out |= {"case_id": self.case_id, "list_version": self.list_version}
        if self.problems:
            out["problems"] = [p.as_dict() for p in self.problems]
        return out


def _problems_json(problems: Sequence[nat.Problem]) -> str:
    return orjson.dumps([p.as_dict() for p in problems]).decode()


class Intake:
    """Receiving lists: store verbatim, then decide, then record versions and events."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox, settings: IngestSettings,
                 dictionaries: qc.Dictionaries | None) -> None:
        self.engine, self.outbox, self.settings, self.dictionaries = engine, outbox, settings, dictionaries

    async def receive(self, items: Sequence[Received]) -> list[Outcome]:
        ids = await self.store(items)
        return await self.process([_Stored(i, r.format, r.raw, r.caller_hospital, r.correlation_id)
                                   for i, r in zip(ids, items, strict=True)])

    async def store(self, items: Sequence[Received]) -> list[int]:
        """Transaction 1: the bytes, verbatim, before anything else happens."""
        now = datetime.now(UTC)
        rows = [{"received_at": now, "format": i.format, "caller_hospital": i.caller_hospital, "raw": i.raw,
                 "status": "pending", "job_id": i.job_id, "correlation_id": i.correlation_id} for i in items]
        async with self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # SQLite does not promise RETURNING's order, so `sort_by_parameter_order` would make
                # SQLAlchemy insert row by row. Holding the write lock, a multi-row INSERT numbers
                # its rows in order (each page after the last), so the sorted ids are in order too.
                result = await conn.execute(insert(raw_table).returning(raw_table.c.id), rows)
                return sorted(int(r[0]) for r in result.all())
            result = await conn.execute(
                insert(raw_table).returning(raw_table.c.id, sort_by_parameter_order=True), rows)
            return [int(r[0]) for r in result.all()]

    async def recover(self) -> int:
        """Finish lists stored before a crash but never decided."""
        async with self.engine.connect() as conn:
            pending = [_Stored(r.id, r.format, r.raw, r.caller_hospital, r.correlation_id)
                       for r in (await conn.execute(
                           select(raw_table).where(raw_table.c.status == "pending").order_by(raw_table.c.id)
                       )).all()]
        for start in range(0, len(pending), CHUNK):
            await self.process(pending[start:start + CHUNK])
        return len(pending)

    async def process(self, rows: Sequence[_Stored]) -> list[Outcome]:
        """Transaction 2: decide each stored list and record the accepted ones with their events."""
        async with self.engine.begin() as conn:
            decided = [(row, self._decide(row)) for row in rows]
            keys: list[tuple[str, str]] = []
            for _row, d in decided:
                if isinstance(d, core.Accepted):
                    keys.append((d.fields.hospital_code, d.fields.setl_id))
                elif isinstance(d, core.Withdrawal):
                    keys.extend((d.hospital_code, setl) for _psn, setl in d.items)
            writes = _Writes(await self._latest_versions(conn, keys))
            outcomes = [self._record(row, decision, writes) for row, decision in decided]
            await writes.flush(conn, self.outbox)
        self.outbox.wakeup.set()
        return outcomes

    def _decide(self, row: Any) -> core.Decision:
        try:  # an import stores each CSV row as its JSON object, so every format is JSON here
            doc = orjson.loads(row.raw)
        except orjson.JSONDecodeError as e:
            return core.Rejected([core.problem("body", "MALFORMED_JSON", f"不是合法的 JSON：{e}",
                                               f"body is not valid JSON: {e}")])
        return core.evaluate(row.format, doc, caller_hospital=row.caller_hospital,
                             dictionaries=self.dictionaries)

    async def _latest_versions(self, conn: AsyncConnection,
                               keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        wanted = set(keys)
        # by the indexed case id (one cached statement); a case id names its key, but the
        # hospital-setl_id split of an id is ambiguous, so the rows are matched on the key
        case_ids = sorted({core.case_id_for(*key) for key in wanted})
        latest: dict[tuple[str, str], Any] = {}
        for start in range(0, len(case_ids), 500):
            chunk = case_ids[start:start + 500]
            for r in (await conn.execute(_BY_CASE_IDS, {"case_ids": chunk})).all():
                key = (r.hospital_code, r.setl_id)
                if key in wanted and (key not in latest or r.list_version > latest[key].list_version):
                    latest[key] = r
        return latest

    def _record(self, row: Any, decision: core.Decision, w: _Writes) -> Outcome:
        """What one decided list changes; written by `_Writes.flush` in one go per batch."""
        if isinstance(decision, core.Rejected):
            w.mark(row.id, "rejected", problems=decision.problems, hospital=decision.hospital_code,
                   discharge=decision.discharge_date)
            return Outcome(row.id, "rejected", problems=tuple(decision.problems), forbidden=decision.forbidden)

        if isinstance(decision, core.Withdrawal):
            problems: list[nat.Problem] = []
            last_case: tuple[str | None, int | None] = (None, None)
            for i, (_psn, setl_id) in enumerate(decision.items):
                key = (decision.hospital_code, setl_id)
                prev = w.latest.get(key)
                if prev is None:
                    problems.append(core.problem(f"input.data.stastinfo[{i}].setl_id", "UNKNOWN_LIST",
                                                 f"未找到结算清单 {setl_id}", f"no list {setl_id} to withdraw"))
                    continue
                if prev.status == "withdrawn":
                    last_case = (core.case_id_for(*key), prev.list_version)
                    continue
                payload = CaseReceived.model_validate_json(prev.event)
                payload = payload.model_copy(update={"facts": payload.facts.model_copy(
                    update={"list_version": prev.list_version + 1, "withdrawn": True})})
                w.add_version(row, key, "withdrawn", prev.content_sha256, payload, [])
                last_case = (core.case_id_for(*key), prev.list_version + 1)
            if problems:
                # nothing of a partly unknown withdrawal is applied: the transaction rolls back
                raise _WithdrawalRejected(row.id, problems)
            w.mark(row.id, "accepted", hospital=decision.hospital_code, case_id=last_case[0], version=last_case[1])
            return Outcome(row.id, "withdrawn", last_case[0], last_case[1])

        f = decision.fields
        key = (f.hospital_code, f.setl_id)
        case_id = core.case_id_for(*key)
        prev = w.latest.get(key)
        if prev is not None and prev.content_sha256 == decision.content_sha256 and prev.status == "active":
            # an identical resubmission: the same case, no new version, no new event
            w.mark(row.id, "duplicate", hospital=f.hospital_code, discharge=f.discharge_date,
                   case_id=case_id, version=prev.list_version)
            return Outcome(row.id, "duplicate", case_id, prev.list_version, tuple(decision.warnings))
        version = (prev.list_version + 1) if prev is not None else 1
        payload = core.case_received(f, list_version=version,
                                     psn_key=core.person_key(f.psn_no, self.settings.psn_key_secret),
                                     treatment_region=decision.treatment_region)
        w.add_version(row, key, "active", decision.content_sha256, payload, decision.warnings)
        w.mark(row.id, "accepted", problems=decision.warnings, hospital=f.hospital_code,
               discharge=f.discharge_date, case_id=case_id, version=version)
        return Outcome(row.id, "accepted", case_id, version, tuple(decision.warnings))


@dataclass
class _Writes:
    """The rows one batch of decisions writes, gathered so each table gets one statement."""

    latest: dict[tuple[str, str], Any]
    raw_updates: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    events: list[Envelope] = field(default_factory=list)

    def mark(self, raw_id: int, status: str, *, problems: Sequence[nat.Problem] = (),
             hospital: str | None = None, discharge: date | None = None, case_id: str | None = None,
             version: int | None = None) -> None:
        self.raw_updates.append({
            "id": raw_id, "status": status, "problems": _problems_json(problems) if problems else None,
            "hospital_code": hospital, "discharge_date": discharge, "case_id": case_id, "list_version": version})

    def add_version(self, row: Any, key: tuple[str, str], status: str, digest: str, payload: CaseReceived,
                    warnings: Sequence[nat.Problem]) -> None:
        case_id = core.case_id_for(*key)
        envelope = Envelope.new(payload, case_id=case_id, correlation_id=row.correlation_id, producer=NAME)
        # the payload as JSON once: the same text as `payload.model_dump_json()` (tested), which
        # would serialise the model a second time
        event = orjson.dumps(envelope.payload).decode()
        self.versions.append({
            "case_id": case_id, "hospital_code": key[0], "setl_id": key[1],
            "list_version": payload.facts.list_version, "status": status, "raw_id": row.id,
            "content_sha256": digest, "event": event, "warnings": _problems_json(warnings),
            "received_at": datetime.now(UTC)})
        self.latest[key] = _Latest(key[0], key[1], payload.facts.list_version, status, digest, event)
        self.events.append(envelope)

    async def flush(self, conn: AsyncConnection, outbox: Outbox) -> None:
        await update_many(conn, raw_table, "id", self.raw_updates)
        await insert_many(conn, lists, self.versions)
        await outbox.add(conn, self.events)


@dataclass(frozen=True)
class _Latest:
    hospital_code: str
    setl_id: str
    list_version: int
    status: str
    content_sha256: str
    event: str


class _WithdrawalRejected(Exception):
    def __init__(self, raw_id: int, problems: list[nat.Problem]) -> None:
        super().__init__("withdrawal of an unknown list")
        self.raw_id, self.problems = raw_id, problems


def _score(s: quality.QualityScore) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, str | int) else v) for k, v in s.__dict__.items()}


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, IngestSettings) else IngestSettings()
    outbox = Outbox(NAME, metadata)
    dictionaries = qc.load_dictionaries(settings.dictionary_scheme) if settings.dictionary_scheme else None
    intake = Intake(ctx.engine, outbox, settings, dictionaries)

    async def on_start() -> None:
        await intake.recover()

    async def receive_one(fmt: str, request: Request, caller: str | None, cid: str | None) -> Outcome:
        item = Received(fmt, await request.body(), caller, cid) if cid else Received(fmt, await request.body(), caller)
        try:
            return (await intake.receive([item]))[0]
        except _WithdrawalRejected as e:
            async with ctx.engine.begin() as conn:
                await conn.execute(update(raw_table).where(raw_table.c.id == e.raw_id).values(
                    status="rejected", problems=_problems_json(e.problems)))
            return Outcome(e.raw_id, "rejected", problems=tuple(e.problems))

    router = APIRouter(tags=["ingest"])

    @router.post("/settlement-lists", status_code=202)
    async def submit(request: Request, x_correlation_id: str | None = Header(None),
                     x_drgdip_hospital: str | None = Header(None)) -> JSONResponse:
        """One list in the native form (the 4101 `input` node)."""
        outcome = await receive_one("native", request, x_drgdip_hospital, x_correlation_id)
        if outcome.status == "rejected":
            first = outcome.problems[0]
            status, code = (403, "HOSPITAL_MISMATCH") if outcome.forbidden else (422, "LIST_REJECTED")
            raise DomainError(f"{first.field}: {first.message_en}", code=code, status=status, field=first.field, details=[p.as_dict() for p in outcome.problems])
        return JSONResponse(outcome.to_dict(), status_code=202 if outcome.status == "accepted" else 200)

    @router.post("/hsa/{infno}")
    async def national(infno: str, request: Request, x_correlation_id: str | None = Header(None),
                       x_drgdip_hospital: str | None = Header(None)) -> dict:
        """The national interfaces 4101, 4101A and 4102, answered in the national shape."""
        if infno not in ("4101", "4101A", "4102"):
            return nat.failure_reply([core.problem("infno", "NAT-INFNO", f"不支持的交易编号 {infno}",
                                                   f"unsupported interface {infno}")])
        outcome = await receive_one(infno, request, x_drgdip_hospital, x_correlation_id)
        if outcome.status == "rejected":
            return nat.failure_reply(outcome.problems)
        return nat.success_reply(outcome.case_id or "", [p for p in outcome.problems if p.severity == "warning"])

    @router.post("/settlement-lists:import")
    async def bulk_import(request: Request, format: str = "jsonl",
                          x_drgdip_hospital: str | None = Header(None)) -> dict:
        """A streamed bulk upload: JSON Lines of native lists, or CSV (`format=csv`)."""
        if format not in ("jsonl", "csv"):
            raise DomainError("format must be jsonl or csv", code="INVALID_FIELD", status=422, field="format")
        summary = await import_stream(intake, request.stream(), format, x_drgdip_hospital)
        return summary

    @router.get("/settlement-lists/{case_id}/versions")
    async def versions(case_id: str, x_drgdip_hospital: str | None = Header(None)) -> dict:
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(
                select(lists.c.list_version, lists.c.status, lists.c.hospital_code, lists.c.received_at,
                       lists.c.warnings, raw_table.c.format, raw_table.c.raw)
                .join(raw_table, raw_table.c.id == lists.c.raw_id)
                .where(lists.c.case_id == case_id).order_by(lists.c.list_version))).all()
        if not rows or (x_drgdip_hospital is not None and rows[0].hospital_code != x_drgdip_hospital):
            raise DomainError(f"no list {case_id!r}", code="CASE_NOT_FOUND", status=404, field="case_id")
        return {"case_id": case_id, "versions": [
            {"list_version": r.list_version, "status": r.status, "received_at": r.received_at.isoformat(),
             "format": r.format, "warnings": orjson.loads(r.warnings), "raw": r.raw.decode("utf-8", "replace")}
            for r in rows]}

    @router.get("/quality")
    async def quality_scores(month: str | None = None, hospital: str | None = None,
                             x_drgdip_hospital: str | None = Header(None)) -> dict:
        """时效性, 完整度, 合格率, 准确性 per hospital and month of discharge."""
        hospital = x_drgdip_hospital or hospital
        q = select(raw_table.c.hospital_code, raw_table.c.discharge_date, raw_table.c.received_at,
                   raw_table.c.problems).where(raw_table.c.status.in_(("accepted", "rejected", "duplicate")),
                                               raw_table.c.hospital_code.is_not(None))
        if hospital:
            q = q.where(raw_table.c.hospital_code == hospital)
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        records = []
        for r in rows:
            if r.discharge_date is None:
                continue
            m = f"{r.discharge_date:%Y-%m}"
            if month and m != month:
                continue
            problems = [nat.Problem(**p) for p in orjson.loads(r.problems)] if r.problems else []
            records.append(quality.ListRecord(r.hospital_code, m, r.discharge_date, r.received_at, problems))
        return {"scores": [_score(s) for s in quality.score_quality(records)]}

    @router.get("/lists/count")
    async def count() -> dict:
        async with ctx.engine.connect() as conn:
            return {"lists": await conn.scalar(select(func.count()).select_from(lists))}

    return Stage(NAME, metadata, outbox, router=router, on_start=on_start, service=intake)


async def import_stream(intake: Intake, chunks: Any, fmt: str, caller: str | None,
                        progress: Any = None) -> dict[str, Any]:
    """Import JSON Lines or CSV from an async byte stream, CHUNK lists per transaction."""
    job_id = uuid.uuid4().hex[:16]
    async with intake.engine.begin() as conn:
        await conn.execute(insert(jobs).values(job_id=job_id, created_at=datetime.now(UTC),
                                               caller_hospital=caller, format=fmt))
    results: list[dict[str, Any]] = []
    counts = {"accepted": 0, "duplicate": 0, "withdrawn": 0, "rejected": 0}
    pending: list[tuple[int, Received]] = []

    async def flush() -> None:
        outcomes = await intake.receive([r for _n, r in pending])
        for (line, _r), o in zip(pending, outcomes, strict=True):
            counts[o.status] += 1
            if o.status == "rejected":
                results.append({"line": line, **o.to_dict()})
        if progress:
            progress(len(pending))
        pending.clear()

    async for line, raw in _lines(chunks, fmt):
        pending.append((line, Received("flat" if fmt == "csv" else "native", raw, caller, job_id=job_id)))
        if len(pending) >= CHUNK:
            await flush()
    if pending:
        await flush()
    summary = {"job_id": job_id, "lines": sum(counts.values()), **counts, "rejections": results}
    async with intake.engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(
            finished_at=datetime.now(UTC), summary=orjson.dumps({**counts, "lines": summary["lines"]}).decode()))
    return summary


async def _lines(chunks: Any, fmt: str) -> Any:
    """(line number, raw bytes of one list) from a byte stream; CSV rows become JSON objects."""
    if fmt == "csv":
        text = b"".join([c async for c in chunks]).decode("utf-8-sig")
        for line, doc in csvformat.rows(text):
            yield line, orjson.dumps(doc)
        return
    buffer, line = b"", 0
    async for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            line += 1
            if raw.strip():
                yield line, raw
    if buffer.strip():
        yield line + 1, buffer


def file_chunks(path: Path, size: int = 1 << 20) -> Any:
    """An async byte stream over a file, for `drgdip import`."""
    async def gen() -> Any:
        with path.open("rb") as fh:
            while chunk := fh.read(size):
                yield chunk
    return gen()
