"""The `drgdip` command: serve the services, group files, manage schemes and policies, demo."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from drgdip.dip_cli import compare_command, dip_app
from drgdip.generate_cli import generate_command
from services.grouper.cli import group_command, scheme_app
from services.pricer.cli import (
    advance_command,
    calibrate_command,
    price_command,
    settle_command,
    simulate_command,
)
from shared.settings import ServiceSettings

app = typer.Typer(help="drgdip: DRG/DIP payment for medical-insurance bureaus and hospitals.",
                  no_args_is_help=True, add_completion=False)
app.command("group", help="Group a JSON Lines file of cases with a scheme.")(group_command)
app.add_typer(scheme_app, name="scheme", help="Inspect, compare and register grouping schemes.")
app.command("generate", help="Generate a synthetic region's settlement lists (JSON Lines).")(generate_command)
app.command("price", help="What-if: price grouped cases under a policy file (nothing stored).")(price_command)
app.command("calibrate", help="Compute DRG weights and a base rate from grouped history.")(calibrate_command)
app.add_typer(dip_app, name="dip", help="DIP (按病种分值付费): build a catalogue from history, group lists.")
app.command("compare", help="Price the same lists under DRG and under DIP; differences per group and hospital.")(
    compare_command)
app.command("advance", help="Record a prepayment (预付金) netted at the annual clearing.")(advance_command)
app.command("settle", help="Monthly pre-settlement (--period YYYY-MM) or annual clearing (--period YYYY).")(
    settle_command)
app.command("simulate", help="模拟运行: DRG payment against fee-for-service, per hospital and DRG.")(
    simulate_command)
policy_app = typer.Typer(help="Pricing policies (rates, coefficients, weights per region and period).")
app.add_typer(policy_app, name="policy")
token_app = typer.Typer(help="API tokens: one per hospital, and separate bureau roles.")
app.add_typer(token_app, name="token")

T = TypeVar("T")
SERVICES = ["all", "ingest", "grouper", "pricer", "review", "gateway"]
Bus = Annotated[str | None, typer.Option(help="memory:// or kafka://HOST:PORT (env DRGDIP_BUS)")]
Db = Annotated[str | None, typer.Option(help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://… (env DRGDIP_DB)")]


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="one of: " + ", ".join(SERVICES))] = "all",
    bus: Bus = None,
    db: Db = None,
    host: Annotated[str | None, typer.Option(help="listen address (env DRGDIP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (env DRGDIP_PORT)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="embedded mode: folder of the SQLite file")] = None,
    schemes_dir: Annotated[Path | None, typer.Option(help="grouper: folder of schemes to load")] = None,
) -> None:
    """Run one service, or all five in one process (embedded: in-process bus, one SQLite file)."""
    import uvicorn

    from drgdip.stages import build_runtime

    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(SERVICES)}")
    if data_dir is not None and db is None:
        db = f"sqlite+aiosqlite:///{data_dir / 'drgdip.db'}"
    runtime = build_runtime(service, bus=bus, db=db, host=host, port=port, schemes_dir=schemes_dir)
    s = runtime.settings
    uvicorn.run(runtime.app, host=s.host, port=s.port, log_level="warning")


@policy_app.command("import")
def policy_import(file: Path, db: Db = None) -> None:
    """Store a pricing policy JSON in the pricer's database."""
    from services.pricer.config import PricerSettings
    from services.pricer.policy import PolicyError
    from services.pricer.service import import_policy

    try:
        p = _on_database(PricerSettings, "pricer", db, lambda e: import_policy(e, file.read_bytes()))
    except PolicyError as e:
        typer.echo(f"error: {file}: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"imported policy {p.policy_id} v{p.version} ({p.region}, from {p.valid_from}, "
               f"{len(p.weights.table)} weights)")


def _on_database(settings: type[ServiceSettings], service: str, db: str | None,
                 work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work(engine)` on a service's database (`--db` or its settings), schema upgraded."""
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    return run_on_database(load_settings(settings, db=db).db, service, work)


def _on_gateway(db: str | None, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    from services.gateway.config import GatewaySettings

    return _on_database(GatewaySettings, "gateway", db, work)


@token_app.command("create")
def token_create(
    hospital: Annotated[str | None, typer.Option(help="hospital code (fixmedins_code) the token acts for")] = None,
    role: Annotated[str, typer.Option(help="hospital, bureau-analyst, bureau-reviewer or bureau-admin")] = "hospital",
    label: Annotated[str | None, typer.Option(help="who holds it, for the token list")] = None,
    db: Db = None,
) -> None:
    """Issue a token. It is printed once; only its hash is stored."""
    from services.gateway.auth import create_token

    try:
        token_id, token = _on_gateway(db, lambda e: create_token(e, role, hospital, label))
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"token {token_id} ({role}{' ' + hospital if hospital else ''}); keep it secret, it is not shown again:")
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token_id: str, db: Db = None) -> None:
    """Revoke a token by its id (from `drgdip token list`)."""
    from services.gateway.auth import revoke_token

    if not _on_gateway(db, lambda e: revoke_token(e, token_id)):
        typer.echo(f"error: no active token {token_id}", err=True)
        raise typer.Exit(2)
    typer.echo(f"revoked {token_id}")


@token_app.command("list")
def token_list(db: Db = None) -> None:
    """Show the tokens (ids, roles, hospitals; never the tokens themselves)."""
    from services.gateway.auth import list_tokens

    for t in _on_gateway(db, list_tokens):
        state = f"revoked {t['revoked_at']:%Y-%m-%d}" if t["revoked_at"] else "active"
        typer.echo(f"{t['token_id']}  {t['role']:<16} {t['hospital_code'] or '-':<12} {state}  {t['label'] or ''}")


@app.command("import")
def import_lists(
    file: Annotated[Path, typer.Argument(help="JSON Lines of native lists, or CSV (flat layout)")],
    format: Annotated[str, typer.Option(help="jsonl or csv (default: by the file's extension)")] = "",
    dictionary_scheme: Annotated[Path | None, typer.Option(help="scheme folder for the code checks")] = None,
    db: Db = None,
) -> None:
    """Bulk-import history into ingest's store; the running suite carries it downstream."""
    from rich.console import Console
    from rich.progress import Progress

    from services.ingest import qc
    from services.ingest.config import IngestSettings
    from services.ingest.service import NAME, Intake, file_chunks, import_stream
    from shared.messaging import Outbox
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    fmt = format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
    settings = load_settings(IngestSettings, db=db, dictionary_scheme=dictionary_scheme)
    total = sum(1 for _ in file.open("rb")) - (1 if fmt == "csv" else 0)

    async def run(engine: AsyncEngine) -> dict:
        from sqlalchemy import MetaData

        dictionaries = qc.load_dictionaries(settings.dictionary_scheme) if settings.dictionary_scheme else None
        intake = Intake(engine, Outbox(NAME, MetaData()), settings, dictionaries)
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task(f"importing {file.name}", total=total)
            return await import_stream(intake, file_chunks(file), fmt, None,
                                       progress=lambda n: progress.advance(task, n))

    summary = run_on_database(settings.db, NAME, run)
    typer.echo(f"job {summary['job_id']}: {summary['lines']} lines, {summary['accepted']} accepted, "
               f"{summary['duplicate']} duplicates, {summary['rejected']} rejected")
    for r in summary["rejections"][:20]:
        first = r["problems"][0]
        typer.echo(f"  line {r['line']}: {first['field']}: {first['message_en']} ({first['code']})")


@app.command()
def demo(
    cases: Annotated[int, typer.Option(min=1, help="settlement lists over the 3 years")] = 10_000,
    hospitals: Annotated[int, typer.Option(min=1, help="hospitals in the region")] = 20,
    seed: Annotated[int, typer.Option(help="same seed, same region")] = 1,
    data_dir: Annotated[Path, typer.Option(help="where the database and the reports are written")] = Path("var/demo"),
    scheme_dir: Annotated[Path | None, typer.Option(
        help="grouping scheme folder, e.g. ../shared/schemes/chs-drg-1.1 (env DRGDIP_SCHEME_DIR; "
             "else the bundled sample scheme, not for payment)")] = None,
    port: Annotated[int, typer.Option(help="port the gateway is served on at the end")] = 8000,
    serve: Annotated[bool, typer.Option(help="serve the gateway when done (Ctrl-C stops)")] = True,
    shared: Annotated[Path | None, typer.Option(hidden=True, help="old form: <shared>/schemes/chs-drg-1.1")] = None,
) -> None:
    """The main job in embedded mode: a synthetic region generated, imported, grouped, priced and
    reviewed; weights calibrated, a point-method policy simulated, a year settled and cleared."""
    from drgdip.demo import DemoOptions, run_demo

    if scheme_dir is None and shared is not None:
        scheme_dir = shared / "schemes" / "chs-drg-1.1"
    options = DemoOptions(cases=cases, hospitals=hospitals, seed=seed, data_dir=data_dir,
                          scheme_dir=scheme_dir, serve=serve, port=port)
    try:
        asyncio.run(run_demo(options))
    except KeyboardInterrupt:
        pass


@scheme_app.command("import")
def scheme_import(
    folder: Annotated[Path, typer.Argument(help="scheme folder (with scheme.json)")],
    region: Annotated[str, typer.Option(help="region (insured area) the scheme applies to")],
    valid_from: Annotated[str, typer.Option("--from", help="first discharge date, YYYY-MM-DD")],
    valid_to: Annotated[str | None, typer.Option("--to", help="last discharge date (open if omitted)")] = None,
    db: Db = None,
) -> None:
    """Register a scheme for a region from a date: cases are grouped by the scheme in force."""
    from datetime import UTC, date, datetime

    from sqlalchemy import delete, insert

    from services.grouper.config import GrouperSettings
    from services.grouper.core import SchemeError, load_scheme
    from services.grouper.service import registrations

    try:
        scheme = load_scheme(folder)
        start, end = date.fromisoformat(valid_from), date.fromisoformat(valid_to) if valid_to else None
    except (SchemeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None

    async def run(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(delete(registrations).where(
                registrations.c.scheme_id == scheme.id, registrations.c.region == region,
                registrations.c.valid_from == start))
            await conn.execute(insert(registrations).values(
                scheme_id=scheme.id, region=region, valid_from=start, valid_to=end,
                path=str(folder.resolve()), imported_at=datetime.now(UTC)))

    _on_database(GrouperSettings, "grouper", db, run)
    typer.echo(f"registered {scheme.id} for region {region} from {start}" + (f" to {end}" if end else ""))
    typer.echo("restart the grouper (or its replicas) to put the registration in force")


@app.command()
def regroup(
    scheme: Annotated[str, typer.Option(help="id of the scheme to regroup with")],
    date_from: Annotated[str | None, typer.Option("--from", help="first discharge date, YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="last discharge date, YYYY-MM-DD")] = None,
    code_mode: Annotated[str, typer.Option(help="raw or mapped")] = "raw",
    schemes_dir: Annotated[Path | None, typer.Option(help="folder of scheme folders (env DRGDIP_SCHEMES_DIR)")] = None,
    db: Db = None,
    top: Annotated[int, typer.Option(help="rows of the migration table to show")] = 30,
) -> None:
    """Regroup stored cases under another scheme and show which DRGs cases moved between."""
    from datetime import date

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from sqlalchemy import MetaData, select

    from services.grouper.config import GrouperSettings
    from services.grouper.regroup import regroup as run_regroup
    from services.grouper.service import NAME, SchemeBook, registrations
    from shared.messaging import Outbox
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    settings = load_settings(GrouperSettings, db=db, schemes_dir=schemes_dir)
    console = Console()

    async def run(engine: AsyncEngine):  # type: ignore[no-untyped-def]
        book = SchemeBook(settings.default_scheme)
        if settings.schemes_dir:
            book.load_folder(settings.schemes_dir)
        async with engine.connect() as conn:
            for reg in (await conn.execute(select(registrations))).all():
                if reg.scheme_id == scheme:
                    book.load(reg.path)
        if scheme not in book.schemes:
            raise typer.BadParameter(f"scheme {scheme!r} not found: pass --schemes-dir or import it")
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task(f"regrouping with {scheme}", total=None)
            return await run_regroup(
                engine, Outbox(NAME, MetaData()), book.schemes[scheme], code_mode=code_mode,
                date_from=date.fromisoformat(date_from) if date_from else None,
                date_to=date.fromisoformat(date_to) if date_to else None,
                progress=lambda done, total: progress.update(task, completed=done, total=total))

    m = run_on_database(settings.db, NAME, run)
    console.print(f"regrouped {m.cases} cases with {m.scheme_id}: {m.moved} changed DRG "
                  f"({m.moved / m.cases:.1%})" if m.cases else "no stored case in that period")
    table = Table(title="DRG migration (cases that changed group)")
    for col in ("from", "to", "cases"):
        table.add_column(col, justify="right" if col == "cases" else "left")
    for (a, b), n in sorted(((k, v) for k, v in m.moves.items() if k[0] != k[1]), key=lambda kv: -kv[1])[:top]:
        table.add_row(a, b, str(n))
    if m.moved:
        console.print(table)


@dip_app.command("import-catalogue")
def dip_import_catalogue(
    file: Annotated[Path, typer.Argument(help="catalogue document (drgdip dip build-catalogue)")],
    region: Annotated[str, typer.Option(help="treatment region the catalogue applies to")],
    valid_from: Annotated[str, typer.Option("--from", help="first discharge date, YYYY-MM-DD")],
    valid_to: Annotated[str | None, typer.Option("--to", help="last discharge date (open if omitted)")] = None,
    db: Db = None,
) -> None:
    """Register a DIP catalogue with the grouper: cases get a DIP group from that date."""
    from datetime import date

    from pydantic import ValidationError

    from services.grouper.config import GrouperSettings
    from services.grouper.service import import_catalogue

    async def run(engine: AsyncEngine) -> str:
        start, end = date.fromisoformat(valid_from), date.fromisoformat(valid_to) if valid_to else None
        return (await import_catalogue(engine, file.read_bytes(), region, start, end)).version_label

    try:
        label = _on_database(GrouperSettings, "grouper", db, run)
    except (ValidationError, ValueError, OSError) as e:
        typer.echo(f"error: {file}: {str(e).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"registered DIP catalogue {label} for region {region} from {valid_from}"
               + (f" to {valid_to}" if valid_to else ""))


@dip_app.command("import-policy")
def dip_import_policy(
    file: Annotated[Path, typer.Argument(help="DIP policy JSON (drgdip.dip-policy/1)")],
    catalogue: Annotated[Path, typer.Option(help="the catalogue document the policy prices with")],
    db: Db = None,
) -> None:
    """Store a DIP policy version with its catalogue in the pricer's database."""
    from services.pricer.config import PricerSettings
    from services.pricer.policy import PolicyError
    from services.pricer.service import import_dip_policy

    async def run(engine: AsyncEngine) -> str:
        p = await import_dip_policy(engine, file.read_bytes(), catalogue.read_bytes())
        return f"imported DIP policy {p.policy_id} v{p.version} ({p.region}, from {p.valid_from})"

    try:
        typer.echo(_on_database(PricerSettings, "pricer", db, run))
    except (PolicyError, OSError) as e:
        typer.echo(f"error: {file}: {e}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
