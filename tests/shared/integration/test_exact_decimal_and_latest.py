"""Amounts are stored exactly (never a float on disk) and `latest_per_case` picks the newest
version of each case, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text

from shared.db import ExactDecimal, create_engine, insert_many, latest_per_case, money

metadata = MetaData()
amounts = Table("t_amounts", metadata, Column("id", Integer, primary_key=True),
                Column("amount", money(), nullable=True), Column("weight", ExactDecimal(10, 4)))
versions = Table("t_versions", metadata, Column("case_id", String(10), primary_key=True),
                 Column("version", Integer, primary_key=True), Column("note", String(10)))

# up to 10^12 yuan, to the fen
fen_amounts = st.integers(min_value=-10**14, max_value=10**14).map(lambda n: Decimal(n).scaleb(-2))


async def _round_trip(url: str, values: list[Decimal]) -> list[tuple[Decimal | None, Decimal]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await insert_many(conn, amounts, [{"id": i, "amount": v, "weight": Decimal("1.2345")}
                                              for i, v in enumerate(values)])
            await conn.execute(insert(amounts).values(id=len(values), amount=None, weight=Decimal("0.0001")))
        async with engine.connect() as conn:
            return [(r.amount, r.weight) for r in
                    (await conn.execute(select(amounts).order_by(amounts.c.id))).all()]
    finally:
        await engine.dispose()


@settings(max_examples=60, deadline=None)
@given(st.lists(fen_amounts, min_size=1, max_size=20))
def test_an_amount_reads_back_as_the_decimal_written_on_sqlite(tmp_path_factory, values) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('money')}/m.db"
    back = asyncio.run(_round_trip(url, values))
    assert [a for a, _w in back] == [*values, None]
    assert all(type(a) is Decimal for a, _w in back[:-1])
    assert back[-1][1] == Decimal("0.0001")


async def test_sqlite_stores_an_amount_as_an_integer_count_of_fen(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    await _round_trip(url, [Decimal("999999999999.99")])
    engine = create_engine(url)
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT typeof(amount), amount FROM t_amounts WHERE id = 0"))).one()
    await engine.dispose()
    assert tuple(row) == ("integer", 99999999999999)


@pytest.mark.postgres
async def test_postgres_round_trips_the_largest_amounts(new_pg_database) -> None:  # type: ignore[no-untyped-def]
    values = [Decimal("999999999999.99"), Decimal("-0.01"), Decimal("0.00"), Decimal("12345.67")]
    assert [a for a, _w in await _round_trip(new_pg_database("money"), values)] == [*values, None]


async def test_latest_per_case_gives_the_newest_version_of_each_case(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/v.db")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await insert_many(conn, versions, [
            {"case_id": c, "version": v, "note": f"{c}{v}"}
            for c, v in [("a", 1), ("a", 3), ("a", 2), ("b", 1), ("c", 5), ("c", 4)]])
        rows = (await conn.execute(latest_per_case(versions, "version").order_by(versions.c.case_id))).all()
        only_a = (await conn.execute(latest_per_case(versions, "version", where=versions.c.case_id == "a"))).all()
    await engine.dispose()
    assert [r.note for r in rows] == ["a3", "b1", "c5"]
    assert [r.note for r in only_a] == ["a3"]
