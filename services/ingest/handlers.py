"""What ingest does with received lists: store them verbatim first, decide each, record the
accepted ones as versions and add their `case-received` events to the outbox.

`Intake` is the stage object the routes, `drgdip import` and the demo share. Receiving is two
transactions on purpose (one list per request, or one chunk of a bulk import): the verbatim
bytes are committed first, before anything else happens, then the lists are decided and their
versions and `case-received` events recorded together. A list whose deciding was cut short by a
crash (or a database that stopped answering) stays stored as `pending` and is finished at
start-up (`Intake.recover`); a list that cannot be recorded at all is marked rejected with the
reason (`INGEST_FAILED`), so no list is retried forever and the others of its batch are kept.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ingest import repository
from services.ingest.config import IngestSettings
from services.ingest.domain import csvformat, qc
from services.ingest.domain.intake import (
    Changes,
    Outcome,
    Received,
    Stored,
    decide,
    keys_to_look_up,
    problem,
    record,
)
from services.ingest.domain.limits import too_large
from services.ingest.domain.national import Problem
from services.ingest.domain.quality import CST
from shared.db import TRANSIENT_ERRORS
from shared.messaging import Outbox

CHUNK = 500  # lists per transaction in bulk imports and at recovery
log = structlog.get_logger("ingest")


class Intake:
    """Receiving lists: store verbatim, then decide, then record versions and events."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox, settings: IngestSettings,
                 dictionaries: qc.Dictionaries | None) -> None:
        self.engine, self.outbox, self.settings, self.dictionaries = engine, outbox, settings, dictionaries
        self.limits = settings.limits()

    async def receive(self, items: Sequence[Received]) -> list[Outcome]:
        """Store `items` verbatim (committed), then decide and record them (committed), and wake
        the outbox relay."""
        async with self.engine.begin() as conn:
            ids = await repository.store_raw(conn, items)
        outcomes = await self.finish([Stored(i, r.format, r.raw, r.caller_hospital, r.correlation_id)
                                      for i, r in zip(ids, items, strict=True)])
        self.announce()
        return outcomes

    async def finish(self, rows: Sequence[Stored]) -> list[Outcome]:
        """Decide and record stored lists in one transaction; when that fails, each list in its
        own, and a list that cannot be recorded even alone is marked rejected with the reason
        (so start-up recovery never meets it again)."""
        try:
            async with self.engine.begin() as conn:
                return await self.process(conn, rows)
        except TRANSIENT_ERRORS:
            raise  # the database is not answering: the lists stay pending, finished at start-up
        except Exception:
            if len(rows) == 1:
                log.exception("ingest.decide_failed", raw_id=rows[0].id)
                return [await self._fail(rows[0])]
            log.warning("ingest.batch_failed", lists=len(rows), exc_info=True)
        return [o for row in rows for o in await self.finish([row])]

    async def _fail(self, row: Stored) -> Outcome:
        reason = problem("body", "INGEST_FAILED", "结算清单无法处理，已拒收",
                         "the list could not be processed and is rejected")
        changes = Changes({}, producer=repository.NAME)
        changes.mark(row.id, "rejected", problems=[reason])
        async with self.engine.begin() as conn:
            await repository.save(conn, changes)
        return Outcome(row.id, "rejected", problems=(reason,))

    async def process(self, conn: AsyncConnection, rows: Sequence[Stored]) -> list[Outcome]:
        """Decide stored lists and record the changes with their events: each table is read
        once and written once per batch."""
        today = datetime.now(CST).date()
        # deciding and recording a chunk is CPU work (parsing, QC, hashing): off the event loop,
        # which keeps serving other requests meanwhile
        decided = await asyncio.to_thread(
            lambda: [(row, decide(row, self.dictionaries, self.limits, today)) for row in rows])
        latest = await repository.latest_versions(conn, keys_to_look_up(d for _row, d in decided))
        changes = Changes(latest, producer=repository.NAME)
        outcomes = await asyncio.to_thread(
            lambda: [record(row, d, changes, self.settings.psn_key_secret) for row, d in decided])
        await repository.save(conn, changes)
        await self.outbox.add(conn, changes.events)
        return outcomes

    def announce(self) -> None:
        """Wake the outbox relay: call once the transaction that added events has committed."""
        self.outbox.wakeup.set()

    async def recover(self) -> int:
        """Finish lists stored before a crash but never decided (start-up: one transaction per
        chunk; a list that cannot be finished is marked rejected, never retried forever)."""
        async with self.engine.connect() as conn:
            rows = await repository.pending(conn)
        for start in range(0, len(rows), CHUNK):
            await self.finish(rows[start:start + CHUNK])
            self.announce()
        return len(rows)


