"""The `drgdip` command: serve the services, group files, manage schemes and policies, demo."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from drgdip.audit import audited
from drgdip.dip_cli import compare_command, dip_app
from drgdip.dlq_cli import dlq_app
from drgdip.generate_cli import generate_command
from services.gateway.cli import indicators_app, token_app
from services.gateway.domain import audit
from services.grouper.cli import (
    group_command,
    import_catalogue_command,
    regroup_command,
    scheme_app,
    scheme_import_command,
)
from services.ingest.cli import import_command
from services.pricer.cli import (
    advance_command,
    budget_set_command,
    calendar_import_command,
    calibrate_command,
    dip_import_policy_command,
    policy_from_calibration_command,
    policy_import_command,
    price_command,
    reprice_command,
    settle_command,
    simulate_command,
)
from services.review.cli import rules_app as review_rules_app
from services.review.cli import run_command as review_run_command
from shared.settings import ServiceSettings

if TYPE_CHECKING:
    from shared.runtime import Runtime

app = typer.Typer(help="drgdip: DRG/DIP payment for medical-insurance bureaus and hospitals.",
                  no_args_is_help=True, add_completion=False)
app.command("group", help="Group a JSON Lines file of cases with a scheme.")(group_command)
app.add_typer(scheme_app, name="scheme", help="Inspect, compare and register grouping schemes.")
# The administrative commands leave the audit row their gateway route leaves (drgdip/audit.py).
scheme_app.command("import")(audited(audit.SCHEME_REGISTERED, scheme_import_command))
app.command("generate", help="Generate a synthetic region's settlement lists (JSON Lines).")(generate_command)
app.command("price", help="What-if: price grouped cases under a policy file (nothing stored).")(price_command)
app.command("calibrate", help="Compute DRG weights and a base rate from grouped history.")(calibrate_command)
app.add_typer(dip_app, name="dip", help="DIP (按病种分值付费): build a catalogue from history, group lists.")
dip_app.command("import-catalogue")(audited(audit.DIP_CATALOGUE_REGISTERED, import_catalogue_command))
app.command("regroup")(audited(audit.REGROUPED, regroup_command))
app.command("compare", help="Price the same lists under DRG and under DIP; differences per group and hospital.")(
    compare_command)
app.command("advance", help="Record a prepayment (预付金) netted at the annual clearing.")(
    audited(audit.ADVANCE_RECORDED, advance_command))
app.command("settle", help="Monthly pre-settlement (--period YYYY-MM) or annual clearing (--period YYYY).")(
    audited(audit.SETTLEMENT_RUN, settle_command))
app.command("reprice", help="Re-price stored cases under the policies in force now (new price versions).")(
    audited(audit.REPRICED, reprice_command))
app.command("simulate", help="模拟运行: DRG payment against fee-for-service, per hospital and DRG.")(
    simulate_command)
policy_app = typer.Typer(help="Pricing policies (rates, coefficients, weights per region and period).")
app.add_typer(policy_app, name="policy")
policy_app.command("import")(audited(audit.POLICY_IMPORTED, policy_import_command))
policy_app.command("from-calibration")(policy_from_calibration_command)
app.add_typer(token_app, name="token")
app.add_typer(indicators_app, name="indicators")
calendar_app = typer.Typer(help="The working-day calendar: public holidays and make-up working days (调休).",
                           no_args_is_help=True)
calendar_app.command("import")(audited(audit.CALENDAR_IMPORTED, calendar_import_command))
app.add_typer(calendar_app, name="calendar")
budget_app = typer.Typer(help="The year's budget per region (budget execution, annual clearing).",
                         no_args_is_help=True)
budget_app.command("set")(audited(audit.BUDGET_SET, budget_set_command))
app.add_typer(budget_app, name="budget")
review_app = typer.Typer(help="Review: monitoring rules (智能监控).", no_args_is_help=True)
review_app.add_typer(review_rules_app, name="rules")
review_app.command("run", help="Hospital-level monitoring rules for a month (YYYY-MM) or quarter (YYYYQn).")(
    review_run_command)
app.add_typer(review_app, name="review")
app.add_typer(dlq_app, name="dlq")

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
    dictionary_scheme: Annotated[Path | None, typer.Option(
        help="ingest: the scheme folder whose code dictionaries QC checks against "
             "(env DRGDIP_DICTIONARY_SCHEME; without it unknown codes are not caught)")] = None,
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="`all` only: serve no HTTP; stop once every stored list has been "
                             "grouped, priced and reviewed (after `drgdip import`)")] = False,
) -> None:
    """Run one service, or all five in one process (embedded: in-process bus, one SQLite file).

    A setting the service cannot start with is one line on stderr naming it, exit code 2."""
    from pydantic import ValidationError

    from drgdip.stages import SETTINGS_BY_SERVICE, build_runtime
    from shared.settings import SettingError, describe

    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(SERVICES)}")
    if until_idle and service != "all":
        raise typer.BadParameter("only the embedded mode (`all`) runs until idle", param_hint="--until-idle")
    if data_dir is not None and db is None:
        db = f"sqlite+aiosqlite:///{data_dir / 'drgdip.db'}"
    try:
        runtime = build_runtime(service, bus=bus, db=db, host=host, port=port, schemes_dir=schemes_dir,
                                dictionary_scheme=dictionary_scheme)
        asyncio.run(_run_until_idle(runtime) if until_idle else _serve(runtime))
    except ValidationError as e:
        message = describe(e, SETTINGS_BY_SERVICE.get(service, ServiceSettings))
    except SettingError as e:
        message = str(e)
    except KeyboardInterrupt:
        return
    else:
        return
    typer.echo(f"drgdip serve {service}: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def migrate(
    service: Annotated[str, typer.Option(
        "--service", help="whose schema: one of " + ", ".join(SERVICES) + " (all: every service's "
                          "history on the one database, as the embedded mode has it)")] = "all",
    db: Db = None,
) -> None:
    """Upgrade a service's database schema to the newest revision, then exit.

    The services also do this at start; a deployment may run it first as a separate step (a
    Kubernetes init container). Safe while other replicas start or migrate: on PostgreSQL one
    process migrates under a lock and the others wait. A database that cannot be reached is one
    line on stderr, exit code 2."""
    import logging

    from pydantic import ValidationError

    from shared.migrate import current, upgrade
    from shared.observability import configure_logging
    from shared.settings import DEVELOPMENT, SettingError, describe, load_settings

    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(SERVICES)}",
                                 param_hint="--service")
    names = SERVICES[1:] if service == "all" else [service]
    try:
        # Only the database URL matters here: the service checks its secrets when it starts.
        settings = load_settings(ServiceSettings, db=db, environment=DEVELOPMENT)
    except ValidationError as e:
        typer.echo(f"drgdip migrate: {describe(e)}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)  # on stderr: stdout is the result
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl …" at every run
    url = settings.db

    async def run() -> list[tuple[str, str | None]]:
        from shared.db import create_engine

        engine = create_engine(url)
        try:
            try:
                async with engine.connect():
                    pass
            except Exception as e:
                first = (str(e).strip() or type(e).__name__).splitlines()[0]
                raise SettingError("DRGDIP_DB", f"cannot open the database: {first}") from e
            done = []
            for name in names:
                await upgrade(engine, name)
                done.append((name, await current(engine, name)))
            return done
        finally:
            await engine.dispose()

    try:
        for name, revision in asyncio.run(run()):
            typer.echo(f"{name}: at {revision}")
    except SettingError as e:
        typer.echo(f"drgdip migrate: {e}", err=True)
        raise typer.Exit(2) from None


async def _serve(runtime: Runtime) -> None:
    """Start the runtime (a failure is raised here, not logged by the server as a traceback),
    then serve until stopped (SIGTERM, Ctrl-C): the app's lifespan stops the runtime."""
    import contextlib

    import uvicorn

    try:
        await runtime.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runtime.stop()
        raise
    s = runtime.settings
    server = uvicorn.Server(uvicorn.Config(runtime.app, host=s.host, port=s.port, log_level="warning"))
    try:
        await server.serve()
    finally:
        if runtime.started:  # the server stopped before its lifespan did
            await runtime.stop()


