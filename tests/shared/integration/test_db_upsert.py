"""The bulk upsert stores what SQLAlchemy's INSERT ... ON CONFLICT DO UPDATE, run row after row,
would: a missing key is inserted, a stored one replaced (or, for the added columns, increased),
and a key named twice in a batch ends as its rows applied in order; on SQLite and on the real
PostgreSQL server (where a batch is one statement over one array per column)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.db import create_engine, upsert_many, upsert_statement

metadata = MetaData()
items = Table(
    "upsert_items", metadata,
    Column("id", String(10), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("day", Date, nullable=True),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("note", Text, nullable=True),
)
AT = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
STORED = [{"id": f"s{i}", "n": i, "amount": Decimal("10.05") * i, "day": date(2024, 1, 1 + i), "at": AT,
           "note": f"旧 {i}"} for i in range(3)]
BATCH = [  # s1 replaced, s2 twice, n0 new, n1 twice (new)
    {"id": "s1", "n": 11, "amount": Decimal("-1.50"), "day": None, "at": AT, "note": None},
    {"id": "s2", "n": 21, "amount": Decimal("2.00"), "day": date(2025, 1, 1), "at": None, "note": "先"},
    {"id": "n0", "n": 100, "amount": Decimal("0.01"), "day": date(2025, 2, 2), "at": AT, "note": "新"},
    {"id": "n1", "n": 5, "amount": Decimal("5.00"), "day": None, "at": None, "note": "a"},
    {"id": "s2", "n": 22, "amount": Decimal("3.25"), "day": date(2025, 3, 3), "at": AT, "note": "后"},
    {"id": "n1", "n": 6, "amount": Decimal("6.10"), "day": date(2025, 4, 4), "at": AT, "note": "b"},
]
ADD = ("n", "amount")


def _row_by_row(dialect: str, row: dict[str, Any], add: tuple[str, ...]) -> Any:
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(items).values(row)
    return stmt.on_conflict_do_update(index_elements=["id"], set_={
        c: items.c[c] + stmt.excluded[c] if c in add else stmt.excluded[c] for c in row if c != "id"})


async def _three_ways(url: str, add: tuple[str, ...], batch: list[dict[str, Any]]) -> list[list[tuple]]:
    """The rows after upserting `batch` over `STORED`: with upsert_many, with upsert_statement
    (the columns in another order than the statement binds them) and row by row with SQLAlchemy."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        out = []
        for way in ("many", "statement", "core"):
            async with engine.begin() as conn:
                await conn.execute(items.delete())
                await conn.execute(insert(items), STORED)
                if way == "many":
                    await upsert_many(conn, items, "id", batch, add=add)
                elif way == "statement":
                    columns = tuple(reversed(batch[0]))
                    await conn.exec_driver_sql(*upsert_statement(
                        conn.dialect, items, "id", columns, ([r[c] for c in columns] for r in batch), add))
                else:
                    for row in batch:
                        await conn.execute(_row_by_row(conn.dialect.name, row, add))
            async with engine.connect() as conn:
                out.append([tuple(r) for r in (await conn.execute(select(items).order_by(items.c.id))).all()])
        return out
    finally:
        await engine.dispose()


async def _check(url: str) -> None:
    unique = [BATCH[0], BATCH[2], BATCH[4]]
    for add, batch in (((), BATCH), ((), unique), (ADD, BATCH), (ADD, unique)):
        many, statement, core = await _three_ways(url, add, batch)
        assert many == statement == core
        by_id = {r[0]: r for r in many}
        assert set(by_id) == {"s0", "s1", "s2", "n0"} | ({"n1"} if batch is BATCH else set())
        assert by_id["s0"][1:3] == (0, Decimal("0.00")) and by_id["s1"][5] is None
        if not add:  # the last row of a key wins
            assert by_id["s2"][1:] == (22, Decimal("3.25"), date(2025, 3, 3), by_id["s2"][4], "后")
            if batch is BATCH:
                assert by_id["n1"][1:3] == (6, Decimal("6.10")) and by_id["n1"][5] == "b"
        else:  # the added columns sum; the others are the last row's
            assert by_id["s2"][1:3] == ((2 + 21 + 22, Decimal("25.35")) if batch is BATCH else (24, Decimal("23.35")))
            assert by_id["s2"][5] == "后" and by_id["s1"][1:3] == (12, Decimal("8.55"))
            if batch is BATCH:
                assert by_id["n1"][1:3] == (11, Decimal("11.10")) and by_id["n1"][5] == "b"


async def test_upserts_write_what_row_by_row_upserts_write_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'upsert.db'}")


@pytest.mark.postgres
async def test_upserts_write_what_row_by_row_upserts_write_on_postgres(new_pg_database) -> None:
    await _check(new_pg_database("upsert"))
