"""The gateway's commands: `drgdip token create|revoke|list` (API tokens).

The main CLI mounts `token_app` with `app.add_typer(token_app, name="token")`. Each command is
one transaction on the gateway's database (`--db` or `DRGDIP_DB`), its schema upgraded first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.gateway import repository
from services.gateway.config import GatewaySettings
from services.gateway.domain.auth import TokenRequestError

T = TypeVar("T")
Db = Annotated[str | None, typer.Option(help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://… (env DRGDIP_DB)")]

token_app = typer.Typer(help="API tokens: one per hospital, and separate bureau roles.")


def _in_transaction(db: str | None, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work(conn)` in one transaction on the gateway's database (schema upgraded first)."""
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    async def run(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return run_on_database(load_settings(GatewaySettings, db=db).db, repository.NAME, run)


@token_app.command("create")
def token_create(
    hospital: Annotated[str | None, typer.Option(help="hospital code (fixmedins_code) the token acts for")] = None,
    role: Annotated[str, typer.Option(help="hospital, bureau-analyst, bureau-reviewer or bureau-admin")] = "hospital",
    label: Annotated[str | None, typer.Option(help="who holds it, for the token list")] = None,
    db: Db = None,
) -> None:
    """Issue a token. It is printed once; only its hash is stored."""
    try:
        token_id, token = _in_transaction(db, lambda c: repository.create_token(c, role, hospital, label))
    except TokenRequestError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"token {token_id} ({role}{' ' + hospital if hospital else ''}); keep it secret, it is not shown again:")
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token_id: str, db: Db = None) -> None:
    """Revoke a token by its id (from `drgdip token list`)."""
    if not _in_transaction(db, lambda c: repository.revoke_token(c, token_id)):
        typer.echo(f"error: no active token {token_id}", err=True)
        raise typer.Exit(2)
    typer.echo(f"revoked {token_id}")


@token_app.command("list")
def token_list(db: Db = None) -> None:
    """Show the tokens (ids, roles, hospitals; never the tokens themselves)."""
    for t in _in_transaction(db, repository.list_tokens):
        state = f"revoked {t['revoked_at']:%Y-%m-%d}" if t["revoked_at"] else "active"
        typer.echo(f"{t['token_id']}  {t['role']:<16} {t['hospital_code'] or '-':<12} {state}  {t['label'] or ''}")
