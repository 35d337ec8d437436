"""Database plumbing: async SQLAlchemy 2 on PostgreSQL (asyncpg) or SQLite (aiosqlite).

Each service owns its tables (named `<service>_…`) and its Alembic history; in the embedded
mode all of them live in one SQLite file, in the distributed mode each service may have its
own database. Stages use SQLAlchemy Core: one transaction per consumed message or request.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str) -> AsyncEngine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has one writer at a time anyway, and queueing for the pool is
        # far quicker than SQLite's busy-wait back-off when several connections contend.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1,
                                     max_overflow=0, pool_timeout=120)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers (the API) run while a stage writes; NORMAL sync is durable in WAL.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # transactions are begun explicitly below, as BEGIN IMMEDIATE
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Take the write lock up front: a read transaction that later writes would fail with
            # "database is locked" if another writer committed in between (busy_timeout can't help).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


async def ping(engine: AsyncEngine, timeout: float = 2.0) -> bool:
    """True when a trivial query succeeds within `timeout` seconds (used by /readyz)."""
    import asyncio

    async def _probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(_probe(), timeout)
        return True
    except Exception:
        return False