async def _run_until_idle(runtime: Runtime) -> None:
    """Run the embedded pipeline until every stored list has moved through it, then stop."""
    from drgdip.demo import reviewed_cases, wait_idle
    from shared.bus.memory import MemoryBus
    from shared.settings import SettingError

    if not isinstance(runtime.bus, MemoryBus):
        raise SettingError("DRGDIP_BUS", "--until-idle needs the embedded bus (memory://)")
    await runtime.start()
    try:
        await wait_idle(runtime, float("inf"))
        typer.echo(f"pipeline idle: {await reviewed_cases(runtime)} cases grouped, priced and reviewed")
    finally:
        await runtime.stop()


def _on_database(settings: type[ServiceSettings], service: str, db: str | None,
                 work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work(engine)` on a service's database (`--db` or its settings), schema upgraded."""
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    return run_on_database(load_settings(settings, db=db).db, service, work)


app.command("import")(import_command)


@app.command()
def demo(
    cases: Annotated[int, typer.Option(min=1, help="settlement lists over the 3 years")] = 10_000,
    hospitals: Annotated[int, typer.Option(min=1, help="hospitals in the region")] = 20,
    seed: Annotated[int, typer.Option(help="same seed, same region")] = 1,
    data_dir: Annotated[Path, typer.Option(help="where the database and the reports are written")] = Path("var/demo"),
    scheme_path: Annotated[Path | None, typer.Option(
        envvar="DRGDIP_SCHEME_PATH",
        help="one grouping scheme folder, e.g. ../shared/schemes/chs-drg-1.1 (else the bundled "
             "sample scheme, not for payment)")] = None,
    port: Annotated[int, typer.Option(help="port the gateway is served on at the end")] = 8000,
    serve: Annotated[bool, typer.Option(help="serve the gateway when done (Ctrl-C stops)")] = True,
    shared: Annotated[Path | None, typer.Option(hidden=True, help="old form: <shared>/schemes/chs-drg-1.1")] = None,
) -> None:
    """The main job in embedded mode: a synthetic region generated, imported, grouped, priced and
    reviewed; weights calibrated, a point-method policy simulated, a year settled and cleared."""
    from drgdip.demo import DemoOptions, run_demo

    if scheme_path is None and shared is not None:
        scheme_path = shared / "schemes" / "chs-drg-1.1"
    options = DemoOptions(cases=cases, hospitals=hospitals, seed=seed, data_dir=data_dir,
                          scheme_path=scheme_path, serve=serve, port=port)
    try:
        asyncio.run(run_demo(options))
    except KeyboardInterrupt:
        pass


dip_app.command("import-policy")(audited(audit.DIP_POLICY_IMPORTED, dip_import_policy_command))


if __name__ == "__main__":
    app()
