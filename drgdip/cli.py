"""The `drgdip` command: serve the services, group files, manage schemes and policies, demo."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from services.grouper.cli import group_command, scheme_app

app = typer.Typer(help="drgdip: DRG/DIP payment for medical-insurance bureaus and hospitals.",
                  no_args_is_help=True, add_completion=False)
app.command("group", help="Group a JSON Lines file of cases with a scheme.")(group_command)
app.add_typer(scheme_app, name="scheme", help="Inspect, compare and register grouping schemes.")
policy_app = typer.Typer(help="Pricing policies (rates, coefficients, weights per region and period).")
app.add_typer(policy_app, name="policy")

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
    from services.pricer.core import PolicyError
    from services.pricer.service import import_policy
    from shared import migrate
    from shared.db import create_engine
    from shared.settings import PricerSettings

    async def run() -> None:
        engine = create_engine(PricerSettings(**({"db": db} if db else {})).db)
        try:
            await migrate.upgrade(engine, "pricer")
            p = await import_policy(engine, file.read_bytes())
            typer.echo(f"imported policy {p.policy_id} ({p.region}, from {p.valid_from}, {len(p.weights)} weights)")
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except PolicyError as e:
        typer.echo(f"error: {file}: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    shared: Annotated[Path, typer.Option(help="the reference folder with schemes/ and testdata/")] = Path("../shared"),
    cases: Annotated[int, typer.Option(help="how many settlement lists to push through")] = 1000,
    data_dir: Annotated[Path, typer.Option(help="where the demo database is written")] = Path("var/demo"),
) -> None:
    """The main job in embedded mode: lists in, grouped, priced and reviewed, with a summary."""
    from drgdip.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(shared, cases, data_dir)))


if __name__ == "__main__":
    app()
