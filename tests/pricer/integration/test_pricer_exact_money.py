"""Money is never a float on disk: a priced amount written and read back on SQLite is the Decimal
that was written, to the fen, up to 10^12 yuan; amounts stored as REAL before migration 0006
read back exactly after it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from services.pricer.repository import advances, results, save_results
from shared import migrate
from shared.db import create_engine

AMOUNTS = st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False, allow_infinity=False)
WEIGHTS = st.decimals(min_value=0, max_value=999999, places=4, allow_nan=False, allow_infinity=False)
_MONEY = ("base_rate", "payment_standard", "total_cost", "payment", "fund_payment")


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('money') / 'pricer.db'}"

    async def build() -> None:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine, "pricer")
        finally:
            await engine.dispose()

    asyncio.run(build())
    return url


def _row(case_id: str, amounts: list[Decimal], weight: Decimal) -> dict:
    return dict(case_id=case_id, list_version=1, grouping_version=1, drg="AB11", status="PRICED",
                policy_id="p", policy_version=1, priced_at=datetime.now(UTC), weight=weight,
                coefficient=Decimal("0.8500"), **dict(zip(_MONEY, amounts, strict=True)))


async def _write_and_read(url: str, case_id: str, amounts: list[Decimal], weight: Decimal) -> tuple:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await save_results(conn, [_row(case_id, amounts, weight)])  # the stage's bulk write
        async with engine.connect() as conn:
            r = (await conn.execute(select(results).where(results.c.case_id == case_id))).one()
        return tuple(getattr(r, c) for c in _MONEY), r.weight
    finally:
        await engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(AMOUNTS, min_size=len(_MONEY), max_size=len(_MONEY)), weight=WEIGHTS)
def test_a_priced_amount_reads_back_exactly_on_sqlite(database: str, amounts: list[Decimal],
                                                      weight: Decimal) -> None:
    stored, stored_weight = asyncio.run(_write_and_read(database, uuid.uuid4().hex, amounts, weight))
    assert stored == tuple(amounts)
    assert all(isinstance(v, Decimal) and v == v.quantize(Decimal("0.01")) for v in stored)
    assert stored_weight == weight


def test_real_values_of_the_old_schema_read_back_exactly_after_the_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    money = [Decimal("999999999999.99"), Decimal("12252.70"), Decimal("0.29"), Decimal("8500.00"),
             Decimal("1234567.89")]

    async def run() -> tuple:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine, "pricer", "pricer_0005")
            async with engine.begin() as conn:  # as the old NUMERIC columns stored them: floats
                await conn.execute(text(
                    "INSERT INTO pricer_results (case_id, list_version, grouping_version, drg, status,"
                    " policy_id, policy_version, priced_at, weight, coefficient, base_rate,"
                    " payment_standard, total_cost, payment, fund_payment) VALUES ('old', 1, 1, 'AB11',"
                    " 'PRICED', 'p', 1, '2024-03-01 00:00:00', :w, :k, :a, :b, :c, :d, :e)"),
                    {"w": 1.2345, "k": 0.85, **dict(zip("abcde", map(float, money), strict=True))})
                await conn.execute(text(
                    "INSERT INTO pricer_advances (hospital_code, year, amount, granted_at, granted_by)"
                    " VALUES ('H1', '2024', :a, '2024-03-01 00:00:00', 'test')"), {"a": 600.1})
                kinds = (await conn.execute(text("SELECT typeof(total_cost) FROM pricer_results"))).scalar()
            assert kinds == "real"  # the float on disk this migration removes
            await migrate.upgrade(engine, "pricer")
            async with engine.connect() as conn:
                r = (await conn.execute(select(results))).one()
                a = (await conn.execute(select(advances.c.amount))).scalar()
                raw = (await conn.execute(text("SELECT typeof(total_cost), total_cost FROM pricer_results"))).one()
                tables = set((await conn.execute(text(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"))).scalars())
            return r, a, tuple(raw), tables
        finally:
            await engine.dispose()

    r, amount, raw, tables = asyncio.run(run())
    assert tuple(getattr(r, c) for c in _MONEY) == tuple(money)
    assert (r.weight, r.coefficient, amount) == (Decimal("1.2345"), Decimal("0.8500"), Decimal("600.10"))
    assert raw == ("integer", 29)  # fen
    assert "pricer_policies" not in tables
    assert (r.case_id, r.policy_id, r.status) == ("old", "p", "PRICED")  # the rest came through the rebuild
