"""`drgdip reprice`: stored cases re-priced under the policies in force now, on the embedded
pipeline's database (SQLite) and on PostgreSQL: new price versions, `case-priced` announced
through the outbox, idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from helpers import SHARED, count, policy, receive_and_price, wait_until
from typer.testing import CliRunner

from drgdip.cli import app
from drgdip.stages import build_runtime

N = 12


def cli(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


async def _priced_without_policy(db: str) -> list[str]:
    """The pipeline prices N lists with no policy stored (status NO_POLICY)."""
    rt = build_runtime("all", db=db, schemes_dir=SHARED / "schemes", log_level="WARNING")
    await rt.start()
    try:
        sent = await receive_and_price(rt, N)
        assert await count(rt.engine, "pricer_results", "status = 'NO_POLICY'") == N
        await wait_until(lambda: _empty_outbox(rt.engine), 60, "the outbox published")
    finally:
        await rt.stop()
    return [f"{sl['setlinfo']['fixmedins_code']}-{sl['setlinfo']['setl_id']}" for sl in sent]


async def _empty_outbox(engine) -> bool:  # type: ignore[no-untyped-def]
    return await count(engine, "pricer_outbox") == 0


async def _check(db: str, tmp_path: Path, engine_of: Callable[[], object]) -> None:
    await _priced_without_policy(db)
    doc = policy() | {"valid_from": "2000-01-01"}  # covers every reference list
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(doc))
    await asyncio.to_thread(cli, "policy", "import", policy_file, "--db", db)

    out = await asyncio.to_thread(cli, "reprice", "--region", "350500", "--db", db)
    assert f"{N} cases of 350500" in out and f"{N} re-priced" in out and "test-2024 v1" in out
    engine = engine_of()
    try:
        assert await count(engine, "pricer_results") == 2 * N  # a new version each, the old kept
        assert await count(engine, "pricer_results", "status = 'PRICED'") == N
        assert await count(engine, "pricer_outbox") == N  # case-priced, for the relay to publish
    finally:
        await engine.dispose()  # type: ignore[attr-defined]
    # idempotent: nothing changed since
    again = await asyncio.to_thread(cli, "reprice", "--region", "350500", "--db", db)
    assert "0 re-priced" in again and f"{N} unchanged" in again
    # a new policy version re-prices every case again; another region has nothing to re-price
    policy_file.write_bytes(orjson.dumps(doc | {"version": 2, "weights": doc["weights"] | {
        "version": "test-w2", "table": dict.fromkeys(doc["weights"]["table"], "2.0000")}}))
    await asyncio.to_thread(cli, "policy", "import", policy_file, "--db", db)
    assert f"{N} re-priced" in await asyncio.to_thread(cli, "reprice", "--region", "350500", "--db", db)
    assert "no priced case" in await asyncio.to_thread(cli, "reprice", "--region", "999999", "--db", db)
    engine = engine_of()
    try:
        assert await count(engine, "pricer_results", "policy_version = 2 AND status = 'PRICED'") == N
        async with engine.connect() as conn:  # type: ignore[attr-defined]
            from sqlalchemy import select

            from services.pricer.repository import results
            paid = (await conn.execute(select(results.c.payment).where(
                results.c.policy_version == 2))).scalars().all()
        assert paid == [Decimal("20000.00")] * N  # 10000.00 × RW 2 under version 2
    finally:
        await engine.dispose()  # type: ignore[attr-defined]


async def test_reprice_on_sqlite(tmp_path: Path) -> None:
    from shared.db import create_engine

    db = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    await _check(db, tmp_path, lambda: create_engine(db))


@pytest.mark.slow
async def test_reprice_on_postgresql(tmp_path: Path, new_pg_database) -> None:  # type: ignore[no-untyped-def]
    from shared.db import create_engine

    db = new_pg_database()
    await _check(db, tmp_path, lambda: create_engine(db))
