"""The regional self-pay figures change by increments, one upsert a key: a key not stored yet
starts at its change, a stored one adds it (a negative change too), a zero change writes nothing;
on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review.cli import in_transaction
from services.review.domain.rules import Share


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("review_shares"))


def test_share_deltas_add_up(db_url: str) -> None:
    keys = ["350500|drg|AB15", "350500|drg|adrg:AB1", "350500|dip|G7"]

    async def first(conn: AsyncConnection) -> None:
        await repository.save_share_deltas(conn, {
            keys[0]: Share(2, Decimal("1000.10"), Decimal("200.05")),
            keys[1]: Share(1, Decimal("300.00"), Decimal("0.00")),
            keys[2]: Share()})  # no change: no row

    async def second(conn: AsyncConnection) -> None:
        await repository.save_share_deltas(conn, {
            keys[0]: Share(-1, Decimal("-400.10"), Decimal("-100.00")),
            keys[2]: Share(1, Decimal("50.50"), Decimal("5.05"))})

    async def read(conn: AsyncConnection) -> dict[str, Share]:
        return await repository.load_shares(conn, keys)

    in_transaction(db_url, first)
    assert in_transaction(db_url, read) == {
        keys[0]: Share(2, Decimal("1000.10"), Decimal("200.05")),
        keys[1]: Share(1, Decimal("300.00"), Decimal("0.00"))}
    in_transaction(db_url, second)
    assert in_transaction(db_url, read) == {
        keys[0]: Share(1, Decimal("600.00"), Decimal("100.05")),
        keys[1]: Share(1, Decimal("300.00"), Decimal("0.00")),
        keys[2]: Share(1, Decimal("50.50"), Decimal("5.05"))}
