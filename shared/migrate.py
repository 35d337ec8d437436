"""Alembic, one history per service (version table `alembic_version_<service>`).

A service's `migrations/env.py` is two lines that call `run_env()`; its versions live in
`services/<service>/migrations/versions/`. Tests and start-up build the schema through them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def _config(service: str, connection) -> Config:  # type: ignore[no-untyped-def]
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["connection"] = connection
    cfg.attributes["service"] = service
    return cfg


async def upgrade(engine: AsyncEngine, service: str, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: command.upgrade(_config(service, sync_conn), revision))


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
