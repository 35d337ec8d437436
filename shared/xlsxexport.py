"""Rows as an XLSX workbook for a download, beside `shared.csvexport` and with the same
(columns, rows). Pure.

Every cell is written as what it is (numbers as numbers — decimal strings of the API become
numbers — text as text, never as a formula), an object or list as JSON, a time in ISO 8601.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import xlsxwriter


def to_xlsx(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], sheet: str = "data") -> bytes:
    """A workbook of one sheet: a header of `columns`, then one line per row."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False,
                                     "strings_to_numbers": False, "strings_to_urls": False})
    ws = book.add_worksheet(sheet[:31])
    bold = book.add_format({"bold": True})
    for c, name in enumerate(columns):
        ws.write_string(0, c, name, bold)
    for r, row in enumerate(rows, start=1):
        for c, name in enumerate(columns):
            _write(ws, r, c, row.get(name))
    ws.freeze_panes(1, 0)
    book.close()
    return out.getvalue()


def _write(ws: Any, r: int, c: int, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        ws.write_boolean(r, c, value)
    elif isinstance(value, int | float | Decimal):
        ws.write_number(r, c, float(value))
    elif isinstance(value, dict | list):
        ws.write_string(r, c, json.dumps(value, ensure_ascii=False, sort_keys=True))
    elif hasattr(value, "isoformat"):
        ws.write_string(r, c, value.isoformat())
    else:
        text = str(value)
        number = _decimal(text)
        if number is not None:
            ws.write_number(r, c, float(number))
        else:
            ws.write_string(r, c, text)


def _decimal(text: str) -> Decimal | None:
    """A plain decimal string ("12.50", "-3"), as the API writes money and ratios; else None
    (codes such as "0012" stay text)."""
    if not text or len(text) > 20 or (text.lstrip("-")[:1] == "0" and text.lstrip("-")[1:2] not in ("", ".")):
        return None
    if not all(ch.isdigit() or ch in "-." for ch in text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None
