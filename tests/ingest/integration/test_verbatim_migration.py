"""Migration ingest_0007 moves what arrived (format, caller, correlation id, bytes) out of the
lists' state rows into rows of their own and back on downgrade, losing nothing: a list stored but
not decided before the upgrade is still found and read by the sweep's queries after it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from services.ingest import repository
from shared import migrate

COLUMNS = ("id, received_at, format, caller_hospital, raw, status, hospital_code, discharge_date, "
           "problems, case_id, list_version, job_id, job_line, correlation_id, declared_on")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("new_pg_database")("verbatim"))


def _row(i: int, now: datetime) -> dict[str, Any]:
    decided = i > 1
    return {"id": i, "received_at": now, "format": "native", "caller_hospital": "H1" if decided else None,
            "raw": bytes([i, 0, 255]) * 2000, "status": ("pending", "accepted", "rejected")[i - 1],
            "hospital_code": "H1" if decided else None, "discharge_date": date(2026, 1, i),
            "problems": '[{"field": "f", "code": "X", "message_zh": "z", "message_en": "e"}]' if i == 3 else None, "case_id": f"H1-{i}" if decided else None,
            "list_version": 1 if decided else None, "job_id": "job" if i == 2 else None, "job_line": i,
            "correlation_id": f"c{i}", "declared_on": date(2026, 2, i)}


async def test_the_bytes_move_to_rows_of_their_own_and_back(db_url: str) -> None:
    engine = create_async_engine(db_url)
    try:
        await migrate.upgrade(engine, "ingest", "ingest_0006")
        now = datetime.now(UTC)
        names = [c.strip() for c in COLUMNS.split(",")]
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"INSERT INTO ingest_raw ({COLUMNS}) VALUES "
                                       f"({', '.join(':' + n for n in names)})"), [_row(i, now) for i in (1, 2, 3)])
            before = (await conn.execute(sa.text(f"SELECT {COLUMNS} FROM ingest_raw ORDER BY id"))).all()

        await migrate.upgrade(engine, "ingest", "ingest_0007")
        async with engine.connect() as conn:
            assert await repository.pending_ids(conn, datetime.now(UTC), 0, 10) == [1]
            (stored,) = await repository.lock_pending(conn, [1, 2, 3])
            assert (stored.id, stored.format, stored.raw, stored.caller_hospital, stored.correlation_id) == (
                1, "native", _row(1, now)["raw"], None, "c1")
            assert await repository.job_counts(conn, "job") == {"accepted": 1}
            outcomes = await repository.outcomes(conn, [2, 3])
            assert [o.status for o in outcomes.values()] == ["accepted", "rejected"]
            assert await conn.scalar(sa.text("SELECT COUNT(*) FROM ingest_verbatim")) == 3

        async with engine.connect() as conn:
            await conn.run_sync(lambda c: command.downgrade(migrate._config("ingest", c), "ingest_0006"))
            await conn.commit()
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text(f"SELECT {COLUMNS} FROM ingest_raw ORDER BY id"))).all() == before
        await migrate.upgrade(engine, "ingest")
    finally:
        await engine.dispose()
