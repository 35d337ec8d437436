"""The flat CSV layout for bulk imports of history: one settlement list per row.

Columns (header row required; empty cells are absent values; unknown columns are kept):

| column | meaning |
|---|---|
| hospital_code, setl_id, psn_no | fixmedins_code, settlement id, person number (required) |
| region | insured area code (insuplc) |
| sex | gend: 1 male, 2 female |
| age, age_days, birth_weight | years; days (under one year); grams |
| dept, los, leaving_type | discharge department, length of stay (days), dscg_way 1–9 |
| admission_date, discharge_date | YYYY-MM-DD or YYYY-MM-DD HH:MM:SS |
| diagnoses, procedures | codes separated by `|`, principal / main first |
| total_cost, patient_share | yuan, decimal |
| insurance_type | hi_type: 310 employee, 390 resident |
| planned_readmission | true / false |
| fee_01 … fee_14 | amount per fee category (med_chrgitm) |
| dcla_time | when the list was declared (申报时间), for 时效性 |

Encodings: UTF-8 with or without a byte-order mark, and GB18030 (a superset of GBK and GB2312,
what Chinese hospital systems commonly export), detected line by line (a file that is ASCII so
far is UTF-8 until a line says otherwise) or declared. UTF-16 and anything else is refused with
the encoding named. A bad line (over the size bound, undecodable, unbalanced quotes, a
non-empty cell beyond the header) is an error for that line; the other lines are read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from services.ingest.domain.limits import too_large
from services.ingest.domain.national import Problem
from shared.errors import Invalid

# declared names (`?encoding=`, `--encoding`) and the codec each reads with
ENCODINGS: dict[str, str] = {"utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8",
                             "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030"}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


class EncodingRefused(Invalid):
    """The import's encoding cannot be read (422, field `encoding`)."""

    default_code = "CSV_ENCODING"


def codec(declared: str | None) -> str | None:
    """The codec of a declared encoding name (None: detect). Raises `EncodingRefused`."""
    if not declared:
        return None
    name = ENCODINGS.get(declared.strip().lower())
    if name is None:
        raise EncodingRefused(f"encoding {declared!r} is not supported: use one of {', '.join(ENCODINGS)}",
                              field="encoding")
    return name


def line_problem(code: str, zh: str, en: str, path: str = "line") -> Problem:
    return Problem(path, code, zh, en)


@dataclass
class Lines:
    """Bytes in, complete lines out, each at most `limit` bytes: a longer line is dropped
    (None) as it streams, never held whole. Line numbers count from 1."""

    limit: int
    _buffer: bytearray = field(default_factory=bytearray)
    _line: int = 0
    _dropping: bool = False

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | None]]:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            yield from self._end_line(chunk[start:end])
            start = end + 1
        self._add(chunk[start:])

    def close(self) -> Iterator[tuple[int, bytes | None]]:
        if self._buffer or self._dropping:
            yield from self._end_line(b"")

    def _add(self, part: bytes) -> None:
        if self._dropping:
            return
        if len(self._buffer) + len(part) > self.limit:
            self._dropping = True
            self._buffer.clear()
        else:
            self._buffer += part

    def _end_line(self, part: bytes) -> Iterator[tuple[int, bytes | None]]:
        self._add(part)
        self._line += 1
        line = None if self._dropping else bytes(self._buffer)
        self._buffer.clear()
        self._dropping = False
        yield self._line, line


