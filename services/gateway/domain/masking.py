"""Personal data in API answers: names and identity numbers masked.

A settlement list names its patient (`psn_name`), their identity document (`certno`), their
insured-person number (`psn_no`) and contact details. Only the hospital that sent the list and
the `bureau-auditor` role see them in clear (every such read audited); every other answer
carries them masked: 张三 -> 张*, 350521199001011234 -> 3505**********1234.
Pure: works on parsed JSON (dicts, lists, scalars); the field names decide, at any depth.
"""

from __future__ import annotations

from typing import Any

MASK = "*"
NAME_FIELDS = frozenset({"psn_name", "coner_name", "patn_name"})
ID_FIELDS = frozenset({"certno", "psn_no", "psn_cert_no", "mdtrt_cert_no", "medcasno", "hi_no"})
CONTACT_FIELDS = frozenset({"tel", "coner_tel", "emp_tel", "curr_addr", "resd_addr", "coner_addr",
                            "con_addr", "emp_addr", "emp_name"})
PERSONAL_FIELDS = NAME_FIELDS | ID_FIELDS | CONTACT_FIELDS


def mask_name(name: str | None) -> str | None:
    """The family name kept, every other character masked: 张三 -> 张*, 欧阳娜娜 -> 欧***."""
    if not name:
        return name
    name = name.strip()
    if not name:
        return name
    return name[0] + MASK * (len(name) - 1) if len(name) > 1 else MASK


def mask_id(number: str | None) -> str | None:
    """An identity or person number: the region (first 4) and last 4 characters of a long
    number kept (a 15- or 18-digit ID: 3505**********1234); of a shorter one the last 2;
    a number of 5 characters or fewer masked whole."""
    if not number:
        return number
    n = len(number)
    if n >= 12:
        return number[:4] + MASK * (n - 8) + number[-4:]
    if n >= 6:
        return MASK * (n - 2) + number[-2:]
    return MASK * n


def mask_contact(value: str | None) -> str | None:
    """A phone number or address: the first 3 characters kept (the area), the rest masked."""
    if not value:
        return value
    return MASK * len(value) if len(value) <= 3 else value[:3] + MASK * (len(value) - 3)


def _mask_value(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict | list):
        return mask_document(value)
    text = str(value)
    if key in NAME_FIELDS:
        return mask_name(text)
    if key in ID_FIELDS:
        return mask_id(text)
    return mask_contact(text)


def mask_document(doc: Any) -> Any:
    """A copy of a JSON value with every personal field masked, at any depth."""
    if isinstance(doc, dict):
        return {k: _mask_value(k, v) if k in PERSONAL_FIELDS else mask_document(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [mask_document(v) for v in doc]
    return doc
