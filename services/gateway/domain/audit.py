"""The audit of administrative actions: what is recorded, and the CSV it is exported as.

Append-only: rows are inserted, never updated or deleted. An action is recorded once it took
effect (the change committed or the upstream accepted it); an unmasked read of personal data is
recorded with the read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
POLICY_IMPORTED = "policy.imported"
DIP_POLICY_IMPORTED = "dip-policy.imported"
DIP_CATALOGUE_REGISTERED = "dip-catalogue.registered"
SCHEME_REGISTERED = "scheme.registered"
SETTLEMENT_RUN = "settlement.run"
REPRICED = "cases.repriced"
PERSONAL_DATA_READ = "personal-data.read"
AUDIT_READ = "audit.exported"
ACTIONS = (TOKEN_CREATED, TOKEN_REVOKED, POLICY_IMPORTED, DIP_POLICY_IMPORTED, DIP_CATALOGUE_REGISTERED,
           SCHEME_REGISTERED, SETTLEMENT_RUN, REPRICED, PERSONAL_DATA_READ, AUDIT_READ)

CSV_COLUMNS = ("id", "at", "action", "actor", "role", "token_id", "client", "subject", "detail")


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """The audit rows as CSV (a header, then one line per row, times in ISO 8601)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    # a cell a spreadsheet would run as a formula is written as text
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
