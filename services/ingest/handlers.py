"""What ingest does with received lists: store them verbatim first, decide each, record the
accepted ones as versions and add their `case-received` events to the outbox.

`Intake` is the stage object the routes, `drgdip import` and the demo share. Receiving is two
transactions on purpose (one list per request, or one chunk of a bulk import): the verbatim
bytes are committed first, before anything else happens, then the lists are decided and their
versions and `case-received` events recorded together. A list whose deciding failed or was cut
short by a crash stays stored as `pending` and is finished at start-up (`Intake.recover`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
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
    record,
)
from shared.messaging import Outbox

CHUNK = 500  # lists per transaction in bulk imports and at recovery


class Intake:
    """Receiving lists: store verbatim, then decide, then record versions and events."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox, settings: IngestSettings,
                 dictionaries: qc.Dictionaries | None) -> None:
        self.engine, self.outbox, self.settings, self.dictionaries = engine, outbox, settings, dictionaries

    async def receive(self, items: Sequence[Received]) -> list[Outcome]:
        """Store `items` verbatim (committed), then decide and record them (committed), and wake
        the outbox relay."""
        async with self.engine.begin() as conn:
            ids = await repository.store_raw(conn, items)
        async with self.engine.begin() as conn:
            outcomes = await self.process(conn, [
                Stored(i, r.format, r.raw, r.caller_hospital, r.correlation_id)
                for i, r in zip(ids, items, strict=True)])
        self.announce()
        return outcomes

    async def process(self, conn: AsyncConnection, rows: Sequence[Stored]) -> list[Outcome]:
        """Decide stored lists and record the changes with their events: each table is read
        once and written once per batch."""
        decided = [(row, decide(row, self.dictionaries)) for row in rows]
        latest = await repository.latest_versions(conn, keys_to_look_up(d for _row, d in decided))
        changes = Changes(latest, producer=repository.NAME)
        outcomes = [record(row, d, changes, self.settings.psn_key_secret) for row, d in decided]
        await repository.save(conn, changes)
        await self.outbox.add(conn, changes.events)
        return outcomes

    def announce(self) -> None:
        """Wake the outbox relay: call once the transaction that added events has committed."""
        self.outbox.wakeup.set()

    async def recover(self) -> int:
        """Finish lists stored before a crash but never decided (start-up: one transaction per
        chunk)."""
        async with self.engine.connect() as conn:
            rows = await repository.pending(conn)
        for start in range(0, len(rows), CHUNK):
            async with self.engine.begin() as conn:
                await self.process(conn, rows[start:start + CHUNK])
            self.announce()
        return len(rows)


async def import_stream(intake: Intake, chunks: AsyncIterator[bytes], fmt: str, caller: str | None,
                        progress: Any = None) -> dict[str, Any]:
    """Import JSON Lines or CSV from an async byte stream: one transaction per CHUNK lists (so a
    long import never holds the database), and one each to open and close the job."""
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

    async for line, raw in _lines(chunks, fmt):
        pending.append((line, Received("flat" if fmt == "csv" else "native", raw, caller, job_id=job_id)))
        if len(pending) >= CHUNK:
            await flush()
    if pending:
        await flush()
    summary = {"job_id": job_id, "lines": sum(counts.values()), **counts, "rejections": results}
    async with intake.engine.begin() as conn:
        await repository.finish_job(conn, job_id, {**counts, "lines": summary["lines"]})
    return summary


async def _lines(chunks: AsyncIterator[bytes], fmt: str) -> AsyncIterator[tuple[int, bytes]]:
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


def file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    """An async byte stream over a file, for `drgdip import`."""
    async def gen() -> AsyncIterator[bytes]:
        with path.open("rb") as fh:
            while chunk := fh.read(size):
                yield chunk
    return gen()
