"""Review's commands: the monitoring rules' parameters per region and period.

drgdip review rules import FILE --region R --from D [--to D] [--db URL]
    Store a review-rules document (`drgdip.review-rules/1`, see
    services/review/domain/parameters.py) as the region's next version, in force for cases
    discharged from D (to --to, or open-ended): a case is reviewed with the version in force on
    its discharge date where it was treated (the latest start, then the highest version, wins);
    without one, with the shipped defaults. Importing the latest version's parameters and period
    again stores nothing. A new version is audited (`review_audit`: cli:<user>, the previous
    and the new parameters).
drgdip review rules list [--db URL]
    Every stored version: region, version, period, who imported it and when.
drgdip review rules defaults
    The shipped defaults as a complete document (a starting point to edit).
drgdip review run --period 2024-03|2024Q1 [--region R] [--db URL]
    The hospital-level rules (HOSPITAL_UPCODING, REFUSING_SEVERE, UNDER_SERVICE) for a month or
    a quarter, in one region or in every region with cases discharged in it, with the parameters
    in force on the period's last day. Prints the flags raised; running again replaces the open
    flags that changed and keeps those answered or decided. The same runs after every monthly
    pre-settlement (the pricer's `period-settled` event), for the quarter too when the month
    closes one.
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import orjson
import typer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.review import handlers, repository
from services.review.domain.parameters import RuleParameters
from shared.errors import DomainError

T = TypeVar("T")
Db = Annotated[str | None, typer.Option(help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://… (env DRGDIP_DB)")]

rules_app = typer.Typer(help="Monitoring rules' parameters (智能监控) per region and period.",
                        no_args_is_help=True)


def in_transaction(db: str | None, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work(conn)` in one transaction on review's database, its schema upgraded first."""
    from services.review.config import ReviewSettings
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    async def run(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return run_on_database(load_settings(ReviewSettings, db=db).db, repository.NAME, run)


def _cli_actor() -> str:
    """Who runs a command, as the audit records it (`cli:<user>`)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment
        return "cli:unknown"


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


def run_command(
    period: Annotated[str, typer.Option(help="a month YYYY-MM or a quarter YYYYQn (discharge dates)")],
    region: Annotated[str | None, typer.Option(help="one region (default: every region with cases)")] = None,
    db: Db = None,
) -> None:
    """Run the hospital-level monitoring rules for a period."""
    try:
        runs = in_transaction(db, lambda conn: handlers.run_hospital_rules(conn, period, region))
    except DomainError as e:
        typer.echo(f"error: {e.field or 'period'}: {e}", err=True)
        raise typer.Exit(2) from None
    if not runs:
        typer.echo(f"no cases discharged in {period}: nothing to review")
    for r in runs:
        typer.echo(f"{r.region} {r.period}: {r.cases} cases at {r.hospitals} hospitals, rules {r.rules}: "
                   f"{len(r.flags)} flags ({len(r.raised)} new, {len(r.superseded)} superseded)")
        for f in r.flags:
            typer.echo(f"  {f.hospital_code:<12} {f.rule:<18} {f.severity:<6} {f.message}")


@rules_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="review-rules JSON (drgdip.review-rules/1)")],
    region: Annotated[str, typer.Option(help="the region (行政区划) the parameters apply to")],
    valid_from: Annotated[str, typer.Option("--from", help="first discharge date in force (YYYY-MM-DD)")],
    valid_to: Annotated[str | None, typer.Option("--to", help="last discharge date (default: open)")] = None,
    db: Db = None,
) -> None:
    """Store monitoring-rule parameters as the region's next version."""
    start, end = _day(valid_from, "--from"), _day(valid_to, "--to")
    assert start is not None
    try:
        document = file.read_bytes()
        done = in_transaction(db, lambda conn: handlers.import_rules(conn, document, region, start, end,
                                                                     who=_cli_actor()))
    except (DomainError, OSError) as e:
        typer.echo(f"error: {file}: {e}", err=True)
        raise typer.Exit(2) from None
    period = f"from {done.valid_from}" + (f" to {done.valid_to}" if done.valid_to else "")
    what = "imported" if done.stored else "unchanged:"
    typer.echo(f"{what} review rules {done.region} v{done.version} ({period})")


@rules_app.command("list")
def list_command(db: Db = None) -> None:
    """Every stored version of the monitoring rules' parameters."""
    rows = in_transaction(db, repository.list_rules)
    if not rows:
        typer.echo("no review rules stored: every region uses the defaults (drgdip review rules defaults)")
    for r in rows:
        period = f"{r['valid_from']} – {r['valid_to'] or 'open'}"
        when = datetime.fromisoformat(r["imported_at"]).strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{r['region']:<12} v{r['version']:<4} {period:<26} by {r['imported_by']} at {when}")


@rules_app.command("defaults")
def defaults_command() -> None:
    """Print the shipped defaults as a complete review-rules document."""
    typer.echo(orjson.dumps(RuleParameters().to_document(), option=orjson.OPT_INDENT_2).decode())
