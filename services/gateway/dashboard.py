"""The web dashboard (`/dashboard/`): its pages, its chart library and its sign-in.

The pages are plain HTML, CSS and JavaScript in `web/` (no build step) and read the same
`/api/v1` routes as every client, signed in with the session cookie: a hospital sees only what
its token may see there. Apache ECharts is served from `DRGDIP_WEB_ASSETS` (put there by
scripts/install-web.sh; bureau networks have no internet); without it the pages say how to
install it.

Sign-in exchanges an API token, posted once as a form, for a session (domain/auth.py): an opaque
id in an HttpOnly, SameSite=Strict cookie, stored hashed. The token never appears in a URL or in
the browser's storage.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from services.gateway import repository
from services.gateway.domain import audit
from services.gateway.domain.auth import SESSION_COOKIE, hash_token, token_id_of
from services.gateway.endpoints import (
    Caller,
    The,
    caller,
    client_of,
    log,
    not_throttled,
    require_same_origin,
)
from shared.errors import Invalid, NotFound, Unauthorized
from shared.web import Engine, read_body

WEB = Path(__file__).parent / "web"
ECHARTS = Path("echarts") / "echarts.min.js"
STATIC_NAME = re.compile(r"^[a-z0-9-]+\.(js|css|svg)$")
MEDIA = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}
# the pages run only their own scripts; ECharts sets inline styles on the elements it draws
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
MAX_SIGN_IN_BYTES = 4096

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("", include_in_schema=False)
async def dashboard_root() -> Response:
    return RedirectResponse("/dashboard/", status_code=308)


@router.get("/", include_in_schema=False)
async def dashboard_page() -> Response:
    """The dashboard's one page (its views are drawn by app.js)."""
    return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS | {"cache-control": "no-store"})


@router.get("/static/{name}", include_in_schema=False)
async def dashboard_file(name: str) -> Response:
    """The page's own scripts and styles."""
    path = WEB / name
    if not STATIC_NAME.match(name) or not path.is_file():
        raise NotFound(f"no dashboard file {name!r}", field="name")
    return FileResponse(path, media_type=MEDIA[name.rsplit(".", 1)[1]],
                        headers=SECURITY_HEADERS | {"cache-control": "no-cache"})


@router.get("/vendor/echarts.min.js", include_in_schema=False)
async def chart_library(gw: The) -> Response:
    """Apache ECharts, as scripts/install-web.sh installed it (404 `WEB_ASSETS_MISSING` without)."""
    path = gw.settings.web_assets / ECHARTS
    if not path.is_file():
        raise NotFound(f"the chart library is not installed in {gw.settings.web_assets}: run "
                       "`bash scripts/install-web.sh` (or `make setup`)", code="WEB_ASSETS_MISSING")
    return FileResponse(path, media_type=MEDIA["js"], headers={"cache-control": "max-age=86400"})


def _session_answer(role: str, hospital_code: str | None, token_id: str,
                    expires_at: datetime | None) -> dict[str, Any]:
    return {"role": role, "hospital_code": hospital_code, "token_id": token_id,
            "expires_at": expires_at.isoformat() if expires_at else None}


@router.post("/session", include_in_schema=False)
async def sign_in(request: Request, gw: The, engine: Engine) -> Response:
    """Sign in with an API token posted as a form field (`token`): sets the session cookie and
    answers who is signed in. A refusal counts against the client like a refused bearer token."""
    require_same_origin(request)  # no other site signs a browser in
    client, now = not_throttled(gw, request)
    body = await read_body(request, MAX_SIGN_IN_BYTES, what="the sign-in form")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise Invalid("post the sign-in as a form (application/x-www-form-urlencoded)", code="NOT_A_FORM",
                      field="body")
    token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
    if not token:
        raise Invalid("enter an API token", code="TOKEN_REQUIRED", field="token")
    async with engine.begin() as conn:
        who, new, why = await repository.open_token_session(conn, hash_token(token), gw.settings.session_hours)
        if who is not None and new is not None:  # audited with the session it opened: who, when, from where
            await repository.record(conn, audit.SIGNED_IN, actor=who.actor, role=who.role, token_id=who.token_id,
                                    client=client)
    if who is None or new is None:
        gw.throttle.failed(client, now)
        log.warning("sign-in refused", client=client, reason=why, token_id=token_id_of(token))
        raise Unauthorized("unknown, revoked or expired token", code="SIGN_IN_REFUSED", field="token")
    log.info("signed in", client=client, token_id=who.token_id, role=who.role)
    response = Response(orjson.dumps(_session_answer(who.role, who.hospital_code, who.token_id, new.expires_at)),
                        media_type="application/json", headers={"cache-control": "no-store"})
    response.set_cookie(SESSION_COOKIE, new.session_id, max_age=int(
        (new.expires_at - datetime.now(UTC)).total_seconds()), path="/", httponly=True, samesite="strict",
        secure=gw.settings.secure_cookies or request.url.scheme == "https")
    return response


@router.get("/session", include_in_schema=False)
async def signed_in(request: Request, gw: The, engine: Engine) -> dict[str, Any]:
    """Who the page is signed in as (401 when nobody is: a page opened before signing in is not
    a refused authentication and does not count against the client)."""
    authorization = request.headers.get("authorization")
    if authorization is None and SESSION_COOKIE not in request.cookies:
        raise Unauthorized("not signed in", code="NOT_SIGNED_IN")
    who = await caller(request, engine, gw, authorization)
    return _session_answer(who.role, who.hospital_code, who.token_id, None) | {"is_bureau": who.is_bureau}


@router.delete("/session", status_code=204, include_in_schema=False)
async def sign_out(request: Request, who: Caller, engine: Engine) -> Response:
    """Sign out: the session ends on the server and its cookie is cleared (audited)."""
    async with engine.begin() as conn:
        if session := request.cookies.get(SESSION_COOKIE):
            await repository.close_session(conn, hash_token(session))
        await repository.record(conn, audit.SIGNED_OUT, actor=who.actor, role=who.role, token_id=who.token_id,
                                client=client_of(request))
    log.info("signed out", client=client_of(request), token_id=who.token_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
