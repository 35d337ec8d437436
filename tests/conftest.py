"""Fixtures for the real servers that `scripts/test.sh` (`make test`) starts.

- `kafka_bootstrap`: "host:port" of the Kafka broker (from DRGDIP_TEST_KAFKA).
- `pg_admin_url`: a `postgresql+asyncpg://` admin URL to the PostgreSQL server (DRGDIP_TEST_PG).
- `new_pg_database`: factory; `url = new_pg_database()` creates a fresh, uniquely named
  database and returns its `postgresql+asyncpg://` URL. Works from sync and async tests.
  The databases are dropped at the end of the session (DRGDIP_TEST_PG_KEEP=1 keeps them).

Without the environment variables the tests that need a server are skipped, unless
DRGDIP_TEST_REQUIRE_SERVERS=1 (set by scripts/test.sh), in which case they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples, so a landing never depends on
# luck; developers' runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

_HOW = "run the suite with `make test` (scripts/test.sh starts Kafka and PostgreSQL)"


def _server_env(name: str, what: str) -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    message = f"{name} is not set: no {what} server; {_HOW}"
    if os.environ.get("DRGDIP_TEST_REQUIRE_SERVERS") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _server_env("DRGDIP_TEST_KAFKA", "Kafka")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return _server_env("DRGDIP_TEST_PG", "PostgreSQL")


def _asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL -> plain libpq-style DSN for asyncpg."""
    return re.sub(r"^postgresql\+asyncpg://", "postgresql://", url)


def _run_sync(coro_factory: Callable[[], object]) -> None:
    """Run a coroutine to completion from sync or async code (own loop, own thread)."""
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro_factory())  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="pg-admin", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]


async def _admin_execute(admin_url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def _pg_created_databases(pg_admin_url: str) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    if created and os.environ.get("DRGDIP_TEST_PG_KEEP") != "1":
        drops = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in created]
        try:
            _run_sync(lambda: _admin_execute(pg_admin_url, *drops))
        except Exception as exc:  # the server is throwaway: never fail the session on this
            print(f"warning: could not drop test databases: {exc!r}")


@pytest.fixture
def new_pg_database(pg_admin_url: str, _pg_created_databases: list[str]) -> Callable[..., str]:
    from sqlalchemy.engine import make_url

    def create(prefix: str = "t") -> str:
        safe = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:30] or "t"
        name = f"{safe}_{uuid.uuid4().hex[:12]}"
        _run_sync(lambda: _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"'))
        _pg_created_databases.append(name)
        return make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)

    return create
