"""The gateway's commands: `drgdip token create|revoke|list` (API tokens) and `drgdip
indicators rebuild` (the indicator cells and their rollups recomputed from the read model).

The main CLI mounts `token_app` with `app.add_typer(token_app, name="token")`. Each command is
one transaction on the gateway's database (`--db` or `DRGDIP_DB`), its schema upgraded first.
Creating and revoking a token is audited (`gateway_audit`) with the operating-system user as
the actor (`cli:<user>`); `record_command` records the other services' administrative commands
the same way (the main CLI calls it, `drgdip.audit`).
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
import typer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.gateway import handlers, repository
from services.gateway.config import GatewaySettings
from services.gateway.domain import audit
from services.gateway.domain.auth import TokenRequestError

T = TypeVar("T")
Db = Annotated[str | None, typer.Option(help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://… (env DRGDIP_DB)")]

token_app = typer.Typer(help="API tokens: one per hospital, and separate bureau roles.")
indicators_app = typer.Typer(help="The indicators' aggregate cells (§12).", no_args_is_help=True)


def _settings(db: str | None) -> GatewaySettings:
    from shared.settings import load_settings

    return load_settings(GatewaySettings, db=db)


def _in_transaction(settings: GatewaySettings, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work(conn)` in one transaction on the gateway's database (schema upgraded first)."""
    from shared.migrate import run_on_database

    async def run(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return run_on_database(settings.db, repository.NAME, run)


def cli_actor() -> str:
    """Who runs a command, as the audit records it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment
        return "cli:unknown"


def record_command(action: str, answer: Mapping[str, Any], db: str | None = None) -> None:
    """Append the audit row of an administrative command that took effect (`scheme import`,
    `policy import`, `settle`, `reprice` …), as the gateway's route for the same change does:
    the same action, subject and detail, with the operating-system user as the actor. `db` is
    the gateway's database (default `DRGDIP_DB`: the embedded mode's one database)."""
    detail = orjson.dumps(audit.change_detail(action, answer), default=str).decode()

    async def work(conn: AsyncConnection) -> None:
        await repository.record(conn, action, actor=cli_actor(), subject=audit.change_subject(action, answer),
                                detail=detail)

    _in_transaction(_settings(db), work)


@token_app.command("create")
def token_create(
    hospital: Annotated[str | None, typer.Option(help="hospital code (fixmedins_code) the token acts for")] = None,
    role: Annotated[str, typer.Option(
        help="hospital, bureau-analyst, bureau-reviewer, bureau-admin or bureau-auditor")] = "hospital",
    label: Annotated[str | None, typer.Option(help="who holds it, for the token list")] = None,
    days: Annotated[int | None, typer.Option(
        min=0, max=3650, help="days until it expires (default DRGDIP_TOKEN_DAYS; 0: never)")] = None,
    db: Db = None,
) -> None:
    """Issue a token. It is printed once; only its hash is stored."""
    settings = _settings(db)
    lifetime = settings.token_days if days is None else days

    async def work(conn: AsyncConnection) -> tuple[str, str]:
        token_id, token = await repository.create_token(conn, role, hospital, label, lifetime)
        await repository.record(conn, audit.TOKEN_CREATED, actor=cli_actor(), subject=token_id,
                                detail=orjson.dumps({"role": role, "hospital": hospital, "days": lifetime}).decode())
        return token_id, token

    try:
        token_id, token = _in_transaction(settings, work)
    except TokenRequestError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    expires = f", expires in {lifetime} days" if lifetime else ", never expires"
    typer.echo(f"token {token_id} ({role}{' ' + hospital if hospital else ''}{expires}); "
               "keep it secret, it is not shown again:")
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token_id: str, db: Db = None) -> None:
    """Revoke a token by its id (from `drgdip token list`)."""
    async def work(conn: AsyncConnection) -> bool:
        if not await repository.revoke_token(conn, token_id):
            return False
        await repository.record(conn, audit.TOKEN_REVOKED, actor=cli_actor(), subject=token_id)
        return True

    if not _in_transaction(_settings(db), work):
        typer.echo(f"error: no active token {token_id}", err=True)
        raise typer.Exit(2)
    typer.echo(f"revoked {token_id}")


@token_app.command("list")
def token_list(db: Db = None) -> None:
    """Show the tokens (ids, roles, hospitals, expiry; never the tokens themselves)."""
    for t in _in_transaction(_settings(db), repository.list_tokens):
        expires = t["expires_at"]
        if t["revoked_at"]:
            state = f"revoked {t['revoked_at']:%Y-%m-%d}"
        elif expires and expires <= datetime.now(UTC):
            state = f"expired {expires:%Y-%m-%d}"
        else:
            state = f"active, expires {expires:%Y-%m-%d}" if expires else "active"
        typer.echo(f"{t['token_id']}  {t['role']:<16} {t['hospital_code'] or '-':<12} {state}  {t['label'] or ''}")


@indicators_app.command("rebuild")
def indicators_rebuild(
    batch: Annotated[int, typer.Option(min=100, max=100_000, help="cases read per step")] = 5_000,
    db: Db = None,
) -> None:
    """Recompute every case's indicator contribution, every cell and every rollup of the cells
    (per period, migration gateway_0009), and the cases per status, from the read model, with
    the same functions as the live folding: the cells of cases folded before the contributions
    were kept (migration gateway_0004), or after a change of the near-threshold band.

    One transaction: the cells are replaced all at once or not at all, and running it again
    gives the same cells. A case folded before its facts were kept (migration gateway_0007)
    keeps the contribution it has (none before gateway_0004) until its next event arrives; the
    summary counts them."""
    from rich.console import Console

    from shared.progress import progress_bar

    settings = _settings(db)
    err = Console(stderr=True)

    async def work(conn: AsyncConnection) -> dict[str, int]:
        with progress_bar(err, "rebuild") as progress:
            task = progress.add_task("cases", total=await repository.count_cases(conn))
            counts = await handlers.rebuild_indicators(conn, settings.indicator_near_threshold_band, batch,
                                                       lambda n: progress.advance(task, n))
        await repository.record(conn, audit.INDICATORS_REBUILT, actor=cli_actor(), detail=orjson.dumps(counts).decode())
        return counts

    counts = _in_transaction(settings, work)
    typer.echo(f"{counts['cases']} cases: {counts['recomputed']} recomputed ({counts['changed']} changed), "
               f"{counts['without_facts']} without kept facts (their stored contribution kept), "
               f"{counts['not_counted']} not counted (not priced or withdrawn); {counts['cells']} cells")