@dataclass
class CsvReader:
    """A streamed CSV import in the flat layout: bytes in, (line, list as the native flat form,
    or the problem of that line) out. `encoding` a codec name (`codec`) or None to detect."""

    encoding: str | None
    limit: int
    _lines: Lines = field(init=False)
    _header: list[str] | None = None
    _record: list[bytes] = field(default_factory=list)
    _record_line: int = 0
    _record_size: int = 0
    _quotes: int = 0
    _first: bool = True

    def __post_init__(self) -> None:
        self._lines = Lines(self.limit)
        if csv.field_size_limit() < self.limit:  # a cell is bounded by its line
            csv.field_size_limit(self.limit)

    def feed(self, chunk: bytes) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
        if self._first and chunk:
            self._first = False
            if chunk.startswith(_UTF16_BOMS) or (len(chunk) > 1 and b"\x00" in chunk[:2]):
                raise EncodingRefused("the file is UTF-16: save it as UTF-8 or GB18030 (GBK)",
                                      field="encoding")
            if chunk.startswith(_UTF8_BOM):
                if self.encoding not in (None, "utf-8"):
                    raise EncodingRefused(f"the file is UTF-8 (it has a byte-order mark), not "
                                          f"{self.encoding}", field="encoding")
                self.encoding, chunk = "utf-8", chunk[len(_UTF8_BOM):]
        for line, raw in self._lines.feed(chunk):
            yield from self._physical(line, raw)

    def close(self) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
        for line, raw in self._lines.close():
            yield from self._physical(line, raw)
        if self._record:  # an unterminated quote at the end
            yield self._record_line, line_problem("CSV_MALFORMED", "引号未闭合",
                                                  "unterminated quoted cell")
            self._record.clear()

    def _physical(self, line: int, raw: bytes | None) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
        if raw is None:
            self._record.clear()  # a quoted cell may have run on: start afresh after it
            self._quotes = 0
            yield line, too_large("line", None, self.limit)
            return
        if not self._record:
            self._record_line, self._record_size = line, 0
        self._record.append(raw)
        self._record_size += len(raw) + 1
        # in UTF-8 and GB18030 a byte 0x22 is always the quote character: a record ends at a
        # line break outside quotes, where the quotes so far are balanced
        self._quotes += raw.count(b'"')
        if self._record_size > self.limit:
            self._record.clear()
            self._quotes = 0
            yield self._record_line, too_large("line", self._record_size, self.limit)
            return
        if self._quotes % 2:
            return
        record, first = b"\n".join(self._record), self._record_line
        self._record.clear()
        self._quotes = 0
        yield from self._parse(first, record.removesuffix(b"\r"))

    def _decode(self, record: bytes) -> str | None:
        if self.encoding is not None:
            try:
                return record.decode(self.encoding)
            except UnicodeDecodeError:
                return None
        if record.isascii():
            return record.decode("ascii")
        for name in ("utf-8", "gb18030"):
            try:
                text = record.decode(name)
            except UnicodeDecodeError:
                continue
            self.encoding = name  # the first line that tells decides for the file
            return text
        return None

    def _parse(self, line: int, record: bytes) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
        text = self._decode(record)
        if text is None:
            if self._header is None:
                raise EncodingRefused(f"the header is neither UTF-8 nor GB18030 (GBK)"
                                      f"{'' if self.encoding is None else f' ({self.encoding} declared)'}",
                                      field="encoding")
            yield line, line_problem("CSV_ENCODING", f"该行不是{self.encoding or 'UTF-8或GB18030'}编码",
                                     f"the line is not {self.encoding or 'UTF-8 or GB18030'}")
            return
        if not text.strip():
            return
        try:
            cells = next(csv.reader(io.StringIO(text, newline="")), [])
        except csv.Error as e:
            yield line, line_problem("CSV_MALFORMED", f"CSV格式错误：{e}", f"malformed CSV: {e}")
            return
        if self._header is None:
            self._header = cells
            return
        extra = [i for i in range(len(self._header), len(cells)) if cells[i] != ""]
        if extra:
            yield line, line_problem("CSV_EXTRA_CELLS", f"第{extra[0] + 1}列超出表头的{len(self._header)}列",
                f"cell {extra[0] + 1} is beyond the header's {len(self._header)} columns",
                path=f"cells[{extra[0]}]")
            return
        yield line, to_list(dict(zip(self._header, cells, strict=False)))


def to_list(row: dict[str, str]) -> dict[str, Any]:
    """One CSV row (column -> cell) as a list in the native flat form."""
    doc: dict[str, Any] = {}
    fees: dict[str, str] = {}
    for key, value in row.items():
        if value == "":
            continue
        if key.startswith("fee_"):
            fees[key.removeprefix("fee_")] = value
        elif key in ("diagnoses", "procedures"):
            doc[key] = value.split("|")
        elif key == "planned_readmission":
            doc[key] = value.strip().lower() in ("true", "1", "yes")
        else:
            doc[key] = value
    if fees:
        doc["fees"] = fees
    doc.setdefault("diagnoses", [])
    return doc


def rows(text: str, limit: int = 1 << 20) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """(line number, list as the native flat form, or the problem of that line) per data row
    of a whole CSV text."""
    reader = CsvReader("utf-8", limit)
    yield from reader.feed(text.encode())
    yield from reader.close()
