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
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.errors import DomainError

HOSPITAL = "hospital"
BUREAU_ROLES = ("bureau-analyst", "bureau-reviewer", "bureau-admin")
ROLES = (HOSPITAL, *BUREAU_ROLES)
PREFIX = "drgdip_"


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
            raise DomainError(f"this needs one of the roles {', '.join(roles)}", code="FORBIDDEN", status=403)

    def require_hospital(self, hospital_code: str, field: str) -> None:
        """A hospital may act only for itself."""
        if self.role == HOSPITAL and self.hospital_code != hospital_code:
            raise DomainError(f"this token belongs to hospital {self.hospital_code}, not {hospital_code}", code="HOSPITAL_MISMATCH", status=403, field=field)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_table(metadata: MetaData) -> Table:
    return Table(
        "gateway_tokens", metadata,
        Column("token_id", String(16), primary_key=True),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("role", String(32), nullable=False),
        Column("hospital_code", String(32), nullable=True),
        Column("label", String(128), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
    )


_tokens = tokens_table(MetaData())


async def create_token(engine: AsyncEngine, role: str, hospital_code: str | None = None,
                       label: str | None = None) -> tuple[str, str]:
    """Issue a token; returns (token_id, token). The token itself is never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == HOSPITAL) != bool(hospital_code):
        raise ValueError("a hospital token needs --hospital, and only a hospital token has one")
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(24)}"
    async with engine.begin() as conn:
        await conn.execute(insert(_tokens).values(
            token_id=token_id, token_hash=hash_token(token), role=role, hospital_code=hospital_code,
            label=label, created_at=datetime.now(UTC)))
    return token_id, token


async def revoke_token(engine: AsyncEngine, token_id: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(update(_tokens).where(
            _tokens.c.token_id == token_id, _tokens.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_tokens(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(
            _tokens.c.token_id, _tokens.c.role, _tokens.c.hospital_code, _tokens.c.label,
            _tokens.c.created_at, _tokens.c.revoked_at).order_by(_tokens.c.created_at))).all()
    return [dict(r._mapping) for r in rows]


async def authenticate(engine: AsyncEngine, authorization: str | None) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise DomainError("send an Authorization: Bearer <token> header", code="UNAUTHORIZED", status=401)
    token = authorization[7:].strip()
    async with engine.connect() as conn:
        row = (await conn.execute(select(_tokens).where(_tokens.c.token_hash == hash_token(token)))).first()
    if row is None or row.revoked_at is not None:
        raise DomainError("unknown or revoked token", code="UNAUTHORIZED", status=401)
    return Principal(row.token_id, row.role, row.hospital_code)
