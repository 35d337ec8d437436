"""Who is calling: bearer tokens for hospitals and for the bureau's separate roles.

A token is shown once when it is created and stored only as its SHA-256 hash. A hospital token
is bound to one hospital code: it submits and reads that hospital's lists only. Bureau roles
are separate: analysts read everything, reviewers decide special cases, admins manage tokens,
schemes and policies, auditors read everything with personal data in clear (each such read
audited). A token may carry an expiry; an expired token is refused like a revoked one, with its
own code.

The dashboard signs in with the same tokens: the token is exchanged once for a session, an opaque
random id kept in an HttpOnly, SameSite=Strict cookie and stored only as its hash, valid for a
number of hours and no longer than its token. A request the cookie authenticates that changes
anything must come from the dashboard's own origin (its `Origin` header), so another site cannot
make the browser act for its user.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.errors import DomainError, Forbidden, Invalid, Unauthorized

HOSPITAL = "hospital"
AUDITOR = "bureau-auditor"
BUREAU_ROLES = ("bureau-analyst", "bureau-reviewer", "bureau-admin", AUDITOR)
ROLES = (HOSPITAL, *BUREAU_ROLES)
PREFIX = "drgdip_"
SESSION_COOKIE = "drgdip_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenRequestError(Invalid):
    """A token asked for with an unknown role, or a hospital code where none belongs."""

    default_code = "INVALID_TOKEN_REQUEST"


class TokenExpired(Unauthorized):
    default_code = "TOKEN_EXPIRED"


class TooManyFailures(DomainError):
    """A client refused too often within the window (429); `Retry-After` says when to retry."""

    status = 429
    default_code = "TOO_MANY_FAILED_AUTHENTICATIONS"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many refused authentications from this client; retry after {retry_after} s")
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: str
    hospital_code: str | None = None

    @property
    def is_bureau(self) -> bool:
        return self.role in BUREAU_ROLES

    def may_see(self, hospital_code: str) -> bool:
        return self.is_bureau or self.hospital_code == hospital_code

    @property
    def reads_personal_data(self) -> bool:
        """Names and ID numbers in clear: a hospital (which is only ever shown the lists it sent)
        or a bureau auditor (whose every such read is audited); masked for every other role."""
        return self.role in (HOSPITAL, AUDITOR)

    @property
    def actor(self) -> str:
        """Who made a change, as the audit records it."""
        return f"token:{self.token_id}"

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(f"this needs one of the roles {', '.join(roles)}", code="FORBIDDEN")

    def require_hospital(self, hospital_code: str, field: str) -> None:
        """A hospital may act only for itself."""
        if self.role == HOSPITAL and self.hospital_code != hospital_code:
            raise Forbidden(f"this token belongs to hospital {self.hospital_code}, not {hospital_code}",
                            code="HOSPITAL_MISMATCH", field=field)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    """A token being issued: `token` is shown once, only `token_hash` is stored."""

    token_id: str
    token: str
    token_hash: str
    role: str
    hospital_code: str | None


def issue_token(role: str, hospital_code: str | None = None) -> NewToken:
    """A fresh token for a role (a hospital token for one hospital code)."""
    if role not in ROLES:
        raise TokenRequestError(f"role must be one of {', '.join(ROLES)}", field="role")
    if (role == HOSPITAL) != bool(hospital_code):
        raise TokenRequestError("a hospital token needs --hospital, and only a hospital token has one",
                                field="hospital")
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(24)}"
    return NewToken(token_id, token, hash_token(token), role, hospital_code)


def expiry(created_at: datetime, days: int | None) -> datetime | None:
    """When a token made at `created_at` for `days` days expires; None (never) for 0 or None."""
    if days is not None and days < 0:
        raise TokenRequestError("days must be 0 (never expires) or more", field="days")
    return created_at + timedelta(days=days) if days else None


def token_id_of(token: str) -> str | None:
    """The id part of a token as issued (`drgdip_<id>_<secret>`), for logs; None when the text is
    not shaped like one (nothing of the secret is ever returned)."""
    parts = token.split("_")
    if len(parts) >= 3 and f"{parts[0]}_" == PREFIX and len(parts[1]) == 12 and all(
            c in "0123456789abcdef" for c in parts[1]):
        return parts[1]
    return None


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send an Authorization: Bearer <token> header")
    return authorization[7:].strip()


@dataclass(frozen=True)
class NewSession:
    """A dashboard session being opened: `session_id` goes into the cookie, only its hash is stored."""

    session_id: str
    session_hash: str
    expires_at: datetime


def open_session(now: datetime, hours: int, token_expires_at: datetime | None) -> NewSession:
    """A fresh session id valid for `hours` hours, never beyond its token's own expiry."""
    session_id = secrets.token_urlsafe(32)
    until = now + timedelta(hours=hours)
    if token_expires_at is not None:
        until = min(until, token_expires_at)
    return NewSession(session_id, hash_token(session_id), until)


def same_origin(origin: str | None, scheme: str, host: str | None) -> bool:
    """Whether a request's `Origin` header names the origin it was sent to (a missing or "null"
    origin is not the same: a browser sends it with every request that changes something)."""
    if not origin or not host:
        return False
    return origin.rstrip("/").lower() == f"{scheme}://{host}".lower()
