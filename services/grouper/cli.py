"""Command-line front end of the grouper: `drgdip group ...` and `drgdip scheme ...`.

The main CLI mounts `group_command` with `app.command("group")(group_command)` and
`scheme_app` with `app.add_typer(scheme_app, name="scheme")`. `app` bundles both for
standalone use.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.grouper.core import GROUPED_STATUSES, SchemeError, diff_schemes, load_scheme
from services.grouper.core.diff import SchemeDiff


class CodeMode(StrEnum):
    raw = "raw"
    mapped = "mapped"


# The progress bar needs a terminal (in logs it would only add control codes) and is not
# worth showing for inputs that group in well under a second.
_PROGRESS_MIN_BYTES = 256 * 1024


def _stderr() -> Console:
    return Console(stderr=True)


def _read_jsonl(path: Path, err: Console, progress=None, task=None) -> Iterator[tuple[int, Any]]:
    """Yield (line number, object) for each valid JSON object line; report bad lines."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if progress is not None:
                progress.advance(task, len(raw))
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                err.print(f"[yellow]line {lineno}: invalid JSON ({e}); skipped[/]", highlight=False)
                yield lineno, None
                continue
            if not isinstance(obj, dict):
                err.print(
                    f"[yellow]line {lineno}: not a JSON object ({type(obj).__name__}); skipped[/]",
                    highlight=False,
                )
                yield lineno, None
                continue
            yield lineno, obj


def group_command(
    scheme: Annotated[Path, typer.Option("--scheme", help="scheme folder (with scheme.json)")],
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
        sch = load_scheme(scheme)
    except SchemeError as e:
        err.print(f"[red]scheme error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    if not input.is_file():
        err.print(f"[red]input not found:[/] {input}", highlight=False)
        raise typer.Exit(2)

    mode = code_mode.value
    group = sch.grouper(mode)
    statuses: Counter[str] = Counter()
    bad = 0
    show_bar = err.is_terminal and input.stat().st_size >= _PROGRESS_MIN_BYTES
    progress = (
        Progress(
            TextColumn("grouping"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        if show_bar
        else None
    )
    started = time.perf_counter()
    with output.open("wb") as out:
        if progress is not None:
            progress.start()
            task = progress.add_task("group", total=input.stat().st_size)
        else:
            task = None
        try:
            for _lineno, case in _read_jsonl(input, err, progress, task):
                if case is None:
                    bad += 1
                    continue
                result = sch.group(case, code_mode=mode, trace=True) if trace else group(case)
                row = {"id": case.get("id"), **result.to_dict()}
                out.write(orjson.dumps(row))
                out.write(b"\n")
                statuses[result.status.value] += 1
        finally:
            if progress is not None:
                progress.stop()
    elapsed = time.perf_counter() - started
    _print_summary(err, statuses, bad, elapsed)


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
    directory: Annotated[Path, typer.Argument(help="scheme folder")],
) -> None:
    """Load and validate a scheme; print its counts."""
    console = Console()
    started = time.perf_counter()
    try:
        sch = load_scheme(directory)
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
    """Show what changed between two schemes, and how cases move between DRGs."""
    err = _stderr()
    try:
        sa, sb = load_scheme(a), load_scheme(b)
    except SchemeError as e:
        err.print(f"[red]invalid scheme:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    case_iter = None
    if cases is not None:
        case_iter = (obj for _n, obj in _read_jsonl(cases, err) if obj is not None)
    d = diff_schemes(sa, sb, case_iter)
    print_diff(Console(), d)


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
            t = Table(title="group moves")
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


# Standalone app (`python -m services.grouper.cli`); the main CLI mounts the pieces itself.
app = typer.Typer(no_args_is_help=True)
app.command("group")(group_command)
app.add_typer(scheme_app, name="scheme")

if __name__ == "__main__":  # pragma: no cover
    app()
