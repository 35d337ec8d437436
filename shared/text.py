"""What an identifier may hold (hospital codes, case and list ids, policy ids, regions, codes):
no control character (C0, C1, DEL) and no invisible or bidirectional formatting character.
PostgreSQL refuses NUL in text; the others would disguise an id in a log or the audit.

Pure: ingest's intake rules, the routes' request models (`ID_PATTERN`, for pydantic `pattern=`)
and their header and path checks use the same definition.
"""

from __future__ import annotations

import re

# as a regular-expression character range (Python's `re` and pydantic's patterns read it alike)
_UNSAFE = r"\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"
UNSAFE_IN_ID = re.compile(f"[{_UNSAFE}]")
ID_PATTERN = f"^[^{_UNSAFE}]+$"


def is_plain_id(value: str, max_len: int) -> bool:
    """1 to `max_len` characters, none of them unsafe in an identifier."""
    return 0 < len(value) <= max_len and UNSAFE_IN_ID.search(value) is None
