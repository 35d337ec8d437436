"""Who is calling: bearer tokens for hospitals and for the bureau's separate roles.

A token is shown once when it is created and stored only as its SHA-256 hash. A hospital token
is bound to one hospital code: it submits and reads that hospital's lists only. Bureau roles
are separate: analysts read everything, reviewers decide special cases, admins manage tokens,
schemes and policies.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from shared.errors import Forbidden, Invalid, Unauthorized

HOSPITAL = "hospital"
BUREAU_ROLES = ("bureau-analyst", "bureau-reviewer", "bureau-admin")
ROLES = (HOSPITAL, *BUREAU_ROLES)
PREFIX = "drgdip_"


class TokenRequestError(Invalid):
    """A token asked for with an unknown role, or a hospital code where none belongs."""

    default_code = "INVALID_TOKEN_REQUEST"


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


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send an Authorization: Bearer <token> header")
    return authorization[7:].strip()
