"""The HTTP edge every service shares: one error handler, one transaction per request, and the
`Annotated` dependency aliases routes are written with.

- `Conn`: the request's one database transaction, begun before the route and committed when it
  returns (rolled back when it raises). Repositories take it and never commit.
- `stage_service(name)`: the stage object a service's routes work with (its registry, stores and
  settings), as the composition root built it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import DomainError, invalid_from_validation

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
