"""The dashboard's sign-in over HTTP: a token posted as a form becomes an HttpOnly, SameSite=Strict
session cookie; a change made with the cookie must come from the dashboard's own origin; sign-out
and a revoked token end the session; bearer tokens work as before."""

from __future__ import annotations

from pathlib import Path

import httpx
from helpers import SHARED

from drgdip.stages import build_runtime
from services.gateway.domain import audit
from services.gateway.repository import audit_rows, create_token, revoke_token

ORIGIN = "http://test"


async def test_sign_in_session_cookie_origin_check_and_sign_out(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DRGDIP_WEB_ASSETS", str(tmp_path / "no-assets"))
    rt = build_runtime("all", db=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", schemes_dir=SHARED / "schemes",
                       log_level="WARNING")
    await rt.start()
    try:
        async with rt.engine.begin() as conn:
            token_id, token = await create_token(conn, "hospital", "H1")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url=ORIGIN) as web:
            page = await web.get("/dashboard/")
            assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
            missing = await web.get("/dashboard/vendor/echarts.min.js")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "WEB_ASSETS_MISSING"
            assert (await web.get("/dashboard/static/..%2Fdashboard.py")).status_code == 404
            assert (await web.get("/dashboard/session")).json()["error"]["code"] == "NOT_SIGNED_IN"

            form = {"content-type": "application/x-www-form-urlencoded"}
            other = await web.post("/dashboard/session", content=f"token={token}",
                                   headers=form | {"origin": "http://evil.example"})
            assert other.status_code == 403 and other.json()["error"]["code"] == "CROSS_ORIGIN"
            wrong = await web.post("/dashboard/session", content="token=drgdip_x_y", headers=form | {"origin": ORIGIN})
            assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
            r = await web.post("/dashboard/session", content=f"token={token}", headers=form | {"origin": ORIGIN})
            assert r.status_code == 200 and r.json()["role"] == "hospital" and r.json()["hospital_code"] == "H1"
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
            session = web.cookies["drgdip_session"]
            assert token not in cookie and session not in token

            assert (await web.get("/dashboard/session")).json()["hospital_code"] == "H1"
            assert (await web.get("/api/v1/summary")).status_code == 200
            assert (await web.get("/api/v1/cases", params={"hospital": "H2"})).status_code == 403
            # a change with the cookie from no origin or another one is refused before anything else
            refused = await web.post("/api/v1/special-cases", json={})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "CROSS_ORIGIN"
            assert (await web.delete("/dashboard/session", headers={"origin": "http://evil.example"})).status_code == 403

            assert (await web.delete("/dashboard/session", headers={"origin": ORIGIN})).status_code == 204
            web.cookies.set("drgdip_session", session)  # the old cookie, kept by someone
            assert (await web.get("/api/v1/summary")).json()["error"]["code"] == "SESSION_ENDED"

            # the sign-in and the sign-out are in the audit: who, when, from where; never the token
            async with rt.engine.connect() as conn:
                rows = [r for r in await audit_rows(conn) if r["action"] in (audit.SIGNED_IN, audit.SIGNED_OUT)]
            assert [r["action"] for r in rows] == [audit.SIGNED_IN, audit.SIGNED_OUT]  # the refusals: not in it
            for r in rows:
                assert (r["actor"], r["role"], r["token_id"]) == (f"token:{token_id}", "hospital", token_id)
                assert r["client"] and r["at"]
                assert token not in str(r) and session not in str(r)

            # a session ends with its token
            web.cookies.clear()
            await web.post("/dashboard/session", content=f"token={token}", headers=form | {"origin": ORIGIN})
            assert (await web.get("/api/v1/summary")).status_code == 200
            async with rt.engine.begin() as conn:
                assert await revoke_token(conn, token_id)
            assert (await web.get("/api/v1/summary")).status_code == 401

        async with rt.engine.begin() as conn:
            _id, admin = await create_token(conn, "bureau-admin")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.app), base_url=ORIGIN,
                                     headers={"authorization": f"Bearer {admin}"}) as api:
            assert (await api.get("/api/v1/summary")).status_code == 200  # bearer tokens as before
            assert (await api.get("/dashboard/session")).json()["role"] == "bureau-admin"
    finally:
        await rt.stop()
