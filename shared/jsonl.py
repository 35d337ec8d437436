"""One JSON Lines reader for every command that reads files of lists, cases or prices.

Pure: each non-blank line must be one JSON object; `convert` turns it into what the caller
wants. A line that is not a JSON object, or that `convert` rejects, is reported to `on_error`
(line number and reason) and skipped, so one bad line never loses the rest of a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

T = TypeVar("T")


def _reason(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(line)"
        return f"{where}: {first['msg']}"
    return str(e)


def read_jsonl(path: Path, convert: Callable[[dict[str, Any]], T],
               on_error: Callable[[int, str], None], *,
               on_bytes: Callable[[int], None] | None = None,
               skip: tuple[type[Exception], ...] = ()) -> Iterator[T]:
    """`convert(object)` for each valid line of `path`. Rejections are `ValueError`s (pydantic's
    and orjson's included) or one of `skip`; `on_bytes(n)` reports progress through the file."""
    rejected: tuple[type[Exception], ...] = (ValueError, *skip)
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if on_bytes is not None:
                on_bytes(len(raw))
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError(f"not a JSON object ({type(obj).__name__})")
                yield convert(obj)
            except rejected as e:  # orjson's decode error is a ValueError too
                on_error(lineno, _reason(e))
