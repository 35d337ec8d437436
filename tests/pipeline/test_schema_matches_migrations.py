"""Every service's runtime tables are what its Alembic history builds (tables defined once):
Alembic's autogenerate comparison finds no difference, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from drgdip.stages import build_runtime
from shared import migrate

SERVICES = ["ingest", "grouper", "pricer", "review", "gateway"]


async def _diff(url: str, service: str) -> list:
    rt = build_runtime(service, db=url, bus="memory://")
    stage = rt.stages[0]
    try:
        await migrate.upgrade(rt.engine, service)
        async with rt.engine.connect() as conn:
            return await conn.run_sync(lambda c: migrate.schema_diff(c, service, stage.metadata))
    finally:
        await rt.engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_sqlite_schema_is_the_migrations(service: str, tmp_path: Path) -> None:
    assert await _diff(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", service) == []


@pytest.mark.postgres
@pytest.mark.parametrize("service", SERVICES)
async def test_postgres_schema_is_the_migrations(service: str, new_pg_database) -> None:
    assert await _diff(new_pg_database(service), service) == []
