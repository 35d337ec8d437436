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


async def test_cases_priced_before_the_grouping_was_kept_are_named_with_the_regroup_that_reprices_them(
        tmp_path: Path) -> None:
    """Rows priced before migration pricer_0007 have no `grouped` payload: the re-pricing names
    them and the regroup command; running it with the pipeline prices them under the policy."""
    from sqlalchemy import update

    from services.pricer.repository import results
    from shared.db import create_engine

    db = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    case_ids = sorted(await _priced_without_policy(db))
    old = case_ids[:5]
    engine = create_engine(db)
    try:
        async with engine.begin() as conn:  # as migration 0007 left the rows priced before it
            await conn.execute(update(results).where(results.c.case_id.in_(old)).values(grouped=None))
            days = sorted((await conn.execute(results.select().where(results.c.case_id.in_(old)))).all(),
                          key=lambda r: r.discharge_date)
    finally:
        await engine.dispose()
    first, last = days[0].discharge_date.isoformat(), days[-1].discharge_date.isoformat()
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy() | {"valid_from": "2000-01-01"}))
    await asyncio.to_thread(cli, "policy", "import", policy_file, "--db", db)

    out = await asyncio.to_thread(cli, "reprice", "--region", "350500", "--db", db)
    assert f"{N - 5} re-priced" in out and "5 not re-priceable" in out
    command = f"drgdip regroup --scheme chs-drg-1.1 --from {first} --to {last}"
    assert f"5 cases of 350500 were priced before the pricer kept their grouping (discharged {first}–{last}: " \
           f"{old[0]}, {old[1]}, {old[2]}, …) and cannot be re-priced until regrouped: run `{command}`" in out

    # the command as named, then the pipeline: the cases are priced under the policy
    await asyncio.to_thread(cli, *command.split()[1:], "--schemes-dir", SHARED / "schemes", "--db", db)
    rt = build_runtime("all", db=db, schemes_dir=SHARED / "schemes", log_level="WARNING")
    await rt.start()
    try:
        where = f"status = 'PRICED' AND grouped IS NOT NULL AND case_id IN ({', '.join(repr(c) for c in old)})"

        async def priced() -> bool:
            return await count(rt.engine, "pricer_results", where) == 5

        await wait_until(priced, 60, "the regrouped cases priced")
    finally:
        await rt.stop()
    again = await asyncio.to_thread(cli, "reprice", "--region", "350500", "--db", db)
    assert "not re-priceable" not in again and f"{N} unchanged" in again