async def import_stream(intake: Intake, chunks: AsyncIterator[bytes], fmt: str, caller: str | None,
                        progress: Any = None, encoding: str | None = None) -> dict[str, Any]:
    """Import JSON Lines or CSV from an async byte stream: one transaction per CHUNK lists (so a
    long import never holds the database), and one each to open and close the job. A line that
    is not a list (too large, undecodable, malformed CSV) is reported, not stored; the job is
    closed even when the whole import is refused (an unreadable encoding)."""
    declared = csvformat.codec(encoding)
    if fmt != "csv" and declared not in (None, "utf-8"):
        raise csvformat.EncodingRefused("JSON Lines are UTF-8", field="encoding")
    job_id = uuid.uuid4().hex[:16]
    async with intake.engine.begin() as conn:
        await repository.start_job(conn, job_id, caller, fmt)
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

    error: str | None = None
    try:
        async for line, raw in _lines(chunks, fmt, declared, intake.limits.line_bytes):
            if isinstance(raw, Problem):
                counts["rejected"] += 1
                results.append({"line": line, "status": "rejected", "problems": [raw.as_dict()]})
                if progress:
                    progress(1)
                continue
            pending.append((line, Received("flat" if fmt == "csv" else "native", raw, caller, job_id=job_id)))
            if len(pending) >= CHUNK:
                await flush()
        if pending:
            await flush()
    except csvformat.EncodingRefused as e:
        error = e.message
        raise
    finally:
        lines = sum(counts.values())
        async with intake.engine.begin() as conn:
            await repository.finish_job(conn, job_id, {**counts, "lines": lines}
                                        | ({"error": error} if error else {}))
    results.sort(key=lambda r: int(r["line"]))
    return {"job_id": job_id, "lines": lines, **counts, "rejections": results}


async def _lines(chunks: AsyncIterator[bytes], fmt: str, encoding: str | None,
                 limit: int) -> AsyncIterator[tuple[int, bytes | Problem]]:
    """(line number, raw bytes of one list or the problem of that line) from a byte stream;
    CSV rows become JSON objects. Each line is bounded as it streams."""
    if fmt == "csv":
        reader = csvformat.CsvReader(encoding, limit)
        async for chunk in chunks:
            for line, doc in reader.feed(chunk):
                yield line, doc if isinstance(doc, Problem) else orjson.dumps(doc)
            await asyncio.sleep(0)  # parsing is CPU work: yield between chunks
        for line, doc in reader.close():
            yield line, doc if isinstance(doc, Problem) else orjson.dumps(doc)
        return
    lines = csvformat.Lines(limit)

    def out(line: int, raw: bytes | None) -> tuple[int, bytes | Problem] | None:
        if raw is None:
            return line, too_large("line", None, limit)
        return (line, raw) if raw.strip() else None

    async for chunk in chunks:
        for line, raw in lines.feed(chunk):
            if (item := out(line, raw)) is not None:
                yield item
    for line, raw in lines.close():
        if (item := out(line, raw)) is not None:
            yield item


def file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    """An async byte stream over a file, for `drgdip import`."""
    async def gen() -> AsyncIterator[bytes]:
        with path.open("rb") as fh:
            while chunk := fh.read(size):
                yield chunk
    return gen()

