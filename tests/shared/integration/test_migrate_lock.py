"""Migrations on a fresh PostgreSQL database while several processes start together: one
migrates under the service's advisory lock, the others wait and then find the schema at head."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from helpers import REPO
from sqlalchemy import text

from shared import migrate
from shared.db import create_engine

pytestmark = pytest.mark.postgres
DRGDIP = str(Path(sys.executable).with_name("drgdip"))


def head(service: str) -> str:
    script = ScriptDirectory(str(migrate.SERVICES_DIR / service / "migrations"))
    return str(script.get_current_head())


async def lock_is_free(url: str, service: str) -> bool:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                      {"k": migrate.lock_key(service)})).scalar_one()
            if got:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrate.lock_key(service)})
            return bool(got)
    finally:
        await engine.dispose()


def migrate_together(url: str, service: str, processes: int) -> list[subprocess.CompletedProcess]:
    """`drgdip migrate` in several processes at once, as replicas starting together run it."""
    procs = [subprocess.Popen([DRGDIP, "migrate", "--service", service, "--db", url], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=180), *p.communicate()) for p in procs]


@pytest.mark.parametrize("service", ["pricer", "grouper"])
def test_processes_migrating_a_fresh_database_together_all_succeed(new_pg_database, service: str) -> None:
    url = new_pg_database(f"mig_{service}")
    for run in migrate_together(url, service, 4):
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"{service}: at {head(service)}\n"


def test_processes_migrating_a_fresh_sqlite_file_together_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'drgdip.db'}"  # BEGIN IMMEDIATE serialises them
    for run in migrate_together(url, "pricer", 3):
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"pricer: at {head('pricer')}\n"


@pytest.mark.parametrize("service", ["pricer", "ingest"])
async def test_concurrent_upgrades_in_one_process_all_succeed(new_pg_database, service: str) -> None:
    url = new_pg_database(f"mig_{service}")
    engines = [create_engine(url) for _ in range(4)]  # four runtimes, each its own connections
    try:
        await asyncio.gather(*(migrate.upgrade(e, service) for e in engines))
        assert {await migrate.current(e, service) for e in engines} == {head(service)}
    finally:
        for e in engines:
            await e.dispose()
    assert await lock_is_free(url, service)


async def test_every_service_migrates_concurrently_on_one_shared_database(new_pg_database) -> None:
    url = new_pg_database("mig_all")
    services = ["ingest", "grouper", "pricer", "review", "gateway"]
    engines = [create_engine(url) for _ in range(2)]
    try:
        await asyncio.gather(*(migrate.upgrade(e, s) for e in engines for s in services))
        for s in services:
            assert await migrate.current(engines[0], s) == head(s)
    finally:
        for e in engines:
            await e.dispose()


async def test_the_lock_is_released_when_an_upgrade_fails(new_pg_database) -> None:
    url = new_pg_database("mig_fail")
    engine = create_engine(url)
    try:
        with pytest.raises(Exception, match="nope"):
            await migrate.upgrade(engine, "review", revision="nope")
        assert await lock_is_free(url, "review")
        await migrate.upgrade(engine, "review")  # and the next attempt migrates
        assert await migrate.current(engine, "review") == head("review")
    finally:
        await engine.dispose()


def test_drgdip_migrate_runs_once_then_finds_the_schema_at_head(new_pg_database) -> None:
    url = new_pg_database("mig_cli")
    expected = "".join(f"{s}: at {head(s)}\n" for s in ["ingest", "grouper", "pricer", "review", "gateway"])
    for _ in range(2):
        run = subprocess.run([DRGDIP, "migrate", "--db", url], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout == expected
    one = subprocess.run([DRGDIP, "migrate", "--service", "grouper", "--db", url], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert (one.returncode, one.stdout) == (0, f"grouper: at {head('grouper')}\n")


def test_drgdip_migrate_names_an_unreachable_database_on_one_line() -> None:
    run = subprocess.run([DRGDIP, "migrate", "--service", "review", "--db",
                          "postgresql+asyncpg://nobody@127.0.0.1:1/none"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith("drgdip migrate: DRGDIP_DB: cannot open the database")
    assert len(run.stderr.strip().splitlines()) == 1
