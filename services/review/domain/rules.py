"""Review's domain core: monitoring rules over a case and the person's other stays.

Starts with one rule (docs/domain.md §11): a readmission of the same person to the same
hospital within `readmission_days` (default 15) after an earlier discharge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.events import CaseFlag

READMISSION = "READMISSION_15D"


@dataclass(frozen=True)
class Stay:
    case_id: str
    psn_key: str
    hospital_code: str
    admission_date: date | None
    discharge_date: date | None


def is_readmission(earlier: Stay, later: Stay, days: int) -> bool:
    """`later` began within `days` days after `earlier` ended, at the same hospital."""
    if earlier.case_id == later.case_id or earlier.hospital_code != later.hospital_code:
        return False
    if earlier.discharge_date is None or later.admission_date is None:
        return False
    gap = (later.admission_date - earlier.discharge_date).days
    return 0 <= gap <= days and later.admission_date >= (earlier.admission_date or later.admission_date)


def readmission_flags(stay: Stay, others: list[Stay], days: int = 15) -> list[CaseFlag]:
    """Flags on `stay` for each earlier stay of the same person it re-admits after."""
    return [
        CaseFlag(rule=READMISSION, related_case_id=o.case_id,
                 message=f"readmitted {(stay.admission_date - o.discharge_date).days} days after "  # type: ignore[operator]
                         f"discharge from case {o.case_id} (limit {days})")
        for o in others if is_readmission(o, stay, days)
    ]
