"""One error family for every API and command.

A `DomainError` carries a stable `code`, an HTTP `status`, a message, the field at fault and
`details`: always a list of `{field, code, message}` (a detail may add keys such as
`message_zh`). One handler turns it into `{"error": {code, message, field, details}}` with its
status. Domain code raises these (pure: no web framework here); the service edge maps them once.
Nothing a client sends can produce a 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class DomainError(Exception):
    """A request the rules refuse: the caller can fix it (4xx), or an upstream is down (503)."""

    status: ClassVar[int] = 422
    default_code: ClassVar[str] = "INVALID"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 details: Sequence[Mapping[str, Any]] = (), status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.details: list[dict[str, Any]] = [dict(d) for d in details] or (
            [detail(field, self.code, message)] if field else [])

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field,
                          "details": self.details}}


def detail(field: str | None, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """One entry of `details`."""
    return {"field": field, "code": code, "message": message, **extra}


class Invalid(DomainError):
    """The input breaks a rule (422)."""


class NotFound(DomainError):
    status = 404
    default_code = "NOT_FOUND"


class Conflict(DomainError):
    """The input is well formed but clashes with what is stored (409)."""

    status = 409
    default_code = "CONFLICT"


class Unauthorized(DomainError):
    status = 401
    default_code = "UNAUTHORIZED"


class Forbidden(DomainError):
    status = 403
    default_code = "FORBIDDEN"


class TooLarge(DomainError):
    """A request body over its bound: not read further, not stored (413)."""

    status = 413
    default_code = "TOO_LARGE"


class Unavailable(DomainError):
    """Something this request needs is not answering (503): try again later."""

    status = 503
    default_code = "UNAVAILABLE"


def field_path(loc: tuple | list) -> str:
    """pydantic's error location as a field path: `("body", "diseinfo", 0, "diag_code")` ->
    `diseinfo[0].diag_code`."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or (str(loc[0]) if loc else "request")  # the whole body (or query) is at fault


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors as `details` entries (its error type is the code)."""
    return [detail(field_path(e.get("loc", ())), str(e.get("type", "invalid")), str(e.get("msg", "")))
            for e in errors]


def invalid_from_validation(errors: Sequence[Any], code: str = "INVALID_FIELD") -> Invalid:
    """A pydantic `ValidationError.errors()` as one `Invalid` naming the first field at fault."""
    details = validation_details(errors)
    first = details[0] if details else detail("request", code, "invalid request")
    return Invalid(f"{first['field']}: {first['message']}", code=code, field=first["field"],
                   details=details)
