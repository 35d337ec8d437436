"""Stays are stored by one upsert a batch (on PostgreSQL one statement over one array per
column): a new case is inserted, a stored one has the columns given replaced (the others kept),
and a case named twice in a batch keeps its last row; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review.cli import in_transaction


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("review_stays"))


def _stay(case_id: str, drg: str, weight: str | None, **more: Any) -> dict[str, Any]:
    return dict(case_id=case_id, psn_key="p1", hospital_code="H1", admission_date=date(2024, 5, 1),
                discharge_date=date(2024, 5, 9), drg=drg, facts='{"n":1}', context=None, region="350500",
                hospital_level=3, weight=None if weight is None else Decimal(weight), case_type="normal",
                discharge_way=1, planned=False, withdrawn=False, method="drg", complex=None, figures=None) | more


def test_a_batch_of_stays_is_upserted_and_the_last_row_of_a_case_wins(db_url: str) -> None:
    async def first(conn: AsyncConnection) -> None:
        await repository.save_stays(conn, [_stay("c1", "AB15", "1.2345"), _stay("c2", "AB13", None)])

    async def second(conn: AsyncConnection) -> None:
        await repository.save_stays(conn, [
            _stay("c2", "AB11", "0.5000", planned=True), _stay("c3", "ZZ21", "2.0000"),
            _stay("c2", "AB19", "0.7500", withdrawn=True, figures='{"x":2}'), _stay("c3", "ZZ23", None)])
        # a stored stay's columns that a row leaves out are kept
        await repository.save_stays(conn, [{"case_id": "c1", "psn_key": "p1", "hospital_code": "H1",
                                            "drg": "AB17", "facts": '{"n":2}'}])

    async def read(conn: AsyncConnection) -> dict[str, tuple]:
        s = repository.stays.c
        return {r.case_id: tuple(r[1:]) for r in (await conn.execute(
            select(s.case_id, s.drg, s.facts, s.weight, s.planned, s.withdrawn, s.figures))).all()}

    in_transaction(db_url, first)
    in_transaction(db_url, second)
    assert in_transaction(db_url, read) == {
        "c1": ("AB17", '{"n":2}', Decimal("1.2345"), False, False, None),
        "c2": ("AB19", '{"n":1}', Decimal("0.7500"), False, True, '{"x":2}'),
        "c3": ("ZZ23", '{"n":1}', None, False, False, None)}
