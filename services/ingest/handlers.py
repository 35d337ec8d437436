"""What ingest does with received lists: store them verbatim first, decide each, record the
accepted ones as versions and add their `case-received` events to the outbox.

`Intake` is the stage object the routes, `drgdip import` and the demo share. Receiving is two
transactions on purpose (one list per request, or one chunk of a bulk import): the verbatim
bytes are committed first, before anything else happens, then the lists are decided and their
versions and `case-received` events recorded together. A database that stops answering is
waited for (capped back-off, up to `db_wait_s`; then the request is answered 503
`DATABASE_UNAVAILABLE`); a list whose deciding was cut short all the same (a crash, a longer
outage) stays stored as `pending` and is finished by the periodic sweep (`Intake.sweep`, also run
at start), which also closes import jobs that were left open; a list that cannot be recorded
at all is marked rejected with the reason (`INGEST_FAILED`), so no list is retried forever and
the others of its batch are kept.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

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
from shared.db import Backoff, is_transient
from shared.errors import Unavailable, detail
from shared.messaging import Outbox
from shared.periods import CST

CHUNK = 500  # lists per transaction in bulk imports and at recovery
log = structlog.get_logger("ingest")
T = TypeVar("T")


class Intake:
    """Receiving lists: store verbatim, then decide, then record versions and events."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox, settings: IngestSettings,
                 dictionaries: qc.Dictionaries | None) -> None:
        self.engine, self.outbox, self.settings, self.dictionaries = engine, outbox, settings, dictionaries
        self.limits = settings.limits()
        self._deciding: set[int] = set()  # stored lists this process is deciding now: not the sweep's
        self.importing: set[str] = set()  # import jobs this process is running now

    async def receive(self, items: Sequence[Received]) -> list[Outcome]:
        """Store `items` verbatim (committed), then decide and record them (committed), and wake
        the outbox relay."""
        async def store() -> list[int]:
            async with self.engine.begin() as conn:
                return await repository.store_raw(conn, items)

        ids = await self.waiting_for_database(store, job_id=items[0].job_id if items else None)
        self._deciding.update(ids)
        try:
            outcomes = await self.finish([Stored(i, r.format, r.raw, r.caller_hospital, r.correlation_id)
                                          for i, r in zip(ids, items, strict=True)], job_id=items[0].job_id)
        finally:
            self._deciding.difference_update(ids)
        self.announce()
        return outcomes

    async def waiting_for_database(self, work: Callable[[], Awaitable[T]], job_id: str | None = None) -> T:
        """`work()` (one transaction), tried again while the database is away (capped
        exponential back-off) for up to `db_wait_s`; then `Unavailable` (503
        `DATABASE_UNAVAILABLE`, naming the import job when there is one)."""
        backoff = Backoff(self.settings.transient_retry_ms, self.settings.transient_retry_max_ms)
        deadline = time.monotonic() + self.settings.db_wait_s
        while True:
            try:
                return await work()
            except Exception as e:
                if not is_transient(e):
                    raise
                delay = backoff.next_delay()
                if time.monotonic() + delay > deadline:
                    log.warning("ingest.database_unavailable", error=type(e).__name__, job_id=job_id)
                    extra = {"job_id": job_id} if job_id else {}
                    raise Unavailable(
                        "the database is not answering; the lists received so far are kept and "
                        "will be processed" + (f" (import job {job_id})" if job_id else ""),
                        code="DATABASE_UNAVAILABLE",
                        details=[detail(None, "DATABASE_UNAVAILABLE", "try again later", **extra)],
                    ) from e
                log.warning("ingest.database_away_retrying", error=type(e).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)

    async def finish(self, rows: Sequence[Stored], *, sweeping: bool = False,
                     job_id: str | None = None) -> list[Outcome]:
        """Decide and record stored lists in one transaction; when that fails by content, each
        list in its own, and a list that cannot be recorded even alone is marked rejected with
        the reason (so the sweep never meets it again). A list someone else decided meanwhile
        (the sweep, another replica) is not decided again: its stored outcome is returned."""
        async def decide_pending() -> list[Outcome]:
            async with self.engine.begin() as conn:
                locked = await repository.lock_pending_ids(conn, [r.id for r in rows], skip_locked=sweeping)
                todo = [r for r in rows if r.id in locked]
                done = {o.raw_id: o for o in await self.process(conn, todo)} if todo else {}
                if sweeping:
                    return list(done.values())
                done |= await repository.outcomes(conn, [r.id for r in rows if r.id not in done])
                return [done[r.id] for r in rows]

        try:
            return await self.waiting_for_database(decide_pending, job_id)
        except Unavailable:
            raise  # the lists stay pending: the sweep finishes them once the database is back
        except Exception as e:
            if len(rows) == 1:
                log.exception("ingest.decide_failed", raw_id=rows[0].id)
                return [await self._fail(rows[0])]
            log.warning("ingest.batch_failed_by_content", lists=len(rows), reason=type(e).__name__,
                        exc_info=True)
        return [o for row in rows for o in await self.finish([row], sweeping=sweeping, job_id=job_id)]

    async def _fail(self, row: Stored) -> Outcome:
        reason = problem("body", "INGEST_FAILED", "结算清单无法处理，已拒收",
                         "the list could not be processed and is rejected")
        changes = Changes({}, producer=repository.NAME)
        changes.mark(row.id, "rejected", problems=[reason])

        async def mark() -> None:
            async with self.engine.begin() as conn:
                await repository.save(conn, changes)

        await self.waiting_for_database(mark)
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

    async def sweep(self, *, idle_before: datetime | None = None) -> int:
        """Finish what was left undone (run at start and every `sweep_interval_s`): lists stored
        but never decided (a crash or a database outage in between), one transaction per chunk,
        and import jobs left open (their client gone) with no list received since `idle_before`
        (default: `import_idle_s` ago), closed with the counts of the lists they kept. Safe with
        several replicas: each list and job is taken under a lock that the others skip."""
        now = datetime.now(UTC)
        finished = 0
        after = 0  # the sweep moves on past lists it could not take (another replica holds them)
        while True:
            ids = [i for i in await self.waiting_for_database(partial(self._pending_ids, now, after))
                   if i not in self._deciding]
            if not ids:
                break
            after = ids[-1]
            rows = await self.waiting_for_database(partial(self._unlocked_pending, ids))
            done = await self.finish(rows, sweeping=True)
            finished += len(done)
            self.announce()
        if finished:
            log.warning("ingest.sweep_finished_pending_lists", lists=finished)
        cutoff = idle_before or now - timedelta(seconds=self.settings.import_idle_s)
        for job_id in await self.waiting_for_database(lambda: self._close_jobs(cutoff)):
            log.warning("ingest.sweep_closed_interrupted_job", job_id=job_id)
        return finished

    async def _pending_ids(self, received_before: datetime, after: int) -> list[int]:
        async with self.engine.connect() as conn:
            return await repository.pending_ids(conn, received_before, after, CHUNK + len(self._deciding))

    async def _unlocked_pending(self, ids: Sequence[int]) -> list[Stored]:
        async with self.engine.connect() as conn:
            return await repository.lock_pending(conn, ids, skip_locked=True)

    async def _close_jobs(self, idle_before: datetime) -> list[str]:
        closed = []
        async with self.engine.begin() as conn:
            for job_id in await repository.unfinished_jobs(conn, idle_before):
                if job_id in self.importing:
                    continue
                counts = await repository.job_counts(conn, job_id)
                await repository.finish_job(conn, job_id, {
                    **{s: counts.get(s, 0) for s in ("accepted", "duplicate", "rejected")},
                    "kept": sum(counts.values()), "interrupted": True})
                closed.append(job_id)
        return closed

    async def sweep_forever(self) -> None:
        """`sweep` every `sweep_interval_s`; a failure is logged and the next round tries again."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("ingest.sweep_failed", error=type(e).__name__, message=str(e)[:200])


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

    async def start() -> None:
        async with intake.engine.begin() as conn:
            await repository.start_job(conn, job_id, caller, fmt)

    await intake.waiting_for_database(start)
    intake.importing.add(job_id)
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
    away = False
    try:
        async for line, raw in _lines(chunks, fmt, declared, intake.limits.line_bytes):
            if isinstance(raw, Problem):
                counts["rejected"] += 1
                results.append({"line": line, "status": "rejected", "problems": [raw.as_dict()]})
                if progress:
                    progress(1)
                continue
            pending.append((line, Received("flat" if fmt == "csv" else "native", raw, caller, job_id=job_id,
                                              job_line=line)))
            if len(pending) >= CHUNK:
                await flush()
        if pending:
            await flush()
    except csvformat.EncodingRefused as e:
        error = e.message
        raise
    except Unavailable:
        # the database stayed away: the job stays open, the lists kept so far stay stored and
        # the sweep decides them and closes the job (the client has its id in the 503)
        away = True
        raise
    finally:
        lines = sum(counts.values())
        try:
            if not away:
                await intake.waiting_for_database(lambda: _close_job(intake, job_id, {
                    **counts, "lines": lines} | ({"error": error} if error else {})), job_id)
        finally:
            intake.importing.discard(job_id)
    results.sort(key=lambda r: int(r["line"]))
    return {"job_id": job_id, "lines": lines, **counts, "rejections": results}


async def _close_job(intake: Intake, job_id: str, summary: dict[str, Any]) -> None:
    async with intake.engine.begin() as conn:
        await repository.finish_job(conn, job_id, summary)


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

