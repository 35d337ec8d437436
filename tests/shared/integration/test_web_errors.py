"""The HTTP edge answers every failure in the one JSON error shape: a database that is not
answering is the client's 503 to retry, never a plain-text 500."""

from __future__ import annotations

import socket

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from shared.db import create_engine
from shared.web import Conn, install_error_handlers


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def app_on(url: str) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.engine = create_engine(url)

    @app.get("/count")
    async def count(conn: Conn) -> dict[str, int]:
        return {"n": int(await conn.scalar(text("select 1")) or 0)}

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a fault of ours, with a secret inside")

    return app


async def call(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


async def test_an_unreachable_database_is_a_503_with_a_stable_code() -> None:
    app = app_on(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/postgres")
    r = await call(app, "/count")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert r.headers["retry-after"] == "5"


async def test_a_fault_of_ours_is_a_json_500_that_tells_nothing_inside(tmp_path) -> None:
    app = app_on(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    assert (await call(app, "/count")).json() == {"n": 1}
    r = await call(app, "/bug")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "secret" not in r.text
