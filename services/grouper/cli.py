"""Command-line front end of the grouper: `drgdip group`, `drgdip scheme ...`, `drgdip regroup`
and `drgdip dip import-catalogue`.

The main CLI mounts `group_command` with `app.command("group")(group_command)`, `scheme_app`
(check, diff, build) with `app.add_typer(scheme_app, name="scheme")`, and the administrative commands
audited (`drgdip.audit`): `scheme_import_command` as "scheme import", `regroup_command` as
"regroup" and `import_catalogue_command` as "import-catalogue" of its `dip` group; these answer
the summary of the change they made, which the audit records. `app` bundles the others for
standalone use. A command that touches the database runs in one transaction.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from services.grouper.config import GrouperSettings
from services.grouper.domain import (
    GROUPED_STATUSES,
    ChangeSetError,
    SchemeBook,
    SchemeError,
    apply_change_set,
    catalogue_registration,
    diff_schemes,
    load_scheme,
    parse_change_set,
    read_scheme_docs,
    write_scheme_folder,
)
from services.grouper.domain.diff import SchemeDiff
from shared.dip import CatalogueError
from shared.jsonl import read_jsonl
from shared.progress import progress_bar
from shared.settings import load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class CodeMode(StrEnum):
    raw = "raw"
    mapped = "mapped"


# The progress bar needs a terminal (in logs it would only add control codes) and is not
# worth showing for inputs that group in well under a second.
_PROGRESS_MIN_BYTES = 256 * 1024


def _stderr() -> Console:
    return Console(stderr=True)


class _Skipped:
    """`read_jsonl`'s `on_error`: reports each bad line on stderr and counts them."""

    def __init__(self, err: Console) -> None:
        self.err, self.count = err, 0

    def __call__(self, lineno: int, reason: str) -> None:
        what = reason if reason.startswith("not a JSON object") else f"invalid JSON ({reason})"
        self.err.print(f"[yellow]line {lineno}: {what}; skipped[/]", highlight=False)
        self.count += 1


