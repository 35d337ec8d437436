"""One progress bar for every long command (imports, regrouping, re-pricing, rebuilds): what it
does, a bar, done of total (or a percentage), time taken and time left. On stderr, and only on a
terminal: in a log a progress bar is just control codes."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console, label: str = "{task.description}", *, counts: bool = True,
                 transient: bool = True) -> Progress:
    """A progress bar on `console`; `counts`: done of total (cases, lists), else a percentage
    (bytes of a file)."""
    done = MofNCompleteColumn() if counts else TextColumn("{task.percentage:>3.0f}%")
    return Progress(TextColumn(label), BarColumn(), done, TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=transient, disable=not console.is_terminal)
