"""The real PostgreSQL server started by scripts/test.sh works with async SQLAlchemy + asyncpg."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, select, text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.postgres


async def test_new_database_roundtrip(new_pg_database) -> None:
    url = new_pg_database("pg_smoke")
    assert url.startswith("postgresql+asyncpg://")
    metadata = MetaData()
    cases = Table(
        "cases",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("drg", String(16), nullable=False),
        Column("weight", Numeric(10, 4), nullable=False),
    )
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                cases.insert(),
                [
                    {"id": 1, "drg": "AA11", "weight": "1.2345"},
                    {"id": 2, "drg": "BB21", "weight": 2},
                ],
            )
        async with engine.connect() as conn:
            rows = (await conn.execute(select(cases.c.id, cases.c.drg).order_by(cases.c.id))).all()
            assert [tuple(r) for r in rows] == [(1, "AA11"), (2, "BB21")]
            total = (await conn.execute(select(cases.c.weight).where(cases.c.id == 1))).scalar_one()
            assert str(total) == "1.2345"
            db = (await conn.execute(text("select current_database()"))).scalar_one()
            assert db == url.rsplit("/", 1)[1]
    finally:
        await engine.dispose()


async def test_databases_are_isolated(new_pg_database) -> None:
    a, b = new_pg_database("iso"), new_pg_database("iso")
    assert a != b
    ea, eb = create_async_engine(a), create_async_engine(b)
    try:
        async with ea.begin() as conn:
            await conn.execute(text("create table only_in_a (x int)"))
        async with eb.connect() as conn:
            found = (
                await conn.execute(text("select to_regclass('public.only_in_a') is not null"))
            ).scalar_one()
            assert found is False
    finally:
        await ea.dispose()
        await eb.dispose()