def _as_is(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


@contextmanager
def _file_progress(err: Console, path: Path, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the bytes of `path` read so far (`read_jsonl`'s `on_bytes`), on a
    terminal and for files that take a while; else None."""
    size = path.stat().st_size
    if not err.is_terminal or size < _PROGRESS_MIN_BYTES:
        yield None
        return
    with progress_bar(err, label, counts=False) as progress:
        task = progress.add_task(label, total=size)
        yield partial(progress.advance, task)


def group_command(
    scheme_path: Annotated[Path, typer.Option("--scheme-path", help="scheme folder (with scheme.json)")],
    input: Annotated[Path, typer.Option("--input", help="cases, one JSON object per line")],
    output: Annotated[Path, typer.Option("--output", help="results, one JSON object per line")],
    code_mode: Annotated[
        CodeMode, typer.Option("--code-mode", help="raw: codes as given; mapped: translate first")
    ] = CodeMode.raw,
    trace: Annotated[bool, typer.Option("--trace", help="add the grouping trace to each line")] = False,
) -> None:
    """Group a JSONL file of cases into MDC / ADRG / DRG."""
    err = _stderr()
    try:
        sch = load_scheme(scheme_path)
    except SchemeError as e:
        err.print(f"[red]scheme error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    if not input.is_file():
        err.print(f"[red]input not found:[/] {input}", highlight=False)
        raise typer.Exit(2)

    mode = code_mode.value
    group = sch.grouper(mode)
    statuses: Counter[str] = Counter()
    skipped = _Skipped(err)
    started = time.perf_counter()
    with output.open("wb") as out, _file_progress(err, input, "grouping") as on_bytes:
        for case in read_jsonl(input, _as_is, skipped, on_bytes=on_bytes):
            result = sch.group(case, code_mode=mode, trace=True) if trace else group(case)
            row = {"id": case.get("id"), **result.to_dict()}
            out.write(orjson.dumps(row))
            out.write(b"\n")
            statuses[result.status.value] += 1
    elapsed = time.perf_counter() - started
    _print_summary(err, statuses, skipped.count, elapsed)


def _print_summary(err: Console, statuses: Counter[str], bad: int, elapsed: float) -> None:
    cases = sum(statuses.values())
    grouped = sum(n for s, n in statuses.items() if s in GROUPED_STATUSES)
    share = grouped / cases if cases else 0.0
    rate = cases / elapsed if elapsed > 0 else 0.0
    err.print(f"cases: {cases}", highlight=False)
    err.print(f"入组率 (grouped share): {share:.2%} ({grouped}/{cases})", highlight=False)
    failures = {s: n for s, n in statuses.items() if s not in GROUPED_STATUSES}
    if failures:
        text = ", ".join(f"{s} {n}" for s, n in sorted(failures.items(), key=lambda x: -x[1]))
        err.print(f"failures by status: {text}", highlight=False)
    else:
        err.print("failures by status: none", highlight=False)
    if bad:
        err.print(f"bad lines skipped: {bad}", highlight=False)
    err.print(f"cases per second: {rate:,.0f}", highlight=False)


# --------------------------------------------------------------------------- scheme app

scheme_app = typer.Typer(help="Inspect and compare grouping schemes.", no_args_is_help=True)


@scheme_app.command("check")
def check_command(
    scheme_path: Annotated[Path, typer.Argument(help="scheme folder")],
) -> None:
    """Load and validate a scheme; print its counts."""
    console = Console()
    started = time.perf_counter()
    try:
        sch = load_scheme(scheme_path)
    except SchemeError as e:
        _stderr().print(f"[red]invalid scheme:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    elapsed = time.perf_counter() - started
    table = Table(title=f"{sch.id}: {sch.title}")
    table.add_column("item")
    table.add_column("count", justify="right")
    for key, n in sch.counts().items():
        table.add_row(key, f"{n:,}")
    console.print(table)
    ev = sch.evaluation
    console.print(
        f"evaluation: validation={', '.join(ev.validation)}; missing_numbers={ev.missing_numbers}; "
        f"mapped_empty_codes={ev.mapped_empty_codes}",
        highlight=False,
    )
    console.print(f"OK: loaded and validated in {elapsed:.2f} s", highlight=False)


@scheme_app.command("diff")
def diff_command(
    a: Annotated[Path, typer.Argument(help="scheme folder (before)")],
    b: Annotated[Path, typer.Argument(help="scheme folder (after)")],
    cases: Annotated[
        Path | None, typer.Option("--cases", help="JSONL cases to regroup under both")
    ] = None,
) -> None:
    """Show what changed between two schemes (groups added, split, merged, renamed; rules and
    lists), and given cases the migration table: cases per (old group → new group)."""
    err = _stderr()
    try:
        sa, sb = load_scheme(a), load_scheme(b)
    except SchemeError as e:
        err.print(f"[red]invalid scheme:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    if cases is None:
        print_diff(Console(), diff_schemes(sa, sb))
        return
    if not cases.is_file():
        err.print(f"[red]cases not found:[/] {cases}", highlight=False)
        raise typer.Exit(2)
    with _file_progress(err, cases, "regrouping under both schemes") as on_bytes:
        d = diff_schemes(sa, sb, read_jsonl(cases, _as_is, _Skipped(err), on_bytes=on_bytes))
    print_diff(Console(), d)


@scheme_app.command("build")
def build_command(
    base: Annotated[Path, typer.Argument(help="the base (national) scheme folder")],
    changeset: Annotated[Path, typer.Argument(help="the change set (JSON) over the base scheme")],
    out: Annotated[Path, typer.Option("--out", help="folder to write the local scheme to")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace the scheme folder already at --out")
    ] = False,
) -> None:
    """Build a local scheme from a national scheme and a change set; the result is a scheme
    folder that `scheme check`, `scheme diff`, `scheme import` and the grouper load."""
    err = _stderr()
    if not changeset.is_file():
        err.print(f"[red]change set not found:[/] {changeset}", highlight=False)
        raise typer.Exit(2)
    if out.exists() and any(out.iterdir()):
        if not (overwrite and (out / "scheme.json").is_file()):
            hint = " (--overwrite replaces a scheme folder)" if not overwrite else ", and it is not a scheme folder"
            err.print(f"[red]{out} is not empty[/]{hint}", highlight=False)
            raise typer.Exit(2)
    steps = ("loading the base scheme", "checking the change set", "writing the local scheme",
             "loading the local scheme")
    with progress_bar(err) as progress:
        task = progress.add_task(steps[0], total=len(steps))
        try:
            sch = load_scheme(base)
            progress.update(task, advance=1, description=steps[1])
            raw = changeset.read_bytes()
            built = apply_change_set(sch, read_scheme_docs(sch), parse_change_set(raw))
        except SchemeError as e:
            progress.stop()
            err.print(f"[red]invalid base scheme:[/] {e}", highlight=False)
            raise typer.Exit(1) from None
        except ChangeSetError as e:
            progress.stop()
            err.print(f"[red]invalid change set {changeset}:[/]", highlight=False)
            for d in e.details:
                err.print(f"  {d['message']}", highlight=False)
            raise typer.Exit(1) from None
        progress.update(task, advance=1, description=steps[2])
        if out.exists() and overwrite:
            shutil.rmtree(out)
        write_scheme_folder(sch, built, out, raw)
        progress.update(task, advance=1, description=steps[3])
        local = load_scheme(out)  # the folder loads like any other scheme
        progress.update(task, advance=1)
    cs = built.manifest["derived_from"]["changeset"]
    console = Console()
    console.print(f"built {local.id} ({local.title}) over {sch.id} in {out}", highlight=False)
    console.print(f"change set {cs['id']} sha256 {cs['sha256']}; {cs['operations']} operations"
                  + ("; provincial" if cs["provincial"] else ""), highlight=False)
    console.print(f"{len(local.adrgs)} ADRG, {len(local.drgs)} DRG (base: {len(sch.adrgs)} ADRG, "
                  f"{len(sch.drgs)} DRG)", highlight=False)


def print_diff(console: Console, d: SchemeDiff, max_codes: int = 12) -> None:
    """Readable rendering of a scheme diff."""
    console.print(f"[bold]scheme diff {d.a} → {d.b}[/]", highlight=False)
    if d.mdc_order_changed:
        console.print("MDC order changed:", highlight=False)
        console.print("  before: " + " ".join(m.removeprefix("MDC") for m in d.mdc_order_a))
        console.print("  after:  " + " ".join(m.removeprefix("MDC") for m in d.mdc_order_b))
        for m, pa, pb in d.mdc_moves():
            if abs(pa - pb) > 1:
                console.print(f"  {m}: position {pa} → {pb}", highlight=False)
    for label, items in (
        ("MDCs added", d.mdcs_added),
        ("MDCs removed", d.mdcs_removed),
        ("ADRGs added", d.adrgs_added),
        ("ADRGs removed", d.adrgs_removed),
        ("DRGs added", d.drgs_added),
        ("DRGs removed", d.drgs_removed),
    ):
        if items:
            console.print(f"{label} ({len(items)}): {', '.join(items)}", highlight=False)
    for mdc, oa, ob in d.adrg_order_changes:
        console.print(f"ADRG order in {mdc}: {' '.join(oa)} → {' '.join(ob)}", highlight=False)
    if d.group_changes:
        t = Table(title=f"groups split, merged or recoded ({len(d.group_changes)})")
        for col in ("change", "ADRG", "before", "after"):
            t.add_column(col)
        for g in d.group_changes:
            t.add_row(g.kind, g.adrg, " ".join(g.before), " ".join(g.after))
        console.print(t)
    if d.renames:
        console.print(f"groups renamed ({len(d.renames)}):", highlight=False)
        for rn in d.renames[:max_codes * 4]:
            console.print(f"  {rn.kind.upper()} {rn.code}: {rn.before} → {rn.after}", highlight=False)
        if len(d.renames) > max_codes * 4:
            console.print(f"  … {len(d.renames) - max_codes * 4} more", highlight=False)

    if d.rule_changes:
        t = Table(title=f"rules changed ({len(d.rule_changes)})")
        for col in ("kind", "code", "before", "after"):
            t.add_column(col)
        for r in d.rule_changes:
            after = r.after
            if r.list_changes:
                after += "\n" + "\n".join(_list_change_text(c, max_codes) for c in r.list_changes)
            t.add_row(r.kind, r.code, r.before, after)
        console.print(t)
    if d.lists_added or d.lists_removed:
        console.print(
            f"lists added: {', '.join(d.lists_added) or '-'}; removed: {', '.join(d.lists_removed) or '-'}",
            highlight=False,
        )
    if d.list_changes:
        console.print(f"lists with changed contents ({len(d.list_changes)}):", highlight=False)
        for c in d.list_changes:
            console.print("  " + _list_change_text(c, max_codes), highlight=False)
    for name, tc in d.tables.items():
        console.print(
            f"table {name}: +{len(tc.added)} −{len(tc.removed)} changed {len(tc.changed)}",
            highlight=False,
        )
        for code, (va, vb) in list(tc.changed.items())[:max_codes]:
            console.print(f"  {code}: {va!r} → {vb!r}", highlight=False)
        for code, v in list(tc.added.items())[:max_codes]:
            console.print(f"  + {code} {v!r}", highlight=False)
        for code, v in list(tc.removed.items())[:max_codes]:
            console.print(f"  − {code} {v!r}", highlight=False)
    for opt, (va, vb) in d.evaluation.items():
        console.print(f"evaluation.{opt}: {va!r} → {vb!r}", highlight=False)

    if d.cases:
        console.print(
            f"cases regrouped: {d.cases}; moved: {d.moved_cases} ({d.moved_cases / d.cases:.1%})",
            highlight=False,
        )
        if d.moves:
            t = Table(title="migration table (cases, old → new group)")
            t.add_column("from")
            t.add_column("to")
            t.add_column("cases", justify="right")
            for (fa, fb), n in d.moves.most_common():
                t.add_row(fa, fb, str(n))
            console.print(t)


def _list_change_text(c, max_codes: int) -> str:
    name = c.list_a if c.list_a == c.list_b else f"{c.list_a} → {c.list_b}"
    parts = []
    if c.added:
        parts.append("+" + " +".join(c.added[:max_codes]) + (" …" if len(c.added) > max_codes else ""))
    if c.removed:
        parts.append("−" + " −".join(c.removed[:max_codes]) + (" …" if len(c.removed) > max_codes else ""))
    return f"{name}: {' '.join(parts)}"


# --------------------------------------------------------------------------- the grouper's store
# (the database and its migrations are imported by the commands that use them: `drgdip --help`
# and `drgdip group` stay quick to start)

Db = Annotated[str | None, typer.Option(help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://… (env DRGDIP_DB)")]


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def scheme_import_command(
    scheme_path: Annotated[Path, typer.Argument(help="scheme folder (with scheme.json)")],
    region: Annotated[str, typer.Option(help="region (insured area) the scheme applies to")],
    valid_from: Annotated[str, typer.Option("--from", help="first discharge date, YYYY-MM-DD")],
    valid_to: Annotated[str | None, typer.Option("--to", help="last discharge date (open if omitted)")] = None,
    db: Db = None,
) -> dict[str, Any]:
    """Register a scheme for a region from a date: cases are grouped by the scheme in force."""
    from services.grouper import repository
    from shared.migrate import run_on_database

    try:
        scheme = load_scheme(scheme_path)
        start, end = date.fromisoformat(valid_from), _day(valid_to)
    except (SchemeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    registration = repository.Registration(scheme.id, region, start, end, str(scheme_path.resolve()))

    async def run(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await repository.register_scheme(conn, registration)

    run_on_database(load_settings(GrouperSettings, db=db).db, repository.NAME, run)
    typer.echo(f"registered {scheme.id} for region {region} from {start}" + (f" to {end}" if end else ""))
    typer.echo("a running grouper puts it in force with its next batch of cases")
    return {"scheme": scheme.id, "title": scheme.title, "region": region, "valid_from": start.isoformat(),
            "valid_to": end.isoformat() if end else None, "path": registration.path}


def regroup_command(
    scheme: Annotated[str, typer.Option(help="id of the scheme to regroup with")],
    date_from: Annotated[str | None, typer.Option("--from", help="first discharge date, YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="last discharge date, YYYY-MM-DD")] = None,
    code_mode: Annotated[str, typer.Option(help="raw or mapped")] = "raw",
    schemes_dir: Annotated[Path | None, typer.Option(help="folder of scheme folders (env DRGDIP_SCHEMES_DIR)")] = None,
    db: Db = None,
    top: Annotated[int, typer.Option(help="rows of the migration table to show")] = 30,
) -> dict[str, Any]:
    """Regroup stored cases under another scheme and show which DRGs cases moved between."""
    from sqlalchemy import MetaData

    from services.grouper import handlers, repository
    from shared.messaging import Outbox
    from shared.migrate import run_on_database

    settings = load_settings(GrouperSettings, db=db, schemes_dir=schemes_dir)
    first, last = _day(date_from), _day(date_to)
    console = Console()

    async def run(engine: AsyncEngine):  # type: ignore[no-untyped-def]
        book = SchemeBook(settings.default_scheme)
        if settings.schemes_dir:
            book.load_folder(settings.schemes_dir)
        async with engine.begin() as conn:
            registered = await repository.scheme_registrations(conn)
        for reg in registered:
            if reg.scheme_id == scheme:
                book.load(reg.path)
        if scheme not in book.schemes:
            raise typer.BadParameter(f"scheme {scheme!r} not found: pass --schemes-dir or import it")
        with progress_bar(Console(stderr=True), f"regrouping with {scheme}") as progress:
            task = progress.add_task("regroup", total=None)
            return await handlers.regroup(  # one transaction per batch of cases
                engine, Outbox(repository.NAME, MetaData()), book.schemes[scheme], code_mode=code_mode,
                date_from=first, date_to=last,
                progress=lambda done, total: progress.update(task, completed=done, total=total))

    m = run_on_database(settings.db, repository.NAME, run)
    console.print(f"regrouped {m.cases} cases with {m.scheme_id}: {m.moved} changed DRG "
                  f"({m.moved / m.cases:.1%})" if m.cases else "no stored case in that period")
    table = Table(title="DRG migration (cases that changed group)")
    for col in ("from", "to", "cases"):
        table.add_column(col, justify="right" if col == "cases" else "left")
    for (a, b), n in sorted(((k, v) for k, v in m.moves.items() if k[0] != k[1]), key=lambda kv: -kv[1])[:top]:
        table.add_row(a, b, str(n))
    if m.moved:
        console.print(table)
    return {"scheme": scheme, "from": first and first.isoformat(), "to": last and last.isoformat(),
            "code_mode": code_mode, "cases": m.cases, "moved": m.moved}


def import_catalogue_command(
    file: Annotated[Path, typer.Argument(help="catalogue document (drgdip dip build-catalogue)")],
    region: Annotated[str, typer.Option(help="treatment region the catalogue applies to")],
    valid_from: Annotated[str, typer.Option("--from", help="first discharge date, YYYY-MM-DD")],
    valid_to: Annotated[str | None, typer.Option("--to", help="last discharge date (open if omitted)")] = None,
    db: Db = None,
) -> dict[str, object]:
    """Register a DIP catalogue with the grouper: cases get a DIP group from that date."""
    from services.grouper import repository
    from shared.migrate import run_on_database

    try:
        start, end = date.fromisoformat(valid_from), _day(valid_to)
        registration = catalogue_registration(file.read_bytes(), region, start, end)
    except CatalogueError as e:
        typer.echo(f"error: {file}: {e.message.removeprefix('body: ').splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, OSError) as e:
        typer.echo(f"error: {file}: {str(e).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None

    async def run(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await repository.register_catalogue(conn, registration)

    run_on_database(load_settings(GrouperSettings, db=db).db, repository.NAME, run)
    typer.echo(f"registered DIP catalogue {registration.catalogue.version_label} for region {region} "
               f"from {valid_from}" + (f" to {valid_to}" if valid_to else ""))
    return registration.summary()


# Standalone app (`python -m services.grouper.cli`) of the commands that change nothing but their
# own output; the main CLI mounts the pieces itself, the administrative ones audited.
app = typer.Typer(no_args_is_help=True)
app.command("group")(group_command)
app.add_typer(scheme_app, name="scheme")

if __name__ == "__main__":  # pragma: no cover
    app()
