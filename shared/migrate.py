"""Alembic, one history per service (version table `alembic_version_<service>`).

A service's `migrations/env.py` is two lines that call `run_env()`; its versions live in
`services/<service>/migrations/versions/`. Tests and start-up build the schema through them.

Several replicas may start together on a fresh database: on PostgreSQL each upgrade runs under
a session-level advisory lock (one fixed key per service, held by the migrating connection), so
one replica migrates and the others wait, then find the schema at head and do nothing. On
SQLite every transaction begins with BEGIN IMMEDIATE (shared.db), which already serialises them.
`drgdip migrate` runs the same upgrade as a separate step (a Kubernetes init container).
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import structlog
from alembic import command, context
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger("drgdip.migrate")

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def _config(service: str, connection) -> Config:  # type: ignore[no-untyped-def]
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["connection"] = connection
    cfg.attributes["service"] = service
    return cfg


def lock_key(service: str) -> int:
    """The advisory-lock key of a service's migrations: fixed, a signed 64-bit integer."""
    digest = hashlib.blake2b(f"drgdip.migrate.{service}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def upgrade(engine: AsyncEngine, service: str, revision: str = "head") -> None:
    """Upgrade a service's schema to `revision`; safe to call from several processes at once."""
    async with engine.connect() as conn:
        locked = conn.dialect.name == "postgresql"
        if locked:
            await _advisory_lock(conn, service)
        try:
            async with _in_process_lock(), conn.begin():
                await conn.run_sync(lambda sync_conn: command.upgrade(_config(service, sync_conn), revision))
        finally:
            if locked:
                await _advisory_unlock(conn, service)


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _in_process_lock() -> asyncio.Lock:
    """Alembic keeps the running migration in module-level proxies (`context`, `op`): two
    upgrades interleaved in one event loop would run each other's steps on the wrong
    connection, so within a process they take turns."""
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(loop)
    if lock is None:
        lock = _LOCKS[loop] = asyncio.Lock()
    return lock


async def current(engine: AsyncEngine, service: str) -> str | None:
    """The revision a service's schema is at (None: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync_conn: MigrationContext.configure(
            sync_conn, opts={"version_table": f"alembic_version_{service}"}).get_current_revision())


async def _advisory_lock(conn: AsyncConnection, service: str) -> None:
    key = lock_key(service)
    if not (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar_one():
        log.info("waiting for another process migrating", service=service)
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
    await conn.commit()  # the lock is the session's, not the transaction's


async def _advisory_unlock(conn: AsyncConnection, service: str) -> None:
    """Release the lock; a connection that cannot (it broke) is discarded, which releases it."""
    try:
        if conn.in_transaction():
            await conn.rollback()
        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(service)})
        await conn.commit()
    except Exception:
        await conn.invalidate()


T = TypeVar("T")


def run_on_database(url: str, service: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """For commands: run `work(engine)` on a service's database, its schema upgraded first."""
    from shared.db import create_engine

    async def run() -> T:
        engine = create_engine(url)
        try:
            await upgrade(engine, service)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def run_env() -> None:
    """Body of every service's env.py: migrate on the connection handed over by `upgrade`."""
    cfg = context.config
    service = cfg.attributes["service"]
    context.configure(
        connection=cfg.attributes["connection"],
        version_table=f"alembic_version_{service}",
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def schema_diff(sync_connection, service: str, metadata) -> list:  # type: ignore[no-untyped-def]
    """What Alembic's autogenerate finds between the database (built by `service`'s migrations)
    and the service's runtime tables: an empty list when they agree. Other services' tables
    in the same database are left out."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def mine(name, type_, _parent_names) -> bool:  # type: ignore[no-untyped-def]
        return type_ != "table" or bool(name) and name.startswith(f"{service}_")

    mc = MigrationContext.configure(sync_connection, opts={
        "compare_type": True, "include_name": mine, "version_table": f"alembic_version_{service}"})
    return list(compare_metadata(mc, metadata))
