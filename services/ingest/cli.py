"""Ingest's command: `drgdip import` (bulk history into ingest's store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine


def import_command(
    file: Annotated[Path, typer.Argument(help="JSON Lines of native lists, or CSV (flat layout)")],
    format: Annotated[str, typer.Option(help="jsonl or csv (default: by the file's extension)")] = "",
    encoding: Annotated[str | None, typer.Option(
        help="the CSV's encoding: utf-8 or gb18030/gbk (default: detected)")] = None,
    dictionary_scheme: Annotated[Path | None, typer.Option(help="scheme folder for the code checks")] = None,
    db: Annotated[str | None, typer.Option(
        help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://… (env DRGDIP_DB)")] = None,
) -> None:
    """Bulk-import history into ingest's store; the running suite carries it downstream."""
    from rich.console import Console
    from rich.progress import Progress
    from sqlalchemy import MetaData

    from services.ingest.config import IngestSettings
    from services.ingest.domain.qc import load_dictionaries
    from services.ingest.handlers import Intake, file_chunks, import_stream
    from services.ingest.repository import NAME
    from shared.errors import DomainError
    from shared.messaging import Outbox
    from shared.migrate import run_on_database
    from shared.settings import load_settings

    fmt = format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
    settings = load_settings(IngestSettings, db=db, dictionary_scheme=dictionary_scheme)
    total = sum(1 for _ in file.open("rb")) - (1 if fmt == "csv" else 0)

    async def run(engine: AsyncEngine) -> dict[str, Any]:
        dictionaries = load_dictionaries(settings.dictionary_scheme) if settings.dictionary_scheme else None
        # the events go to ingest's outbox table; the running suite's relay publishes them
        intake = Intake(engine, Outbox(NAME, MetaData()), settings, dictionaries)
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task(f"importing {file.name}", total=total)
            # one transaction per chunk of lists (a long import never holds the database)
            return await import_stream(intake, file_chunks(file), fmt, None,
                                       progress=lambda n: progress.advance(task, n), encoding=encoding)

    try:
        summary = run_on_database(settings.db, NAME, run)
    except DomainError as e:  # e.g. an encoding that cannot be read: one line, no traceback
        typer.echo(f"error: {e.field}: {e.message} ({e.code})" if e.field else f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"job {summary['job_id']}: {summary['lines']} lines, {summary['accepted']} accepted, "
               f"{summary['duplicate']} duplicates, {summary['rejected']} rejected")
    for r in summary["rejections"][:20]:
        first = r["problems"][0]
        typer.echo(f"  line {r['line']}: {first['field']}: {first['message_en']} ({first['code']})")
