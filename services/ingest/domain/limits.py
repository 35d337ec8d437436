"""The bounds of what a sender may send, checked before a list is parsed.

What for: a list is read by pydantic and checked by QC in time proportional to its size, and
what is derived from it (case ids, events) is written to text columns that cannot hold every
character (PostgreSQL refuses NUL). So every received document is walked once first: its size,
the length of every text value, the number of entries of every repeated node, its nesting, and
the characters of identifiers are bounded. Pure: the standard library only.

| code              | rule |
|-------------------|------|
| LIST_TOO_LARGE    | the list (a request body or an import line) is over `list_bytes` / `line_bytes` |
| NAT-TOO-LONG      | a text value over `text_chars`, an identifier or code over `id_chars` |
| NAT-TOO-MANY      | more diagnoses, procedures or entries of another node than allowed |
| NAT-TOO-DEEP      | nested deeper than `MAX_DEPTH` (no national node is) |
| NAT-CONTROL-CHAR  | a control character (C0, C1, DEL) or a bidirectional override (U+202A–E, U+2066–9, …) in an identifier or code; NUL or another C0 character (but tab and line breaks) in any text |

Dates in a plausible window and exactly one principal diagnosis are QC rules (`qc.py`:
QC-DATE-005/006, QC-DX-001): they need the parsed list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.ingest.domain.national import Problem
from shared.text import UNSAFE_IN_ID

MAX_DEPTH = 12  # a list is 4 levels deep; provincial extensions get some room

# Identifier and code fields (national and native names): what becomes case ids, event facts
# and keys downstream.
IDENTIFIERS: frozenset[str] = frozenset({
    "setl_id", "psn_no", "fixmedins_code", "mdtrt_id", "medcasno", "certno", "hi_no", "msgid",
    "infno", "mdtrtarea_admvs", "insuplc_admdvs", "insuplc", "diag_code", "oprn_oprt_code",
    "med_chrgitm", "dscg_caty", "adm_caty", "hi_type", "gend", "dscg_way", "fund_pay_type",
    "maindiag_flag", "oprn_oprt_type", "diag_type", "stas_type", "ipt_med_type", "hi_paymtd",
    # the native form
    "hospital_code", "region", "dept", "insurance_type", "sex", "leaving_type",
})
# native arrays whose entries are codes, and the native object whose keys are codes
_CODE_ARRAYS = frozenset({"diagnoses", "procedures"})
_DIAGNOSES = frozenset({"diseinfo", "diagnoses"})
_PROCEDURES = frozenset({"oprninfo", "procedures"})

_BAD_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

PROBLEMS: dict[str, tuple[str, str]] = {
    "LIST_TOO_LARGE": ("结算清单过大", "the list is too large"),
    "NAT-TOO-LONG": ("长度超出限制", "value too long"),
    "NAT-TOO-MANY": ("条目数超出限制", "too many entries"),
    "NAT-TOO-DEEP": ("嵌套层级过深", "nested too deeply"),
    "NAT-CONTROL-CHAR": ("含有控制字符或双向控制符", "contains a control or bidirectional-override character"),
}


@dataclass(frozen=True)
class Limits:
    """The bounds (IngestSettings makes them from `DRGDIP_*`; these defaults are its)."""

    list_bytes: int = 1 << 20
    line_bytes: int = 1 << 20
    text_chars: int = 500
    id_chars: int = 64
    diagnoses: int = 100
    procedures: int = 100
    entries: int = 200
    earliest_year: int = 2000
    future_days: int = 1


DEFAULT = Limits()


def problem(path: str, code: str, detail_zh: str = "", detail_en: str = "") -> Problem:
    zh, en = PROBLEMS[code]
    return Problem(path, code, f"{zh}：{detail_zh}" if detail_zh else zh,
                   f"{en}: {detail_en}" if detail_en else en)


def too_large(path: str, size: int | None, limit: int) -> Problem:
    """A list (or line) over `limit` bytes; `size` when known (a streamed one is not read whole)."""
    zh, en = (f"{size}字节", f"{size} bytes") if size is not None else (f"超过{limit}字节", f"more than {limit}")
    return problem(path, "LIST_TOO_LARGE", f"{zh}，上限{limit}字节", f"{en}, at most {limit}")


def check_size(raw: bytes, limit: int, path: str = "body") -> list[Problem]:
    return [too_large(path, len(raw), limit)] if len(raw) > limit else []


def check_document(fmt: str, doc: Any, limits: Limits = DEFAULT, raw: bytes | None = None) -> list[Problem]:
    """Every bound `doc` (decoded JSON, or a flat CSV row) breaks, with its field path in the
    form's own names (a list's fields relative to the list, as the parsers and QC name them).
    `raw`: the JSON text `doc` was decoded from, when there is one (its bytes tell at once
    whether any text can hold a character the bounds refuse)."""
    if _within(doc, limits) if raw is None or not _plain(raw) else _sized(doc, None, 0, limits):
        return []  # the usual case: nothing to name, no field paths to build
    found: list[Problem] = []
    root_strip = "input." if fmt in ("4101", "4101A") else ""
    _walk(doc, "", None, 0, limits, found)
    if root_strip:
        found = [Problem(p.field.removeprefix(root_strip), p.code, p.message_zh, p.message_en)
                 for p in found]
    return found


def _within(doc: Any, limits: Limits) -> bool:
    """True when `doc` breaks no bound: the same rules as `_walk`, without building a field path
    for every node (which cost more than parsing the list); the texts are gathered and checked
    together."""
    ids: list[str] = []
    texts: list[str] = []
    if not _gather(doc, None, 0, limits, ids, texts):
        return False
    return (max(map(len, ids), default=0) <= limits.id_chars
            and max(map(len, texts), default=0) <= limits.text_chars
            # a space is safe in an identifier, a line break in a text: joined, one search each
            and UNSAFE_IN_ID.search(" ".join(ids)) is None
            and _BAD_IN_TEXT.search("\n".join(texts)) is None)


# What any character refused in a text or an identifier (shared.text's UNSAFE_IN_ID, a superset
# of `_BAD_IN_TEXT`) looks like in JSON text: an escape, or a UTF-8 sequence starting with one
# of these bytes (C0 characters cannot stand unescaped in a JSON string): DEL, C1 (0xC2 ..),
# U+061C (0xD8 ..), U+200B-F, U+202A-E and U+2060-9 (0xE2 ..); or U+FEFF (EF BB BF). Text with
# none of them holds no such character anywhere (the other characters of these leading bytes
# are rare and take the full check). Single bytes: each found at the speed of memchr.
_REFUSED_LEADS = (b"\\", b"\x7f", b"\xc2", b"\xd8", b"\xe2")


def _plain(raw: bytes) -> bool:
    """True when the JSON text `raw` can hold no character that a bound refuses."""
    for lead in _REFUSED_LEADS:
        if lead in raw:
            return False
    return b"\xef" not in raw or b"\xef\xbb\xbf" not in raw  # 0xEF: also fullwidth punctuation


def _sized(value: Any, key: Any, depth: int, limits: Limits) -> bool:
    """`_within` for JSON decoded from text that holds no refused character (`_plain`): the same
    bounds of structure and length, read without gathering the texts. Decoded JSON: its types
    are exactly str, dict, list (or a number, a bool, None)."""
    id_chars, text_chars = limits.id_chars, limits.text_chars
    shortest = min(id_chars, text_chars)
    kind = type(value)
    if kind is str:
        return len(value) <= (id_chars if key in IDENTIFIERS else text_chars)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        if key == "fees" and any(len(k) > id_chars for k in value):
            return False
        depth += 1
        for k, v in value.items():
            kind = type(v)
            if kind is str:
                if len(v) > shortest and len(v) > (id_chars if k in IDENTIFIERS else text_chars):
                    return False
            elif (kind is dict or kind is list) and not _sized(v, k, depth, limits):
                return False
    elif kind is list:
        bound = (limits.diagnoses if key in _DIAGNOSES else limits.procedures if key in _PROCEDURES
                 else limits.entries)
        if len(value) > bound or depth >= MAX_DEPTH:
            return False
        longest = id_chars if key in _CODE_ARRAYS else text_chars
        depth += 1
        for v in value:
            kind = type(v)
            if kind is str:
                if len(v) > longest:
                    return False
            elif (kind is dict or kind is list) and not _sized(v, None, depth, limits):
                return False
    return True


def _gather(value: Any, key: Any, depth: int, limits: Limits, ids: list[str], texts: list[str]) -> bool:
    """Collect the identifiers and texts of `value`; False at a bound of structure (nesting,
    entries)."""
    if isinstance(value, str):
        (ids if key in IDENTIFIERS else texts).append(value)
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return False
        if key == "fees":  # native fees: {med_chrgitm: amount}
            ids.extend(k for k in value if isinstance(k, str))
        depth += 1
        for k, v in value.items():
            if isinstance(v, str):
                (ids if k in IDENTIFIERS else texts).append(v)
            elif (isinstance(v, dict | list)) and not _gather(v, k, depth, limits, ids, texts):
                return False
    elif isinstance(value, list):
        bound = (limits.diagnoses if key in _DIAGNOSES else limits.procedures if key in _PROCEDURES
                 else limits.entries)
        if len(value) > bound or depth >= MAX_DEPTH:
            return False
        codes = key in _CODE_ARRAYS
        depth += 1
        for v in value:
            if isinstance(v, str):
                (ids if codes else texts).append(v)
            elif isinstance(v, dict | list) and not _gather(v, None, depth, limits, ids, texts):
                return False
    return True


def _walk(value: Any, path: str, key: str | None, depth: int, limits: Limits, found: list[Problem]) -> None:
    if isinstance(value, str):
        _check_text(value, path, key in IDENTIFIERS, limits, found)
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            found.append(problem(path or "input", "NAT-TOO-DEEP"))
            return
        for k, v in value.items():
            name = _field_name(k)
            child = f"{path}{name}" if name.startswith("[") else f"{path}.{name}" if path else name
            if key == "fees" and isinstance(k, str):  # native fees: {med_chrgitm: amount}
                _check_text(k, child, True, limits, found)
            _walk(v, child, k, depth + 1, limits, found)
    elif isinstance(value, list):
        bound = (limits.diagnoses if key in _DIAGNOSES else limits.procedures if key in _PROCEDURES
                 else limits.entries)
        if len(value) > bound:  # not walked further: reading it is what the bound prevents
            found.append(problem(path or "input", "NAT-TOO-MANY", f"{len(value)}条，上限{bound}条",
                                 f"{len(value)}, at most {bound}"))
            return
        if depth >= MAX_DEPTH:
            found.append(problem(path or "input", "NAT-TOO-DEEP"))
            return
        codes = key in _CODE_ARRAYS
        for i, v in enumerate(value):
            child = f"{path}[{i}]"
            if codes and isinstance(v, str):
                _check_text(v, child, True, limits, found)
            else:
                _walk(v, child, None, depth + 1, limits, found)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")


def _field_name(key: Any) -> str:
    """A key as it stands in a field path; any other key (empty, long, with control or other
    characters) is quoted, so every field path is printable and names something."""
    text = str(key)
    return text if _PLAIN_KEY.fullmatch(text) else "[" + json.dumps(text[:64]) + "]"


def _check_text(s: str, path: str, identifier: bool, limits: Limits, found: list[Problem]) -> None:
    limit = limits.id_chars if identifier else limits.text_chars
    if len(s) > limit:
        found.append(problem(path, "NAT-TOO-LONG", f"{len(s)}个字符，上限{limit}个",
                             f"{len(s)} characters, at most {limit}"))
    elif (UNSAFE_IN_ID if identifier else _BAD_IN_TEXT).search(s):
        found.append(problem(path, "NAT-CONTROL-CHAR"))
