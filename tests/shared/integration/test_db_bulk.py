"""The bulk write helpers store exactly what SQLAlchemy's own INSERT/UPDATE would, on SQLite and
on the real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from shared.db import create_engine, insert_many, insert_statement, update_many

metadata = MetaData()
things = Table(
    "bulk_things", metadata,
    Column("id", String(10), primary_key=True),
    Column("n", Integer, nullable=True),
    Column("day", Date, nullable=True),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("amount", Numeric(14, 2), nullable=True),
    Column("raw", LargeBinary, nullable=True),
    Column("note", Text, nullable=True),
)
AT = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
ROWS = [  # a timestamp shared by the rows, and one of their own (whole seconds, no time zone)
    {"id": f"r{i}", "n": i, "day": date(2024, 1, 1 + i),
     "at": AT if i % 2 else datetime(999 + i, 12, 31, 23, 59, 59 - i, 0 if i == 2 else i), "amount": Decimal("12345.67") + i,
     "raw": bytes([i, 0, 255]), "note": None if i % 2 else f"说明 {i}"}
    for i in range(5)
]


async def _both_ways(url: str) -> tuple[list[tuple], list[tuple]]:
    """The rows as read back after writing them with the helpers and with SQLAlchemy Core."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        out = []
        for helpers in ("dicts", "tuples", None):
            async with engine.begin() as conn:
                await conn.execute(things.delete())
                changes = [{"id": "r1", "note": "改", "amount": Decimal("0.01"), "day": None},
                           {"id": "r3", "note": None, "amount": Decimal("-5.50"), "day": date(2025, 12, 31)}]
                if helpers:
                    if helpers == "dicts":
                        await insert_many(conn, things, ROWS)
                    else:  # the columns in another order than the statement binds them
                        columns = tuple(reversed(ROWS[0]))
                        await conn.exec_driver_sql(*insert_statement(
                            conn.dialect, things, columns, ([r[c] for c in columns] for r in ROWS)))
                    await update_many(conn, things, "id", changes)
                else:
                    await conn.execute(insert(things), ROWS)
                    for c in changes:
                        await conn.execute(update(things).where(things.c.id == c["id"])
                                           .values({k: v for k, v in c.items() if k != "id"}))
            async with engine.connect() as conn:
                out.append([tuple(r) for r in (await conn.execute(select(things).order_by(things.c.id))).all()])
        assert out[1] == out[0]
        return out[0], out[2]
    finally:
        await engine.dispose()


def _check(with_helpers: list[tuple], with_core: list[tuple]) -> None:
    assert with_helpers == with_core
    by_id = {r[0]: r for r in with_helpers}
    assert len(by_id) == 5
    assert by_id["r1"][4] == Decimal("0.01") and by_id["r1"][6] == "改" and by_id["r1"][2] is None
    assert by_id["r3"][2] == date(2025, 12, 31) and by_id["r3"][6] is None
    assert by_id["r4"][5] == bytes([4, 0, 255]) and by_id["r0"][6] == "说明 0"


async def test_bulk_helpers_write_what_core_writes_on_sqlite(tmp_path: Path) -> None:
    _check(*await _both_ways(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}"))


@pytest.mark.postgres
async def test_bulk_helpers_write_what_core_writes_on_postgres(new_pg_database) -> None:
    _check(*await _both_ways(new_pg_database("bulk")))


async def _updated_twice(url: str) -> list[tuple]:
    """The rows after an update_many that names one row twice (and another once)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(things.delete())
            await insert_many(conn, things, ROWS)
            await update_many(conn, things, "id", [{"id": "r2", "n": 20}, {"id": "r0", "n": 7}, {"id": "r2", "n": 21}])
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(select(things.c.id, things.c.n).order_by(things.c.id)))]
    finally:
        await engine.dispose()


async def test_a_row_updated_twice_in_a_batch_keeps_the_last_values_on_sqlite(tmp_path: Path) -> None:
    assert await _updated_twice(f"sqlite+aiosqlite:///{tmp_path / 'twice.db'}") == [
        ("r0", 7), ("r1", 1), ("r2", 21), ("r3", 3), ("r4", 4)]


@pytest.mark.postgres
async def test_a_row_updated_twice_in_a_batch_keeps_the_last_values_on_postgres(new_pg_database) -> None:
    assert await _updated_twice(new_pg_database("twice")) == [("r0", 7), ("r1", 1), ("r2", 21), ("r3", 3), ("r4", 4)]


async def test_rows_must_share_their_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        with pytest.raises(KeyError):
            async with engine.begin() as conn:
                await insert_many(conn, things, [{"id": "a", "n": 1}, {"id": "b"}])
    finally:
        await engine.dispose()
