"""The HTTP edge every service shares: one error handler, one transaction per request, and the
`Annotated` dependency aliases routes are written with.

- `Conn`: the request's one database transaction, begun before the route and committed when it
  returns (rolled back when it raises). Repositories take it and never commit.
- `stage_service(name)`: the stage object a service's routes work with (its registry, stores and
  settings), as the composition root built it.
- `RequireServiceToken`: in the distributed mode, what stands in front of every service but the
  gateway: only a caller with the service credential (the gateway) gets past it.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.db import is_transient
from shared.errors import DomainError, TooLarge, Unauthorized, Unavailable, invalid_from_validation

# The header the gateway sends its service credential in (DRGDIP_SERVICE_TOKEN).
SERVICE_TOKEN_HEADER = "x-drgdip-service-token"
# What a process serves to anyone: probes and metrics.
OPS_PATHS = frozenset({"/livez", "/readyz", "/metrics"})

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 403: "FORBIDDEN",
               413: "TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_req: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        err = invalid_from_validation(exc.errors())
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = DomainError(str(exc.detail), code=_HTTP_CODES.get(exc.status_code, "HTTP_ERROR"),
                          status=exc.status_code)
        return JSONResponse(err.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        # The database away (restart, failover, too many connections) is the client's 503 to
        # retry, never a 500; anything else is a fault of ours, answered in the same JSON shape.
        if is_transient(exc):
            err: DomainError = Unavailable("the database is not answering: try again later",
                                           code="DATABASE_UNAVAILABLE")
        else:
            err = DomainError("internal error", code="INTERNAL_ERROR", status=500)
        return JSONResponse(err.body(), status_code=err.status, headers={"Retry-After": "5"}
                            if err.status == 503 else None)


def engine_of(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _transaction(request: Request) -> AsyncIterator[AsyncConnection]:
    async with engine_of(request).begin() as conn:
        yield conn


# "function" scope: the transaction ends (commits) before the response is sent, so a failed
# commit is the client's error response, never a success that did not happen.
Conn = Annotated[AsyncConnection, Depends(_transaction, scope="function")]
Engine = Annotated[AsyncEngine, Depends(engine_of)]


def stage_service(name: str) -> Callable[[Request], Any]:
    """A dependency giving the stage object of service `name` (see `shared.runtime.Stage`)."""
    def _service(request: Request) -> Any:
        return request.app.state.services[name]
    _service.__name__ = f"{name}_service"
    return _service


class RequireServiceToken:
    """ASGI middleware: every request but the ops paths carries the service credential, or is
    answered 401 `SERVICE_TOKEN_INVALID` (the same for a missing and a wrong one, compared in
    constant time) before any route, or the 404 of a missing one, is reached."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("an empty service token")
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPS_PATHS:
            given = next((v for k, v in scope["headers"] if k == SERVICE_TOKEN_HEADER.encode()), b"")
            if not hmac.compare_digest(given, self._token):
                err = Unauthorized("this service answers the gateway only: missing or wrong service token",
                                   code="SERVICE_TOKEN_INVALID", field=SERVICE_TOKEN_HEADER)
                await JSONResponse(err.body(), status_code=err.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int, *, code: str = "TOO_LARGE", what: str = "the body") -> bytes:
    """The request body, refused (413, field "body") as soon as it is known to be over `limit`
    bytes: the declared length first, then while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what} is {declared} bytes, at most {limit}", code=code, field="body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"{what} is more than {limit} bytes", code=code, field="body")
    return bytes(body)
